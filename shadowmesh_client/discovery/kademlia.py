"""Kademlia (Maymounkov & Mazieres, 2002): node ids, k-buckets, iterative lookup, the request handler.

Ids are 256-bit: ``node_id(network, key) = BLAKE2b(key, key=network digest)``, so a device's record lives at
the id of its registered key, and ids differ per network. Who is a DHT server: relays and nodes with
endpoints; devices behind NAT are clients (they look up and store, never appear in routing tables).
Membership is the chain's: ``DhtNode`` adds a sender to its routing table only if ``trusted(key)``.

* ``RoutingTable``: 256 buckets of at most ``k`` contacts by the bit length of the XOR distance, least
  recently seen first; a full bucket keeps its old contacts (old live nodes are the ones that stay) and
  parks the newcomer in a bounded replacement cache that refills the bucket when a contact fails.
* ``Lookup``: the iterative lookup as a sans-I/O state machine: ``next_queries()`` gives up to ``alpha``
  contacts to ask, the caller reports ``on_nodes``/``on_value``/``on_failure``; ``done`` when the value is
  found or the ``k`` closest known contacts have all answered. ``hops`` is the lookup's depth: 1 for the
  seeds, 1 + the depth of whoever named a contact; the result's depth is the contact that answered.
* ``DhtNode.handle(sender, request, now)``: FIND_NODE, FIND_VALUE, STORE (into a store.RecordStore), PING.

Pure: no I/O, no clock (``now`` is an argument). Not task-safe beyond its owner's loop.
May import: crypto, discovery.messages, discovery.store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from shadowmesh_client import crypto
from shadowmesh_client.discovery import messages as m
from shadowmesh_client.discovery.store import RecordStore

K = 20
"""Bucket size and replication factor (Kademlia's k)."""
ALPHA = 3
"""Parallel queries per lookup (Kademlia's alpha)."""
REPLACEMENTS = 8
"""Replacement-cache entries per bucket."""


def node_id(network: bytes, key: bytes) -> int:
    return int.from_bytes(crypto.blake2b(key, key=network, person=b"sm-dht-id", size=32), "big")


class RoutingTable:
    """``add(contact, id)``, ``remove(key)``, ``closest(target, n)``; ``len`` counts contacts."""

    __slots__ = ("me", "k", "buckets", "replacements", "_ids", "_id_of")

    def __init__(self, me: int, id_of: Callable[[m.Contact], int], k: int = K) -> None:
        self.me = me
        self._id_of = id_of
        self.k = k
        self.buckets: list[list[m.Contact]] = [[] for _ in range(257)]
        self.replacements: list[list[m.Contact]] = [[] for _ in range(257)]
        self._ids: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: bytes) -> bool:
        return key in self._ids

    def add(self, contact: m.Contact, cid: int) -> bool:
        """Note ``contact`` as alive (moves it to the tail); False if its bucket is full (parked)."""
        if cid == self.me:
            return False
        b = (cid ^ self.me).bit_length()
        bucket = self.buckets[b]
        if contact.key in self._ids:
            for i, c in enumerate(bucket):
                if c.key == contact.key:
                    del bucket[i]
                    bucket.append(contact)
                    return True
        if len(bucket) < self.k:
            bucket.append(contact)
            self._ids[contact.key] = cid
            return True
        spare = self.replacements[b]
        if all(c.key != contact.key for c in spare):
            spare.append(contact)
            if len(spare) > REPLACEMENTS:
                del spare[0]
        return False

    def remove(self, key: bytes) -> None:
        """Forget a failed contact; the newest parked contact of its bucket takes its place."""
        cid = self._ids.pop(key, None)
        if cid is None:
            return
        b = (cid ^ self.me).bit_length()
        self.buckets[b] = [c for c in self.buckets[b] if c.key != key]
        spare = self.replacements[b]
        while spare and len(self.buckets[b]) < self.k:
            c = spare.pop()
            if c.key not in self._ids:
                self.buckets[b].append(c)
                self._ids[c.key] = self._id_of(c)

    def closest(self, target: int, n: int, exclude: bytes | None = None) -> list[m.Contact]:
        ids = self._ids
        cs = [c for b in self.buckets for c in b if c.key != exclude]
        cs.sort(key=lambda c: ids[c.key] ^ target)
        return cs[:n]

    def contacts(self) -> list[m.Contact]:
        return [c for b in self.buckets for c in b]


class Lookup:
    """One iterative lookup of ``target`` (a node id). See the module docstring for the protocol."""

    __slots__ = ("target", "k", "alpha", "id_of", "_known", "_depth", "_queried", "_pending", "_failed",
                 "value", "hops", "queries", "answered_by")

    def __init__(self, target: int, seeds: Iterable[m.Contact], id_of: Callable[[m.Contact], int], *,
                 k: int = K, alpha: int = ALPHA) -> None:
        self.target = target
        self.k = k
        self.alpha = alpha
        self.id_of = id_of
        self._known: dict[bytes, tuple[int, m.Contact]] = {}
        self._depth: dict[bytes, int] = {}
        self._queried: set[bytes] = set()
        self._pending: set[bytes] = set()
        self._failed: set[bytes] = set()
        self.value: bytes | None = None
        self.hops = 0
        self.queries = 0
        self.answered_by: list[m.Contact] = []    # contacts that answered, for STORE after a node lookup
        for c in seeds:
            self._learn(c, 1)

    def _learn(self, c: m.Contact, depth: int) -> None:
        if c.key not in self._known:
            self._known[c.key] = (self.id_of(c) ^ self.target, c)
            self._depth[c.key] = depth

    def _live_closest(self) -> list[tuple[int, m.Contact]]:
        return sorted((v for k_, v in self._known.items() if k_ not in self._failed), key=lambda v: v[0])[:self.k]

    @property
    def done(self) -> bool:
        if self.value is not None:
            return True
        if self._pending:
            return False
        return all(c.key in self._queried for _, c in self._live_closest())

    def next_queries(self) -> list[m.Contact]:
        if self.value is not None:
            return []
        out = []
        room = self.alpha - len(self._pending)
        for _, c in self._live_closest():
            if room <= 0:
                break
            if c.key not in self._queried:
                self._queried.add(c.key)
                self._pending.add(c.key)
                out.append(c)
                room -= 1
        self.queries += len(out)
        return out

    def on_nodes(self, c: m.Contact, contacts: Iterable[m.Contact]) -> None:
        self._pending.discard(c.key)
        self.answered_by.append(c)
        d = self._depth.get(c.key, 1) + 1
        for x in contacts:
            self._learn(x, d)

    def on_value(self, c: m.Contact, record: bytes) -> None:
        """``record`` was checked by the caller (signature, network, trust, expiry)."""
        self._pending.discard(c.key)
        self.value = record
        self.hops = self._depth.get(c.key, 1)

    def on_failure(self, c: m.Contact) -> None:
        self._pending.discard(c.key)
        self._failed.add(c.key)

    def closest(self) -> list[m.Contact]:
        """The k closest contacts that answered (where a STORE goes)."""
        answered = {c.key for c in self.answered_by}
        return [c for _, c in self._live_closest() if c.key in answered]


class DhtNode:
    """A DHT server: ``handle(sender, request, now) -> response``. ``sender`` is the AUTHENTICATED contact
    (its key proven by the session the request came in); a client (no address) is served but not added."""

    def __init__(self, me: m.Contact, network: bytes, trusted: Callable[[bytes], bool],
                 store: RecordStore | None = None, *, k: int = K) -> None:
        self.me = me
        self.network = network
        self.id = node_id(network, me.key)
        self.trusted = trusted
        self.store = store if store is not None else RecordStore(trusted, network)
        self.k = k
        self._id_cache: dict[bytes, int] = {}
        self.table = RoutingTable(self.id, self.id_of, k)
        self.served = 0

    def id_of(self, c: m.Contact) -> int:
        cid = self._id_cache.get(c.key)
        if cid is None:
            cid = self._id_cache[c.key] = node_id(self.network, c.key)
            if len(self._id_cache) > 8 * 65_536:
                self._id_cache.clear()
        return cid

    def learn(self, c: m.Contact) -> None:
        """A server contact seen alive (a trusted key with an address)."""
        if c.address and c.key != self.me.key and self.trusted(c.key):
            self.table.add(c, self.id_of(c))

    def forget(self, key: bytes) -> None:
        self.table.remove(key)

    def handle(self, sender: m.Contact | None, req: m.Request, now: float) -> m.Response:
        self.served += 1
        if sender is not None:
            self.learn(sender)
        exclude = sender.key if sender is not None else None
        if isinstance(req, m.FindNode):
            target = int.from_bytes(req.target, "big")
            return m.Nodes(tuple(self.table.closest(target, self.k, exclude)), req.req_id)
        if isinstance(req, m.FindValue):
            raw = self.store.raw(req.key, now)
            target = node_id(self.network, req.key)
            if raw is not None:
                return m.Value(raw, (), req.req_id)
            return m.Nodes(tuple(self.table.closest(target, self.k, exclude)), req.req_id)
        if isinstance(req, m.Store):
            source = sender.key if sender is not None else b""
            return m.Stored(self.store.put(req.record, source, now), req.req_id)
        return m.Pong(req.req_id)
