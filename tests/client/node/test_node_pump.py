"""The node's pure wiring without sockets: who dials whom, path choice, and two whole pumps exchanging
packets over an in-memory path (FakeTun + real Sessions), in the style of wireguard-go's TestTwoDevicePing."""

from __future__ import annotations

import asyncio
import ipaddress

from shadowmesh_client.node.peers import PeerState, should_dial
from shadowmesh_client.node.pump import Pump
from shadowmesh_client.protocol import Identity, NetworkBinding, ProtocolConfig
from shadowmesh_client.tun import FakeTun

CONFIG = ProtocolConfig(NetworkBinding(chain_id=31337, registry="0x" + "22" * 20, network_id=3))
LOW, HIGH = b"\x01" * 32, b"\x02" * 32


def test_exactly_one_side_of_a_pair_dials():
    cases = [  # (my endpoint, peer endpoint) -> (low dials high, high dials low)
        ((None, None), (False, False)),
        (("ws://l", None), (False, True)),
        ((None, "ws://h"), (True, False)),
        (("ws://l", "ws://h"), (True, False)),
    ]
    for (low_ep, high_ep), expected in cases:
        got = (should_dial(LOW, low_ep, HIGH, high_ep), should_dial(HIGH, high_ep, LOW, low_ep))
        assert got == expected, (low_ep, high_ep)


class _Link:
    def __init__(self, latency: float, closed: bool = False) -> None:
        self.latency, self.closed = latency, closed


class _Relay:
    def __init__(self, latency: float, ready: bool = True) -> None:
        self.key, self.link, self.ready = b"\x09" * 32, _Link(latency), ready


def test_direct_wins_while_up_and_a_dead_path_is_dropped():
    from shadowmesh_client.node.peers import RelayPath

    me = Identity.generate()
    peer = PeerState(Identity.generate().public_key, me, CONFIG, lambda k: True)
    relay = _Relay(latency=0.001)
    peer.relay_paths = [RelayPath(relay, peer.key)]
    peer.select()
    assert peer.path.name.startswith("relay:")
    fast = _Link(latency=0.0005)
    peer.attach_direct(fast)
    assert peer.path.name == "direct"
    fast.latency = 0.050                      # slow (or busy) but up: direct stays (test_node_path_choice.py)
    peer.select()
    assert peer.path.name == "direct"
    fast.latency, relay.ready = 0.0005, False
    peer.select()
    assert peer.path.name == "direct"
    fast.closed = True
    peer.select()
    assert peer.path is None


class _MemPath:
    """Delivers frames straight into the other pump (what a link would do)."""

    name = "direct"
    up = True

    def __init__(self) -> None:
        self.other: Pump | None = None
        self.back: _MemPath | None = None
        self.frames = 0

    def rtt(self) -> float:
        return 0.0

    def send_nowait(self, frame) -> bool:
        return False  # never room right away: exercises the pump's waiting path

    async def send(self, frame) -> None:
        self.frames += 1
        for reply in self.other.on_frame(bytes(frame)) or ():
            await self.back.send(reply)


def _ipv4(src: str, dst: str, payload: bytes) -> bytes:
    total = 20 + len(payload)
    return (bytes([0x45, 0]) + total.to_bytes(2, "big") + bytes(5) + b"\x11" + bytes(2)
            + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + payload)


def _node(me, other_key: bytes, other_ip: str):
    tun = FakeTun(mtu=65000)
    peers, routes = {}, {}
    peer = PeerState(other_key, me, CONFIG, lambda k: k == other_key)
    peers[other_key] = peer
    routes[ipaddress.IPv4Address(other_ip).packed] = peer
    pump = Pump(tun, routes, peers, lambda key, frame: None, lambda p, e, t: None)
    return tun, peer, pump


def test_two_pumps_exchange_batched_packets_and_count_unknown_destinations():
    a_id, b_id = Identity.generate(), Identity.generate()
    a_tun, a_peer, a_pump = _node(a_id, b_id.public_key, "100.64.0.2")
    b_tun, b_peer, b_pump = _node(b_id, a_id.public_key, "100.64.0.1")
    ab, ba = _MemPath(), _MemPath()
    ab.other, ab.back, ba.other, ba.back = b_pump, ba, a_pump, ab
    a_peer.path, b_peer.path = ab, ba

    packets = [_ipv4("100.64.0.1", "100.64.0.2", bytes([i]) * 1380) for i in range(40)]
    stray = _ipv4("100.64.0.1", "100.64.0.99", b"nobody")

    async def scenario():
        await a_pump.send(a_peer, packets[:1])          # first packet: handshake, then the queued packet
        await a_pump.send(a_peer, packets[1:])          # 39 packets of one burst: ONE frame
        reader = asyncio.get_running_loop().create_task(a_pump.run())   # the TUN read loop itself
        a_tun.inject(stray)
        a_tun.inject(packets[0])
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(b_tun.written) == 41:
                break
        reader.cancel()

    asyncio.run(scenario())
    assert a_pump.no_route == 1                       # 100.64.0.99 is nobody's: dropped and counted
    assert list(b_tun.written) == packets + packets[:1]
    assert a_peer.session.counters.sent_frames <= 5   # init, queued data, the 39-packet batch, one more (+ keepalive)
    assert b_peer.session.counters.delivered_packets == 41
