"""The pump with a TUN in offload mode (issue 17, tun/gso.py), in process: two pumps over an in-memory path
with real Sessions. A peer whose handshake offered OFFLOAD gets a TCP super-packet whole (one frame, its
kernel segments it); a peer without it gets the segments a TUN without offload would have read, with
valid checksums; a packet queued during the handshake is sent plain (the peer's capability is unknown)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import struct

from shadowmesh_client.node.peers import PeerState
from shadowmesh_client.node.pump import Pump
from shadowmesh_client.protocol import Identity
from shadowmesh_client.tun import FakeTun
from shadowmesh_client.tun.gso import write_header
from tests.client.node.test_node_pump import CONFIG, _MemPath
from tests.client.tun.checksum import sum16 as _sum16

A_IP, B_IP = "100.64.0.1", "100.64.0.2"
MSS = 1360


def _tcp_ok(p: bytes) -> bool:
    """The IPv4 header and TCP checksums of ``p`` verify (independent of gso.py)."""
    ihl = (p[0] & 15) * 4
    pseudo = p[12:20] + struct.pack("!BBH", 0, 6, len(p) - ihl)
    return _sum16(p[:ihl]) == 0xFFFF and _sum16(pseudo + p[ihl:]) == 0xFFFF


def _super_packet(payload: bytes, gso_size: int) -> bytes:
    """An IPv4/TCP packet A -> B in offload form: ``gso_size`` in its TCP checksum field."""
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, 1000, 1, 5 << 4, 0x18, 502, gso_size, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 7, 0x4000, 64, 6, 0,
                     ipaddress.IPv4Address(A_IP).packed, ipaddress.IPv4Address(B_IP).packed)
    ip = ip[:10] + struct.pack("!H", ~_sum16(ip) & 0xFFFF) + ip[12:]
    return ip + tcp + payload


class OffloadTun(FakeTun):
    """A FakeTun that reads in offload form and records what ``write_offloaded`` hands the kernel."""

    offload = True

    def __init__(self) -> None:
        super().__init__(mtu=65535)
        self.offloaded: list[tuple[bytes, bytes]] = []   # (virtio_net_hdr, packet as the kernel gets it)

    def write_offloaded(self, packets) -> int:
        for p in packets:
            how = write_header(p)
            assert how is not None
            hdr, at, value = how
            q = bytes(p) if at < 0 else bytes(p[:at]) + value.to_bytes(2, "big") + bytes(p[at + 2:])
            self.offloaded.append((hdr, q))
        return len(packets)


def _pair(a_tun, b_tun, b_offload: bool):
    a_id, b_id = Identity.generate(), Identity.generate()
    a_cfg = dataclasses.replace(CONFIG, offload=True)
    b_cfg = dataclasses.replace(CONFIG, offload=b_offload)
    a_peer = PeerState(b_id.public_key, a_id, a_cfg, lambda k: True)
    b_peer = PeerState(a_id.public_key, b_id, b_cfg, lambda k: True)
    a_pump = Pump(a_tun, {ipaddress.IPv4Address(B_IP).packed: a_peer}, {b_id.public_key: a_peer},
                  lambda k, f: None, lambda p, e, t: None)
    b_pump = Pump(b_tun, {ipaddress.IPv4Address(A_IP).packed: b_peer}, {a_id.public_key: b_peer},
                  lambda k, f: None, lambda p, e, t: None)
    ab, ba = _MemPath(), _MemPath()
    ab.other, ab.back, ba.other, ba.back = b_pump, ba, a_pump, ab
    a_peer.path, b_peer.path = ab, ba
    return a_pump, a_peer, b_peer, ab


def test_a_peer_that_offered_offload_gets_the_super_packet_whole():
    a_tun, b_tun = OffloadTun(), OffloadTun()
    a_pump, a_peer, b_peer, ab = _pair(a_tun, b_tun, b_offload=True)
    first = _super_packet(b"hello", 0)
    payload = os.urandom(10 * MSS + 77)
    big = _super_packet(payload, MSS)

    async def scenario():
        await a_pump.send(a_peer, [first])   # handshake; queued, so sent plain
        frames = ab.frames
        await a_pump.send(a_peer, [big])
        return ab.frames - frames

    assert asyncio.run(scenario()) == 1                       # one frame for 11 segments' worth
    assert a_peer.session.peer_offload and b_peer.session.peer_offload
    assert list(b_tun.written) == [b_tun.written[0]] and _tcp_ok(b_tun.written[0])   # the queued one: plain
    (hdr, got), = b_tun.offloaded
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = struct.unpack("=BBHHHH", hdr)
    assert (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset) == (1, 1, 40, MSS, 20, 16)
    assert got[40:] == payload and got[:36] == big[:36]


def test_a_peer_without_offload_gets_valid_segments():
    a_tun, b_tun = OffloadTun(), FakeTun(mtu=1400)
    a_pump, a_peer, b_peer, ab = _pair(a_tun, b_tun, b_offload=False)
    payload = os.urandom(10 * MSS + 77)

    async def scenario():
        await a_pump.send(a_peer, [_super_packet(b"hello", 0)])
        await a_pump.send(a_peer, [_super_packet(payload, MSS)])

    asyncio.run(scenario())
    assert not a_peer.session.peer_offload
    hello, *segments = b_tun.written
    assert _tcp_ok(hello) and hello.endswith(b"hello")
    assert len(segments) == 11 and all(len(s) <= 1400 and _tcp_ok(s) for s in segments)
    assert b"".join(s[40:] for s in segments) == payload
    seqs = [struct.unpack_from("!I", s, 24)[0] for s in segments]
    assert seqs == [1000 + i * MSS for i in range(11)]
