"""Sessions on demand (issue 15 "5,000 peers per node"): a live session, a direct link and a dialer only
for the peers this device talks to, and only while it talks to them.

Before, ``refresh`` gave every trusted device with an endpoint a dialer (a task and a link each) up front.
With ``NodeSettings.on_demand`` the node keeps, per KNOWN device, only its route and a ``PeerState`` whose
Session is NEW (no keys, no timers: ~0.85 KB measured, bench/peers5000.py), and:

* a session is made on the first packet (the pump seals into a NEW session: handshake through a relay)
  or on an incoming hello (listener or relay): nothing new, the protocol already does it;
* the direct link is dialled when the session is ESTABLISHED (``on_established``, called by
  node/links.py), not before; with no relay at all a peer we dial is dialled at once as before (its
  first packet would have no path otherwise);
* a session with no packet in either direction for ``idle_timeout`` seconds is dropped (``sweep``,
  every ``CHECK_SECONDS`` from the node's housekeeping): CLOSE frame to the peer, its dialer stopped, its
  direct link closed, a fresh NEW session in its place. The next packet handshakes again (~1 RTT).

Only live peers are looked at (``live``: those that reached ESTABLISHED), so the idle check costs
O(live sessions), not O(known devices); the node's trust sweep likewise checks live sessions every tick
and every known device every ``CHECK_SECONDS`` (``sweep_all_due``), and ``PeerTable.reselect`` skips
peers with no session whose relay path is up (node/peers.py). Not task-safe beyond the event loop.
May import: protocol, node.peers (PeerState), transport (close codes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shadowmesh_client.protocol import SessionState

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 180.0
"""Seconds without a packet either way after which a peer's session, dialer and direct link are dropped
(WireGuard drops keys after 180 s without a handshake; the same order of magnitude)."""
CHECK_SECONDS = 5.0
"""Seconds between idle checks (the housekeeping tick calls ``sweep`` more often; it returns early)."""


class OnDemand:
    """``OnDemand(table, close, start_dialer, idle_timeout)``. ``close(peer)`` drops a peer's session
    and links (node/reconcile.py ``idle_close``); ``start_dialer(peer)`` starts its dialer if we dial it."""

    def __init__(self, table, close: Callable[[object], None], start_dialer: Callable[[object], None], *,
                 idle_timeout: float = IDLE_TIMEOUT, clock: Callable[[], float]) -> None:
        self.table = table
        self._close = close
        self._start_dialer = start_dialer
        self.idle_timeout = idle_timeout
        self._clock = clock
        self.live: dict[bytes, list] = {}     # key -> [activity count, time it last changed]
        self._next_check = 0.0
        self._next_full = 0.0
        self.dropped = 0

    def sweep_all_due(self) -> bool:
        """True every ``CHECK_SECONDS``: the trust sweep then looks at every known device (a NEW session
        carries nothing, so a registration that expired without an event may wait that long; revocations
        come as events and are applied at once by ``refresh``); in between only live sessions."""
        t = self._clock()
        if t < self._next_full:
            return False
        self._next_full = t + CHECK_SECONDS
        return True

    def want_dialer_now(self, peer) -> bool:
        """At refresh: dial up front only if there is no relay to carry a first packet."""
        return not self.table.relays or peer.session.state in (SessionState.ESTABLISHED, SessionState.INITIATING)

    def on_established(self, peer) -> None:
        self.live[peer.key] = [_activity(peer), self._clock()]
        self._start_dialer(peer)

    def sweep(self, now: float | None = None) -> int:
        """Drop idle sessions; returns how many. Cheap when called before ``CHECK_SECONDS`` passed."""
        t = self._clock() if now is None else now
        if t < self._next_check:
            return 0
        self._next_check = t + min(CHECK_SECONDS, self.idle_timeout / 2)
        peers = self.table.peers
        idle = []
        for key, seen in list(self.live.items()):
            peer = peers.get(key)
            if peer is None or peer.session.state in (SessionState.CLOSED, SessionState.FAILED, SessionState.NEW):
                del self.live[key]
                continue
            a = _activity(peer)
            if a != seen[0]:
                seen[0], seen[1] = a, t
            elif t - seen[1] >= self.idle_timeout:
                idle.append(peer)
        for peer in idle:
            del self.live[peer.key]
            self.dropped += 1
            log.info("peer %s: idle for %.0f s, session dropped", peer.key.hex()[:8], self.idle_timeout)
            self._close(peer)
        return len(idle)

    def status(self) -> dict:
        return {"live_sessions": len(self.live), "idle_dropped": self.dropped, "idle_timeout": self.idle_timeout}


def _activity(peer) -> int:
    c = peer.session.counters
    return c.sent_packets + c.delivered_packets
