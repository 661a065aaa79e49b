"""Send-side offload (issue 17): TCP super-packets from a TUN device opened with TUNSETOFFLOAD, carried
whole to peers that accept them, segmented in software for peers that do not.

With ``TUN_F_CSUM | TUN_F_TSO4`` the kernel's TCP hands the node one IPv4/TCP packet of up to 64 KiB
(``virtio_net_hdr`` gso_type TCPV4, ``gso_size`` = the MSS) instead of one ``read`` per MTU-sized
segment, and leaves TCP checksums to the device (``VIRTIO_NET_HDR_F_NEEDS_CSUM``: the checksum field
holds only the pseudo-header sum).

**Offload form** (what ``LinuxTun.read_batch`` returns with offload on, and what an OFFLOAD-flagged DATA
frame carries, docs/protocol.md "Offload"): every IPv4 TCP packet (not a fragment) has, in its TCP
checksum field, the ``gso_size`` its payload is to be cut into, or 0 for one segment. Its checksum is
not sent at all: every byte of the frame is authenticated by the AEAD, which is a far stronger check
than the 16-bit sum, and the receiving kernel computes the sum again whenever the packet leaves the
host (``NEEDS_CSUM``), as for any offloading NIC. Every other packet (UDP, ICMP, IPv6, fragments)
is an ordinary packet with a complete checksum.

* ``to_offload_form`` (reader): turns one read (header + packet) into the offload form.
* ``to_plain`` (sender to a peer without the OFFLOAD capability): segments super-packets and fills
  in checksums, so that peer gets exactly what a TUN without offload would have given.
* ``write_header`` (receiver of an OFFLOAD frame): the ``virtio_net_hdr`` and the pseudo-header sum to
  hand the packet to the kernel with (validated here; the kernel validates again).

Pure functions over bytes; no I/O.
"""

from __future__ import annotations

import struct

from .gro import GSO_TCPV4, NEEDS_CSUM, PLAIN_HDR, VNET_HDR, VNET_HDR_SIZE, fold16, pseudo_sum4

_FIN, _PSH, _CWR = 0x01, 0x08, 0x80
MIN_GSO_SIZE = 256
"""Bytes. Smallest segment size a peer's super-packet may ask our kernel to cut (``write_header`` drops
the packet otherwise): at most 256 segments per 64 KiB, so a registered insider cannot make a host that
forwards its packets (an exit, a subnet router) cut one frame into 65,000 one-byte segments. A real
sender's is its MSS, >= 576 - 40 - 40 = 496 bytes at the smallest MTU the TUN device accepts."""
_U16 = struct.Struct("!H")
_SEQ = struct.Struct("!I")


def ones_sum(data) -> int:
    """RFC 1071 ones'-complement sum of ``data`` as 16-bit big-endian words (odd length: zero-padded),
    folded to 16 bits. 0 only if every byte is 0. ``int.from_bytes`` and one modulo by 2^16-1 (2^16 is
    1 modulo that): 0.3 µs for 52 bytes, 3.3 µs for 1,400 (measured; a loop over words is 40x slower)."""
    x = int.from_bytes(data, "big")
    if len(data) & 1:
        x <<= 8
    r = x % 0xFFFF
    return r if r or not x else 0xFFFF


def _tcp4(p) -> int:
    """The IPv4 header length if ``p`` is a whole IPv4 TCP packet (not a fragment, lengths consistent,
    room for a TCP header), else 0."""
    if len(p) < 40 or p[0] >> 4 != 4 or p[9] != 6 or p[6] & 0x3F or p[7]:
        return 0
    ihl = (p[0] & 0x0F) * 4
    if ihl < 20 or (p[2] << 8 | p[3]) != len(p) or len(p) < ihl + 20:
        return 0
    thl = (p[ihl + 12] >> 4) * 4
    return ihl if thl >= 20 and ihl + thl <= len(p) else 0


def _with_u16(p, at: int, value: int) -> bytes:
    """``p`` as bytes with the 16-bit field at ``at`` set to ``value`` (one copy)."""
    v = memoryview(p)
    return b"".join((v[:at], _U16.pack(value), v[at + 2:]))


def to_offload_form(data: bytes):
    """One TUN read (``virtio_net_hdr`` + packet) as the packet in offload form, or None to drop it
    (a GSO type this device never enabled, or a header that does not fit the packet)."""
    if len(data) <= VNET_HDR_SIZE:
        return None
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(data)
    p = memoryview(data)[VNET_HDR_SIZE:]
    ihl = _tcp4(p)
    if ihl:
        size = gso_size if gso_type == GSO_TCPV4 else 0
        return _with_u16(p, ihl + 16, size)
    if gso_type:  # only TSO4 is enabled: a GSO packet is always IPv4 TCP
        return None
    if flags & NEEDS_CSUM:  # UDP or IPv6 with the checksum left to the device: complete it here
        at = csum_start + csum_offset
        if at + 2 > len(p) or csum_start >= len(p):
            return None
        s = ~ones_sum(p[csum_start:]) & 0xFFFF
        if s == 0 and csum_offset == 6:  # UDP: a computed 0 is sent as 0xFFFF (RFC 768)
            s = 0xFFFF
        return _with_u16(p, at, s)
    return bytes(p) if len(p) <= 4096 else p


def _tcp_checksummed(seg: bytearray, ihl: int) -> bytearray:
    seg[ihl + 16:ihl + 18] = b"\0\0"
    tcp_len = len(seg) - ihl
    s = fold16(pseudo_sum4(seg, tcp_len) + ones_sum(memoryview(seg)[ihl:]))
    seg[ihl + 16:ihl + 18] = _U16.pack(~s & 0xFFFF)
    return seg


def _ip_checksummed(seg: bytearray, ihl: int) -> None:
    seg[10:12] = b"\0\0"
    seg[10:12] = _U16.pack(~ones_sum(memoryview(seg)[:ihl]) & 0xFFFF)


def segment(p, gso_size: int) -> list:
    """Software TSO: IPv4 TCP super-packet ``p`` (offload form) cut into segments of ``gso_size``
    payload bytes with their own IP id, sequence number, lengths and complete checksums; FIN and PSH
    only on the last segment, CWR only on the first (what the kernel's ``tcp_gso_segment`` does)."""
    ihl = _tcp4(p)
    if not ihl or gso_size < 1:
        raise ValueError("not an IPv4 TCP packet, or a gso_size below 1")
    hl = ihl + (p[ihl + 12] >> 4) * 4
    v = memoryview(p)
    head, payload = v[:hl], v[hl:]
    n = max(1, -(-len(payload) // gso_size))
    ip_id = (p[4] << 8) | p[5]
    seq = _SEQ.unpack_from(p, ihl + 4)[0]
    tcp_flags = p[ihl + 13]
    out = []
    for i in range(n):
        chunk = payload[i * gso_size:(i + 1) * gso_size]
        seg = bytearray(head)
        seg += chunk
        seg[2:4] = _U16.pack(len(seg))
        seg[4:6] = _U16.pack((ip_id + i) & 0xFFFF)
        _SEQ.pack_into(seg, ihl + 4, (seq + i * gso_size) & 0xFFFFFFFF)
        f = tcp_flags
        if i < n - 1:
            f &= ~(_FIN | _PSH)
        if i:
            f &= ~_CWR
        seg[ihl + 13] = f
        _ip_checksummed(seg, ihl)
        out.append(bytes(_tcp_checksummed(seg, ihl)))
    return out


def to_plain(packets: list) -> list:
    """``packets`` (offload form) as ordinary packets: IPv4 TCP ones segmented if their payload is
    longer than their ``gso_size`` and given complete checksums; the rest unchanged."""
    out: list = []
    for p in packets:
        ihl = _tcp4(p)
        if not ihl:
            out.append(p)
            continue
        gso_size = (p[ihl + 16] << 8) | p[ihl + 17]
        payload = len(p) - ihl - (p[ihl + 12] >> 4) * 4
        if 0 < gso_size < payload:
            out.extend(segment(p, gso_size))
        else:
            out.append(bytes(_tcp_checksummed(bytearray(p), ihl)))
    return out


def write_header(p) -> tuple[bytes, int, int] | None:
    """For packet ``p`` of an OFFLOAD frame: ``(virtio_net_hdr, checksum field offset, value)`` to
    write it with, the value replacing the 16 bits at that offset (the pseudo-header sum the kernel
    expects with NEEDS_CSUM); ``(PLAIN_HDR, -1, 0)`` for packets that are not IPv4 TCP (written as
    they are, the kernel checks their checksums); None (drop it) for a super-packet whose segment size
    is below ``MIN_GSO_SIZE``."""
    ihl = _tcp4(p)
    if not ihl:
        return PLAIN_HDR, -1, 0
    hl = ihl + (p[ihl + 12] >> 4) * 4
    gso_size = (p[ihl + 16] << 8) | p[ihl + 17]
    payload = len(p) - hl
    if 0 < gso_size < payload:
        if gso_size < MIN_GSO_SIZE:
            return None
        hdr = VNET_HDR.pack(NEEDS_CSUM, GSO_TCPV4, hl, gso_size, ihl, 16)
    else:
        hdr = VNET_HDR.pack(NEEDS_CSUM, 0, 0, 0, ihl, 16)
    return hdr, ihl + 16, pseudo_sum4(p, len(p) - ihl)
