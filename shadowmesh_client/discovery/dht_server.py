"""The DHT server relays and devices with endpoints both run (issue 15): one piece, two callers.

Issue 15: "Records live in a Kademlia DHT formed by nodes with endpoints and by relays (devices behind NAT
are clients)". ``DhtServer`` is that server: one ``kademlia.DhtNode`` over one ``store.RecordStore`` whose
only trust source is the directory (``TrustPolicy.is_trusted``), so every server applies the same rules
(store.py): a record is kept only if its key is trusted now in this network, a newer ``seq`` replaces an
older one, storage is bounded per key and per source.

Requests reach ``handle(sender, request, now)`` already opened from a session whose handshake proved
``sender``: the device-relay session on a relay (relay_side.py), a device-device session on a device
with an endpoint (service.py ``on_peer_messages``). Servers are the trusted keys with an endpoint (relays
and devices that listen): ``seed`` makes them routing contacts, and a sender is a contact (with its
endpoint's host) iff it is one; a device behind NAT is served but never becomes a contact.

Pure (``now`` is an argument; the directory is read, never written). Not task-safe beyond its owner's
loop. May import: discovery.kademlia, discovery.messages, discovery.store.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from shadowmesh_client.discovery import messages as m
from shadowmesh_client.discovery.kademlia import DhtNode
from shadowmesh_client.discovery.store import RecordStore


class DhtServer:
    """``DhtServer(trust, me, endpoint, network)``: ``trust`` is the daemon's ``directory.trust.TrustPolicy``
    (``is_trusted``, ``peer``, ``directory``, ``now``); ``me`` our key; ``endpoint`` our URL (a server
    always has one)."""

    def __init__(self, trust, me: bytes, endpoint: str | None, network: bytes) -> None:
        self.trust = trust
        self.dht = DhtNode(m.Contact(me, host(endpoint or "")), network, trust.is_trusted)

    @property
    def store(self) -> RecordStore:
        return self.dht.store

    def seed(self) -> None:
        """Every trusted key with an endpoint (relays and listening devices) is a routing contact; the
        membership is the chain's."""
        for p in self.trust.directory.peers(self.trust.now()):
            if p.endpoint:
                self.dht.learn(m.Contact(p.public_key, host(p.endpoint)))

    def handle(self, sender: bytes, req: m.Request, now: float) -> m.Response:
        """Serve ``req`` from the AUTHENTICATED ``sender`` (FIND_NODE, FIND_VALUE, STORE, PING)."""
        peer = self.trust.peer(sender)
        address = host(peer.endpoint or "") if peer is not None else ""
        return self.dht.handle(m.Contact(sender, address), req, now)

    def put_own(self, raw: bytes, now: float) -> bool:
        """Keep our own record (we are the closest server to our own id); True if kept."""
        return self.dht.store.put(raw, self.dht.me.key, now).kept

    def status(self) -> dict:
        return {"records": len(self.dht.store), "contacts": len(self.dht.table), "served": self.dht.served,
                "refused": dict(self.dht.store.refused)}


def host(url: str) -> str:
    """The ``host:port`` of an endpoint URL (a contact's address), or ``url`` itself if it has none."""
    try:
        return urlsplit(url).netloc or url
    except ValueError:
        return ""
