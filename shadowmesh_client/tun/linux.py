"""Linux TUN device on /dev/net/tun (spec "Network Layer"): layer 3, no packet-information header.

Made with ``TUNSETIFF`` and flags IFF_TUN | IFF_NO_PI (IFF_MULTI_QUEUE only when asked): such a device
exists as long as its file descriptor is open, so a crashed node leaves nothing behind. The fd is
non-blocking; register it with ``loop.add_reader(dev.fileno(), ...)`` and call ``read_batch`` there.

Each ``read`` returns exactly one packet (IFF_NO_PI), at most the MTU long; the buffer is always
``MAX_MTU`` so raising the MTU later (``configure``) never truncates a packet.

``vnet_hdr=True`` (what the node uses; issue 5 performance) adds IFF_VNET_HDR: every read and write
carries a 10-byte ``virtio_net_hdr`` in front, hidden from the caller. ``write_batch`` merges runs of
TCP segments into GSO super-packets (``gro.py``), so the kernel's receive path runs once per run instead
of once per segment. Packets ``read_batch`` returns above 4 KiB are read-only memoryviews (no copy).

``offload=True`` (issue 17; needs ``vnet_hdr``) also sets TUNSETOFFLOAD (TUN_F_CSUM | TUN_F_TSO4): the
kernel's TCP then hands over super-packets of up to 64 KiB instead of one read per MTU-sized segment,
and ``read_batch`` returns packets in the offload form of ``gso.py``; ``write_offloaded`` writes the
packets of an offload-form frame. ``offload`` says whether the kernel accepted it.
Address, MTU, routes and link state are set by ``configure.configure`` (netlink via pyroute2).
Not thread-safe.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

from shadowmesh_client.errors import ConfigError, TunError

from .base import DEFAULT_BATCH, MAX_MTU, TunDevice, TunStats, check_mtu
from .gro import PLAIN_HDR, VNET_HDR_SIZE, coalesce
from .gso import to_offload_form, write_header
from .netns import enter_netns

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_VNET_HDR = 0x4000  # every read/write starts with a 10-byte struct virtio_net_hdr (see gro.py)
TUNSETOFFLOAD = 0x400454D0  # _IOW('T', 208, unsigned int)
TUN_F_CSUM = 0x01  # the device may hand over packets whose checksum is left to it (NEEDS_CSUM)
TUN_F_TSO4 = 0x02  # ... and IPv4 TCP super-packets (GSO TCPV4); TSO6/USO stay off (gso.py handles TCPv4)
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
IFNAMSIZ = 16  # bytes, including the terminating NUL: names are at most 15 characters
_IFREQ = "16sH22x"  # struct ifreq: name, short flags (or int mtu), padding to 40 bytes
_IFREQ_MTU = "16si20x"

_READ_SIZE = MAX_MTU
_COPY_BELOW = 4096  # bytes: vnet_hdr reads up to this size are copied out, larger ones returned as views


def check_ifname(name: str) -> str:
    """Return ``name`` if the kernel would accept it as an interface name; else raise ``ConfigError``.

    A ``%d`` in the name lets the kernel pick the number (``smt%d`` -> ``smt0``).
    """
    if (
        not isinstance(name, str)
        or not name
        or len(name.encode()) >= IFNAMSIZ
        or name in (".", "..")
        or any(c in name for c in "/: \t\n")
    ):
        raise ConfigError(f"tun name must be 1-15 characters without '/', ':' or spaces, got {name!r}")
    return name


class LinuxTun(TunDevice):
    """An open TUN device. Create it with ``open_tun``."""

    def __init__(self, fd: int, name: str, ctl: socket.socket, ipv4_only: bool, vnet_hdr: bool = False,
                 offload: bool = False) -> None:
        self._fd = fd
        self.vnet_hdr = vnet_hdr
        self.offload = offload  # TUNSETOFFLOAD is on: reads are in gso.py's offload form
        self._name = name
        self._ctl = ctl  # AF_INET socket in the device's namespace, for MTU ioctls
        self._ipv4_only = ipv4_only
        self._closed = False
        self.stats = TunStats()

    @property
    def mtu(self) -> int:
        self._check_open()
        req = struct.pack(_IFREQ_MTU, self._name.encode(), 0)
        try:
            res = fcntl.ioctl(self._ctl.fileno(), SIOCGIFMTU, req)
        except OSError as e:
            raise TunError(e.errno, f"cannot read the MTU of {self._name}: {e.strerror}") from None
        return struct.unpack(_IFREQ_MTU, res)[1]

    def set_mtu(self, mtu: int) -> None:
        """Set the MTU in bytes (``MIN_MTU``..``MAX_MTU``); ``configure`` does the same over netlink."""
        self._check_open()
        check_mtu(mtu)
        req = struct.pack(_IFREQ_MTU, self._name.encode(), mtu)
        try:
            fcntl.ioctl(self._ctl.fileno(), SIOCSIFMTU, req)
        except OSError as e:
            raise TunError(e.errno, f"cannot set the MTU of {self._name} to {mtu}: {e.strerror}") from None

    def fileno(self) -> int:
        self._check_open()
        return self._fd

    def read_batch(self, max_packets: int = DEFAULT_BATCH) -> list[bytes]:
        if max_packets < 1:
            raise ValueError(f"max_packets must be at least 1, got {max_packets}")
        self._check_open()
        if self.vnet_hdr:
            return self._read_batch_vnet(max_packets)
        out: list[bytes] = []
        read, fd, stats = os.read, self._fd, self.stats
        try:
            for _ in range(max_packets):
                packet = read(fd, _READ_SIZE)
                if self._ipv4_only and (not packet or packet[0] >> 4 != 4):
                    stats.rx_dropped_non_ipv4 += 1
                    continue
                out.append(packet)
                stats.rx_bytes += len(packet)
        except BlockingIOError:
            pass
        except OSError as e:
            raise TunError(e.errno, f"reading from {self._name} failed: {e.strerror}") from None
        stats.rx_packets += len(out)
        return out

    def _read_batch_vnet(self, max_packets: int) -> list:
        out: list = []
        read, fd, stats, size = os.read, self._fd, self.stats, _READ_SIZE + VNET_HDR_SIZE
        ipv4_only, offload = self._ipv4_only, self.offload
        try:
            for _ in range(max_packets):
                data = read(fd, size)
                if len(data) <= VNET_HDR_SIZE or (ipv4_only and data[VNET_HDR_SIZE] >> 4 != 4):
                    stats.rx_dropped_non_ipv4 += 1
                    continue
                if offload:   # gso.py's offload form (super-packets, checksums left to the device)
                    if data[1]:
                        stats.rx_super_packets += 1
                    packet = to_offload_form(data)
                    if packet is None:
                        stats.rx_dropped_non_ipv4 += 1
                        continue
                elif data[1]:   # without TUNSETOFFLOAD the kernel never hands over GSO packets
                    stats.rx_dropped_non_ipv4 += 1
                    continue
                else:
                    # small packets: a bytes copy (cheap); large ones: a read-only view past the header (no
                    # 64 KiB copy; hashable and compares equal to bytes, like the copy would)
                    packet = data[VNET_HDR_SIZE:] if len(data) <= _COPY_BELOW else memoryview(data)[VNET_HDR_SIZE:]
                out.append(packet)
                stats.rx_bytes += len(packet)
        except BlockingIOError:
            pass
        except OSError as e:
            raise TunError(e.errno, f"reading from {self._name} failed: {e.strerror}") from None
        stats.rx_packets += len(out)
        return out

    def write_offloaded(self, packets) -> int:
        """Write the packets of an offload-form frame (``gso.py``; only with ``offload`` on): IPv4 TCP
        ones with the ``virtio_net_hdr`` that has the kernel segment them (GSO) and complete their checksum
        where needed, the rest as they are. Counts and errors as ``write_batch``."""
        self._check_open()
        writev, fd, stats = os.writev, self._fd, self.stats
        accepted = 0
        for p in packets:
            how = write_header(p)
            if how is None:   # a segment size below gso.MIN_GSO_SIZE: refused like a malformed packet
                stats.tx_errors += 1
                continue
            hdr, at, value = how
            try:
                if at < 0:
                    writev(fd, (hdr, p))
                else:
                    v = memoryview(p)
                    writev(fd, (hdr, v[:at], value.to_bytes(2, "big"), v[at + 2:]))
            except OSError:
                if self._closed:
                    raise TunError(errno.EBADF, f"tun device {self._name} is closed") from None
                stats.tx_errors += 1
                continue
            accepted += 1
            stats.tx_bytes += len(p)
        stats.tx_packets += accepted
        return accepted

    def write_batch(self, packets) -> int:
        """As ``TunDevice.write_batch``; with ``vnet_hdr``, consecutive TCP segments of one stream are
        first merged into super-packets (``gro.coalesce``): one write and one pass of the kernel's
        receive path per run instead of per segment. Counts are in original packets."""
        if not self.vnet_hdr:
            return super().write_batch(packets)
        self._check_open()
        writev, fd, stats = os.writev, self._fd, self.stats
        accepted = 0
        for hdr, packet, n in coalesce(packets):
            try:
                writev(fd, (hdr, packet))
            except OSError:
                if self._closed:
                    raise TunError(errno.EBADF, f"tun device {self._name} is closed") from None
                stats.tx_errors += n
                continue
            accepted += n
            stats.tx_bytes += len(packet)
        stats.tx_packets += accepted
        return accepted

    def write(self, packet: bytes) -> None:
        self._check_open()
        try:
            if self.vnet_hdr:
                os.writev(self._fd, (PLAIN_HDR, packet))
            else:
                os.write(self._fd, packet)
        except OSError as e:
            hint = "the device is down" if e.errno == errno.EIO else "malformed packet?"
            raise TunError(e.errno, f"writing to {self._name} failed: {e.strerror} ({hint})") from None
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(packet)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self._fd)
        self._ctl.close()


    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        return f"<LinuxTun {self._name} {state}>"


def open_tun(
    name: str = "smt%d",
    *,
    mtu: int | None = None,
    netns: str | None = None,
    multi_queue: bool = False,
    ipv4_only: bool = True,
    vnet_hdr: bool = False,
    offload: bool = False,
) -> LinuxTun:
    """Create (or attach to) TUN device ``name`` and return it open and non-blocking.

    ``netns``: a namespace from ``ip netns add`` to create the device in (default: ours).
    ``mtu``: bytes; set right away if given. ``ipv4_only``: ``read_batch`` drops (and counts)
    anything that is not IPv4, such as the IPv6 router solicitation a fresh link sends.
    ``vnet_hdr``: open with IFF_VNET_HDR so ``write_batch`` can hand the kernel coalesced TCP
    super-packets (``gro.py``); reads and writes stay whole IP packets for the caller.
    ``offload``: also ask for TUNSETOFFLOAD (implies ``vnet_hdr``); the device's ``offload`` attribute
    says whether the kernel accepted it (a kernel that refuses leaves the device as without it).
    Raises ``TunError`` (no permission, no /dev/net/tun, name busy) or ``ConfigError`` (bad name/MTU).
    """
    check_ifname(name)
    if mtu is not None:
        check_mtu(mtu)
    vnet_hdr = vnet_hdr or offload
    flags = IFF_TUN | IFF_NO_PI | (IFF_MULTI_QUEUE if multi_queue else 0) | (IFF_VNET_HDR if vnet_hdr else 0)
    with enter_netns(netns):
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise TunError(errno.ENOENT, f"{TUN_PATH} is missing: load the tun module or create the node") from None
        except PermissionError:
            raise TunError(errno.EACCES,
                           f"no permission to open {TUN_PATH}: run as root or grant CAP_NET_ADMIN") from None
        try:
            res = fcntl.ioctl(fd, TUNSETIFF, struct.pack(_IFREQ, name.encode(), flags))
        except OSError as e:
            os.close(fd)
            hint = {
                errno.EPERM: "run as root or grant CAP_NET_ADMIN",
                errno.EBUSY: "another process holds a device with this name; pick another name",
                errno.EINVAL: "a non-TUN device or one with other flags has this name",
            }.get(e.errno or 0, "")
            raise TunError(e.errno, f"cannot create tun device {name!r}: {e.strerror}. {hint}".strip()) from None
        real_name = struct.unpack(_IFREQ, res)[0].rstrip(b"\0").decode()
        if offload:
            try:
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4)
            except OSError:
                offload = False  # an old kernel: plain reads, and our handshakes will not offer offload
        ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    dev = LinuxTun(fd, real_name, ctl, ipv4_only, vnet_hdr, offload)
    if mtu is not None:
        try:
            dev.set_mtu(mtu)
        except BaseException:
            dev.close()
            raise
    return dev
