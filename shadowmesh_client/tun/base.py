"""The TUN device interface the node uses (spec "Network Layer" / "Data Plane").

A device moves whole IP packets (no packet-information header, IFF_NO_PI) between the kernel and the
node. The node calls ``read_batch`` when ``fileno()`` is readable (asyncio ``loop.add_reader``) and
gets every packet one burst delivered, so it can seal several packets into one WebSocket message;
it calls ``write``/``write_batch`` with packets opened from peers.

Implementations: ``linux.LinuxTun`` (/dev/net/tun) and ``fake.FakeTun`` (in memory, unit tests).
Neither is thread-safe: use a device from one thread (the event loop's) only.
"""

from __future__ import annotations

import abc
import errno
from collections.abc import Iterable
from dataclasses import dataclass

from shadowmesh_client.errors import ConfigError, TunError

MIN_MTU = 576
"""Bytes. Smallest MTU accepted: the IPv4 datagram size every host must accept (RFC 791)."""

MAX_MTU = 65535
"""Bytes. Largest MTU a Linux TUN device accepts (the IPv4 total-length field is 16 bits)."""

DEFAULT_BATCH = 64
"""Packets. Default upper bound for one ``read_batch`` call: bounds latency and memory per burst."""


@dataclass
class TunStats:
    """Counters a device keeps (packets, not bytes, unless named so). Read them, never reset them."""

    rx_packets: int = 0  # packets read from the kernel and returned to the caller
    rx_bytes: int = 0
    rx_dropped_non_ipv4: int = 0  # read but dropped because they were not IPv4 (ipv4_only devices)
    tx_packets: int = 0  # packets the kernel accepted from write/write_batch
    tx_bytes: int = 0
    tx_errors: int = 0  # packets the kernel refused (write_batch drops and counts them)
    rx_super_packets: int = 0  # reads that were TCP super-packets (offload on; gso.py)


class TunDevice(abc.ABC):
    """A layer-3 virtual interface. Contract of every method is stated here; implementations follow it."""

    stats: TunStats
    _name: str  # set by the implementation's constructor
    _closed: bool
    offload = False
    """True when ``read_batch`` returns packets in tun/gso.py's offload form and ``write_offloaded`` writes
    an OFFLOAD frame's packets (linux.LinuxTun with TUNSETOFFLOAD); the others read and write plain packets."""

    @property
    def name(self) -> str:
        """The interface name the kernel gave the device (at most 15 characters)."""
        return self._name

    @property
    @abc.abstractmethod
    def mtu(self) -> int:
        """Bytes. Largest packet ``read_batch`` returns and ``write`` accepts."""

    @abc.abstractmethod
    def fileno(self) -> int:
        """A non-blocking file descriptor that is readable when ``read_batch`` would return packets."""

    @abc.abstractmethod
    def read_batch(self, max_packets: int = DEFAULT_BATCH) -> list[bytes]:
        """Return up to ``max_packets`` packets that are ready now, without blocking.

        An empty list means nothing was ready (spurious wake-up). Raises ``TunError`` if the device
        failed (e.g. it was deleted under us) and ``ValueError`` if ``max_packets < 1``.
        """

    @abc.abstractmethod
    def write(self, packet: bytes) -> None:
        """Hand one IP packet to the kernel. Raises ``TunError`` if the kernel refuses it."""

    def write_batch(self, packets: Iterable[bytes]) -> int:
        """Hand several packets to the kernel; return how many it accepted.

        A packet the kernel refuses (malformed, larger than the MTU) is dropped and counted in
        ``stats.tx_errors``: one bad packet from a peer must not stop the others.
        Raises ``TunError`` only if the device itself is gone (closed).
        """
        accepted = 0
        for packet in packets:
            try:
                self.write(packet)
            except TunError:
                if self.closed:
                    raise
                self.stats.tx_errors += 1
            else:
                accepted += 1
        return accepted

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise TunError(errno.EBADF, f"tun device {self._name} is closed")

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device. Idempotent. A device made with TUNSETIFF disappears from the kernel."""

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_mtu(mtu: int) -> int:
    """Return ``mtu`` if it is an int within [MIN_MTU, MAX_MTU]; else raise ``ConfigError`` saying so."""
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not MIN_MTU <= mtu <= MAX_MTU:
        raise ConfigError(f"tun mtu must be an integer from {MIN_MTU} to {MAX_MTU} bytes, got {mtu!r}")
    return mtu
