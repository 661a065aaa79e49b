"""Path choice (node/peers.py, issue 11 "the relay billed A during the direct test"): a working direct path
is never left for a paid relay on RTT alone; relays are chosen by RTT floor with hysteresis. A table of
cases on stand-in links, then whole daemons over MemoryTransport links with per-link latency."""

from __future__ import annotations

import asyncio

from shadowmesh_client.node.peers import RELAY_SWITCH_FACTOR, PeerState, RelayPath, RttFloor
from shadowmesh_client.protocol import Identity, NetworkBinding, ProtocolConfig
from tests.client.node.helpers import Mesh, wait_for

CONFIG = ProtocolConfig(NetworkBinding(chain_id=31337, registry="0x" + "22" * 20, network_id=3))


class _Link:
    def __init__(self, latency: float, closed: bool = False) -> None:
        self.latency, self.closed = latency, closed


class _Relay:
    def __init__(self, n: int, latency: float, ready: bool = True) -> None:
        self.key, self.link, self.ready = bytes([n]) * 32, _Link(latency), ready


def _peer(*relays: _Relay) -> PeerState:
    peer = PeerState(Identity.generate().public_key, Identity.generate(), CONFIG, lambda k: True)
    peer.relay_paths = [RelayPath(r, peer.key) for r in relays]
    peer.select()
    return peer


def test_a_working_direct_path_is_kept_whatever_its_rtt():
    relay = _Relay(1, latency=0.001)
    peer = _peer(relay)
    assert peer.path.name.startswith("relay:")          # nothing else yet
    direct = _Link(latency=0.0005)
    peer.attach_direct(direct)
    assert peer.path.name == "direct"
    for rtt in (0.050, 0.500, 5.0):                      # heartbeat queued behind a full write buffer
        direct.latency = rtt
        peer.select()
        assert peer.path.name == "direct", rtt
    direct.closed = True                                  # only a dead direct link moves traffic to the relay
    peer.select()
    assert peer.path.name.startswith("relay:")
    peer.attach_direct(_Link(latency=0.2))               # back: direct again, even if slower than the relay
    assert peer.path.name == "direct"
    relay.ready = False
    peer.detach_direct(peer.direct.link)
    assert peer.path is None


def test_relays_are_chosen_by_rtt_floor_with_hysteresis():
    cases = [  # (current relay's heartbeat RTT s, other relay's, expect a switch)
        (0.010, 0.009, False),                            # a little faster: stay
        (0.010, 0.010 * RELAY_SWITCH_FACTOR, False),      # exactly the factor: stay
        (0.010, 0.001, True),                             # clearly faster (2 x 1 ms + 2 ms < 0.5 x 22 ms)
    ]
    for current_rtt, other_rtt, switch in cases:
        first, second = _Relay(1, current_rtt), _Relay(2, other_rtt, ready=False)
        peer = _peer(first, second)
        assert peer.path.relay is first
        second.ready = True
        peer.select()
        assert (peer.path.relay is second) is switch, (current_rtt, other_rtt)

    # The relay in use gets busy (its pongs queue behind data): its floor remembers the idle RTT, no switch.
    busy, idle = _Relay(1, 0.004), _Relay(2, 0.004)
    peer = _peer(busy, idle)
    chosen = peer.path.relay
    chosen.link.latency = 0.400
    for _ in range(10):
        peer.select()
    assert peer.path.relay is chosen
    # ...but a relay that goes down is left at once for the other one.
    chosen.ready = False
    peer.select()
    assert peer.path is not None and peer.path.relay is not chosen


def test_rtt_floor_ignores_spikes_and_follows_a_lasting_change_within_two_windows():
    floor, link = RttFloor(window=10.0), object()
    assert floor.sample(link, 0.0, 0.0) == 0.0             # nothing measured yet: the raw figure
    assert floor.sample(link, 0.020, 1.0) == 0.020
    assert floor.sample(link, 0.300, 2.0) == 0.020          # a spike
    assert floor.sample(link, 0.100, 12.0) == 0.020         # the next window still remembers the previous one
    assert floor.sample(link, 0.100, 22.5) == 0.100         # two windows later: the link really is slower
    other = object()
    assert floor.sample(other, 0.050, 23.0) == 0.050        # a new link starts afresh
    assert floor.sample(other, 0.070, 100.0) == 0.070       # after a long gap nothing old is kept


def test_a_latency_spike_on_the_direct_link_does_not_move_traffic_to_the_relay():
    """Whole nodes and a real relay: while the direct link's heartbeat RTT is 0.3 s (a loaded link), the
    relay's is 0 and every housekeeping tick re-selects, traffic stays direct and the relay carries none
    of it; when the direct link dies, the relay takes over at once."""

    async def scenario():
        mesh = Mesh()
        relay = mesh.relay()
        a, b = mesh.node("a"), mesh.node("b")
        mesh.start()
        await mesh.ready()
        try:
            first = a.packet_to(b, b"first")
            a.tun.inject(first)
            await wait_for(lambda: first in b.tun.written, 5, "first packet")
            await wait_for(lambda: a.daemon.table.relays and all(r.ready for r in a.daemon.table.relays.values()),
                           5, "a's relay link")
            relay_link = a.daemon.table.relays[relay.key].link
            direct = a.peer(b).direct.link
            assert a.path(b) == "direct"

            sent_to_relay = relay_link.bytes_out
            direct_before = direct.bytes_out
            direct.latency = 0.300                                    # per-link latency (MemoryLink)
            paths = set()
            burst = [a.packet_to(b, bytes([i % 251]) * 1200) for i in range(200)]
            for i, p in enumerate(burst):                             # 2 s of traffic: 4 housekeeping ticks
                a.tun.inject(p)
                if i % 20 == 0:
                    await asyncio.sleep(0.2)
                paths.add(a.path(b))
            await wait_for(lambda: all(p in b.tun.written for p in burst), 5, "the burst")
            assert paths == {"direct"}
            assert relay_link.bytes_out == sent_to_relay             # not one byte for the relay to bill
            assert direct.bytes_out - direct_before >= 200 * 1200
            direct.latency = 0.0

            # The direct link dies and cannot come back: now, and only now, the relay carries the traffic.
            acceptor = b if a.daemon.table.peers[b.key].dialer is not None else a
            mesh.transport.unreachable.add(acceptor.name)
            direct.abort()
            await wait_for(lambda: (a.path(b) or "").startswith("relay:"), 3, "failover")
            last = a.packet_to(b, b"via relay")
            a.tun.inject(last)
            await wait_for(lambda: last in b.tun.written, 5, "a packet through the relay")
            assert relay_link.bytes_out > sent_to_relay
        finally:
            await mesh.stop()

    async def bounded():
        async with asyncio.timeout(60):
            await scenario()

    asyncio.run(bounded())
