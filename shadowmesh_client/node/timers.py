"""Session timers, scheduled from the protocol: one task sleeps until the earliest ``next_timer_at()``.

Spec "Ed25519 Key Management" (rekey), protocol/session.py (keepalives, handshake retries, dead-peer
detection, grace of retired keys). Habit 8 of the guide: timers come from the protocol and are scheduled,
not polled. ``run`` looks at every peer session and every device-relay session (``RelayClient``), calls
``on_timer`` on those that are due, and sleeps until the earliest next deadline. ``wake()`` makes it look
again at once: the links and relay clients call it when a session starts a handshake or reports an event
(established, rekeyed, closed), so a new deadline earlier than the one slept on is never missed. Timers
the packet path moves without a wake-up (see settings.TIMER_RESCAN_SECONDS) are seen within that period.

Frames a timer produces go out with ``send_nowait``; when a path has no room, the rest is sent by a task
of the node's group: this task never awaits one peer's link, so a backpressured peer cannot delay another
peer's keepalive or rekey.

May import: node.peers, node.relays, node.settings, node.tasks. Not task-safe beyond the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shadowmesh_client.node.peers import PeerTable, now
from shadowmesh_client.node.settings import TIMER_MIN_GAP, TIMER_RESCAN_SECONDS
from shadowmesh_client.node.tasks import Spawner
from shadowmesh_client.transport import LinkClosedError


class SessionTimers:
    """``run()`` is the node's timer task; ``wake()`` reschedules it (cheap, idempotent, any time)."""

    def __init__(self, table: PeerTable, spawn: Spawner, clock: Callable[[], float] = now) -> None:
        self.table = table
        self._spawn = spawn
        self._clock = clock
        self._wake = asyncio.Event()
        self.fired = 0          # on_timer calls
        self.unsent = 0         # timer frames of peers without a path (dropped; the session retries)
        self.next_at: float | None = None   # the deadline slept on (status, tests)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            t = self._clock()
            earliest = self.fire_due(t)
            self.next_at = earliest
            delay = TIMER_RESCAN_SECONDS if earliest is None else min(max(earliest - t, 0.0), TIMER_RESCAN_SECONDS)
            handle = loop.call_later(delay, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                handle.cancel()

    def fire_due(self, t: float) -> float | None:
        """Run every timer due at ``t``; returns the earliest deadline after that (None: none pending)."""
        earliest = None
        for peer in list(self.table.peers.values()):
            s = peer.session
            at = s.next_timer_at()
            if at is not None and at <= t:
                self.fired += 1
                frames = s.on_timer(t)
                if frames:
                    self._send(peer.path, frames)
                at = s.next_timer_at()
                if at is not None and at <= t:
                    at = t + TIMER_MIN_GAP
            if at is not None and (earliest is None or at < earliest):
                earliest = at
        for relay in list(self.table.relays.values()):
            at = relay.next_timer_at()
            if at is not None and at <= t:
                self.fired += 1
                relay.on_timer(t)
                at = relay.next_timer_at()
                if at is not None and at <= t:
                    at = t + TIMER_MIN_GAP
            if at is not None and (earliest is None or at < earliest):
                earliest = at
        return earliest

    def _send(self, path, frames: list) -> None:
        if path is None:
            self.unsent += len(frames)
            return
        for i, f in enumerate(frames):
            if not path.send_nowait(f):
                self._spawn(_send_rest(path, frames[i:]), "timer send")
                return


async def _send_rest(path, frames: list) -> None:
    """Send ``frames`` on ``path`` in order, waiting for room; stop quietly if the link closed."""
    try:
        for f in frames:
            await path.send(f)
    except LinkClosedError:
        pass
