"""In-memory TUN device for unit tests of code that reads and writes packets (no kernel, no root).

Like wireguard-go's ``tun/tuntest``: the test plays the kernel. ``inject(packet)`` queues a packet
that ``read_batch`` will return (what an application sent into the tunnel); every packet the code
under test writes lands in ``written`` (what the kernel would deliver to applications). ``fileno()``
is the read end of a pipe that is readable exactly while injected packets wait, so the fake works with
``loop.add_reader`` like the real device. Not thread-safe.
"""

from __future__ import annotations

import errno
import os
from collections import deque

from shadowmesh_client.errors import TunError

from .base import DEFAULT_BATCH, TunDevice, TunStats, check_mtu


class FakeTun(TunDevice):
    """A TUN device made of two queues. ``write`` refuses packets longer than ``mtu`` (as a test aid)."""

    def __init__(self, name: str = "fake0", mtu: int = 1400, *, ipv4_only: bool = True) -> None:
        self._name = name
        self._mtu = check_mtu(mtu)
        self._ipv4_only = ipv4_only
        self._inbound: deque[bytes] = deque()
        self.written: deque[bytes] = deque()
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._closed = False
        self.stats = TunStats()

    @property
    def mtu(self) -> int:
        return self._mtu

    def fileno(self) -> int:
        self._check_open()
        return self._r

    def inject(self, packet: bytes) -> None:
        """Queue ``packet`` for ``read_batch``, as if an application had sent it into the tunnel."""
        self._check_open()
        self._inbound.append(bytes(packet))
        if len(self._inbound) == 1:
            os.write(self._w, b"\0")  # readable while the queue is non-empty

    def read_batch(self, max_packets: int = DEFAULT_BATCH) -> list[bytes]:
        if max_packets < 1:
            raise ValueError(f"max_packets must be at least 1, got {max_packets}")
        self._check_open()
        out: list[bytes] = []
        while self._inbound and len(out) < max_packets:
            packet = self._inbound.popleft()
            if self._ipv4_only and (not packet or packet[0] >> 4 != 4):
                self.stats.rx_dropped_non_ipv4 += 1
                continue
            out.append(packet)
            self.stats.rx_bytes += len(packet)
        if not self._inbound:
            try:
                os.read(self._r, 1)
            except BlockingIOError:
                pass
        self.stats.rx_packets += len(out)
        return out

    def write(self, packet: bytes) -> None:
        self._check_open()
        if not packet or len(packet) > self._mtu:
            raise TunError(errno.EINVAL, f"{self._name}: packet of {len(packet)} bytes refused (mtu {self._mtu})")
        self.written.append(bytes(packet))
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(packet)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self._r)
        os.close(self._w)

