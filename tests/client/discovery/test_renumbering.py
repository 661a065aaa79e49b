"""A NAT renumbers its public side (issue 15, in process over MemoryTransport; the namespace version is
tests/e2e/test_discovery.py): the device behind it learns its new address from the relay, republishes,
and its peer is direct again on a NEW link, with the same session (no re-key), no transaction, and the
relay carrying the traffic meanwhile.

What the renumbering does to the links is modelled as TCP sees it: every link that left from the old
address goes silent at both ends (``vanish``: frames sent into it are lost, and closing or aborting one
end tells the other nothing, as no RST can reach an address that is gone); the device's relay link is
reset on its side (its next heartbeat meets the NAT's new mapping) and the relay's end of it is left
closing (a closing handshake towards the old address never completes). Its reconnection comes from the
new address. Both key orders are run: the lower key is the WebSocket client of a punched link."""

from __future__ import annotations

import asyncio

import pytest

from shadowmesh_client.transport import LinkLimits
from shadowmesh_client.transport.memory import MemoryLink
from tests.client.discovery.test_discovery_inprocess import deliver, natted_pair, run
from tests.client.node.helpers import wait_for

NEW_IP = "198.51.100.7"


def vanish(*ends: MemoryLink) -> None:
    """Cut each end from its other end: what it sends is lost, and its close or abort reaches no one."""
    for end in ends:
        end._other = MemoryLink(None, is_client=False, limits=LinkLimits(), latency=0.0, remote_address=None)


def closing_until(end: MemoryLink, release: asyncio.Event) -> None:
    """``end.close()`` completes only once ``release`` is set (a closing handshake with an address that is
    gone waits for its timeout; the test releases it before shutting down)."""
    async def close(code: int = 1000, reason: str = "") -> None:
        await release.wait()
        end.abort()
    end.close = close   # type: ignore[method-assign]


@pytest.mark.parametrize("renumbered", ["lower key", "higher key"])
def test_renumbered_device_republishes_and_its_peer_is_direct_again_on_a_new_link(renumbered):
    async def scenario():
        mesh, relay, a, c = natted_pair()
        release = asyncio.Event()
        mesh.start()
        await mesh.ready()
        try:
            await wait_for(lambda: a.daemon.discovery.publishes and c.daemon.discovery.publishes, 5, "records")
            await deliver(a, c, b"first, through the relay")
            await wait_for(lambda: a.path(c) == "direct" and c.path(a) == "direct", 10, "direct upgrade")
            r, o = (a, c) if (a.key < c.key) == (renumbered == "lower key") else (c, a)
            disc = r.daemon.discovery
            await wait_for(lambda: disc.record is not None, 5, "a first record")
            seq, events = disc.seq, len(mesh.registry.events)
            old_r, old_o = r.peer(o).direct.link, o.peer(r).direct.link
            client = next(iter(r.daemon.table.relays.values()))
            relay_end = relay.daemon.server.core.link_of(r.key)

            vanish(old_r, old_o, client.link, relay_end)         # the old address is gone
            closing_until(relay_end, release)
            mesh.transport.client_host = NEW_IP                   # the NAT's new mapping: new links come from it
            client.link.abort()                                   # the relay link's next heartbeat meets it

            await wait_for(lambda: disc.seq > seq and NEW_IP in " ".join(disc.record.endpoints), 10,
                           "the device republished with its new address")
            await wait_for(lambda: r.path(o) == "direct" and o.path(r) == "direct"
                           and r.peer(o).direct.link is not old_r and o.peer(r).direct.link is not old_o, 10,
                           "direct again on a new link")
            for src, dst in ((r, o), (o, r), (r, o)):
                await deliver(src, dst, b"after the renumbering")
            for x, y in ((r, o), (o, r)):
                s = x.peer(y).session
                assert s.counters.handshakes == 1 and s.counters.rekeys == 0 and x.peer(y).sessions_started == 1
            rec = await o.daemon.discovery.lookup(r.key)
            assert rec is not None and rec.seq == disc.seq and f"tcp:{NEW_IP}:" in " ".join(rec.endpoints)
            assert len(mesh.registry.events) == events           # no transaction
        finally:
            release.set()
            await mesh.stop()
    run(scenario())


def test_the_peer_falls_back_to_the_relay_when_the_device_moved_and_no_packet_is_lost():
    """The peer's end of the dead link is dropped as soon as the device's offer names a new address: from
    then on every packet either way arrives (through the relay until the new direct link is up)."""
    async def scenario():
        mesh, relay, a, c = natted_pair()
        release = asyncio.Event()
        mesh.start()
        await mesh.ready()
        try:
            await wait_for(lambda: a.daemon.discovery.publishes and c.daemon.discovery.publishes, 5, "records")
            await deliver(a, c, b"first")
            await wait_for(lambda: a.path(c) == "direct" and c.path(a) == "direct", 10, "direct upgrade")
            for x in (a, c):
                x.daemon.discovery.puncher.blocked = True         # no new direct link: the relay must carry it
            old_a, old_c = a.peer(c).direct.link, c.peer(a).direct.link
            client = next(iter(a.daemon.table.relays.values()))
            relay_end = relay.daemon.server.core.link_of(a.key)
            vanish(old_a, old_c, client.link, relay_end)
            closing_until(relay_end, release)
            mesh.transport.client_host = NEW_IP
            client.link.abort()
            await wait_for(lambda: (a.path(c) or "").startswith("relay:") and (c.path(a) or "").startswith("relay:"),
                           10, "both on the relay")
            assert old_a.closed and old_c.closed
            burst = [(a, c, bytes([i]) * 100) if i % 2 else (c, a, bytes([i]) * 100) for i in range(40)]
            packets = [(src.packet_to(dst, p), dst) for src, dst, p in burst]
            for (src, _, _), (pkt, _) in zip(burst, packets, strict=True):
                src.tun.inject(pkt)
                await asyncio.sleep(0)
            await wait_for(lambda: all(pkt in dst.tun.written for pkt, dst in packets), 5, "every packet")
        finally:
            release.set()
            await mesh.stop()
    run(scenario())
