"""Discovery in whole daemons over MemoryTransport (no root): records published by ``up`` itself and
served by the relay, a direct upgrade without re-keying and the relay fallback with no loss, relay hints,
sessions on demand and their idle drop."""

from __future__ import annotations

import asyncio

from shadowmesh_client.crypto import Identity
from shadowmesh_client.discovery import messages as m
from shadowmesh_client.discovery.records import RecordKind, sign
from shadowmesh_client.discovery.store import Verdict
from tests.client.node.helpers import Mesh, wait_for


def run(coro):
    async def bounded():
        async with asyncio.timeout(60):
            return await coro
    return asyncio.run(bounded())


async def deliver(src, dst, payload: bytes, timeout: float = 5.0) -> None:
    packet = src.packet_to(dst, payload)
    src.tun.inject(packet)
    await wait_for(lambda: packet in dst.tun.written, timeout, f"{src.name} -> {dst.name} {payload!r}")


def natted_pair(**settings):
    mesh = Mesh()
    relay = mesh.relay()
    a = mesh.node("a", endpoint=False, discovery=True, on_demand=True, **settings)
    c = mesh.node("c", endpoint=False, discovery=True, on_demand=True, **settings)
    return mesh, relay, a, c


def test_up_publishes_its_record_and_peers_upgrade_to_direct_without_rekeying():
    async def scenario():
        mesh, relay, a, c = natted_pair()
        mesh.start()
        await mesh.ready()
        try:
            await wait_for(lambda: a.daemon.discovery.publishes and c.daemon.discovery.publishes, 5, "records")
            store = relay.daemon.discovery.dht.store
            assert a.key in store and c.key in store                     # no transaction: the DHT holds them
            rec = await a.daemon.discovery.lookup(c.key)
            assert rec is not None and rec.public_key == c.key and rec.relays == (relay.key,)
            assert c.daemon.discovery.observed                           # the relay told c where it is seen
            assert a.peer(c).session.state.value == "new"               # on demand: nothing before a packet
            await deliver(a, c, b"first, through the relay")
            await wait_for(lambda: a.path(c) == "direct" and c.path(a) == "direct", 10, "direct upgrade")
            s = a.peer(c).session
            assert s.counters.handshakes == 1 and s.counters.rekeys == 0 and a.peer(c).sessions_started == 1
            await deliver(a, c, b"direct now")
            await deliver(c, a, b"and back")
            assert a.daemon.discovery.time_to_direct[c.key] < 5
            # the direct link dies: the relay carries the same session, no packet lost, then direct again
            burst = [a.packet_to(c, bytes([i]) * 200) for i in range(100)]
            for i, p in enumerate(burst):
                if i == 50:
                    a.peer(c).direct.link.abort()
                a.tun.inject(p)
                await asyncio.sleep(0)
            await wait_for(lambda: all(p in c.tun.written for p in burst), 5, "burst across the failover")
            await wait_for(lambda: a.path(c) == "direct", 10, "direct again")
            assert a.peer(c).session.counters.handshakes == 1
        finally:
            await mesh.stop()
    run(scenario())


def test_untraversable_pair_stays_relayed_with_full_connectivity():
    async def scenario():
        mesh, relay, a, c = natted_pair()
        mesh.start()
        await mesh.ready()
        try:
            a.daemon.discovery.puncher.blocked = c.daemon.discovery.puncher.blocked = True
            await deliver(a, c, b"hello")
            await wait_for(lambda: a.daemon.discovery.attempts >= 1, 5, "an attempt")
            await asyncio.sleep(0.5)
            assert (a.path(c) or "").startswith("relay:")
            for i in range(20):
                await deliver(a if i % 2 else c, c if i % 2 else a, bytes([i]) * 10)
        finally:
            await mesh.stop()
    run(scenario())


def test_relay_refuses_records_of_untrusted_keys_and_publishes_its_hints():
    async def scenario():
        mesh, relay, a, c = natted_pair()
        mesh.start()
        await mesh.ready()
        try:
            await wait_for(lambda: a.daemon.discovery.publishes, 5, "a record")
            rd = relay.daemon.discovery
            outsider = Identity.generate()
            forged = sign(outsider, RecordKind.DEVICE, rd.network, 1, int(rd.daemon.trust.now()) + 60).encode()
            resp = rd.on_message(a.key, m.encode(m.Store(forged, 9)))
            assert m.decode(resp[0]) == m.Stored(Verdict.UNTRUSTED, 9)
            client = next(iter(a.daemon.table.relays.values()))
            hint = await a.daemon.discovery.lookup_at(client, relay.key)
            assert hint is not None and hint.kind is RecordKind.RELAY and hint.load >= 0
            await wait_for(lambda: client.hint_penalty >= 0 and a.daemon.discovery._next_hints > 0, 2, "hints")
        finally:
            await mesh.stop()
    run(scenario())


def test_on_demand_sessions_are_dropped_when_idle_and_come_back_on_the_next_packet():
    async def scenario():
        mesh = Mesh()
        mesh.relay()
        a = mesh.node("a", on_demand=True, idle_timeout=1.0)
        b = mesh.node("b", on_demand=True, idle_timeout=1.0)
        mesh.start()
        await mesh.ready()
        try:
            await asyncio.sleep(0.3)
            assert a.peer(b).dialer is None and b.peer(a).dialer is None     # no dialer before any packet
            await deliver(a, b, b"wake up")
            await wait_for(lambda: a.path(b) == "direct", 5, "the on-demand dialer's direct link")
            await wait_for(lambda: a.peer(b).session.state.value == "new" and a.peer(b).direct is None, 10,
                           "idle drop")
            assert a.daemon.reconciler.ondemand.dropped >= 1
            await deliver(a, b, b"again")                                    # a new handshake on demand
            assert a.peer(b).session.state.value == "established"
        finally:
            await mesh.stop()
    run(scenario())
