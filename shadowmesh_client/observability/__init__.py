"""Observability of the two daemons: Prometheus metrics, JSON logs, optional OpenTelemetry traces.

Spec "Monitoring and Observability"; issue 13 "Observability". One module per job:

* ``catalogue.py``: every metric's name, type, unit and labels (conventional names: ``_total`` counters,
  ``_bytes``/``_seconds`` units, no per-device label);
* ``snapshot.py``: the immutable ``Snapshot`` the event loop publishes and the collector that serves it on
  prometheus_client's HTTP thread (``SnapshotCollector``), plus the publishing task;
* ``node.py`` / ``relay.py``: what the ``up`` and ``relay`` daemons' snapshots contain (built on the loop);
* ``rpc.py``: the chain RPC counter and tracer (``JsonRpc.watch``), thread-safe;
* ``http.py``: the metrics port: ``/metrics``, ``/healthz`` (ready: directory synced), ``/livez``;
* ``logs.py``: ``--log-format json`` (spec levels DEBUG, INFO, WARN, ERROR, FATAL) and secret redaction;
* ``tracing.py``: OpenTelemetry spans for handshakes and directory sync, off by default, a no-op when the
  ``opentelemetry`` packages are not installed.

May import: prometheus_client, the standard library; node/ and relay/ objects only by duck typing
(attributes they document), never their modules: the daemons import this package, not the reverse.
"""

from shadowmesh_client.observability.snapshot import Snapshot, SnapshotCollector, publish_forever

__all__ = ["Snapshot", "SnapshotCollector", "publish_forever"]
