"""Receive-side TCP coalescing (tun/gro.py): what is merged, what is left alone, and that the kernel
accepts the super-packets (a real TUN with IFF_VNET_HDR in a namespace, a real TCP socket reading them)."""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import uuid

import pytest

from shadowmesh_client.tun.gro import GSO_TCPV4, NEEDS_CSUM, PLAIN_HDR, VNET_HDR, coalesce
from tests.client.tun.checksum import sum16 as _sum16

SRC, DST = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])


def _tcp(seq: int, payload: bytes, *, flags: int = 0x10, ack: int = 1, sport: int = 40000, dport: int = 5001,
         src: bytes = SRC, dst: bytes = DST, opts: bytes = b"", ident: int = 0) -> bytes:
    thl = 20 + len(opts)
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (thl // 4) << 4, flags, 502, 0, 0)
    tcp = bytearray(header + opts + payload)
    struct.pack_into("!H", tcp, 16, ~_sum16(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + bytes(tcp)) & 0xFFFF)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ident, 0x4000, 64, 6, 0, src, dst))
    struct.pack_into("!H", ip, 10, ~_sum16(bytes(ip)) & 0xFFFF)
    return bytes(ip + tcp)


def _complete(packet: bytes, hdr: bytes) -> bytes:
    """What the kernel does with NEEDS_CSUM when it has to: sum from csum_start, store at csum_offset."""
    flags, gso, hlen, size, start, off = VNET_HDR.unpack(hdr)
    buf = bytearray(packet)
    struct.pack_into("!H", buf, start + off, ~_sum16(bytes(buf[start:])) & 0xFFFF)
    return bytes(buf)


def _valid(packet: bytes) -> bool:
    tcp = packet[20:]
    return _sum16(packet[:20]) == 0xFFFF and _sum16(packet[12:20] + struct.pack("!BBH", 0, 6, len(tcp)) + tcp) == 0xFFFF


def test_a_run_of_segments_becomes_one_gso_packet_with_valid_headers():
    opts = b"\x01\x01\x08\x0a" + bytes(range(8))  # NOP NOP timestamps: equal across the run
    segs = [_tcp(1000 + i * 1000, bytes([i]) * 1000, opts=opts, ident=i) for i in range(5)]
    segs.append(_tcp(6000, b"tail", opts=opts, flags=0x18))  # shorter last segment with PSH ends the run
    [(hdr, merged, n)] = coalesce(segs)
    assert n == 6
    assert VNET_HDR.unpack(hdr) == (NEEDS_CSUM, GSO_TCPV4, 20 + 32, 1000, 20, 16)
    assert len(merged) == 52 + 5004 and struct.unpack_from("!H", merged, 2)[0] == len(merged)
    assert bytes(merged[52:]) == b"".join(bytes([i]) * 1000 for i in range(5)) + b"tail"
    assert merged[33] == 0x18  # PSH carried over from the last segment
    assert _valid(_complete(bytes(merged), hdr))  # IPv4 header sum and, once completed, the TCP sum


def test_what_is_not_mergeable_passes_through_unchanged():
    udp = bytes.fromhex("4500001c0000400040110000") + SRC + DST + bytes(8)
    cases = [
        [_tcp(1, b"a" * 100, flags=0x18), _tcp(101, b"b" * 100)],          # PSH in the middle
        [_tcp(1, b"a" * 100), _tcp(500, b"b" * 100)],                      # sequence gap
        [_tcp(1, b"a" * 100), _tcp(101, b"b" * 100, sport=40001)],         # another flow
        [_tcp(1, b"a" * 100), _tcp(101, b"b" * 100, ack=7)],               # ack moved
        [_tcp(1, b"a" * 50), _tcp(51, b"b" * 100)],                        # longer than the first
        [_tcp(1, b"a" * 100, flags=0x02), _tcp(101, b"b" * 100)],          # SYN
        [_tcp(1, b""), _tcp(1, b"")],                                      # pure ACKs
        [udp, udp],
    ]
    for packets in cases:
        assert coalesce(packets) == [(PLAIN_HDR, p, 1) for p in packets]


def test_runs_stop_at_64k_and_other_packets_keep_their_place():
    segs = [_tcp(1 + i * 1400, b"x" * 1400) for i in range(60)]
    other = _tcp(1, b"other flow", sport=1234)
    out = coalesce(segs[:3] + [other] + segs[3:])
    assert [n for _, _, n in out] == [3, 1, 46, 11]  # 46 x 1,400 + 40 <= 65,535 bytes per super-packet
    assert out[1] == (PLAIN_HDR, other, 1)
    assert all(len(p) <= 65_535 for _, p, _ in out)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespace, TUN)")
def test_the_kernel_accepts_coalesced_segments_into_a_tcp_socket():
    from shadowmesh_client.tun import configure, enter_netns, open_tun

    ns = f"smgro{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        with open_tun("smgro%d", mtu=1400, netns=ns, vnet_hdr=True) as dev:
            with enter_netns(ns):
                configure(dev.name, "10.77.0.1/24", mtu=1400)
                listener = socket.create_server(("10.77.0.1", 5001))
            with listener:
                def read_tcp(want_flags: int) -> bytes:
                    while True:
                        select.select([dev.fileno()], [], [], 5)
                        for p in dev.read_batch(16):
                            if p[9] == 6 and p[33] & want_flags == want_flags:
                                return p
                dev.write(_tcp(100, b"", flags=0x02, ack=0))                    # SYN
                synack = read_tcp(0x12)
                their = struct.unpack_from("!I", synack, 24)[0] + 1
                dev.write(_tcp(101, b"", ack=their))                            # ACK: established
                payload = os.urandom(40 * 1360)
                segs = [_tcp(101 + i * 1360, payload[i * 1360:(i + 1) * 1360], ack=their) for i in range(40)]
                assert dev.write_batch(segs) == 40
                assert dev.stats.tx_packets == 42
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(5)
                    got = b""
                    while len(got) < len(payload):
                        got += conn.recv(1 << 16)
                assert got == payload
                link = subprocess.run(["ip", "-n", ns, "-j", "-s", "link", "show", "dev", dev.name],
                                      capture_output=True, text=True, check=True).stdout
                assert json.loads(link)[0]["stats64"]["rx"]["packets"] == 3  # SYN, ACK, ONE super-packet
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
