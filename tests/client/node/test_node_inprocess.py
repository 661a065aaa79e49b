"""Whole ``up`` daemons in one event loop over MemoryTransport, FakeTun and MemoryRegistry views, with a
real RelayDaemon: packets end to end, path choice and failover, revocation, refused hellos, NAT, the relay
session's rekey, failure and shutdown. No root, no sockets, no chain."""

from __future__ import annotations

import asyncio
import errno

import pytest

from shadowmesh_client.errors import ConfigError, TunError
from shadowmesh_client.node import Node, NodeSettings
from shadowmesh_client.node.peers import now, should_dial
from shadowmesh_client.protocol import Identity, NetworkBinding, ProtocolConfig, Session
from shadowmesh_client.transport import ClientConfig
from shadowmesh_client.transport.errors import HandshakeRejectedError
from shadowmesh_client.tun import FakeTun
from tests.client.node.helpers import MTU, Mesh, wait_for


def run(coro):
    """Run a scenario with a deadline, in ONE task (so ``asyncio.all_tasks()`` shows only the daemons')."""
    async def bounded():
        async with asyncio.timeout(60):
            return await coro

    return asyncio.run(bounded())


async def _deliver(src, dst, payload: bytes, timeout: float = 5.0) -> None:
    """Inject one packet into ``src``'s TUN device; it must come out of ``dst``'s."""
    packet = src.packet_to(dst, payload)
    src.tun.inject(packet)
    await wait_for(lambda: packet in dst.tun.written, timeout, f"{src.name} -> {dst.name} {payload!r}")


def _acceptor(a, b):
    """The member whose listener takes the direct link of the pair (the other one dials)."""
    return b if should_dial(a.key, a.device.endpoint, b.key, b.device.endpoint) else a


def test_two_nodes_exchange_packets_on_the_direct_path_both_ways():
    async def scenario():
        mesh = Mesh()
        a, b = mesh.node("a"), mesh.node("b")
        mesh.start()
        await mesh.ready()
        try:
            await _deliver(a, b, b"ping")
            await _deliver(b, a, b"pong")
            assert a.path(b) == b.path(a) == "direct"
            burst = [a.packet_to(b, bytes([i]) * 1000) for i in range(50)]
            for p in burst:
                a.tun.inject(p)
            await wait_for(lambda: all(p in b.tun.written for p in burst), 5, "a burst")
            stray = a.packet_to(b, b"")[:16] + bytes([100, 64, 9, 9]) + b""
            a.tun.inject(stray)
            await wait_for(lambda: a.daemon.pump.no_route == 1, 2, "no route counted")
            st = a.daemon.status()
            assert {"peers", "relays", "counters", "listening", "overlay", "ready_at", "auth_refused",
                    "peers_closed"} <= set(st)
            assert st["peers"][0]["path"] == "direct" and st["peers"][0]["session"] == "established"
        finally:
            await mesh.stop()

    run(scenario())


def test_direct_is_preferred_fails_over_to_the_relay_and_comes_back():
    async def scenario():
        mesh = Mesh()
        relay = mesh.relay()
        a, b = mesh.node("a"), mesh.node("b")
        mesh.start()
        await mesh.ready()
        try:
            await _deliver(a, b, b"first")
            await wait_for(lambda: a.daemon.table.relays and all(r.ready for r in a.daemon.table.relays.values())
                           and all(r.ready for r in b.daemon.table.relays.values()), 5, "relay links")
            assert a.path(b) == "direct"
            # A slow direct link stays in use (a relay is paid; see test_node_path_choice.py).
            direct = a.peer(b).direct.link
            direct.latency = 0.050
            await asyncio.sleep(0.6)                       # a housekeeping re-selection (PATH_SECONDS)
            assert a.path(b) == "direct"
            direct.latency = 0.0

            # The direct link dies and cannot come back (the acceptor is unreachable): the relay takes over.
            acceptor = _acceptor(a, b)
            mesh.transport.unreachable.add(acceptor.name)
            a.peer(b).direct.link.abort()
            await wait_for(lambda: (a.path(b) or "").startswith("relay:") and (b.path(a) or "").startswith("relay:"),
                           3, "failover")
            await _deliver(a, b, b"via relay")
            await _deliver(b, a, b"back via relay")
            assert relay.daemon.status() is not None

            # The acceptor is reachable again: the dialer reconnects and traffic is direct again, same session.
            sessions = a.peer(b).sessions_started
            mesh.transport.unreachable.clear()
            await wait_for(lambda: a.path(b) == b.path(a) == "direct", 5, "back to direct")
            await _deliver(a, b, b"direct again")
            assert a.peer(b).sessions_started == sessions
        finally:
            await mesh.stop()

    run(scenario())


def test_a_peer_without_endpoint_is_reached_through_the_relay_only():
    async def scenario():
        mesh = Mesh()
        mesh.relay()
        a, c = mesh.node("a", endpoint=False), mesh.node("c", endpoint=False)
        mesh.start()
        await mesh.ready()
        try:
            await wait_for(lambda: all(r.ready for m in (a, c) for r in m.daemon.table.relays.values())
                           and a.daemon.table.relays and c.daemon.table.relays, 5, "relay links")
            await _deliver(a, c, b"hello behind nat")
            await _deliver(c, a, b"and back")
            assert a.path(c).startswith("relay:") and c.path(a).startswith("relay:")
            assert a.peer(c).direct is None and a.peer(c).dialer is None and a.daemon.server is None
        finally:
            await mesh.stop()

    run(scenario())


def test_revocation_closes_the_session_and_removes_the_routes_quickly():
    async def scenario():
        mesh = Mesh()
        a, b, c = mesh.node("a"), mesh.node("b"), mesh.node("c")
        mesh.start()
        await mesh.ready()
        try:
            await _deliver(a, b, b"before")
            await _deliver(a, c, b"to c")
            link = a.peer(b).direct.link
            mesh.registry.revoke(b.device)
            mesh.registry.sync()
            t0 = asyncio.get_running_loop().time()
            await wait_for(lambda: a.peer(b) is None and c.peer(b) is None, 2, "peer closed")
            await wait_for(lambda: link.closed, 2, "direct link closed")
            assert asyncio.get_running_loop().time() - t0 < 2
            assert b.device.identity.public_key not in {p.key for p in a.daemon.table.routes.values()}
            assert a.daemon.reconciler.peers_closed >= 1
            dropped = a.daemon.pump.no_route
            a.tun.inject(a.packet_to(b, b"after"))
            await wait_for(lambda: a.daemon.pump.no_route == dropped + 1, 2, "no route to a revoked peer")
            await _deliver(a, c, b"c still works")       # other peers are untouched
            # B keeps running but is refused by both (its hello is no longer trusted).
            await asyncio.sleep(0.5)
            assert a.peer(b) is None
        finally:
            await mesh.stop()

    run(scenario())


def test_an_untrusted_keys_hello_is_refused_before_any_session():
    async def scenario():
        mesh = Mesh()
        a = mesh.node("a")
        relay = mesh.relay()
        mesh.start()
        await mesh.ready()
        try:
            cfg = a.daemon.protocol
            url = a.device.endpoint
            stranger = Identity.generate()
            hello = Session(stranger, a.key, cfg, lambda k: True).initiate(now())
            with pytest.raises(HandshakeRejectedError):
                await mesh.transport.dial(ClientConfig(url), hello)
            # A relay's key is trusted, but not as a peer: refused too.
            hello = Session(relay.device.identity, a.key, cfg, lambda k: True).initiate(now())
            with pytest.raises(HandshakeRejectedError):
                await mesh.transport.dial(ClientConfig(url), hello)
            # Garbage is refused (the prober gets the decoy).
            with pytest.raises(HandshakeRejectedError):
                await mesh.transport.dial(ClientConfig(url), b"GET / HTTP/1.1")
            assert a.daemon.links.auth_refused == 3
            assert stranger.public_key not in a.daemon.table.peers
            assert relay.key not in a.daemon.table.peers
        finally:
            await mesh.stop()

    run(scenario())


def test_the_device_relay_session_rekeys_on_its_timer():
    async def scenario():
        mesh = Mesh()
        relay = mesh.relay()
        d = mesh.registry
        fast = ProtocolConfig(NetworkBinding(d.chain_id, d.registry, d.network_id), rekey_after_seconds=0.3)
        a = mesh.node("a", endpoint=False, protocol=fast)
        c = mesh.node("c", endpoint=False)
        mesh.start()
        await mesh.ready()
        try:
            await wait_for(lambda: a.daemon.table.relays and all(r.ready for r in a.daemon.table.relays.values()),
                           5, "relay link")
            client = a.daemon.table.relays[relay.key]
            await wait_for(lambda: client.session.counters.rekeys >= 2, 5, "two rekeys of the relay session")
            assert client.attempts == 1                       # rekeyed in place, never reconnected
            await wait_for(lambda: all(r.ready for r in c.daemon.table.relays.values()), 5, "c's relay link")
            await _deliver(a, c, b"after the rekeys")
            await _deliver(c, a, b"and back")
            assert a.daemon.timers.fired >= 2
        finally:
            await mesh.stop()

    run(scenario())


class _DyingTun(FakeTun):
    """A TUN device deleted under the node: reading fails once a packet is injected."""

    def read_batch(self, max_packets: int = 64) -> list[bytes]:
        raise TunError(errno.EBADFD, f"{self.name}: device is gone")


def test_a_failing_task_stops_the_node_with_its_error_and_still_releases_everything():
    async def scenario():
        mesh = Mesh()
        a = mesh.node("a", tun=_DyingTun("a", mtu=MTU))
        b = mesh.node("b")
        mesh.start()
        await mesh.ready()
        a.tun.inject(a.packet_to(b, b"boom"))
        with pytest.raises(TunError, match="device is gone"):
            await asyncio.wait_for(a.task, 5)
        assert a.tun.closed and a.daemon.ds.closed
        await mesh.stop(b)
        assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    run(scenario())


def test_shutdown_closes_sessions_and_leaves_no_task_running():
    async def scenario():
        me = asyncio.current_task()
        mesh = Mesh()
        a, b = mesh.node("a"), mesh.node("b")
        mesh.start()
        await mesh.ready()
        await _deliver(a, b, b"x")
        b_session = b.peer(a).session
        await mesh.stop(a)
        assert a.tun.closed and a.daemon.ds.closed
        await wait_for(lambda: b_session.state.value == "closed", 2, "b saw a's CLOSE")
        await mesh.stop(b)
        assert {t for t in asyncio.all_tasks() if t is not me} == set()

    run(scenario())


def test_node_refuses_to_start_when_not_registered():
    async def scenario():
        mesh = Mesh()
        stranger = Identity.generate()
        tun = FakeTun("x", mtu=MTU)
        source = mesh.registry.source()
        node = Node(stranger, source, NodeSettings(), transport=mesh.transport, tun=tun)

        with pytest.raises(ConfigError, match="not an active"):
            await node.run(asyncio.Event())
        assert source.closed and not tun.closed   # the TUN was never opened by the node: not its to close

    run(scenario())
