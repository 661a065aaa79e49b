"""The packet sink: what stands in for the TUN device in userspace mode (issue 18).

A userspace node has no kernel interface, so IP packets that TUN peers send to its overlay address end
here. The sink answers the two things a kernel would answer at once, so nothing hangs:

* ICMP echo request -> echo reply (``ping`` a userspace node works);
* TCP segment (not RST) -> RST (RFC 9293 section 3.10.7.1, "reset generation": a connection attempt
  to a userspace node fails at once with "connection refused"). A TUN node reaches a userspace node's
  exposed ports through the stream layer instead (``shadowmesh-client nc``, a forward or its SOCKS port);
* anything else (UDP, IPv6, fragments) is dropped and counted in ``stats.tx_errors``.

Replies go back through the pump like packets read from a TUN device (``read_batch``; ``fileno`` is a
pipe readable while replies wait, as in ``tun.fake.FakeTun``). No privileges, no /dev/net/tun, no
pyroute2. Not thread-safe.

May import: tun.base, errors.
"""

from __future__ import annotations

import errno
import struct

from shadowmesh_client.errors import TunError
from shadowmesh_client.tun.base import DEFAULT_BATCH
from shadowmesh_client.tun.queued import QueuedTun

MAX_REPLIES = 1024
"""Replies queued at most (more are dropped: a flood of SYNs gets at most this many RSTs per read)."""

_TCP, _ICMP = 6, 1
_RST, _SYN, _FIN, _ACK = 0x04, 0x02, 0x01, 0x10


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ipv4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    header = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, src, dst))
    header[10:12] = struct.pack(">H", _checksum(bytes(header)))
    return bytes(header) + payload


def reply_to(packet: bytes) -> bytes | None:
    """The packet a kernel would answer ``packet`` with (see the module docstring), or None."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = int.from_bytes(packet[2:4], "big")
    if ihl < 20 or total > len(packet) or total < ihl or int.from_bytes(packet[6:8], "big") & 0x3FFF:
        return None   # malformed or a fragment
    proto, src, dst = packet[9], packet[12:16], packet[16:20]
    body = packet[ihl:total]
    if proto == _ICMP and len(body) >= 8 and body[0] == 8:   # echo request -> echo reply (RFC 792)
        icmp = bytearray(b"\0\0\0\0" + body[4:])
        icmp[2:4] = struct.pack(">H", _checksum(bytes(icmp)))
        return _ipv4(dst, src, _ICMP, bytes(icmp))
    if proto == _TCP and len(body) >= 20:
        sport, dport, seq, ack, off, flags = struct.unpack_from(">HHIIBB", body)
        if flags & _RST:
            return None
        if flags & _ACK:
            rseq, rack, rflags = ack, 0, _RST
        else:
            data_len = len(body) - (off >> 4) * 4
            rseq, rack = 0, (seq + data_len + bool(flags & _SYN) + bool(flags & _FIN)) & 0xFFFFFFFF
            rflags = _RST | _ACK
        tcp = bytearray(struct.pack(">HHIIBBHHH", dport, sport, rseq, rack, 5 << 4, rflags, 0, 0, 0))
        pseudo = dst + src + struct.pack(">BBH", 0, _TCP, len(tcp))
        tcp[16:18] = struct.pack(">H", _checksum(pseudo + bytes(tcp)))
        return _ipv4(dst, src, _TCP, bytes(tcp))
    return None


class PacketSink(QueuedTun):
    """A TunDevice without a kernel: answers pings and refuses TCP (see the module docstring)."""

    def __init__(self, name: str = "userspace", mtu: int = 65_000) -> None:
        super().__init__(name, mtu)

    def read_batch(self, max_packets: int = DEFAULT_BATCH) -> list[bytes]:
        out = self._take(max_packets)
        self.stats.rx_packets += len(out)
        self.stats.rx_bytes += sum(len(p) for p in out)
        return out

    def write(self, packet: bytes) -> None:
        self._check_open()
        reply = reply_to(bytes(packet))
        if reply is None or len(self._pending) >= MAX_REPLIES:
            raise TunError(errno.EINVAL, f"{self._name}: userspace mode has no IP stack for this packet")
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(packet)
        self._queue(reply)
