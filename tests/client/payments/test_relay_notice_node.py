"""Issue 11 item 2 on the device: a sealed RELAY_NOTICE from the relay is logged as a WARNING with the reason
and what to do, and shown in the node's status (so the status file and `shadowmesh-client status`), also by
a node that signs no receipts (payments off). Whole nodes in process over MemoryTransport."""

from __future__ import annotations

import logging

from shadowmesh_client.relay import encode_local
from shadowmesh_client.rewards.messages import NoticeMessage, NoticeReason
from tests.client.node.helpers import Mesh, wait_for
from tests.client.node.test_node_inprocess import run


def test_an_unpaid_node_shows_why_the_relay_stopped_carrying_it(caplog):
    async def scenario():
        mesh = Mesh()
        relay = mesh.relay()
        d = mesh.node("d", endpoint=False)          # no PaymentSetup: signs nothing
        mesh.start()
        await mesh.ready()
        try:
            await wait_for(lambda: d.daemon.table.relays and all(r.ready for r in d.daemon.table.relays.values()),
                           5, "relay link")
            client = d.daemon.table.relays[relay.key]
            notice = NoticeMessage(NoticeReason.CREDIT_EXCEEDED, 10, 123, 0)
            with caplog.at_level(logging.WARNING):
                for frame in relay.daemon.door.seal(d.key, [notice.encode()]):
                    client._deliver(client.link, encode_local(frame))
                shown = await wait_for(lambda: (d.daemon.status().get("payments") or {}).get("relays", {})
                                       .get(relay.key.hex(), {}).get("notice"), 2, "the notice in the status")
            assert shown["reason"] == "credit_exceeded" and not shown["carrying"] and "payments:" in shown["what_to_do"]
            assert any("stopped carrying this device: credit exceeded" in r.getMessage() for r in caplog.records)
        finally:
            await mesh.stop()

    run(scenario())
