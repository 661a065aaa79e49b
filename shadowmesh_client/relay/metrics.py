"""The relay's Prometheus metrics: ``shadowmesh_relay_device_bytes_total{device,direction}``.

``RelayCollector(book)`` is served by ``daemon_common.start_metrics_server`` (a registry of its own, not
the process-global REGISTRY) and runs on prometheus_client's HTTP thread: it reads only
``UsageBook.snapshot``, an immutable tuple the event loop replaces atomically after every accounting
round (relay/usage.py), never the loop's mutable dicts. Figures lag the traffic by at most one sweep
(``SWEEP_SECONDS``).

May import: relay.usage, prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily

from shadowmesh_client.relay.usage import UsageBook


class RelayCollector:
    def __init__(self, book: UsageBook) -> None:
        self._book = book

    def collect(self) -> Iterator[CounterMetricFamily]:
        snapshot = self._book.snapshot   # one read: a consistent, immutable picture
        c = CounterMetricFamily("shadowmesh_relay_device_bytes", "Bytes relayed per device (envelopes included)",
                                labels=["device", "direction"])
        for device, bytes_in, bytes_out in snapshot:
            c.add_metric([device, "in"], bytes_in)
            c.add_metric([device, "out"], bytes_out)
        yield c

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("shadowmesh_relay_device_bytes", "Bytes relayed per device (envelopes included)",
                                  labels=["device", "direction"])
