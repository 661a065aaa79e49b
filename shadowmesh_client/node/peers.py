"""Peers of the node: one end-to-end Session per peer, the paths that can carry its frames, and the
choice between them (spec "Data Plane": direct when reachable, else through a relay).

A **path** is a way to put one protocol frame on the wire towards a peer:

* ``DirectPath``: a WebSocket link straight to the peer (either side may have dialled it);
* ``RelayPath``: our link to a relay; frames go out wrapped in a FORWARD envelope.

The Session does not care which path a frame took (its keys are end to end), so failing over, or
coming back to the direct path, is only a change of ``PeerState.path``: no new handshake, no lost key.

Path choice (``PeerState.select``): every usable path gets an RTT estimate from its WebSocket
heartbeat (``Link.latency``): the direct link's own RTT, or twice our RTT to the relay plus
``RELAY_RTT_PENALTY`` (we cannot see the relay's other leg). The lowest estimate wins; a direct link
with no measurement yet counts as 0 (it is preferred until measured). Re-selected on every link change
and every housekeeping tick, never per packet.

Who dials whom (one link per peer pair, deterministic): a peer with a published endpoint is dialled by
us if we publish none, or if both publish one and our public key is the lower. The other side only
accepts. A duplicate link (restarts, races) replaces the older one.

``PeerTable`` holds the node's peers, routes and relay clients: node/reconcile.py keeps it in line with
the directory, node/links.py and the pump read it (and create a peer for a trusted sender's handshake).

May import: protocol, relay (envelope), transport (Link), node.settings. Not task-safe beyond the event
loop: everything here runs on the node's loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shadowmesh_client.node.settings import RELAY_RTT_PENALTY
from shadowmesh_client.protocol import ProtocolConfig, Session, SessionState
from shadowmesh_client.protocol.floors import HandshakeFloors
from shadowmesh_client.relay import encode_forward
from shadowmesh_client.transport import Link, LinkClosedError

if TYPE_CHECKING:
    from shadowmesh_client.node.tasks import Running

log = logging.getLogger(__name__)


class DirectPath:
    __slots__ = ("link", "name")

    def __init__(self, link: Link) -> None:
        self.link = link
        self.name = "direct"

    @property
    def up(self) -> bool:
        return not self.link.closed

    def rtt(self) -> float:
        return self.link.latency

    def send_nowait(self, frame) -> bool:
        """Send now if the link has room; False (nothing sent) means: await ``send``."""
        return self.link.send_nowait(frame)

    async def send(self, frame) -> None:
        await self.link.send(frame)


class RelayPath:
    """Frames for ``peer_key`` through the relay link held by ``relay`` (a node.relays.RelayClient)."""

    __slots__ = ("relay", "peer_key", "name")

    def __init__(self, relay, peer_key: bytes) -> None:
        self.relay = relay
        self.peer_key = peer_key
        self.name = f"relay:{relay.key.hex()[:8]}"

    @property
    def up(self) -> bool:
        link = self.relay.link
        return link is not None and not link.closed and self.relay.ready

    def rtt(self) -> float:
        link = self.relay.link
        return 2 * (link.latency if link is not None else 0.0) + RELAY_RTT_PENALTY

    def send_nowait(self, frame) -> bool:
        """Send now if the relay link has room; False (nothing sent) means: await ``send``."""
        link = self.relay.link
        return link is not None and link.send_nowait(encode_forward(self.peer_key, frame))

    async def send(self, frame) -> None:
        link = self.relay.link
        if link is None:
            raise LinkClosedError("relay link is down")
        await link.send(encode_forward(self.peer_key, frame))


class PeerState:
    """One peer: its session, its direct link (if any), the relays, and the chosen path."""

    __slots__ = ("key", "overlay", "endpoint", "session", "direct", "path", "established_at",
                 "dialer", "_identity", "_config", "_trust", "relay_paths", "sessions_started", "_floors",
                 "cookie")

    def __init__(self, key: bytes, identity, config: ProtocolConfig, trust,
                 floors: HandshakeFloors | None = None) -> None:
        self.key = key
        self._floors = floors   # the node's handshake floors (replays across sessions and restarts)
        self.cookie: bytes | None = None   # the peer's last cookie reply (protocol/cookie.py), echoed once
        self.overlay: str | None = None
        self.endpoint: str | None = None
        self._identity = identity
        self._config = config
        self._trust = trust
        self.sessions_started = 0
        self.session = self.new_session()
        self.direct: DirectPath | None = None
        self.relay_paths: list[RelayPath] = []
        self.path: DirectPath | RelayPath | None = None
        self.established_at: float | None = None
        self.dialer: Running | None = None  # node.tasks.Running (a ReconnectingClient) when we dial this peer

    def new_session(self) -> Session:
        self.sessions_started += 1
        self.session = Session(self._identity, self.key, self._config, self._trust, floors=self._floors)
        return self.session

    def usable_session(self) -> Session:
        """The session, replaced by a fresh one if the old one was closed or gave up."""
        s = self.session
        if s.state is SessionState.CLOSED or s.state is SessionState.FAILED:
            s = self.new_session()
        return s

    # ---- paths ----------------------------------------------------------------------------------------
    def attach_direct(self, link: Link) -> Link | None:
        """Use ``link`` as the direct path; returns the link it replaces (caller closes it)."""
        old = self.direct.link if self.direct is not None else None
        self.direct = DirectPath(link)
        self.select()
        return old if old is not link else None

    def detach_direct(self, link: Link) -> None:
        if self.direct is not None and self.direct.link is link:
            self.direct = None
            self.select()

    def select(self) -> None:
        """Pick the path with the lowest RTT estimate (see module docstring)."""
        best, best_rtt = None, float("inf")
        d = self.direct
        if d is not None and d.up:
            best, best_rtt = d, d.rtt()
        for rp in self.relay_paths:
            if rp.up:
                r = rp.rtt()
                if r < best_rtt:
                    best, best_rtt = rp, r
        if best is not self.path:
            old = self.path.name if self.path is not None else "none"
            new = best.name if best is not None else "none"
            log.info("peer %s: path %s -> %s", self.key.hex()[:8], old, new)
            self.path = best

    def status(self, now: float) -> dict:
        s = self.session
        c = s.counters
        return {
            "public_key": self.key.hex(), "overlay": self.overlay, "endpoint": self.endpoint,
            "session": s.state.value, "path": self.path.name if self.path is not None else None,
            "direct": self.direct is not None and self.direct.up,
            "direct_rtt_ms": round(self.direct.rtt() * 1000, 3) if self.direct is not None else None,
            "relay_paths": [{"name": p.name, "up": p.up, "rtt_ms": round(p.rtt() * 1000, 3)} for p in self.relay_paths],
            "established_at": self.established_at, "sessions_started": self.sessions_started,
            "sent_packets": c.sent_packets, "delivered_packets": c.delivered_packets, "dropped": c.dropped,
            "handshakes": c.handshakes, "rekeys": c.rekeys,
        }


class PeerTable:
    """``peers`` {public key: PeerState}, ``routes`` {4-byte overlay address: PeerState} (the pump's one
    dict lookup per packet), ``relays`` {relay key: node.relays.RelayClient}. ``trust(key) -> bool`` is
    every Session's trust callback (directory.trust.TrustPolicy.is_trusted)."""

    __slots__ = ("identity", "config", "trust", "peers", "routes", "relays", "floors")

    def __init__(self, identity, config: ProtocolConfig, trust: Callable[[bytes], bool],
                 floors: HandshakeFloors | None = None) -> None:
        self.identity = identity
        self.floors = floors if floors is not None else HandshakeFloors()
        self.config = config
        self.trust = trust
        self.peers: dict[bytes, PeerState] = {}
        self.routes: dict[bytes, PeerState] = {}
        self.relays: dict = {}

    def peer(self, key: bytes) -> PeerState:
        """The peer for ``key``, created (with a path through every relay) if new. The caller checked trust."""
        peer = self.peers.get(key)
        if peer is None:
            peer = self.peers[key] = PeerState(key, self.identity, self.config, self.trust, self.floors)
            peer.relay_paths = [RelayPath(r, key) for r in self.relays.values()]
            peer.select()
        return peer

    def remove(self, key: bytes) -> PeerState | None:
        """Forget the peer for ``key`` and every route to it; returns it (or None)."""
        peer = self.peers.pop(key, None)
        if peer is not None:
            for addr in [a for a, p in self.routes.items() if p is peer]:
                del self.routes[addr]
        return peer

    def reselect(self) -> None:
        """Re-run every peer's path choice (after a relay link changed, or on the housekeeping period)."""
        for peer in self.peers.values():
            peer.select()


def should_dial(my_key: bytes, my_endpoint: str | None, peer_key: bytes, peer_endpoint: str | None) -> bool:
    """True if this node dials the peer (see module docstring): exactly one side dials a given pair."""
    if not peer_endpoint:
        return False
    if not my_endpoint:
        return True
    return my_key < peer_key


def now() -> float:
    """The protocol clock: wall-clock seconds (handshake timestamps must grow across restarts)."""
    return time.time()
