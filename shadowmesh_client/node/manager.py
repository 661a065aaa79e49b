"""The peer/session manager: the directory's view turned into peers, routes, dialers and relay links.

Spec "Network Layer", "Security Architecture (Zero-Trust Model)". What it keeps in step with the
directory (``refresh``, on every directory change and every housekeeping tick):

* ``peers`` {public key: PeerState} for every trusted device of the network except us and relays;
* ``routes`` {4-byte overlay address: PeerState} (what the pump looks destinations up in);
* one ``ReconnectingClient`` per peer we dial (``peers.should_dial``), hello = a fresh HANDSHAKE_INIT
  of that peer's session, so the peer's upgrade authentication IS the session handshake;
* one ``RelayClient`` per relay the directory lists (devices registered with the relay flag and an
  endpoint), whose ``RelayPath`` is offered to every peer.

Trust: ``authenticate`` (the LinkServer hook) and ``incoming`` (frames arriving through a relay) accept
only keys ``directory.is_trusted`` says yes to, before any crypto; the Session asks again at every
handshake and rekey. A peer that stops being trusted (revoked, suspended, expired, reorged away) is
closed at once: CLOSE frame, direct link closed, dialer stopped, routes removed. The directory syncs
every ``directory_interval`` seconds, and ``sweep`` re-checks every peer each tick, so this happens
within ~1-2 s of the block that revoked it (issue: <= 10 s).

Not task-safe beyond the event loop (the directory is also only touched on the loop: DirectorySyncer).
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from shadowmesh_client.errors import ProtocolError
from shadowmesh_client.protocol import FrameType, ProtocolConfig, SessionEvent, peek_header
from shadowmesh_client.transport import (
    CLOSE_REPLACED,
    CLOSE_REVOKED,
    ClientConfig,
    Link,
    LinkClosedError,
    ReconnectingClient,
    Transport,
)
from shadowmesh_client.node.peers import PeerState, RelayPath, now, should_dial
from shadowmesh_client.node.relays import RelayClient
from shadowmesh_client.node.settings import NodeSettings

log = logging.getLogger(__name__)


class PeerManager:
    def __init__(self, identity, directory, config: ProtocolConfig, settings: NodeSettings,
                 my_endpoint: str | None, transport: Transport) -> None:
        self.identity = identity
        self.me = identity.public_key
        self.directory = directory
        self.config = config
        self.settings = settings
        self.transport = transport
        self.my_endpoint = my_endpoint
        self.peers: dict[bytes, PeerState] = {}
        self.routes: dict[bytes, PeerState] = {}
        self.relays: dict[bytes, RelayClient] = {}
        self.pump = None  # set by the node once the TUN device is open
        self.on_relay_control = None  # set by the node when it pays relays (node/payments.py)
        self._tasks: set[asyncio.Task] = set()
        self.revoked_closed = 0
        self.auth_refused = 0

    # ---- trust ----------------------------------------------------------------------------------------
    def trusted(self, key: bytes) -> bool:
        return self.directory.is_trusted(key, now())

    def _is_relay(self, key: bytes) -> bool:
        p = self.directory.peer_for_key(key, now())
        return p is not None and p.relay

    def _peer(self, key: bytes) -> PeerState:
        peer = self.peers.get(key)
        if peer is None:
            peer = self.peers[key] = PeerState(key, self.identity, self.config, self.trusted)
            peer.relay_paths = [RelayPath(r, key) for r in self.relays.values()]
            peer.select()
        return peer

    # ---- directory -> peers ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Bring peers, routes, dialers and relay links in line with the directory (idempotent)."""
        t = now()
        wanted: dict[bytes, object] = {}
        relays: dict[bytes, object] = {}
        for p in self.directory.peers(t):
            if p.public_key == self.me:
                continue
            if p.relay:
                if p.endpoint and (not self.settings.relays or p.endpoint in self.settings.relays):
                    relays[p.public_key] = p
            else:
                wanted[p.public_key] = p
        for key in [k for k in self.relays if k not in relays]:
            self._spawn(self._drop_relay(key))
        for key, p in relays.items():
            if key not in self.relays:
                self._add_relay(key, p.endpoint)
        for key in [k for k in self.peers if k not in wanted]:
            self._spawn(self.close_peer(key, "no longer trusted by the directory"))
        routes = {}
        for key, p in wanted.items():
            peer = self._peer(key)
            peer.overlay = str(p.overlay_address)
            routes[p.overlay_address.packed] = peer
            if peer.endpoint != p.endpoint:
                peer.endpoint = p.endpoint
                if peer.dialer is not None:
                    self._spawn(peer.dialer.close())
                    peer.dialer = None
            if peer.dialer is None and should_dial(self.me, self.my_endpoint, key, p.endpoint):
                peer.dialer = self._dialer(peer, p.endpoint)
                peer.dialer.start()
        if routes != self.routes:
            self.routes.clear()
            self.routes.update(routes)

    def _client_config(self, url: str) -> ClientConfig:
        s = self.settings
        return ClientConfig(url, ca_file=s.ca_file if url.startswith("wss:") else None, limits=s.limits,
                            backoff_max=s.backoff_max, stable_after=2.0)

    def _dialer(self, peer: PeerState, url: str) -> ReconnectingClient:
        def hello() -> bytes:
            return peer.usable_session().initiate(now())

        async def on_link(link: Link) -> None:
            await self.run_direct(peer, link)

        return ReconnectingClient(self._client_config(url), hello, on_link, dial=self.transport.dial, peer=peer.key)

    def _add_relay(self, key: bytes, url: str) -> None:
        client = RelayClient(self.identity, key, url, self.config, self.trusted, self._client_config(url),
                             self._on_delivery, self._reselect_all, dial=self.transport.dial)
        client.on_control = self.on_relay_control
        self.relays[key] = client
        for peer in self.peers.values():
            peer.relay_paths.append(RelayPath(client, peer.key))
        client.start()
        log.info("relay %s (%s) added", key.hex()[:8], urlsplit(url).netloc)

    async def _drop_relay(self, key: bytes) -> None:
        client = self.relays.pop(key, None)
        if client is None:
            return
        for peer in self.peers.values():
            peer.relay_paths = [rp for rp in peer.relay_paths if rp.relay is not client]
            peer.select()
        await client.close()

    def _reselect_all(self) -> None:
        for peer in self.peers.values():
            peer.select()

    def on_directory_change(self, change) -> None:
        """Directory subscriber (runs on the loop, inside a sync round): re-derive everything now."""
        self.refresh()

    # ---- closing --------------------------------------------------------------------------------------
    async def close_peer(self, key: bytes, why: str) -> None:
        peer = self.peers.pop(key, None)
        if peer is None:
            return
        self.revoked_closed += 1
        log.info("closing peer %s: %s", key.hex()[:8], why)
        for addr in [a for a, p in self.routes.items() if p is peer]:
            del self.routes[addr]
        frame = peer.session.close(now())
        path = peer.path
        peer.path = None
        if frame is not None and path is not None:
            try:
                await asyncio.wait_for(path.send(frame), 1.0)
            except (LinkClosedError, asyncio.TimeoutError):
                pass
        if peer.dialer is not None:
            await peer.dialer.close()
            peer.dialer = None
        if peer.direct is not None:
            await peer.direct.link.close(CLOSE_REVOKED, "")

    async def close(self) -> None:
        """Shutdown: CLOSE every session, close every link (peers and relays)."""
        for key in list(self.peers):
            await self.close_peer(key, "shutting down")
        for key in list(self.relays):
            await self._drop_relay(key)
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- links and frames ---------------------------------------------------------------------------
    def authenticate(self, hello: bytes):
        """LinkServer hook: a peer's HANDSHAKE_INIT in the upgrade. Returns (response frames, key) or None
        (the prober's answer: a decoy page). Untrusted keys are refused before any crypto."""
        try:
            header = peek_header(hello)
        except ProtocolError:
            self.auth_refused += 1
            return None
        key = header.sender
        if header.type is not FrameType.HANDSHAKE_INIT or key == self.me or not self.trusted(key) \
                or self._is_relay(key):
            self.auth_refused += 1
            return None
        peer = self._peer(key)
        t = now()
        try:
            received = peer.usable_session().open(hello, t)
        except ProtocolError:
            self.auth_refused += 1
            return None
        if received.events:
            self.on_events(peer, received.events, t)
        return received.outgoing, key

    async def on_server_link(self, link: Link) -> None:
        peer = self.peers.get(link.peer)
        if peer is None:  # revoked between the upgrade and now
            await link.close(CLOSE_REVOKED, "")
            return
        await self.run_direct(peer, link)

    async def run_direct(self, peer: PeerState, link: Link) -> None:
        """Serve one direct link for its lifetime (either side dialled it)."""
        old = peer.attach_direct(link)
        if old is not None:
            self._spawn(old.close(CLOSE_REPLACED, ""))
        log.info("peer %s: direct link up (%s)", peer.key.hex()[:8], "dialled" if link.is_client else "accepted")
        on_frame = self.pump.on_frame
        key = peer.key

        def deliver(frame) -> None:  # called from the link's data_received: no task wake-up per frame
            out = on_frame(frame, key)
            if out:
                for i, f in enumerate(out):
                    if not link.send_nowait(f):
                        self._spawn(_send_all(link, out[i:]))
                        break

        try:
            link.deliver_to(deliver)
            await link.wait_closed()
        finally:
            peer.detach_direct(link)
            log.info("peer %s: direct link down", key.hex()[:8])

    def _on_delivery(self, source: bytes, inner, relay: RelayClient):
        out = self.pump.on_frame(inner)
        if out:
            return self._reply_via_relay(relay, source, out)
        return None

    async def _reply_via_relay(self, relay: RelayClient, source: bytes, frames: list) -> None:
        path = RelayPath(relay, source)
        for f in frames:
            try:
                await path.send(f)
            except LinkClosedError:
                return

    def incoming(self, key: bytes, frame) -> PeerState | None:
        """A frame from a key we have no peer for (through a relay): only a trusted device's handshake
        initiation creates one."""
        if frame[0] & 0x0F != int(FrameType.HANDSHAKE_INIT) or not self.trusted(key) or self._is_relay(key):
            return None
        return self._peer(key)

    def on_events(self, peer: PeerState, events: list, t: float) -> None:
        for ev in events:
            if ev is SessionEvent.ESTABLISHED:
                peer.established_at = t
                log.info("peer %s: session established", peer.key.hex()[:8])
            elif ev is SessionEvent.CLOSED:
                log.info("peer %s: session closed by the peer", peer.key.hex()[:8])

    # ---- housekeeping ---------------------------------------------------------------------------------
    async def tick(self) -> None:
        """Trust sweep, session timers, path re-selection. Called every TICK_SECONDS."""
        t = now()
        for key, peer in list(self.peers.items()):
            if not self.directory.is_trusted(key, t):
                await self.close_peer(key, "no longer trusted by the directory")
                continue
            peer.select()
            s = peer.session
            at = s.next_timer_at()
            if at is not None and at <= t:
                frames = s.on_timer(t)
                path = peer.path
                if path is not None:
                    for f in frames:
                        try:
                            await path.send(f)
                        except LinkClosedError:
                            break
        for key in [k for k in self.relays if not self.directory.is_trusted(k, t)]:
            await self._drop_relay(key)

    def status(self) -> dict:
        t = now()
        return {"peers": [p.status(t) for p in self.peers.values()],
                "relays": [r.status() for r in self.relays.values()],
                "auth_refused": self.auth_refused, "peers_closed": self.revoked_closed}


async def _send_all(link: Link, frames: list) -> None:
    """Send ``frames`` in order, waiting for room; stop quietly if the link closed."""
    try:
        for f in frames:
            await link.send(f)
    except LinkClosedError:
        pass
