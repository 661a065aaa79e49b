"""Anti-replay sliding window over 32-bit sequence numbers, as in RFC 6479 (bitmap ring of 64-bit blocks).

A sequence number is accepted once if it is newer than the highest seen, or within ``window`` of it and
not seen before. Call ``check_and_mark`` only AFTER the frame authenticated (otherwise a forger could
burn sequence numbers). Not thread-safe: one ReplayWindow per key per direction, owned by one Session.
"""

from __future__ import annotations

from shadowmesh_client.protocol import constants as C

_BLOCK_BITS = 64  # bits per ring block (RFC 6479 uses machine words)
_BLOCK_SHIFT = 6


class ReplayWindow:
    """RFC 6479 window of ``window`` bits (a multiple of 64, at least 64)."""

    __slots__ = ("_ring", "_blocks", "_window", "_last", "_limit")

    def __init__(self, window: int = C.REPLAY_WINDOW_BITS, limit: int = C.MAX_SEQUENCE) -> None:
        if window < 64 or window % _BLOCK_BITS:
            raise ValueError("replay window must be a multiple of 64 bits, at least 64")
        self._blocks = window // _BLOCK_BITS + 1  # one spare block so a full window always fits
        self._ring = [0] * self._blocks
        self._window = window
        self._last = -1  # highest accepted sequence number; -1 = none yet
        self._limit = limit  # sequence numbers >= limit are never accepted

    @property
    def highest(self) -> int:
        """The highest sequence number accepted so far (-1 if none)."""
        return self._last

    def check_and_mark(self, seq: int) -> bool:
        """True (and remember ``seq``) if it is fresh; False for a duplicate or a too-old number."""
        if seq >= self._limit or seq < 0:
            return False
        ring = self._ring
        blocks = self._blocks
        index = seq >> _BLOCK_SHIFT
        if seq > self._last:
            current = self._last >> _BLOCK_SHIFT if self._last >= 0 else -1
            diff = min(index - current, blocks)
            for i in range(current + 1, current + diff + 1):
                ring[i % blocks] = 0
            self._last = seq
        elif self._last - seq >= self._window:
            return False
        index %= blocks
        bit = 1 << (seq & (_BLOCK_BITS - 1))
        old = ring[index]
        if old & bit:
            return False
        ring[index] = old | bit
        return True
