"""What ``up`` runs for discovery (issue 15): its signed record, lookups, relay hints, direct upgrades.

* **Record.** Published by itself, no transaction: at start, every ``REFRESH_SECONDS`` (lifetime
  ``RECORD_TTL``) and at once when a relay reports a new observed address (renumbering). Endpoints: the
  on-chain endpoint if any, and ``tcp:IP:PORT`` for each address relays observe (the NAT mapping of the
  punch port); relays: the ones it is linked to. STOREd on the ``K`` DHT servers closest to its DHT id
  by XOR distance (discovery/kademlia.py), chosen among the servers it can reach: the relays it is
  linked to and the devices with an endpoint it has an established session with; a server that newly
  enters those ``K`` gets the current record at once. ``lookup(key)`` asks the servers closest to
  ``key``'s id; a record is used only if it verifies, is of this network, live, and its key is trusted
  in the directory now (``TrustPolicy.is_trusted``). A device server that does not answer is skipped
  for ``SILENT_SECONDS`` (relays never are: every device relies on them).
* **Serving.** A node with an endpoint is a DHT server too (``self.server``, dht_server.DhtServer: the
  piece relays run, same store bounds and trust checks): peers' FIND_NODE/FIND_VALUE/STORE arrive as
  packets of their device-device session (family ``messages.PEER_MAGIC``, through the pump's
  ``on_stream`` hook that ``attach`` chains: no new port, nothing new on the wire) and are answered the
  same way; it keeps its own record itself (the closest server to its own id). A node behind NAT is a
  client only: it ignores requests.
* **Hints.** Each relay's own record (kind RELAY: load per mille, price per MiB) is fetched every
  ``HINT_SECONDS``; ``RelayClient.hint_penalty`` (seconds added to that relay's path estimate,
  node/peers.py) = load/1000 x ``LOAD_PENALTY`` + price / ``PRICE_UNIT`` x 1 ms (capped).
* **Direct upgrade.** For a peer whose session is ESTABLISHED (first packet or hello, on demand) and that
  no one dials (neither has an endpoint), the node exchanges candidates through the relays (CANDIDATES,
  forwarded by a relay both are linked to) and both punch at once (discovery/punch.py). The new link is
  authenticated by a KEEPALIVE of the existing session (no re-keying) and becomes the peer's direct path
  (``PeerLinks.run_direct``: path choice takes it). While it works nothing else changes; when it fails or
  drops, the relay path carries the session's frames as before (nothing is lost: the session never
  changed) and the attempt is retried with backoff (``RETRY_MIN``..``RETRY_MAX``). An attempt ends when
  its link is up (the link is served by a task of its own), so a new one can always start.
* **Renumbering.** A relay reporting a new observed IP means our NAT's public address changed: every
  punched direct link left from the old one and is dead, though no RST says so (the peer's packets go to
  an address that is gone). It is aborted at once (the relay carries the session; the socket it frees
  has the 4-tuple the new punch needs), the record is republished and the attempts restart at once. The
  peer, offered candidates that do not include the address its direct link points at, drops that link
  too (instead of sending into it until its heartbeat times out) and punches to the new address.

Tasks: ``run`` (the node's group) owns the accept loop and the tick; attempts are tasks of the node's
group (``spawn``); ``run``'s end closes the puncher (its link server awaits the links it serves).
Not task-safe beyond the loop. May import: discovery.*, node (peers, links, relays), protocol, relay, transport.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from shadowmesh_client.directory.trust import Role
from shadowmesh_client.discovery import messages as m
from shadowmesh_client.discovery.dht_server import DhtServer
from shadowmesh_client.discovery.kademlia import K, node_id
from shadowmesh_client.discovery.ondemand import OnDemand
from shadowmesh_client.discovery.punch import MemoryPuncher, TcpPuncher
from shadowmesh_client.discovery.records import DiscoveryError, EndpointRecord, RecordKind, decode, sign
from shadowmesh_client.errors import ProtocolError
from shadowmesh_client.node.peers import now
from shadowmesh_client.protocol import SessionState
from shadowmesh_client.transport import LinkClosedError

log = logging.getLogger(__name__)

RECORD_TTL = 600
REFRESH_SECONDS = 120.0
HINT_SECONDS = 60.0
TICK_SECONDS = 0.25
REQUEST_TIMEOUT = 3.0
ANSWER_TIMEOUT = 2.5
PUNCH_TIMEOUT = 5.0
RETRY_MIN = 1.0
RETRY_MAX = 30.0
SILENT_SECONDS = 60.0
"""Seconds a device server that did not answer a request is left out of the servers we ask."""
LOAD_PENALTY = 0.010
"""Seconds added to a path through a relay at full load (1000 per mille)."""
PRICE_UNIT = 10**12
"""Token base units per MiB that cost 1 ms of path estimate (capped at 10 ms)."""


async def attach(node, spawn) -> list:
    """Wire issue 15 into a Node before its first ``refresh`` (node/daemon.py calls this). Returns the
    service coroutines to run in the node's group."""
    s = node.settings
    rec, links = node.reconciler, node.links
    hooks: list[Callable] = []
    if s.on_demand:
        od = OnDemand(node.table, rec.idle_close, rec.start_dialer, idle_timeout=s.idle_timeout, clock=time.monotonic)
        rec.ondemand = od
        hooks.append(od.on_established)
    coros = []
    if s.discovery:
        from shadowmesh_client.transport.memory import MemoryTransport

        puncher: TcpPuncher | MemoryPuncher
        if isinstance(node.transport, MemoryTransport):
            puncher = MemoryPuncher(node.transport, node.identity.public_key)
        else:
            puncher = TcpPuncher(s.punch_port, s.limits)
        await puncher.start()
        svc = NodeDiscovery(node, spawn, puncher)
        if puncher.relay_dial is not None:
            rec.relay_dial = puncher.relay_dial
        rec.on_relay_discovery = svc.on_relay_message
        node.pump.on_stream = _demux(svc.on_peer_messages, node.pump.on_stream)   # device-device DHT messages
        hooks.append(svc.on_established)
        coros.append((svc.run(), "discovery"))
        node.discovery = svc
    if hooks:
        links.on_established = lambda peer: [h(peer) for h in hooks]
    return coros


def _demux(discovery, streams):
    """The pump's ``on_stream`` (frames whose first packet is not IP): discovery's own family byte to
    ``discovery``, everything else to the stream layer as before (messages.py ``PEER_MAGIC``)."""
    def on_stream(peer, packets: list) -> None:
        if packets[0][0] == m.PEER_MAGIC:
            discovery(peer, packets)
        elif streams is not None:
            streams(peer, packets)
    return on_stream


class _Server(NamedTuple):
    """A DHT server we can ask: ``send(msg) -> bool`` (False: no way to it now); None means ourselves."""
    key: bytes
    send: Callable[[m.Message], bool] | None
    device: bool = False


class NodeDiscovery:
    def __init__(self, node, spawn, puncher) -> None:
        self.node = node
        self.spawn = spawn
        self.puncher = puncher
        self.network = node.protocol.binding.digest()
        self.me = node.identity.public_key
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[bytes, asyncio.Future]] = {}    # req id -> (server asked, answer)
        # a DHT server too when we have an endpoint (issue 15: nodes with endpoints and relays form the DHT)
        self.server = DhtServer(node.trust, self.me, node.endpoint, self.network) if node.endpoint else None
        self._device_servers: dict[bytes, object] = {}   # key -> PeerState: endpoint peers, session established
        self._silent: dict[bytes, float] = {}            # device server -> monotonic time it is asked again
        self._node_ids: dict[bytes, int] = {}
        self._offered: set[bytes] = set()                # servers the current record was sent to
        self._new_servers = False
        self.malformed = 0
        self._answers: dict[bytes, asyncio.Future] = {}
        self.observed: dict[bytes, tuple[str, int]] = {}
        self._linked: dict[bytes, object] = {}
        self._dirty = True
        self._next_publish = 0.0
        self._next_hints = 0.0
        self._publishing = False
        self.seq = 0
        self.record: EndpointRecord | None = None
        self.publishes = 0
        self.lookups = 0
        self.wanted: dict[bytes, float] = {}          # peer key -> monotonic time its direct path was wanted
        self._attempts: dict[bytes, asyncio.Task] = {}
        self._retry: dict[bytes, tuple[float, float]] = {}   # key -> (next try at, backoff)
        self.time_to_direct: dict[bytes, float] = {}
        self.attempts = 0
        self.directs = 0
        self._force: set[bytes] = set()               # peers to re-punch although their direct link looks up

    # ---- hooks -------------------------------------------------------------------------------------
    def on_established(self, peer) -> None:
        if self._punchable(peer):
            self.wanted.setdefault(peer.key, time.monotonic())
        if peer.endpoint and peer.key != self.me:     # a device with an endpoint: a DHT server we can reach
            self._device_servers[peer.key] = peer
            self._new_servers = True

    def _punchable(self, peer) -> bool:
        return not peer.endpoint and not self.node.endpoint

    def on_relay_message(self, client, payload: bytes) -> None:
        try:
            msg = m.decode(payload)
        except DiscoveryError:
            return
        if isinstance(msg, m.RESPONSES):
            self._answered(client.key, msg)
        elif isinstance(msg, m.Observed):
            old = self.observed.get(client.key)
            self.observed[client.key] = (msg.ip, msg.port)
            if old is not None and old != (msg.ip, msg.port):
                log.info("relay %s sees us at %s:%d now (was %s:%d): republishing", client.host, msg.ip, msg.port,
                         *old)
                self._dirty = True
                self._renumbered(moved=old[0] != msg.ip)
            elif old is None:
                self._dirty = True
        elif isinstance(msg, m.Candidates):
            self._on_candidates(client, msg)

    def on_peer_messages(self, peer, packets: list) -> None:
        """Discovery packets of one frame from ``peer`` (a PeerState: its session authenticated them).
        Answers come back to our requests; requests are served only if we are a server."""
        for p in packets:
            try:
                msg = m.decode(p)
            except DiscoveryError:
                self.malformed += 1
                continue
            if isinstance(msg, m.RESPONSES):
                self._answered(peer.key, msg)
            elif isinstance(msg, m.REQUESTS) and self.server is not None:
                self._send_peer(peer, self.server.handle(peer.key, msg, time.time()))

    def _answered(self, sender: bytes, msg) -> None:
        waiting = self._waiting.get(msg.req_id)
        if waiting is not None and waiting[0] == sender and not waiting[1].done():   # only who was asked
            waiting[1].set_result(msg)

    def _on_candidates(self, client, msg: m.Candidates) -> None:
        peer = self.node.table.peers.get(msg.peer)
        if peer is None or self.node.trust.peer_role(msg.peer) is not Role.PEER:
            return
        self.puncher.learn(msg)
        if msg.answer:
            fut = self._answers.get(msg.peer)
            if fut is not None and not fut.done():
                fut.set_result(msg.addresses)
            return
        direct = peer.direct
        if direct is not None and not direct.link.closed and _moved(direct.link, msg.addresses):
            # an offer while our direct link is up: the peer was renumbered and dropped its end (see
            # ``_renumbered``); ours points at its old address and would swallow frames until its heartbeat
            # times out: drop it now (the relay carries the session), then punch to the new address
            log.info("peer %s: moved, its direct link is gone; punching to its new address", msg.peer.hex()[:8])
            direct.link.abort()
        self._send_controls(client, [m.encode(self.puncher.candidates(msg.peer, self.candidates(), True))])
        fut = self._answers.get(msg.peer)
        if fut is not None and not fut.done():       # both started at once: theirs is our answer
            fut.set_result(msg.addresses)
            return
        task = self._attempts.get(msg.peer)
        if task is not None and not task.done():
            return
        self.wanted.setdefault(msg.peer, time.monotonic())
        self._start_attempt(peer, msg.addresses)

    def _renumbered(self, moved: bool) -> None:
        """Our address changed: retry every wanted peer at once. ``moved`` (the IP changed, not only the
        port): every direct link punched through the NAT left from the old address, so it is dead (the
        peer's packets go to an address that is gone; no RST tells either side): abort it now, so the
        relay carries the session meanwhile and its socket (same local port, same peer address: the
        4-tuple the new punch needs) is freed. A port alone may change without the old link dying (a
        symmetric NAT maps each relay link anew): then only a new punch is forced."""
        for key in self.wanted:
            self._retry[key] = (0.0, RETRY_MIN)
            self._force.add(key)     # its direct link used the old address: punch a new one now
            peer = self.node.table.peers.get(key) if moved else None
            if peer is not None and peer.direct is not None and not peer.direct.link.closed:
                log.info("peer %s: direct link left from our old address: dropped", key.hex()[:8])
                peer.direct.link.abort()

    # ---- the loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.puncher.serve())
                group.create_task(self._loop())
        finally:
            await self.puncher.close()

    async def _loop(self) -> None:
        while True:
            self.tick(time.monotonic())
            await asyncio.sleep(TICK_SECONDS)

    def tick(self, t: float) -> None:
        ready = self._ready()
        for client in ready:
            if self._linked.get(client.key) is not client.link:      # a new link: where does it see us?
                self._linked[client.key] = client.link
                self._new_servers = True
                self.spawn(self._request(self._relay(client), m.Ping()), "discovery ping")
        can_publish = bool(ready or self.server)     # behind NAT, a record says nothing before a relay link
        if can_publish and (self._dirty or t >= self._next_publish) and not self._publishing:
            self._publishing = True
            self._new_servers = False
            self.spawn(self.publish(), "discovery publish")
        elif self._new_servers and not self._publishing and self.record is not None:
            self._new_servers = False        # a reachable server newly among our K closest: give it our record
            fresh = [s for s in self._closest(self.me) if s.key not in self._offered]
            if fresh:
                self._offered.update(s.key for s in fresh)
                self.spawn(self._store_on(fresh, self.record.encode()), "discovery replicate")
        if ready and t >= self._next_hints:
            self._next_hints = t + HINT_SECONDS
            self.spawn(self.fetch_hints(), "discovery hints")
        peers = self.node.table.peers
        for key in list(self.wanted):
            peer = peers.get(key)
            if peer is None or peer.session.state is not SessionState.ESTABLISHED:
                del self.wanted[key]
                continue
            task = self._attempts.get(key)
            if (peer.direct is not None and peer.direct.up and key not in self._force) \
                    or (task is not None and not task.done()):
                continue
            at, _ = self._retry.get(key, (0.0, RETRY_MIN))
            if t >= at and ready:
                self._start_attempt(peer, None)

    def _ready(self) -> list:
        return [c for c in self.node.table.relays.values() if c.ready and c.link is not None]

    # ---- RPC -----------------------------------------------------------------------------------------
    def _send_controls(self, client, payloads: list[bytes]) -> bool:
        link = client.link
        if link is None or not client.ready:
            return False
        self.spawn(_send_quietly(client, link, payloads), "discovery send")
        return True

    def _send_peer(self, peer, msg: m.Message) -> bool:
        """``msg`` to ``peer`` in a frame of its own of our session (False: no session or path now)."""
        if peer.path is None or peer.session.state is not SessionState.ESTABLISHED:
            return False
        rest = self.node.pump.offer(peer, [m.encode(msg, m.PEER_MAGIC)])
        if rest is not None:
            self.spawn(rest, "discovery send")
        return True

    def _relay(self, client) -> _Server:
        return _Server(client.key, lambda msg: self._send_controls(client, [m.encode(msg)]))

    def _servers(self) -> list[_Server]:
        """The DHT servers we can ask now: ourselves (with an endpoint), the relays we are linked to, and
        the devices with an endpoint we have an established session with (and that did not go silent)."""
        out = [_Server(self.me, None)] if self.server is not None else []
        out += [self._relay(c) for c in self._ready()]
        t, peers = time.monotonic(), self.node.table.peers
        for key, peer in list(self._device_servers.items()):
            if peers.get(key) is not peer or not peer.endpoint or peer.session.state is not SessionState.ESTABLISHED:
                del self._device_servers[key]        # on_established adds it again with its next session
            elif peer.path is not None and self._silent.get(key, 0.0) <= t:
                out.append(_Server(key, functools.partial(self._send_peer, peer), device=True))
        return out

    def _id(self, key: bytes) -> int:
        i = self._node_ids.get(key)
        if i is None:
            if len(self._node_ids) > 65_536:
                self._node_ids.clear()
            i = self._node_ids[key] = node_id(self.network, key)
        return i

    def _closest(self, key: bytes) -> list[_Server]:
        """The ``K`` servers we can ask closest to ``key``'s id (XOR distance, as Kademlia)."""
        target = self._id(key)
        return sorted(self._servers(), key=lambda s: self._id(s.key) ^ target)[:K]

    async def ask(self, key: bytes, msg: m.Request) -> m.Response | None:
        """Send ``msg`` to the server ``key`` (a relay, a device server, or ourselves); its answer or None."""
        server = next((s for s in self._servers() if s.key == key), None)
        return await self._request(server, msg) if server is not None else None

    async def _request(self, server: _Server, msg: m.Request) -> m.Response | None:
        req = next(self._ids) & 0xFFFFFFFF
        msg = dataclasses.replace(msg, req_id=req)
        if server.send is None:
            assert self.server is not None
            return self.server.handle(self.me, msg, time.time())
        fut = asyncio.get_running_loop().create_future()
        self._waiting[req] = (server.key, fut)
        try:
            if not server.send(msg):
                return None
            return await asyncio.wait_for(fut, REQUEST_TIMEOUT)
        except TimeoutError:
            if server.device:
                self._silent[server.key] = time.monotonic() + SILENT_SECONDS
            return None
        finally:
            self._waiting.pop(req, None)

    async def _store_on(self, servers: list[_Server], raw: bytes) -> int:
        """STORE ``raw`` on ``servers`` at once; how many kept it."""
        async with asyncio.TaskGroup() as group:
            asks = [group.create_task(self._request(s, m.Store(raw))) for s in servers]
        return sum(1 for a in asks if isinstance(r := a.result(), m.Stored) and r.verdict.kept)

    # ---- records -------------------------------------------------------------------------------------
    def candidates(self) -> list[tuple[str, int]]:
        return list(dict.fromkeys(self.observed.values()))

    async def publish(self) -> int:
        try:
            t = time.time()
            self.seq = max(self.seq + 1, int(t * 1000))
            eps = [self.node.endpoint] if self.node.endpoint else []
            eps += [f"tcp:{ip}:{port}" for ip, port in self.candidates()]
            rec = sign(self.node.identity, RecordKind.DEVICE, self.network, self.seq, int(t) + RECORD_TTL,
                       endpoints=eps[:8], relays=[c.key for c in self._ready()][:8])
            raw = rec.encode()
            self._dirty = False
            if self.server is not None:
                self.server.seed()
            targets = self._closest(self.me)
            self._offered = {s.key for s in targets}
            stored = await self._store_on(targets, raw)
            if stored:
                self.record = rec
                self.publishes += 1
                self._next_publish = time.monotonic() + REFRESH_SECONDS
            else:
                self._next_publish = time.monotonic() + RETRY_MIN
            return stored
        finally:
            self._publishing = False

    async def lookup(self, key: bytes) -> EndpointRecord | None:
        """The live, verified record of a trusted ``key`` (None if no server we can ask has one)."""
        self.lookups += 1
        for server in self._closest(key):
            rec = self._checked(await self._request(server, m.FindValue(key)), key)
            if rec is not None:
                return rec
        return None

    async def fetch_hints(self) -> None:
        for client in self._ready():
            rec = await self.lookup_at(client, client.key)
            if rec is not None and rec.kind is RecordKind.RELAY:
                client.hint_penalty = hint_penalty(rec.load, rec.price)

    async def lookup_at(self, client, key: bytes) -> EndpointRecord | None:
        """``key``'s record as the relay ``client`` (a node.relays.RelayClient) has it."""
        return self._checked(await self._request(self._relay(client), m.FindValue(key)), key)

    def _checked(self, resp: m.Response | None, key: bytes) -> EndpointRecord | None:
        if not isinstance(resp, m.Value):
            return None
        try:
            rec = decode(resp.record)
            rec.check(self.network, time.time())
        except DiscoveryError:
            return None
        return rec if rec.public_key == key and self.node.trust.is_trusted(key) else None

    # ---- direct upgrade ------------------------------------------------------------------------------
    def _start_attempt(self, peer, theirs) -> None:
        self._force.discard(peer.key)
        _, backoff = self._retry.get(peer.key, (0.0, RETRY_MIN))
        self._retry[peer.key] = (time.monotonic() + backoff, min(backoff * 2, RETRY_MAX))
        task = self.spawn(self._attempt(peer, theirs), f"punch {peer.key.hex()[:8]}")
        if task is not None:
            self._attempts[peer.key] = task

    async def _attempt(self, peer, theirs) -> None:
        self.attempts += 1
        key = peer.key
        if theirs is None:
            fut = self._answers[key] = asyncio.get_running_loop().create_future()
            offer = [m.encode(self.puncher.candidates(key, self.candidates(), False))]
            if not any([self._send_controls(c, offer) for c in self._ready()]):
                return
            try:
                theirs = await asyncio.wait_for(fut, ANSWER_TIMEOUT)
            except TimeoutError:
                return
            finally:
                self._answers.pop(key, None)
        client = self.me < key
        link = await self.puncher.punch(key, list(theirs), client=client, hello=lambda: self._hello(peer),
                                        authenticate=lambda hello: self._authenticate(peer, hello),
                                        on_link=lambda link: self._serve(peer, link), timeout=PUNCH_TIMEOUT)
        if link is None:
            log.info("peer %s: no direct path through the NATs this time; staying on the relay", key.hex()[:8])
            return
        if client:
            try:
                first = await asyncio.wait_for(link.recv(), REQUEST_TIMEOUT)
                peer.session.open(first, now())
            except (TimeoutError, ProtocolError, LinkClosedError):
                await link.close()
                return
            # served by its own task: the attempt ends here, so a new one can start while this link is up
            # (a renumbering, or the peer's offer after its own) instead of waiting for the link to die
            if self.spawn(self._serve(peer, link), f"direct {key.hex()[:8]}") is None:
                link.abort()

    def _hello(self, peer) -> bytes:
        frame = peer.session.keepalive(now())
        return bytes(frame) if frame is not None else b""

    def _authenticate(self, peer, hello: bytes):
        try:
            peer.session.open(hello, now())
        except ProtocolError:
            return None
        frame = peer.session.keepalive(now())
        return ([bytes(frame)] if frame is not None else []), peer.key

    async def _serve(self, peer, link) -> None:
        if peer.key not in self.node.table.peers:
            await link.close()
            return
        self.directs += 1
        self._retry[peer.key] = (0.0, RETRY_MIN)
        since = self.wanted.get(peer.key)
        if since is not None:
            self.time_to_direct[peer.key] = time.monotonic() - since
        log.info("peer %s: direct path through the NATs (no re-key)", peer.key.hex()[:8])
        await self.node.links.run_direct(peer, link)
        self.wanted[peer.key] = time.monotonic()

    def status(self) -> dict:
        return {"observed": [f"{ip}:{port}" for ip, port in self.candidates()], "seq": self.seq,
                "publishes": self.publishes, "lookups": self.lookups, "attempts": self.attempts,
                "directs": self.directs, "punch_port": self.puncher.port,
                "dht_server": self.server.status() if self.server is not None else None,
                "device_servers": len(self._device_servers),
                "time_to_direct": {k.hex(): round(v, 3) for k, v in self.time_to_direct.items()}}


def _moved(link, addresses) -> bool:
    """True if ``link``'s remote IP is known and is none of the peer's offered ``addresses``."""
    remote = getattr(link, "remote_address", None)
    if not isinstance(remote, tuple) or not remote or not addresses:
        return False
    return all(str(a[0]) != str(remote[0]) for a in addresses)


def hint_penalty(load: int, price: int) -> float:
    return LOAD_PENALTY * min(load, 1000) / 1000 + min(price / PRICE_UNIT, 10) * 0.001


async def _send_quietly(client, link, payloads: list[bytes]) -> None:
    try:
        await client.send_controls(link, payloads)
    except LinkClosedError:
        pass
