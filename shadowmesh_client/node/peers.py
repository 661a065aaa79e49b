"""Peers of the node: one end-to-end Session per peer, the paths that can carry its frames, and the
choice between them (spec "Data Plane": direct when reachable, else through a relay).

A **path** is a way to put one protocol frame on the wire towards a peer:

* ``DirectPath``: a WebSocket link straight to the peer (either side may have dialled it);
* ``RelayPath``: our link to a relay; frames go out wrapped in a FORWARD envelope.

The Session does not care which path a frame took (its keys are end to end), so failing over, or
coming back to the direct path, is only a change of ``PeerState.path``: no new handshake, no lost key.

Path choice (``PeerState.select``; issue 11 "billing during the direct test"):

* the **direct** path is used whenever its link is up, whatever its RTT. A relay is paid per byte and a
  heartbeat RTT is a poor judge of a busy link: the pong queues behind up to ``LINK_WRITE_LIMIT`` of data,
  so a loaded direct link measures tens of ms while the idle relay link measures 1. Choosing by the latest
  RTT flipped bulk transfers onto the relay (and onto the bill). A direct link that stops answering is
  closed by its heartbeat timeout (``PING_TIMEOUT``) or a reset, and only then does traffic fail over;
* with no direct link, a **relay** carries the frames. Relays are judged by ``RttFloor``: the minimum
  heartbeat RTT over the last one to two ``RTT_FLOOR_WINDOW`` s, so load on the relay in use does not count
  against it, estimated as twice our RTT to the relay plus ``RELAY_RTT_PENALTY`` (we cannot see the relay's
  other leg). The current relay is kept while it is up unless another one's estimate is below
  ``RELAY_SWITCH_FACTOR`` times its own (hysteresis: no flapping between relays of similar RTT).

Re-selected on every link change and every housekeeping tick, never per packet.

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

RTT_FLOOR_WINDOW = 30.0
"""Seconds. ``RttFloor`` keeps the minimum RTT of the current and the previous window of this length."""

RELAY_SWITCH_FACTOR = 0.5
"""Another relay replaces the relay in use only if its RTT estimate is below this fraction of the current
relay's (both from ``RttFloor``): a 2x better relay, not a blip, moves the traffic."""


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


class RttFloor:
    """Windowed minimum of a link's heartbeat RTT (seconds): min over the current and the previous
    ``window`` seconds of samples, so it follows a link that really got slower within two windows but
    ignores the pong delays of a link that is busy some of the time. A new link starts a new floor."""

    __slots__ = ("window", "_link", "_started", "_current", "_previous")

    def __init__(self, window: float = RTT_FLOOR_WINDOW) -> None:
        self.window = window
        self._link: object = None
        self._started = 0.0
        self._current = self._previous = float("inf")

    def sample(self, link, rtt: float, now: float) -> float:
        """Record ``rtt`` of ``link`` at ``now`` (monotonic seconds); return the floor."""
        if link is not self._link:
            self._link, self._started, self._current, self._previous = link, now, float("inf"), float("inf")
        elif now - self._started >= self.window:
            # a window passed: the current one becomes the previous (or both reset after a long gap)
            self._previous = self._current if now - self._started < 2 * self.window else float("inf")
            self._started, self._current = now, float("inf")
        if rtt > 0.0:     # 0.0: no pong measured yet on this link
            self._current = min(self._current, rtt)
        floor = min(self._current, self._previous)
        return floor if floor != float("inf") else rtt


class RelayPath:
    """Frames for ``peer_key`` through the relay link held by ``relay`` (a node.relays.RelayClient)."""

    __slots__ = ("relay", "peer_key", "name", "floor")

    def __init__(self, relay, peer_key: bytes) -> None:
        self.relay = relay
        self.peer_key = peer_key
        self.name = f"relay:{relay.key.hex()[:8]}"
        self.floor = RttFloor()

    @property
    def up(self) -> bool:
        link = self.relay.link
        return link is not None and not link.closed and self.relay.ready

    def rtt(self) -> float:
        """Seconds: estimated RTT to the peer through the relay from the latest heartbeat."""
        link = self.relay.link
        return 2 * (link.latency if link is not None else 0.0) + RELAY_RTT_PENALTY

    def rtt_floor(self, now: float) -> float:
        """Seconds: the same estimate from the relay link's RTT floor (see ``RttFloor``); path choice uses it."""
        link = self.relay.link
        return (2 * self.floor.sample(link, link.latency if link is not None else 0.0, now) + RELAY_RTT_PENALTY
                + getattr(self.relay, "hint_penalty", 0.0))   # issue 15: the relay's published load/price hints

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
        """Choose the path (see module docstring): direct while its link is up, else a relay, kept while
        up unless another is ``RELAY_SWITCH_FACTOR`` times faster by RTT floor. Never on RTT alone to a
        relay while direct works: a relay costs money, a busy direct link only looks slow."""
        best: DirectPath | RelayPath | None = None
        d = self.direct
        if d is not None and d.up:
            best = d
        elif self.relay_paths:
            best = self._choose_relay(time.monotonic())
        if best is not self.path:
            old = self.path.name if self.path is not None else "none"
            new = best.name if best is not None else "none"
            log.info("peer %s: path %s -> %s", self.key.hex()[:8], old, new)
            self.path = best

    def _choose_relay(self, now: float) -> RelayPath | None:
        """The relay path to use when there is no direct one: the current one if up and not beaten by
        ``RELAY_SWITCH_FACTOR``, else the up relay with the lowest RTT floor (None if none is up)."""
        best: RelayPath | None = None
        current: RelayPath | None = None
        best_rtt = current_rtt = float("inf")
        for rp in self.relay_paths:
            if rp.up:
                r = rp.rtt_floor(now)    # sampled on every tick, so each floor sees every heartbeat
                if rp is self.path:
                    current, current_rtt = rp, r
                if r < best_rtt:
                    best, best_rtt = rp, r
        if current is not None and not best_rtt < current_rtt * RELAY_SWITCH_FACTOR:
            return current
        return best

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
        """Re-run every peer's path choice (after a relay link changed, or on the housekeeping period). A peer
        with no session yet (NEW, issue 15: thousands of known devices) keeps a path that is up: its choice
        by RTT only matters once it carries traffic, and re-choosing 10,000 idle peers every tick costs ~10 %
        of a core (bench/peers5000.py)."""
        new = SessionState.NEW
        up = {r for r in self.relays.values() if r.ready and r.link is not None and not r.link.closed}
        for peer in self.peers.values():
            path = peer.path
            if peer.session.state is new and peer.direct is None and isinstance(path, RelayPath) and path.relay in up:
                continue
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
