"""The node's device-side payments in process (receipts signed off the loop, acks handled), and the
session-timer task's rule: a backpressured peer never delays another peer's timers or revocation."""

from __future__ import annotations

import asyncio

from eth_account import Account

from shadowmesh_client.node.payments import NodePayments, PaymentSetup
from shadowmesh_client.node.peers import PeerState, PeerTable, now
from shadowmesh_client.node.tasks import Spawner
from shadowmesh_client.node.timers import SessionTimers
from shadowmesh_client.protocol import Identity, NetworkBinding, ProtocolConfig
from shadowmesh_client.relay import encode_local
from shadowmesh_client.rewards import IssuerConfig, ReceiptDomain
from shadowmesh_client.rewards.messages import AckMessage
from tests.client.node.helpers import Mesh, wait_for
from tests.client.node.test_node_inprocess import _deliver, run

CONFIG = ProtocolConfig(NetworkBinding(chain_id=31337, registry="0x" + "22" * 20, network_id=3),
                        keepalive_seconds=0.05, handshake_retry_seconds=0.05)


def test_receipts_are_signed_for_relayed_traffic_and_acks_are_applied():
    async def scenario():
        mesh = Mesh()
        relay = mesh.relay()
        setup = PaymentSetup(ReceiptDomain(31337, "0x" + "33" * 20), Account.create(),
                             IssuerConfig(every_bytes=2_000, every_seconds=0.2),
                             chain_reads=lambda relay, payer, device: (1, 0))   # relayPrice 1, nothing paid
        a, c = mesh.node("a", endpoint=False, payments=setup), mesh.node("c", endpoint=False)
        mesh.start()
        await mesh.ready()
        try:
            await wait_for(lambda: all(r.ready for m in (a, c) for r in m.daemon.table.relays.values())
                           and a.daemon.table.relays and c.daemon.table.relays, 5, "relay links")
            for i in range(5):
                await _deliver(a, c, bytes([i]) * 1_000)
            pay: NodePayments = a.daemon.payments
            issuer = relay.key.hex()
            await wait_for(lambda: pay.status()["relays"].get(issuer, {}).get("signed", 0) >= 5_000, 5, "a receipt")
            assert pay.sent >= 1 and a.daemon.status()["payments"]["receipts_sent"] >= 1
            signed = pay.pay.issuers[relay.key].signed
            # The relay acknowledges it (a control message sealed in the device-relay session, in a LOCAL
            # envelope, handled in a task). The same ack in the clear is refused (issue 12).
            client = a.daemon.table.relays[relay.key]
            ack = AckMessage(pay.pay.payer, a.device.device_id, signed, signed)
            client._deliver(client.link, encode_local(ack.encode()))
            assert client.cleartext_refused == 1
            sealed = relay.daemon.door.seal(a.key, [ack.encode()])
            client._deliver(client.link, encode_local(sealed[0]))
            await wait_for(lambda: pay.status()["relays"][issuer]["acked"] == signed, 2, "ack applied")
        finally:
            await mesh.stop()

    run(scenario())


class _StuckPath:
    """A path whose link never has room and whose send never completes (a backpressured peer)."""

    name = "direct"
    up = True

    def __init__(self) -> None:
        self.waiting = 0

    def send_nowait(self, frame) -> bool:
        return False

    async def send(self, frame) -> None:
        self.waiting += 1
        await asyncio.Event().wait()


class _FreePath(_StuckPath):
    def __init__(self) -> None:
        super().__init__()
        self.sent = []

    def send_nowait(self, frame) -> bool:
        self.sent.append(frame)
        return True


def _established_pair(me: Identity):
    """A PeerState of ``me`` with an established session to a fresh peer (handshake done in memory)."""
    from shadowmesh_client.protocol import Session

    other = Identity.generate()
    peer = PeerState(other.public_key, me, CONFIG, lambda k: True)
    theirs = Session(other, me.public_key, CONFIG, lambda k: True)
    t = now()
    back = theirs.open(peer.session.initiate(t), t).outgoing
    for f in back:
        peer.session.open(f, t)
    data = theirs.seal_packets([b"\x45" + bytes(19)], t)   # we receive data: a keepalive becomes due
    peer.session.open(data, t)
    return peer


def test_timers_never_wait_for_a_backpressured_peer():
    async def scenario():
        me = Identity.generate()
        table = PeerTable(me, CONFIG, lambda k: True)
        stuck, free = _established_pair(me), _established_pair(me)
        stuck.path, free.path = _StuckPath(), _FreePath()
        table.peers = {stuck.key: stuck, free.key: free}
        async with asyncio.TaskGroup() as group:
            spawn = Spawner(group)
            timers = SessionTimers(table, spawn)
            task = spawn(timers.run(), "timers")
            await wait_for(lambda: free.path.sent and stuck.path.waiting, 2, "keepalives due on both")
            assert free.session.counters.sent_frames >= 1          # not held up by the stuck peer
            assert timers.next_at is not None
            timers.wake()
            await asyncio.sleep(0.05)
            assert not task.done()
            spawn.cancel_all()
        assert not spawn.live

    run(scenario())
