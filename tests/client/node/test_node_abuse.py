"""Issue 12 in whole node daemons (MemoryTransport, FakeTun, MemoryRegistry): rekeys of running daemons
with lowered thresholds lose no packet (device-device and device-relay), a recorded hello is refused after
the peer's session closed, and a source sending only garbage through the relay gets blocked there while
legitimate relayed traffic keeps flowing."""

from __future__ import annotations

import asyncio
import time

import pytest

from shadowmesh_client.daemon_common import node_link_limits
from shadowmesh_client.node.settings import BLOCK_AFTER_BAD_FRAMES
from shadowmesh_client.protocol import NetworkBinding, ProtocolConfig, Session
from shadowmesh_client.relay import DropReason, decode, encode_forward, encode_local
from shadowmesh_client.transport import ClientConfig
from shadowmesh_client.transport.errors import HandshakeRejectedError
from shadowmesh_client.tun import FakeTun
from tests.client.node.helpers import Mesh, wait_for
from tests.client.node.test_node_inprocess import _deliver, run


def _fast(mesh: Mesh) -> ProtocolConfig:
    d = mesh.registry
    return ProtocolConfig(NetworkBinding(d.chain_id, d.registry, d.network_id), rekey_after_seconds=0.4,
                          rekey_after_bytes=150_000)


async def _stream(src, dst, n: int, gap: float = 0.004) -> list[bytes]:
    """Inject ``n`` numbered packets into ``src`` over time; returns them (tests check ``dst`` got all)."""
    sent = []
    for i in range(n):
        packet = src.packet_to(dst, i.to_bytes(4, "big") + bytes(1_000))
        src.tun.inject(packet)
        sent.append(packet)
        await asyncio.sleep(gap)
    return sent


def test_device_to_device_rekeys_under_traffic_lose_no_packet():
    async def scenario():
        mesh = Mesh()
        fast = _fast(mesh)
        a, b = mesh.node("a", protocol=fast), mesh.node("b", protocol=fast)
        mesh.start()
        await mesh.ready()
        try:
            await _deliver(a, b, b"first")
            session = a.peer(b).session
            sent = await _stream(a, b, 400)      # ~1.6 s and ~420 KB: rekeys by age and by bytes
            await wait_for(lambda: all(p in b.tun.written for p in sent), 5, "every packet")
            assert session.counters.rekeys + b.peer(a).session.counters.rekeys >= 2
            assert a.peer(b).session is session and a.path(b) == "direct"   # rekeyed in place
        finally:
            await mesh.stop()

    run(scenario())


def test_device_relay_rekeys_under_relayed_traffic_lose_no_packet():
    async def scenario():
        mesh = Mesh()
        fast = _fast(mesh)
        relay = mesh.relay()
        a = mesh.node("a", endpoint=False, protocol=fast)
        c = mesh.node("c", endpoint=False, protocol=fast)
        mesh.start()
        await mesh.ready()
        try:
            await wait_for(lambda: all(r.ready for m in (a, c) for r in m.daemon.table.relays.values())
                           and a.daemon.table.relays and c.daemon.table.relays, 5, "relay links")
            client = a.daemon.table.relays[relay.key]
            await _deliver(a, c, b"first")
            sent = await _stream(a, c, 400)
            await wait_for(lambda: all(p in c.tun.written for p in sent), 5, "every relayed packet")
            assert client.session.counters.rekeys >= 2 and client.attempts == 1   # the device-relay session
            assert a.peer(c).session.counters.rekeys + c.peer(a).session.counters.rekeys >= 2   # end to end
        finally:
            await mesh.stop()

    run(scenario())


def test_a_recorded_hello_is_refused_after_the_peers_session_closed():
    async def scenario():
        mesh = Mesh()
        a, b = mesh.node("a"), mesh.node("b")
        hellos: list[tuple[str, bytes]] = []
        real_dial = mesh.transport.dial

        async def recording_dial(config, hello, *, peer=None):
            hellos.append((config.url, bytes(hello)))
            return await real_dial(config, hello, peer=peer)

        mesh.transport.dial = recording_dial
        mesh.start()
        await mesh.ready()
        try:
            await _deliver(a, b, b"hello")
            url, recorded = hellos[0]
            listener = b if "//b:" in url else a
            dialer = a if listener is b else b
            await mesh.stop(dialer)     # the dialler's session ends (CLOSE frame)
            await wait_for(lambda: listener.peer(dialer) is None or listener.peer(dialer).session.state.value
                           in ("closed", "failed"), 5, "session closed")
            with pytest.raises(HandshakeRejectedError):
                await real_dial(ClientConfig(url, limits=node_link_limits()), recorded)
            assert listener.daemon.links.auth_refused >= 1
        finally:
            await mesh.stop()

    run(scenario())


def test_garbage_from_a_source_is_blocked_at_the_relay_and_legit_traffic_flows():
    async def scenario():
        mesh = Mesh()
        relay = mesh.relay()
        a, c = mesh.node("a", endpoint=False), mesh.node("c", endpoint=False)
        attacker = mesh.registry.register()
        mesh.start()
        await mesh.ready()
        try:
            await wait_for(lambda: all(r.ready for m in (a, c) for r in m.daemon.table.relays.values())
                           and c.daemon.table.relays, 5, "relay links")
            # The attacker: a registered device with its own authenticated relay link.
            d = mesh.registry
            cfg = ProtocolConfig(NetworkBinding(d.chain_id, d.registry, d.network_id))
            session = Session(attacker.identity, relay.key, cfg, lambda k: True)
            link = await mesh.transport.dial(ClientConfig("ws://relay:7000/relay", limits=node_link_limits()),
                                             session.initiate(time.time()))
            received = session.open(bytes(decode(await link.recv()).inner), time.time())
            for f in received.outgoing:
                await link.send(encode_local(f))
            pump = c.daemon.pump
            # Garbage with a valid header (a DATA frame "from" the attacker) and a wrong tag, forwarded to c.
            garbage = bytes([0x13, 0, 0x03, 0xE8, 0, 0, 0, 1]) + attacker.identity.public_key + bytes(24) + bytes(1016)
            for _ in range(3 * BLOCK_AFTER_BAD_FRAMES):
                await link.send(encode_forward(c.key, garbage))
                await asyncio.sleep(0.001)
            core = relay.daemon.server.core
            await wait_for(lambda: core.drops[DropReason.BLOCKED] > 0, 5, "the relay blocks the source")
            rejected = pump.rejected + pump.unknown_sender
            assert rejected <= 2 * BLOCK_AFTER_BAD_FRAMES      # c stopped paying for the garbage
            assert c.daemon.links.blocks_sent == 1 and relay.daemon.blocks == 1
            for i in range(20):                                 # legitimate relayed traffic is unaffected
                await _deliver(a, c, bytes([i]) * 500)
            await link.close()
        finally:
            await mesh.stop()

    run(scenario())


def test_a_burst_is_sealed_into_spec_sized_frames_never_jumbo():
    """Issue 12 "Spec conformance of JUMBO frames": the pump caps frames at the spec's 65,535-byte payload."""
    import os

    from shadowmesh_client.node.pump import Pump
    from shadowmesh_client.protocol import Identity

    cfg = ProtocolConfig(NetworkBinding(31337, b"\x11" * 20, b"jumbo".ljust(32, b"\0")))
    a, b = Identity.generate(), Identity.generate()
    sa, sb = Session(a, b.public_key, cfg, lambda k: True), Session(b, a.public_key, cfg, lambda k: True)
    t = time.time()   # the pump seals with the wall clock
    for f in sa.open(sb.open(sa.initiate(t), t).outgoing[0], t).outgoing:
        sb.open(f, t)

    class Peer:
        session = sa

        def usable_session(self):
            return sa

    packets = [os.urandom(1_400) for _ in range(200)] + [os.urandom(65_000) for _ in range(3)]
    frames = Pump(FakeTun(), {}, {}, None, None)._frames(Peer(), packets)
    assert all(len(f) - 80 <= 0xFFFF and not f[1] & 0x80 for f in frames)   # no JUMBO flag, Length exact
    assert [p for f in frames for p in sb.open(f, time.time()).packets] == packets
