"""A TUN device made of a queue: packets wait in memory and a pipe is readable exactly while they do, so
the device works with ``loop.add_reader`` like the real one. The common part of ``fake.FakeTun`` (tests
play the kernel) and ``userspace.sink.PacketSink`` (userspace mode answers pings and refuses TCP).
Not thread-safe: one event loop.

May import: tun.base, errors.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

from shadowmesh_client.tun.base import TunDevice, TunStats


class QueuedTun(TunDevice):
    """``_queue(packet)`` makes a packet readable; ``_take(n, keep)`` returns up to ``n`` of them."""

    def __init__(self, name: str, mtu: int) -> None:
        self._name = name
        self._mtu = mtu
        self._pending: deque[bytes] = deque()
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._closed = False
        self.stats = TunStats()

    @property
    def mtu(self) -> int:
        return self._mtu

    def fileno(self) -> int:
        self._check_open()
        return self._r

    def _queue(self, packet: bytes) -> None:
        self._pending.append(packet)
        if len(self._pending) == 1:
            os.write(self._w, b"\0")  # readable while the queue is non-empty

    def _take(self, max_packets: int, keep: Callable[[bytes], bool] | None = None) -> list[bytes]:
        """Up to ``max_packets`` queued packets (those ``keep`` refuses are consumed, not returned)."""
        if max_packets < 1:
            raise ValueError(f"max_packets must be at least 1, got {max_packets}")
        self._check_open()
        out: list[bytes] = []
        while self._pending and len(out) < max_packets:
            packet = self._pending.popleft()
            if keep is None or keep(packet):
                out.append(packet)
        if not self._pending:
            try:
                os.read(self._r, 1)
            except BlockingIOError:
                pass
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self._r)
        os.close(self._w)
