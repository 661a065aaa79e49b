"""Token bucket (bytes). Pure: time is passed in as ``now`` (seconds, one monotonic clock).

Spec: "Security Architecture" (relay tier: rate limiting). Not task-safe: one owner per bucket.
"""

from __future__ import annotations


class TokenBucket:
    """``rate`` bytes/s refill, ``burst`` bytes capacity; starts full.

    ``consume(n, now)`` takes n tokens if available and returns True, else takes none and returns False
    (policing: the caller drops). Over any window of T seconds at most ``burst + rate * T`` bytes pass.
    """

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("token bucket rate and burst must be positive")
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:  # a clock that goes backwards never adds tokens
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def consume(self, n: int, now: float) -> bool:
        stamp = self._stamp
        if now > stamp:   # _refill, inlined: called for every relayed message
            tokens = self._tokens + (now - stamp) * self.rate
            self._tokens = tokens if tokens < self.burst else self.burst
            self._stamp = now
        if n <= self._tokens:
            self._tokens -= n
            return True
        return False

    def available(self, now: float) -> float:
        self._refill(now)
        return self._tokens
