"""Session timers, scheduled from the protocol: one task, a heap of due times, sleeps until the earliest.

Spec "Ed25519 Key Management" (rekey), protocol/session.py (keepalives, handshake retries, dead-peer
detection, grace of retired keys). Habit 8 of the guide: timers come from the protocol and are scheduled,
not polled. Issue 15 (5,000 peers): looking at every session on each handshake made the ramp-up quadratic,
so the task keeps a heap of (due time, subject) with lazy deletion, where a subject is a ``PeerState``
(its current ``session``) or a device-relay session (``RelayClient``):

* ``wake(subject)`` (the links, pump and relay clients, when that subject's session starts a handshake or
  reports an event): the task re-reads that one subject's ``next_timer_at()`` and pushes it: O(log n).
* ``wake()`` without a subject (older call sites): a full rescan, at most once per ``TIMER_MIN_GAP``
  seconds (wake-ups in between are coalesced into one scan; a handshake's deadline is seconds away).
* every ``TIMER_RESCAN_SECONDS`` a full rescan rebuilds the heap (the safety net: timers the packet path
  moves earlier without a wake-up, e.g. a keepalive after a receive, are seen within that period).

A popped entry is only a reminder to look: the subject's deadline is re-read then, so a stale entry (the
deadline moved later, the session was replaced, the peer or relay was removed) costs one look and is
dropped or re-pushed. ``_due`` holds each subject's one live entry; older ones are skipped.

Frames a timer produces go out with ``send_nowait``; when a path has no room, the rest is sent by a task
of the node's group: this task never awaits one peer's link, so a backpressured peer cannot delay another
peer's keepalive or rekey.

May import: node.peers, node.relays, node.settings, node.tasks. Not task-safe beyond the event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

from shadowmesh_client.node.peers import PeerState, PeerTable, now
from shadowmesh_client.node.settings import TIMER_MIN_GAP, TIMER_RESCAN_SECONDS
from shadowmesh_client.node.tasks import Spawner
from shadowmesh_client.transport import LinkClosedError


class SessionTimers:
    """``run()`` is the node's timer task; ``wake(subject=None)`` reschedules it (cheap, idempotent, any
    time). Times are seconds on ``clock`` (the sessions' clock)."""

    def __init__(self, table: PeerTable, spawn: Spawner, clock: Callable[[], float] = now) -> None:
        self.table = table
        self._spawn = spawn
        self._clock = clock
        self._wake = asyncio.Event()
        self._heap: list[tuple[float, int, object]] = []   # (due, seq, subject); stale entries skipped
        self._due: dict[object, float] = {}                 # subject -> due time of its live heap entry
        self._dirty: set[object] = set()                    # subjects to re-read (wake(subject))
        self._seq = itertools.count()
        self._rescan = True                                 # a full rescan is pending
        self._last_full = float("-inf")
        self._next_full = float("-inf")
        self.fired = 0          # on_timer calls
        self.unsent = 0         # timer frames of peers without a path (dropped; the session retries)
        self.examined = 0       # subjects whose next_timer_at() was read (tests: O(log n) per change)
        self.full_scans = 0     # full rescans done
        self.next_at: float | None = None   # the deadline slept on (status, tests)

    def wake(self, subject: object | None = None) -> None:
        """``subject``: the PeerState or RelayClient whose session changed; None: rescan every session."""
        if subject is None:
            self._rescan = True
        else:
            self._dirty.add(subject)
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            t = self._clock()
            if t >= self._next_full or (self._rescan and t >= self._last_full + TIMER_MIN_GAP):
                earliest = self.fire_due(t)
            else:
                earliest = self._fire_heap(t)
            self.next_at = earliest
            wake_at = self._next_full if earliest is None else min(earliest, self._next_full)
            if self._rescan:    # a coalesced wake(): the next scan it may have
                wake_at = min(wake_at, self._last_full + TIMER_MIN_GAP)
            handle = loop.call_later(max(wake_at - t, 0.0), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                handle.cancel()

    def fire_due(self, t: float) -> float | None:
        """Full rescan: run every timer due at ``t``, rebuild the heap; returns the earliest deadline after
        that (None: none pending)."""
        self._rescan = False
        self._last_full, self._next_full = t, t + TIMER_RESCAN_SECONDS
        self.full_scans += 1
        self._dirty.clear()
        self._due.clear()
        heap: list[tuple[float, int, object]] = []
        seq = self._seq
        for subject in [*self.table.peers.values(), *self.table.relays.values()]:
            at = self._look(subject, t)
            if at is not None:
                self._due[subject] = at
                heap.append((at, next(seq), subject))
        heapq.heapify(heap)
        self._heap = heap
        return heap[0][0] if heap else None

    def _fire_heap(self, t: float) -> float | None:
        """Re-read the woken subjects, then pop and look at every entry due at ``t``: O(k log n) for k
        subjects changed or due. Returns the earliest deadline left (None: none)."""
        heap, due = self._heap, self._due
        if self._dirty:
            dirty, self._dirty = self._dirty, set()
            for subject in dirty:
                if self._alive(subject):
                    self._push(subject, self._look(subject, t))
        while heap and heap[0][0] <= t:
            at, _, subject = heapq.heappop(heap)
            if due.get(subject) != at:
                continue                    # superseded by a later push
            del due[subject]
            if self._alive(subject):
                self._push(subject, self._look(subject, t))
        return heap[0][0] if heap else None

    def _push(self, subject: object, at: float | None) -> None:
        if at is None:
            self._due.pop(subject, None)
        elif self._due.get(subject) != at:
            self._due[subject] = at
            heapq.heappush(self._heap, (at, next(self._seq), subject))

    def _alive(self, subject: object) -> bool:
        if isinstance(subject, PeerState):
            return self.table.peers.get(subject.key) is subject
        return any(r is subject for r in self.table.relays.values())

    def _look(self, subject, t: float) -> float | None:
        """Fire ``subject``'s timer if due at ``t``; return its next deadline (> t) or None."""
        self.examined += 1
        if isinstance(subject, PeerState):
            s = subject.session
            at = s.next_timer_at()
            if at is not None and at <= t:
                self.fired += 1
                frames = s.on_timer(t)
                if frames:
                    self._send(subject.path, frames)
                at = s.next_timer_at()
        else:
            at = subject.next_timer_at()
            if at is not None and at <= t:
                self.fired += 1
                subject.on_timer(t)
                at = subject.next_timer_at()
        if at is not None and at <= t:
            at = t + TIMER_MIN_GAP
        return at

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
