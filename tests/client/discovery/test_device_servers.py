"""Devices with endpoints serve the discovery DHT too (issue 15: "a Kademlia DHT formed by nodes with
endpoints and by relays; devices behind NAT are clients"), in whole daemons over MemoryTransport.

E listens (an endpoint); A and C are behind NAT. A and C dial E, so each has a session with it: E is
one of the servers they store on and look up from (with the relay), over their device-device session.
E keeps records by the same rules as a relay (dht_server.DhtServer): forged ones are refused."""

from __future__ import annotations

import dataclasses
import time

from shadowmesh_client.crypto import Identity
from shadowmesh_client.discovery import messages as m
from shadowmesh_client.discovery.records import RecordKind, sign
from shadowmesh_client.discovery.store import RecordStore, Verdict
from tests.client.discovery.test_discovery_inprocess import run
from tests.client.node.helpers import Mesh, wait_for


def mesh_with_a_device_server():
    mesh = Mesh()
    relay = mesh.relay()
    e = mesh.node("e", discovery=True)                       # an endpoint: a DHT server
    a = mesh.node("a", endpoint=False, discovery=True)       # behind NAT: clients
    c = mesh.node("c", endpoint=False, discovery=True)
    return mesh, relay, e, a, c


def test_a_record_is_published_on_and_found_from_a_device_server():
    async def scenario():
        mesh, relay, e, a, c = mesh_with_a_device_server()
        mesh.start()
        await mesh.ready()
        try:
            de, da, dc = e.daemon.discovery, a.daemon.discovery, c.daemon.discovery
            assert de.server is not None and da.server is None and dc.server is None   # NAT: clients only
            await wait_for(lambda: da.record is not None and dc.record is not None and de.record is not None, 10,
                           "records")
            store = de.server.store

            def held(x):
                return store.get(x.key, time.time())

            await wait_for(lambda: all(held(x) is not None and held(x).relays for x in (a, c)), 10,
                           "A's and C's records, with their relay, on E")
            assert e.key in store                                  # E keeps its own (closest to its own id)
            assert da.status()["device_servers"] == 1 and de.status()["device_servers"] == 0
            # the relay loses every record: lookups are answered by the device server alone
            rd = relay.daemon.discovery
            rd.dht.store = RecordStore(relay.daemon.trust.is_trusted, rd.network)
            served = de.server.dht.served
            rec = await dc.lookup(a.key)
            assert rec is not None and rec == held(a) and rec.relays == (relay.key,)
            assert de.server.dht.served > served                   # asked over the C-E session
            rec = await da.lookup(e.key)
            assert rec is not None and rec.endpoints == ("ws://e:7000/mesh-e",)
            # A republishes (a new address, say): E replaces the older record with the newer one
            da._dirty = True
            seq = da.seq
            await wait_for(lambda: da.seq > seq and store.get(a.key, time.time()).seq == da.seq, 10, "republished")
        finally:
            await mesh.stop()
    run(scenario())


def test_device_server_refuses_forged_records():
    async def scenario():
        mesh, relay, e, a, c = mesh_with_a_device_server()
        mesh.start()
        await mesh.ready()
        try:
            de, da = e.daemon.discovery, a.daemon.discovery
            store = de.server.store
            await wait_for(lambda: a.key in store and da.record is not None, 10, "A's record on E")
            net, expires = de.network, int(time.time()) + 60
            outsider = Identity.generate()
            untrusted = sign(outsider, RecordKind.DEVICE, net, 1, expires).encode()
            tampered = bytearray(sign(c.device.identity, RecordKind.DEVICE, net, 2**62, expires,
                                      endpoints=("tcp:203.0.113.9:4000",)).encode())
            tampered[-70] ^= 1                                     # wrong signature
            as_c = dataclasses.replace(sign(a.device.identity, RecordKind.DEVICE, net, 2**62, expires),
                                       public_key=c.device.identity.public_key)   # A's signature, C's key
            older = sign(a.device.identity, RecordKind.DEVICE, net, da.record.seq - 1, expires).encode()
            other_net = sign(a.device.identity, RecordKind.DEVICE, bytes(32), 2**62, expires).encode()
            cases = [(untrusted, Verdict.UNTRUSTED), (bytes(tampered), Verdict.INVALID),
                     (as_c.encode(), Verdict.INVALID), (older, Verdict.STALE), (other_net, Verdict.INVALID)]
            for raw, verdict in cases:
                resp = await da.ask(e.key, m.Store(raw))          # over the A-E session, as a peer would
                assert isinstance(resp, m.Stored) and resp.verdict is verdict, verdict
            assert outsider.public_key not in store
            kept = store.get(a.key, time.time())
            assert kept is not None and kept.seq == da.record.seq  # the genuine record is untouched
            assert not isinstance(await da.ask(e.key, m.FindValue(outsider.public_key)), m.Value)
            assert await c.daemon.discovery.lookup(outsider.public_key) is None
            assert de.server.status()["refused"] == {"untrusted": 1, "invalid": 3, "stale": 1}
        finally:
            await mesh.stop()
    run(scenario())
