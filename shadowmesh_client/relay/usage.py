"""Usage accounting of the relay daemon: per-device byte and message totals since start, drops by reason.

``UsageBook.fold(core.take_usage())`` adds one round of RelayCore counters (bytes are whole WebSocket
message payloads, envelope included: the figure payment receipts are checked against) and returns the
billable bytes per device of that round (``bytes_in + bytes_out``, what RelayBilling charges).

Threads: ``totals``/``drops`` are mutated on the event loop only. After every fold the book publishes
``snapshot``: an immutable tuple of ``(device hex, bytes_in, bytes_out)`` that replaces the previous one in
a single attribute store, so the Prometheus collector (relay/metrics.py, on prometheus_client's HTTP
thread) reads a consistent picture without locks and never iterates a dict the loop is changing.

May import: relay.core only.
"""

from __future__ import annotations

from collections.abc import Mapping

from shadowmesh_client.relay.core import DeviceUsage

UsageSnapshot = tuple[tuple[str, int, int], ...]
"""(device public key hex, bytes in, bytes out) per device, sorted by key."""


class UsageBook:
    def __init__(self) -> None:
        self.totals: dict[bytes, list[int]] = {}   # key -> [bytes_in, messages_in, bytes_out, messages_out]
        self.drops: dict[str, int] = {}            # DropReason.value -> messages dropped
        self.snapshot: UsageSnapshot = ()

    def fold(self, usage: Mapping[bytes, DeviceUsage]) -> dict[bytes, int]:
        """Add one round of counters; returns billable bytes per device of this round (> 0 only)."""
        billable: dict[bytes, int] = {}
        for key, u in usage.items():
            tot = self.totals.get(key)
            if tot is None:
                tot = self.totals[key] = [0, 0, 0, 0]
            tot[0] += u.bytes_in
            tot[1] += u.messages_in
            tot[2] += u.bytes_out
            tot[3] += u.messages_out
            if u.bytes_in or u.bytes_out:
                billable[key] = u.bytes_in + u.bytes_out
            for reason, n in u.dropped.items():
                self.drops[reason.value] = self.drops.get(reason.value, 0) + n
        # Published atomically (one attribute store) for readers on other threads.
        self.snapshot = tuple(sorted((k.hex(), v[0], v[2]) for k, v in self.totals.items()))
        return billable

    def as_dict(self) -> dict[str, dict[str, int]]:
        """Per device (hex public key): bytes/messages in and out since start (status file ``usage``)."""
        return {k.hex(): {"bytes_in": v[0], "messages_in": v[1], "bytes_out": v[2], "messages_out": v[3]}
                for k, v in self.totals.items()}
