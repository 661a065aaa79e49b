"""ClusterMesh: one relay member's links to every other member, presence, and one-hop forwarding.

Issue 13 "Cluster"; the design is Tailscale DERP's mesh (docs/cluster.md). Every member DIALS every other
member (``settings.peers``) and ACCEPTS their dials on its mesh listener, so each pair has two links:

* on a link it DIALED, a member receives the peer's presence (PRESENT/GONE: which devices the peer holds)
  and sends FORWARDs for those devices;
* on a link it ACCEPTED, it announces its own devices (all of them when the link opens, then changes,
  coalesced) and receives the peer's FORWARDs.

Routing: a device held by member M is entered in this member's ``RelayCore`` as a route whose link is a
``RemoteRoute`` (M, key). The core then treats it like any device (bounded per-destination queue,
round-robin fairness, budgets, counters) and the server's writer for that device sends through
``RemoteRoute.send``, which wraps the DELIVER the core queued into a mesh FORWARD on the link to M. The
receiving member runs the envelope through its own core for the destination (its queue, its BLOCKs, the
destination's credit), and only if it holds the device ITSELF: a frame crosses at most one member hop.
A local link always wins over a remote route (attach replaces a RemoteRoute; a RemoteRoute is never
attached over a local link); when a local link goes and another member holds the device, the remote
route comes back. When a member's link drops, every route to it is removed: its devices reconnect
through the load balancer to the others, whose PRESENT puts the routes back.

Hooks: ``RelayServer(presence=mesh.on_presence)`` calls ``on_presence(key, present)`` when a device's
local link attaches or detaches. Counters (``status()``): frames and bytes sent to / received from
members, drops by reason (``not_here``: destination not held here any more; ``no_member``: no link to
the member holding it).

Tasks: ``run()`` owns one ReconnectingClient per peer in a TaskGroup; the listener's link handlers are
awaited by ``close()`` (server.close). One event loop; not thread-safe.

May import: relay (core, server types), relay.cluster.wire/settings, transport (base, config, errors,
reconnect), directory.trust, crypto.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from shadowmesh_client.crypto import Identity
from shadowmesh_client.directory.trust import TrustPolicy
from shadowmesh_client.relay.cluster import wire
from shadowmesh_client.relay.cluster.settings import ClusterSettings, mesh_link_limits, mesh_path
from shadowmesh_client.relay.core import DeviceUsage, Forwarded
from shadowmesh_client.transport.base import Link, Transport
from shadowmesh_client.transport.config import ClientConfig, LinkLimits, ServerConfig
from shadowmesh_client.transport.errors import LinkClosedError
from shadowmesh_client.transport.reconnect import ReconnectingClient

log = logging.getLogger(__name__)

MESH_BACKOFF_MAX = 2.0
"""Seconds: cap of the redial delay to a member (members restart fast; devices wait on presence)."""


class RemoteRoute:
    """The core's 'link' for a device another member holds: ``send`` goes over the mesh link to it."""

    __slots__ = ("mesh", "member", "peer")
    closed = False

    def __init__(self, mesh: ClusterMesh, member: bytes, key: bytes) -> None:
        self.mesh = mesh
        self.member = member          # member id holding the device
        self.peer = key               # the device key (as a device link's ``peer``)

    async def send(self, message: bytes) -> None:
        """``message``: the DELIVER envelope the core queued for this device. Raises LinkClosedError when
        there is no link to the member (the writer stops; the routes go when the member's link does)."""
        link = self.mesh.dialed.get(self.member)
        if link is None:
            self.mesh.drops["no_member"] += 1
            raise LinkClosedError("no mesh link to the member holding this device")
        frame = wire.forward_from_deliver(self.peer, message)
        self.mesh.sent_frames += 1
        self.mesh.sent_bytes += len(frame)
        await link.send(frame)

    def send_nowait(self, message: bytes) -> bool:
        """The server's fast path (``RelayServer._kick``): send now if the mesh link has room."""
        link = self.mesh.dialed.get(self.member)
        if link is None:
            return False   # the writer's ``send`` then ends it (LinkClosedError)
        frame = wire.forward_from_deliver(self.peer, message)
        if not link.send_nowait(frame):
            return False
        self.mesh.sent_frames += 1
        self.mesh.sent_bytes += len(frame)
        return True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Replaced by a local link (CLOSE_REPLACED) or disconnected: nothing to close here."""

    def __repr__(self) -> str:
        return f"<RemoteRoute {self.peer.hex()[:8]} at member {self.member.hex()[:8]}>"


class _Outbox:
    """Presence changes not yet announced on one accepted link (key -> present), coalesced."""

    __slots__ = ("pending", "ready")

    def __init__(self, keys: set[bytes]) -> None:
        self.pending: dict[bytes, bool] = dict.fromkeys(keys, True)
        self.ready = asyncio.Event()
        if keys:
            self.ready.set()


class ClusterMesh:
    def __init__(self, identity: Identity, trust: TrustPolicy, server: Any, settings: ClusterSettings,
                 binding: bytes, *, transport: Transport | None = None, device_limits: LinkLimits | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``server``: the member's RelayServer (its ``core``, ``links``, ``now()``, ``kick()``);
        ``binding``: the network binding (chain id, registry, network id) mixed into the signatures."""
        self.identity = identity
        self.trust = trust
        self.server = server
        self.settings = settings
        self.binding = binding
        self.member_id = os.urandom(wire.MEMBER_ID_BYTES)   # per process start: a restarted member is new
        self.limits = mesh_link_limits(device_limits or LinkLimits())
        self.path = settings.path or mesh_path(identity)
        self._clock = clock
        if transport is None:
            from shadowmesh_client.transport.ws import WebSocketTransport

            transport = WebSocketTransport()
        self.transport = transport
        self._nonces = wire.NonceCache()
        self.local: set[bytes] = set()                       # devices whose link is on this member
        self.held: dict[bytes, set[bytes]] = {}              # member id -> devices it announced (dialed links)
        self.where: dict[bytes, bytes] = {}                  # device key -> member id holding it (last announced)
        self.dialed: dict[bytes, Link] = {}                  # member id -> the link this member dialed to it
        self._outboxes: dict[Link, _Outbox] = {}             # accepted links -> presence to announce
        urls = self._peer_urls()
        self._hellos: list[wire.Hello | None] = [None] * len(urls)   # per peer: our hello in flight
        self.clients = [ReconnectingClient(self._client_config(url), functools.partial(self._hello, i),
                                           functools.partial(self._on_dialed, i), dial=transport.dial)
                        for i, url in enumerate(urls)]
        self.listener = transport.server(
            ServerConfig(host=settings.host, port=settings.port, path=self.path, tls_cert=settings.tls_cert,
                         tls_key=settings.tls_key, limits=self.limits),
            self._authenticate, self._on_accepted)
        self.sent_frames = self.sent_bytes = self.received_frames = self.received_bytes = 0
        self.drops: Counter[str] = Counter()
        self.refused = 0

    # ---- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen for the other members (call after the RelayServer started)."""
        await self.listener.start()
        log.info("cluster member %s: mesh on %s, %d peer(s)", self.member_id.hex()[:8], self.settings.listen,
                 len(self.clients))

    async def run(self) -> None:
        """Keep a link to every peer until cancelled (the daemon's supervisor owns this task)."""
        async with asyncio.TaskGroup() as group:
            for client in self.clients:
                group.create_task(client.run())
            await asyncio.Event().wait()   # until cancelled: the group then cancels and awaits the dialers

    async def close(self) -> None:
        """Close the listener (awaits its link handlers) and drop every remote route. Call after ``run``
        was cancelled and awaited, before the RelayServer closes."""
        await self.listener.close()
        for member in list(self.held):
            self._member_gone(member)

    def _peer_urls(self) -> list[str]:
        own = {f"{self.settings.host}:{self.settings.port}", f"127.0.0.1:{self.settings.port}"}
        urls = []
        for peer in self.settings.peers:
            base = peer.rstrip("/")
            if base.split("://", 1)[-1] in own:
                continue
            urls.append(base if base.count("/") > 2 else base + self.path)
        return urls

    def _client_config(self, url: str) -> ClientConfig:
        return ClientConfig(url, ca_file=self.settings.ca_file if url.startswith("wss://") else None,
                            limits=self.limits, backoff_initial=0.1, backoff_max=MESH_BACKOFF_MAX)

    # ---- opening --------------------------------------------------------------------------------------
    def _relay_trusted(self) -> bool:
        peer = self.trust.peer(self.identity.public_key)
        return peer is not None and peer.relay

    def _hello(self, peer: int) -> bytes:
        """A fresh hello for peer number ``peer`` (ReconnectingClient asks before every dial)."""
        nonce = os.urandom(wire.NONCE_BYTES)
        hello = wire.make_hello(self.identity, self.binding, self.member_id, self._clock(), nonce)
        self._hellos[peer] = wire.Hello(self.member_id, 0, nonce)
        return hello

    def _authenticate(self, hello: bytes):
        """Accept a mesh link from a member holding the relay key (while the registry lists it as a relay)."""
        now = self._clock()
        try:
            opened = wire.open_hello(hello, self.identity.public_key, self.binding, now)
        except wire.ClusterWireError as exc:
            self.refused += 1
            log.info("cluster: refused a mesh link: %s", exc)
            return None
        if opened.member_id == self.member_id or not self._relay_trusted() or not self._nonces.fresh(opened.nonce, now):
            self.refused += 1
            return None
        return wire.make_welcome(self.identity, self.binding, self.member_id, opened), opened.member_id

    # ---- links this member dialed: the peer's presence in, FORWARDs out ------------------------------
    async def _on_dialed(self, peer: int, link: Link) -> None:
        first = await link.recv()
        hello, self._hellos[peer] = self._hellos[peer], None
        try:
            if hello is None:
                raise wire.ClusterWireError("no hello in flight")
            member = wire.open_welcome(first, self.identity.public_key, self.binding, hello)
        except wire.ClusterWireError as exc:
            log.warning("cluster: peer %s answered without a valid welcome (%s); closing",
                        self.clients[peer].config.url, exc)
            return
        if member == self.member_id or member in self.dialed:
            return   # ourselves (own URL in the peer list), or a second URL for a member already linked
        self.dialed[member] = link
        self.held.setdefault(member, set())
        log.info("cluster: linked to member %s (%s)", member.hex()[:8], link.remote_address)
        try:
            link.deliver_to(lambda message: self._on_presence_message(member, message))
            await link.wait_closed()
        finally:
            if self.dialed.get(member) is link:
                del self.dialed[member]
                self._member_gone(member)
                log.warning("cluster: lost member %s", member.hex()[:8])

    def _on_presence_message(self, member: bytes, message: bytes) -> None:
        kind, keys = wire.decode_presence(message)   # a malformed one aborts the link (deliver_to)
        if kind == wire.PRESENT:
            for key in keys:
                self._remote_present(member, key)
        else:
            for key in keys:
                self._remote_gone(member, key)

    def _remote_present(self, member: bytes, key: bytes) -> None:
        self.held.setdefault(member, set()).add(key)
        self.where[key] = member
        core = self.server.core
        current = core.link_of(key)
        if current is None or (type(current) is RemoteRoute and current.member != member):
            core.attach(key, RemoteRoute(self, member, key), self.server.now())

    def _remote_gone(self, member: bytes, key: bytes) -> None:
        held = self.held.get(member)
        if held is not None:
            held.discard(key)
        if self.where.get(key) == member:
            del self.where[key]
            for other, keys in self.held.items():   # still announced by another member (a move)
                if key in keys:
                    self.where[key] = other
                    break
        core = self.server.core
        current = core.link_of(key)
        if type(current) is RemoteRoute and current.member == member:
            core.detach(key, current)
            holder = self.where.get(key)
            if holder is not None:
                core.attach(key, RemoteRoute(self, holder, key), self.server.now())

    def _member_gone(self, member: bytes) -> None:
        for key in list(self.held.get(member, ())):
            self._remote_gone(member, key)
        self.held.pop(member, None)

    # ---- links other members dialed: our presence out, their FORWARDs in -----------------------------
    async def _on_accepted(self, link: Link) -> None:
        member: bytes = link.peer
        outbox = self._outboxes[link] = _Outbox(set(self.local))
        link.deliver_to(lambda message: self._on_forward(member, message))
        closed = asyncio.ensure_future(link.wait_closed())
        try:
            while not link.closed:
                ready = asyncio.ensure_future(outbox.ready.wait())
                await asyncio.wait([ready, closed], return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
                if link.closed:
                    break
                outbox.ready.clear()
                pending, outbox.pending = outbox.pending, {}
                for kind, present in ((wire.PRESENT, True), (wire.GONE, False)):
                    keys = [k for k, p in pending.items() if p is present]
                    for message in wire.encode_presence(kind, keys, self.limits.max_message_bytes):
                        await link.send(message)
        except LinkClosedError:
            pass
        finally:
            closed.cancel()
            await asyncio.gather(closed, return_exceptions=True)
            self._outboxes.pop(link, None)

    def _on_forward(self, member: bytes, message: bytes) -> None:
        """A FORWARD from ``member``: deliver to a device held HERE, through the core; never on."""
        source, destination, envelope = wire.decode_forward(message)
        self.received_frames += 1
        self.received_bytes += len(message)
        server = self.server
        core = server.core
        if core.link_of(destination) not in server.links:
            self.drops["not_here"] += 1     # moved or gone meanwhile: one hop only, so it ends here
            return
        if source not in core:              # its PRESENT may still be on the way (another link)
            core.attach(source, RemoteRoute(self, member, source), server.now())
        result = core.on_message(source, envelope, server.now())
        if type(result) is Forwarded:
            server.kick(destination)

    # ---- this member's devices -------------------------------------------------------------------------
    def on_presence(self, key: bytes, present: bool) -> None:
        """RelayServer hook: a device's local link attached (True) or detached (False)."""
        if present:
            self.local.add(key)
        else:
            self.local.discard(key)
            member = self.where.get(key)
            core = self.server.core
            if member is not None and core.link_of(key) is None:   # it moved to another member
                core.attach(key, RemoteRoute(self, member, key), self.server.now())
        for outbox in self._outboxes.values():
            outbox.pending[key] = present
            outbox.ready.set()

    def is_remote(self, key: bytes) -> bool:
        return type(self.server.core.link_of(key)) is RemoteRoute

    def local_usage(self, usage: dict[bytes, DeviceUsage]) -> dict[bytes, DeviceUsage]:
        """``core.take_usage()`` without the bytes of devices routed to other members (the member holding
        a device bills it: each byte once per direction); their drops are kept (this member's drops)."""
        return {key: (DeviceUsage(dropped=u.dropped) if self.is_remote(key) else u) for key, u in usage.items()}

    # ---- observation ------------------------------------------------------------------------------------
    def status(self) -> dict:
        return {"member_id": self.member_id.hex(), "listen": self.settings.listen, "worker": self.settings.worker,
                "members_linked": sorted(m.hex() for m in self.dialed),
                "members_accepted": len(self._outboxes), "peers_configured": len(self.clients),
                "devices_local": len(self.local), "devices_remote": len(self.where),
                "forwarded_frames": self.sent_frames, "forwarded_bytes": self.sent_bytes,
                "received_frames": self.received_frames, "received_bytes": self.received_bytes,
                "drops": dict(self.drops), "refused": self.refused}
