"""In-memory TUN device for unit tests of code that reads and writes packets (no kernel, no root).

Like wireguard-go's ``tun/tuntest``: the test plays the kernel. ``inject(packet)`` queues a packet
that ``read_batch`` will return (what an application sent into the tunnel); every packet the code
under test writes lands in ``written`` (what the kernel would deliver to applications). ``fileno()``
is the read end of a pipe that is readable exactly while injected packets wait, so the fake works with
``loop.add_reader`` like the real device. Not thread-safe.
"""

from __future__ import annotations

import errno
from collections import deque

from shadowmesh_client.errors import TunError

from .base import DEFAULT_BATCH, check_mtu
from .queued import QueuedTun


class FakeTun(QueuedTun):
    """A TUN device made of two queues. ``write`` refuses packets longer than ``mtu`` (as a test aid)."""

    def __init__(self, name: str = "fake0", mtu: int = 1400, *, ipv4_only: bool = True) -> None:
        super().__init__(name, check_mtu(mtu))
        self._ipv4_only = ipv4_only
        self.written: deque[bytes] = deque()

    def inject(self, packet: bytes) -> None:
        """Queue ``packet`` for ``read_batch``, as if an application had sent it into the tunnel."""
        self._check_open()
        self._queue(bytes(packet))

    def _keep(self, packet: bytes) -> bool:
        if self._ipv4_only and (not packet or packet[0] >> 4 != 4):
            self.stats.rx_dropped_non_ipv4 += 1
            return False
        self.stats.rx_bytes += len(packet)
        return True

    def read_batch(self, max_packets: int = DEFAULT_BATCH) -> list[bytes]:
        out = self._take(max_packets, self._keep)
        self.stats.rx_packets += len(out)
        return out

    def write(self, packet: bytes) -> None:
        self._check_open()
        if not packet or len(packet) > self._mtu:
            raise TunError(errno.EINVAL, f"{self._name}: packet of {len(packet)} bytes refused (mtu {self._mtu})")
        self.written.append(bytes(packet))
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(packet)
