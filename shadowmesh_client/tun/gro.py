"""Receive-side TCP coalescing (GRO in userspace) for writes to a TUN device opened with IFF_VNET_HDR.

Spec "Data Plane" (performance, issue 5). At a small MTU a frame from a peer carries dozens of
consecutive segments of one TCP stream; writing each to the TUN device makes the kernel run its
receive path (IP, TCP, socket wake-up) once per ~1,400 bytes. ``coalesce`` merges such runs into one
super-packet that is written once with a ``virtio_net_hdr`` (GSO TCPv4, ``gso_size`` = segment payload),
exactly what a NIC's GRO hands the stack; forwarded onwards, the kernel re-segments it (GSO).

Merged: IPv4 (no options, not fragmented) / TCP segments with payload, flags ACK or ACK|PSH (PSH only
on the last segment of a run), identical addresses, ports, ack number, window, TCP options, TOS and
TTL, contiguous sequence numbers, equal payload sizes except a shorter last one, total <= 65,535 bytes.
Anything else is passed through unchanged with an all-zero header (the kernel checks its checksums).

Checksums: the merged packet gets a fresh IPv4 header checksum and, in its TCP checksum field, the
pseudo-header sum with VIRTIO_NET_HDR_F_NEEDS_CSUM (checksum offload: the kernel treats the payload
as verified, as for any offloading NIC, and completes the sum if it forwards the packet). The
segments' own checksums are not verified here: every byte was authenticated by the AEAD of the frame
it arrived in, which is a far stronger check than the 16-bit TCP sum. Pure functions, no I/O.
"""

from __future__ import annotations

import struct

VNET_HDR = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (host order)
VNET_HDR_SIZE = VNET_HDR.size  # 10 bytes: struct virtio_net_hdr without num_buffers
PLAIN_HDR = bytes(VNET_HDR_SIZE)  # no offload: the kernel verifies the packet's checksums itself
NEEDS_CSUM = 1  # VIRTIO_NET_HDR_F_NEEDS_CSUM
GSO_TCPV4 = 1  # VIRTIO_NET_HDR_GSO_TCPV4
MAX_IP_PACKET = 65_535  # bytes: the IPv4 total-length limit for one super-packet

_ACK, _PSH = 0x10, 0x08
_U16x10 = struct.Struct("!10H")
_U16x2 = struct.Struct("!HH")
_SEQ = struct.Struct("!I")

Packet = bytes | bytearray | memoryview  # an IPv4 packet as the TUN writer is given it


def fold16(s: int) -> int:
    """A ones'-complement sum below 2**32 folded to 16 bits (RFC 1071)."""
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return s


def pseudo_sum4(p, tcp_len: int) -> int:
    """Folded, not inverted, pseudo-header sum of IPv4/TCP packet ``p`` (addresses, protocol 6, ``tcp_len``):
    what the TCP checksum field holds with NEEDS_CSUM, and where a full checksum starts."""
    a, b = _U16x2.unpack_from(p, 12)
    c, d = _U16x2.unpack_from(p, 16)
    return fold16(a + b + c + d + 6 + tcp_len)


def _key(p) -> tuple | None:
    """(flow key, seq, payload offset, payload length, psh) of a mergeable TCP/IPv4 segment, else None."""
    if len(p) < 40 or p[0] != 0x45 or p[9] != 6 or p[6] & 0x3F or p[7]:  # IPv4 no options, TCP, no fragment
        return None
    thl = (p[32] >> 4) * 4
    flags = p[33]
    total = (p[2] << 8) | p[3]
    if thl < 20 or total != len(p) or 20 + thl >= total or flags & ~_PSH != _ACK:
        return None
    # everything that must match: TOS, TTL, addresses, ports, ack, header length, window, urgent, options
    key = (p[1], p[8], p[12:24], p[28:33], p[34:36], p[38:20 + thl])
    return key, _SEQ.unpack_from(p, 24)[0], 20 + thl, total - 20 - thl, flags & _PSH


def coalesce(packets: list[Packet]) -> list[tuple[bytes, Packet, int]]:
    """``[(virtio_net_hdr, packet, segments in it)]`` to write, in order: runs of mergeable segments
    become one packet."""
    out: list = []
    run: list = []  # packets of the current run
    rkey = None
    next_seq = size = seg = 0
    last_full = False  # the run's last segment was full-sized without PSH (set when a run starts)
    for p in packets:
        k = _key(p)
        if k is not None and run:
            key, seq, off, plen, psh = k
            if (key == rkey and seq == next_seq and plen <= seg and size + plen <= MAX_IP_PACKET
                    and last_full):
                run.append(p)
                size += plen
                next_seq = (seq + plen) & 0xFFFFFFFF
                last_full = plen == seg and not psh
                continue
        if run:
            out.append(_emit(run, size, seg))
            run = []
        if k is None:
            out.append((PLAIN_HDR, p, 1))
            continue
        rkey, seq, off, seg, psh = k
        run = [p]
        size = len(p)
        next_seq = (seq + seg) & 0xFFFFFFFF
        last_full = not psh
    if run:
        out.append(_emit(run, size, seg))
    return out


def _emit(run: list[Packet], size: int, seg: int) -> tuple[bytes, Packet, int]:
    first = run[0]
    if len(run) == 1:
        return PLAIN_HDR, first, 1
    hlen = 20 + (first[32] >> 4) * 4
    view = memoryview  # payloads are copied once, by join
    buf = bytearray(b"".join([first, *[view(p)[hlen:] for p in run[1:]]]))
    if run[-1][33] & _PSH:
        buf[33] |= _PSH
    struct.pack_into("!H", buf, 2, size)
    struct.pack_into("!H", buf, 10, 0)
    struct.pack_into("!H", buf, 10, ~fold16(sum(_U16x10.unpack_from(buf, 0))) & 0xFFFF)
    struct.pack_into("!H", buf, 36, pseudo_sum4(buf, size - 20))
    hdr = VNET_HDR.pack(NEEDS_CSUM, GSO_TCPV4, hlen, seg, 20, 16)
    return hdr, buf, len(run)
