"""Attack 1 (issue 10): a relay bills a device for junk. Only DELIVERs whose end-to-end frame OPENED under a
session with a trusted peer are billable; junk, replays and frames from peers without a session are dropped
before counting and shown as ``unbillable_dropped``. Whole nodes in process (tests/client/node/helpers.py:
MemoryTransport, FakeTun, MemoryRegistry) with the real RelayDaemon between them; the relay sends the
device the forged DELIVERs (what a cheating relay, or a flooder through it, would do)."""

from __future__ import annotations

import os

from eth_account import Account

from shadowmesh_client.node.payments import PaymentSetup
from shadowmesh_client.node.peers import now
from shadowmesh_client.relay.envelope import encode_deliver
from shadowmesh_client.rewards import IssuerConfig, ReceiptDomain
from tests.client.node.helpers import Mesh, wait_for
from tests.client.node.test_node_inprocess import _deliver, run


def test_junk_replayed_and_sessionless_delivers_are_not_billed():
    async def scenario():
        mesh = Mesh()
        relay = mesh.relay()
        setup = PaymentSetup(ReceiptDomain(31337, "0x" + "33" * 20), Account.create(),
                             IssuerConfig(every_bytes=10**9, every_seconds=3600),
                             chain_reads=lambda relay, payer, device: (1, 0))
        a, c = mesh.node("a", endpoint=False, payments=setup), mesh.node("c", endpoint=False)
        stranger = mesh.node("s", endpoint=False)   # trusted, but has no session with a
        mesh.start(relay, a, c)
        await mesh.ready(a, c)
        try:
            await wait_for(lambda: all(r.ready for m in (a, c) for r in m.daemon.table.relays.values())
                           and a.daemon.table.relays and c.daemon.table.relays, 5, "relay links")
            await _deliver(c, a, b"hello through the relay")            # a real session between a and c
            client = a.daemon.table.relays[relay.key]
            billed, dropped = client.delivered_bytes, client.unbillable_dropped
            assert billed > 0 and dropped == 0

            # 1 GiB of junk would be 1 GiB billed before; here: 100 junk DELIVERs from c's key, none billed.
            for _ in range(100):
                junk = bytes([0x13, 0, 0, 0]) + (7).to_bytes(4, "big") + c.key + os.urandom(24 + 1000)
                client._deliver(client.link, encode_deliver(c.key, junk))
            # A frame from a trusted device that has no session with us (not a handshake): not billed.
            alien = bytes([0x13, 0, 0, 0]) + (1).to_bytes(4, "big") + stranger.key + os.urandom(1024)
            client._deliver(client.link, encode_deliver(stranger.key, alien))
            # A genuine frame of c's session, delivered once (billed) and replayed (not billed).
            frame = bytes(c.daemon.table.peers[a.key].session.seal_packets([c.packet_to(a, b"once")], now()))
            client._deliver(client.link, encode_deliver(c.key, frame))
            once = client.delivered_bytes - billed
            assert once == len(encode_deliver(c.key, frame))
            for _ in range(3):
                client._deliver(client.link, encode_deliver(c.key, frame))
            assert client.delivered_bytes - billed == once                 # only the authenticated one
            assert client.unbillable_dropped - dropped == 100 + 1 + 3
            pay = a.daemon.payments
            await pay.tick(a.daemon.table.relays)
            st = a.daemon.status()["payments"]
            assert st["unbillable_dropped"] == client.unbillable_dropped
            assert st["relays"][relay.key.hex()]["unbillable_dropped"] == client.unbillable_dropped
            # What the device will sign for: its own sends plus the authenticated DELIVERs only.
            assert pay.pay.issuers[relay.key].counted <= client.link.bytes_out + client.delivered_bytes
        finally:
            await mesh.stop()

    run(scenario())
