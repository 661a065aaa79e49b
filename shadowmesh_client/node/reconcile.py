"""The directory's view turned into the node's peers, routes, dialers and relay clients, and back out.

Spec "Network Layer", "Security Architecture (Zero-Trust Model)". ``refresh`` (on every directory change)
makes the PeerTable match the directory:

* ``peers`` for every trusted device of the network except us and relays, ``routes`` by overlay address;
* one dialer (``links.dialer``, run as a task of the node's group) per peer we dial (``peers.should_dial``);
* one ``RelayClient`` per relay the directory lists (devices registered with the relay flag and an
  endpoint; limited to ``settings.relays`` when set), whose ``RelayPath`` is offered to every peer.

Trust: every decision asks the one ``directory.trust.TrustPolicy``. ``sweep`` (every ``PATH_SECONDS``,
for registrations that expire without an event) drops the keys it no longer trusts. A peer that stops
being trusted (revoked, suspended, expired, reorged away) is closed at once: removed from the table and
the routes, its session closed (CLOSE frame sent if the path has room), then, in a task of the group, the
rest of the CLOSE frame, its dialer and its direct link. Nothing here awaits one peer's link, so a
backpressured peer never delays another peer's revocation.

May import: directory.trust, protocol, transport, node.peers, node.links, node.relays, node.settings,
node.tasks. Not task-safe beyond the event loop (the directory is only touched on the loop too).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from shadowmesh_client.directory.core import Peer
from shadowmesh_client.directory.trust import TrustPolicy
from shadowmesh_client.node.links import PeerLinks
from shadowmesh_client.node.peers import PeerState, PeerTable, RelayPath, now, should_dial
from shadowmesh_client.node.relays import RelayClient
from shadowmesh_client.node.settings import NodeSettings
from shadowmesh_client.node.tasks import Running, Spawner
from shadowmesh_client.protocol import ProtocolConfig
from shadowmesh_client.transport import CLOSE_REVOKED, LinkClosedError

log = logging.getLogger(__name__)

CLOSE_SEND_TIMEOUT = 1.0
"""Seconds a closing peer's CLOSE frame may wait for room on its path before it is dropped."""


class Reconciler:
    """Keeps ``table`` in line with the directory behind ``trust``. ``on_relay_control`` (payments) is given
    to every relay client; ``on_session()`` to relay clients for the timer task."""

    def __init__(self, identity, table: PeerTable, trust: TrustPolicy, links: PeerLinks, config: ProtocolConfig,
                 settings: NodeSettings, my_endpoint: str | None, spawn: Spawner,
                 on_session: Callable[[], None] = lambda: None) -> None:
        self.identity = identity
        self.me = identity.public_key
        self.table = table
        self.trust = trust
        self.links = links
        self.config = config
        self.settings = settings
        self.my_endpoint = my_endpoint
        self._spawn = spawn
        self._on_session = on_session
        self.on_relay_control: Callable[[bytes, bytes], Awaitable[list[bytes]]] | None = None   # payments
        self.peers_closed = 0
        # ---- issue 15 hooks (discovery/service.py attach): None unless settings.on_demand / discovery ----
        self.ondemand = None   # discovery.ondemand.OnDemand
        self.relay_dial = None   # dial relays from the punch port (NAT-mapped address = the relay's view)
        self.on_relay_discovery = None   # discovery messages from relays
        self.on_peer_gone: Callable[[bytes], None] | None = None   # streams of a removed peer (userspace/)

    # ---- directory -> table ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Bring peers, routes, dialers and relay clients in line with the directory (idempotent)."""
        table = self.table
        wanted: dict[bytes, Peer] = {}
        relays: dict[bytes, Peer] = {}
        for p in self.trust.directory.peers(self.trust.now()):
            if p.public_key == self.me:
                continue
            if p.relay:
                if p.endpoint and (not self.settings.relays or p.endpoint in self.settings.relays):
                    relays[p.public_key] = p
            else:
                wanted[p.public_key] = p
        for key in [k for k in table.relays if k not in relays]:
            self.drop_relay(key)
        for key, p in relays.items():
            if key not in table.relays:
                self._add_relay(key, p.endpoint or "")
        for key in [k for k in table.peers if k not in wanted]:
            self.close_peer(key, "no longer trusted by the directory")
        routes = {}
        for key, p in wanted.items():
            peer = table.peer(key)
            peer.overlay = str(p.overlay_address)
            routes[p.overlay_address.packed] = peer
            if peer.endpoint != p.endpoint:
                peer.endpoint = p.endpoint
                self._stop_dialer(peer)
            if peer.dialer is None and p.endpoint and should_dial(self.me, self.my_endpoint, key, p.endpoint) \
                    and (self.ondemand is None or self.ondemand.want_dialer_now(peer)):   # issue 15: on demand
                peer.dialer = Running(self.links.dialer(peer, p.endpoint), self._spawn, f"dial {key.hex()[:8]}")
        if routes != table.routes:
            table.routes.clear()
            table.routes.update(routes)

    def on_directory_change(self, change) -> None:
        """Directory subscriber (runs on the loop, inside a sync round): re-derive everything now."""
        self.refresh()

    def sweep(self) -> None:
        """Drop every peer and relay the trust policy no longer trusts (expiry has no event)."""
        od = self.ondemand
        if od is None or od.sweep_all_due():
            keys = list(self.table.peers)
        else:   # issue 15, on demand: live sessions every tick, all known devices every CHECK_SECONDS
            keys = [k for k in od.live if k in self.table.peers]
        for key in self.trust.untrusted(keys):
            self.close_peer(key, "no longer trusted by the directory")
        for key in self.trust.untrusted(list(self.table.relays)):
            self.drop_relay(key)
        if od is not None:
            od.sweep()

    # ---- sessions on demand (issue 15; discovery/ondemand.py calls these) ------------------------------
    def start_dialer(self, peer: PeerState) -> None:
        """Start the dialer of a peer we dial (its session just became live), if not running."""
        if peer.dialer is None and peer.endpoint and peer.key in self.table.peers \
                and should_dial(self.me, self.my_endpoint, peer.key, peer.endpoint):
            peer.dialer = Running(self.links.dialer(peer, peer.endpoint), self._spawn, f"dial {peer.key.hex()[:8]}")

    def idle_close(self, peer: PeerState) -> asyncio.Task | None:
        """Drop an idle peer's session (CLOSE frame), dialer and direct link; it stays known (route kept)
        with a fresh NEW session, so its next packet handshakes again."""
        frame = peer.session.close(now())
        path = peer.path
        if frame is not None and path is not None and path.send_nowait(frame):
            frame = None
        peer.new_session()
        dialer, peer.dialer = peer.dialer, None
        direct = peer.direct.link if peer.direct is not None else None
        return self._spawn(self._finish_idle(path, frame, dialer, direct), f"idle {peer.key.hex()[:8]}")

    async def _finish_idle(self, path, frame, dialer: Running | None, direct) -> None:
        if frame is not None and path is not None:
            try:
                await asyncio.wait_for(path.send(frame), CLOSE_SEND_TIMEOUT)
            except (TimeoutError, LinkClosedError):
                pass
        if dialer is not None:
            await dialer.close()
        if direct is not None:
            await direct.close()

    # ---- relays ---------------------------------------------------------------------------------------
    def _add_relay(self, key: bytes, url: str) -> None:
        client = RelayClient(self.identity, key, url, self.config, self.trust,
                             self.links.client_config(url, relay=True),
                             self.links.on_relay_delivery, self.table.reselect,
                             dial=self.relay_dial or self.links.transport.dial,   # issue 15: from the punch port
                             spawn=self._spawn, on_session=self._on_session)
        client.on_control = self.on_relay_control
        client.on_discovery = self.on_relay_discovery   # issue 15 (discovery/service.py), or None
        self.table.relays[key] = client
        for peer in self.table.peers.values():
            peer.relay_paths.append(RelayPath(client, peer.key))
        client.start()
        log.info("relay %s (%s) added", key.hex()[:8], urlsplit(url).netloc)

    def drop_relay(self, key: bytes) -> asyncio.Task | None:
        """Forget the relay now; its client closes in a task of the group (returned)."""
        client = self.table.relays.pop(key, None)
        if client is None:
            return None
        for peer in self.table.peers.values():
            peer.relay_paths = [rp for rp in peer.relay_paths if rp.relay is not client]
            peer.select()
        return self._spawn(client.close(), f"close relay {key.hex()[:8]}")

    # ---- closing --------------------------------------------------------------------------------------
    def close_peer(self, key: bytes, why: str) -> asyncio.Task | None:
        """Close the peer now (table, routes, session); its links close in a task of the group (returned)."""
        peer = self.table.remove(key)
        if peer is None:
            return None
        self.peers_closed += 1
        log.info("closing peer %s: %s", key.hex()[:8], why)
        if self.on_peer_gone is not None:
            self.on_peer_gone(key)
        frame = peer.session.close(now())
        path, peer.path = peer.path, None
        if frame is not None and path is not None and path.send_nowait(frame):
            frame = None
        dialer, peer.dialer = peer.dialer, None
        return self._spawn(self._finish_close(peer, path, frame, dialer), f"close peer {key.hex()[:8]}")

    async def _finish_close(self, peer: PeerState, path, frame, dialer: Running | None) -> None:
        if frame is not None and path is not None:
            try:
                await asyncio.wait_for(path.send(frame), CLOSE_SEND_TIMEOUT)
            except (TimeoutError, LinkClosedError):
                pass
        if dialer is not None:
            await dialer.close()
        if peer.direct is not None:
            await peer.direct.link.close(CLOSE_REVOKED, "")

    def _stop_dialer(self, peer: PeerState) -> None:
        dialer, peer.dialer = peer.dialer, None
        if dialer is not None:
            self._spawn(dialer.close(), f"stop dialer {peer.key.hex()[:8]}")

    async def close_all(self) -> None:
        """Shutdown: CLOSE every session, close every link (peers and relays), and await all of it."""
        tasks = [self.close_peer(key, "shutting down") for key in list(self.table.peers)]
        tasks += [self.drop_relay(key) for key in list(self.table.relays)]
        pending = [t for t in tasks if t is not None]
        if pending:
            await asyncio.wait(pending)

    def status(self) -> dict:
        return {"peers_closed": self.peers_closed}
