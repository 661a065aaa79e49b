"""Handshake-timestamp floors that outlive a Session: replay protection across closed sessions and restarts.

Spec "Threat Model" (replay), issue 12 "Replay protection that survives restarts and closed sessions". A
Session refuses an initiation whose timestamp is not above the last one it accepted from that peer, but a
NEW Session (the peer's old one closed, or the daemon restarted) starts with no floor, so a recorded hello
would get a HANDSHAKE_RESPONSE again: a censor's confirmation. ``HandshakeFloors`` is one table per daemon,
shared by all its Sessions (``Session(..., floors=...)``):

* ``floor(key, now)`` = max(highest timestamp accepted from ``key``, ``now - window``) in nanoseconds: an
  initiation must be above it. The freshness window bounds the table (entries older than the window say
  nothing the window does not) and covers a restart that lost the table;
* ``raise_to(key, ts)`` is called by the Session only after the initiation's signature verified and BEFORE
  the response is built; ``on_raise(key, ts)`` (the daemon's persistence, relay/floors.py ``FloorFile``)
  runs synchronously inside it, so a response never leaves before its floor is stored.

Cost of the window: an initiator's wall clock must be within ``window_seconds`` behind ours (default 10
minutes; docs/protocol.md "Replay across restarts"). Pure: no clock, no I/O (``now`` is an argument and
persistence is the caller's callback). Not task-safe: one event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

HANDSHAKE_WINDOW_SECONDS = 600.0
"""Seconds. An initiation whose timestamp is older than ``now`` minus this is refused as stale."""


class HandshakeFloors:
    """``HandshakeFloors(window_seconds, on_raise=None)``; see the module docstring."""

    __slots__ = ("window_ns", "_floors", "_on_raise", "refused")

    def __init__(self, window_seconds: float = HANDSHAKE_WINDOW_SECONDS,
                 on_raise: Callable[[bytes, int], None] | None = None) -> None:
        if window_seconds <= 0:
            raise ValueError("handshake window must be positive seconds")
        self.window_ns = int(window_seconds * 1e9)
        self._floors: dict[bytes, int] = {}
        self._on_raise = on_raise
        self.refused = 0   # not used by the core itself; daemons may count stale/replayed hellos here

    def floor(self, key: bytes, now: float) -> int:
        """Nanoseconds: an initiation from ``key`` must carry a timestamp strictly above this."""
        stale = int(now * 1e9) - self.window_ns
        stored = self._floors.get(key, -1)
        return stored if stored > stale else stale

    def raise_to(self, key: bytes, timestamp: int) -> None:
        """Record an accepted (signature-verified) timestamp; persisted by ``on_raise`` before returning."""
        if timestamp > self._floors.get(key, -1):
            self._floors[key] = timestamp
            if self._on_raise is not None:
                self._on_raise(key, timestamp)

    def load(self, items: Iterable[tuple[bytes, int]]) -> None:
        """Add stored floors (e.g. read back at start-up) without calling ``on_raise``."""
        for key, ts in items:
            if ts > self._floors.get(key, -1):
                self._floors[key] = ts

    def prune(self, now: float) -> int:
        """Forget floors the freshness window already covers; returns how many were dropped."""
        stale = int(now * 1e9) - self.window_ns
        old = [k for k, ts in self._floors.items() if ts <= stale]
        for k in old:
            del self._floors[k]
        return len(old)

    def items(self) -> list[tuple[bytes, int]]:
        return list(self._floors.items())

    def __len__(self) -> int:
        return len(self._floors)
