"""A pure simulated network of DHT nodes (issue 15 "Simulation in make test"): every node is a real
``discovery.kademlia.DhtNode`` with a real ``RecordStore`` and real signed records; only the wire is
simulated (an RPC is a function call; a departed node's RPCs fail like a timeout). Time is simulated too.

``SimNet(n)`` starts ``n`` nodes joining one after another; ``step(seconds)`` advances time with churn
(``churn_per_minute`` of the live nodes leave and as many new ones join) and republishing; ``lookup``
runs one iterative FIND_VALUE from a node and returns (found, hops).
"""

from __future__ import annotations

import random

from shadowmesh_client.crypto import Identity
from shadowmesh_client.discovery import messages as m
from shadowmesh_client.discovery.kademlia import DhtNode, Lookup, node_id
from shadowmesh_client.discovery.records import DiscoveryError, RecordKind, decode, sign

NETWORK = bytes(range(32))
RECORD_TTL = 600
REPUBLISH = 60.0


class SimNode:
    __slots__ = ("ident", "dht", "alive", "seq", "next_publish", "published")

    def __init__(self, ident: Identity, dht: DhtNode) -> None:
        self.ident, self.dht = ident, dht
        self.alive = True
        self.seq = 0
        self.next_publish = 0.0
        self.published = False


class SimNet:
    def __init__(self, n: int, *, seed: int = 1, churn_per_minute: float = 0.10, k: int = 20) -> None:
        self.rng = random.Random(seed)
        self.now = 1_000_000.0
        self.k = k
        self.churn = churn_per_minute
        self.nodes: dict[bytes, SimNode] = {}
        self.trusted: set[bytes] = set()
        self.rpcs = 0
        self.failed_rpcs = 0
        for _ in range(n):
            self.join()

    # ---- the wire ----------------------------------------------------------------------------------
    def rpc(self, frm: SimNode, to: m.Contact, req: m.Request) -> m.Response | None:
        self.rpcs += 1
        target = self.nodes.get(to.key)
        if target is None or not target.alive:
            self.failed_rpcs += 1
            frm.dht.forget(to.key)
            return None
        resp = target.dht.handle(frm.dht.me, req, self.now)
        frm.dht.learn(to)
        return resp

    def is_trusted(self, key: bytes) -> bool:
        return key in self.trusted

    # ---- membership ---------------------------------------------------------------------------------
    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    def join(self) -> SimNode:
        ident = Identity.generate()
        key = ident.public_key
        self.trusted.add(key)
        node = SimNode(ident, DhtNode(m.Contact(key, f"n{len(self.nodes)}"), NETWORK, self.is_trusted, k=self.k))
        live = self.live()
        self.nodes[key] = node
        if live:
            seed = self.rng.choice(live)
            node.dht.learn(seed.dht.me)
            self.find_nodes(node, node.dht.id)     # Kademlia join: look up our own id
        self.publish(node)
        node.next_publish = self.now + REPUBLISH * self.rng.random()
        return node

    def leave(self, node: SimNode) -> None:
        node.alive = False

    # ---- operations ---------------------------------------------------------------------------------
    def _run(self, node: SimNode, lk: Lookup, req_for) -> Lookup:
        while not lk.done:
            batch = lk.next_queries()
            if not batch:
                break
            for c in batch:
                resp = self.rpc(node, c, req_for(c))
                if resp is None:
                    lk.on_failure(c)
                elif isinstance(resp, m.Value) and self.valid(resp.record, lk):
                    lk.on_value(c, resp.record)
                elif isinstance(resp, m.Nodes):
                    lk.on_nodes(c, resp.contacts)
                else:
                    lk.on_nodes(c, ())
        return lk

    def valid(self, raw: bytes, lk: Lookup) -> bool:
        try:
            rec = decode(raw)
            rec.check(NETWORK, self.now)
        except DiscoveryError:
            return False
        return self.is_trusted(rec.public_key) and node_id(NETWORK, rec.public_key) == lk.target

    def find_nodes(self, node: SimNode, target: int) -> Lookup:
        seeds = node.dht.table.closest(target, self.k)
        lk = Lookup(target, seeds, node.dht.id_of, k=self.k)
        return self._run(node, lk, lambda c: m.FindNode(target.to_bytes(32, "big")))

    def publish(self, node: SimNode) -> int:
        node.seq += 1
        rec = sign(node.ident, RecordKind.DEVICE, NETWORK, node.seq, int(self.now) + RECORD_TTL,
                   endpoints=(f"tcp:198.51.100.{len(self.nodes) % 250}:40000",))
        raw = rec.encode()
        node.dht.store.put(raw, node.dht.me.key, self.now)       # a server keeps its own record too
        lk = self.find_nodes(node, node.dht.id)
        stored = 0
        for c in lk.closest()[:self.k]:
            resp = self.rpc(node, c, m.Store(raw))
            stored += isinstance(resp, m.Stored) and resp.verdict.kept
        node.published = True
        return stored

    def lookup(self, frm: SimNode, key: bytes) -> tuple[bool, int]:
        target = node_id(NETWORK, key)
        local = frm.dht.store.raw(key, self.now)
        if local is not None:
            return True, 0
        lk = Lookup(target, frm.dht.table.closest(target, self.k), frm.dht.id_of, k=self.k)
        self._run(frm, lk, lambda c: m.FindValue(key))
        return lk.value is not None, lk.hops

    # ---- time ---------------------------------------------------------------------------------------
    def step(self, seconds: float) -> None:
        """Advance time: churn (leave + join in equal numbers) and due republishes."""
        self.now += seconds
        live = self.live()
        n = round(len(live) * self.churn * seconds / 60.0)
        for node in self.rng.sample(live, n):
            self.leave(node)
        for _ in range(n):
            self.join()
        for node in self.live():
            if node.next_publish <= self.now:
                self.publish(node)
                node.next_publish = self.now + REPUBLISH
