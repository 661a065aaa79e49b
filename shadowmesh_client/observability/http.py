"""The metrics port: ``/metrics`` (Prometheus text), ``/healthz`` (readiness), ``/livez`` (liveness).

``serve(host, port, collectors, published)`` starts a ThreadingHTTPServer in a daemon thread of its own
with a registry of its own (the daemon's collectors + prometheus_client's process collector for CPU and
memory), not the process-global REGISTRY. The handlers run on that server's threads and read only
``published.snapshot`` (observability/snapshot.py), never the loop's objects.

* ``/healthz``: 200 ``ready`` while the latest snapshot says ready (the daemon serves and its directory
  synced within its freshness bound: see node.py / relay.py ``READY_LAG_SECONDS``), else 503. Kubernetes'
  readinessProbe; a load balancer stops sending devices to a relay whose trust view is stale.
* ``/livez``: 200 while the event loop published a snapshot in the last ``LIVE_SECONDS``, else 503
  (a wedged loop): livenessProbe.

May import: observability.snapshot, prometheus_client, the standard library.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import MetricsHandler

from shadowmesh_client.observability.snapshot import Published

LIVE_SECONDS = 30.0
"""Seconds without a new snapshot after which ``/livez`` fails (the loop publishes every second)."""


def _handler(registry: CollectorRegistry, published: Published | None) -> type[MetricsHandler]:
    class Handler(MetricsHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/healthz", "/livez"):
                ok = self._check(path)
                body = (b"ok\n" if ok else b"not ready\n") if path == "/healthz" else (b"ok\n" if ok else b"stale\n")
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def _check(self, path: str) -> bool:
            if published is None:
                return True
            snap = published.snapshot
            if path == "/healthz":
                return snap.ready
            return snap.taken_at > 0 and time.monotonic() - snap.taken_at < LIVE_SECONDS

        def log_message(self, format: str, *args: Any) -> None:   # noqa: A002 - the base class's name
            pass   # probes every few seconds: not worth a log line each

    Handler.registry = registry
    return Handler


def serve(host: str, port: int, collectors: Iterable[Any], published: Published | None = None,
          process: bool = True) -> ThreadingHTTPServer:
    """Serve ``collectors`` on ``host:port``; returns the server (``shutdown()`` + ``server_close()`` it).
    ``port`` 0 picks a free port (``server.server_address[1]``)."""
    registry = CollectorRegistry(auto_describe=True)
    for c in collectors:
        registry.register(c)
    if process:
        ProcessCollector(registry=registry)   # process_cpu_seconds_total, process_resident_memory_bytes, ...
    server = ThreadingHTTPServer((host, port), _handler(registry, published))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
