"""The accept hook's flood guard: per-source handshake rate limits, and cookies under load.

Issue 12 "Handshake floods"; wire format of cookies and trailers: protocol/cookie.py; design and limits:
docs/protocol.md "Handshake floods". Used by the relay door (relay/door.py) and the node's direct-link
hook (node/links.py), in front of the one expensive step of a hello: the Session's Ed25519 verification
(and, if it verifies, the response's X25519 + signature). Pure: ``now`` is an argument (seconds, one
monotonic or wall clock per guard), randomness from ``rng``. Not task-safe: one event loop.

``check(frame, cookie, source, now) -> Check``, called after the caller split the hello into frame and
optional cookie (``protocol.cookie.split_hello``) and the trust policy admitted the frame's header (so
hellos naming unknown keys never reach the guard and never count as load):

1. (the caller's split and header check);
2. the SOURCE is the transport's view of the initiator (its IP address) when the accept hook is given one,
   else the claimed sender key (bytes 8..40 of the frame);
3. LOAD: a global token bucket of ``verify_per_second`` hellos (burst ``verify_burst``). While it has a
   token the relay is not under load. Under load, a hello without a valid cookie for its source gets
   ``COOKIE`` and the reply to send (cost: one keyed BLAKE2b); the initiator echoes it in its next hello;
4. per source, a token bucket of ``per_source_per_second`` (burst ``per_source_burst``) verifications:
   over it, ``DROP`` (the caller answers like any refusal: the decoy page);
5. otherwise ``VERIFY``: the caller runs the Session (signature check) on ``check.frame``.

A flood from one source therefore costs one bucket lookup per hello once its burst is spent; a flood from
many sources (or forged sender keys, when the source is not known) costs one MAC per hello once the global
budget is spent, and legitimate initiators pass with one extra round trip (their cookie). Memory: at most
``max_sources`` per-source buckets (oldest forgotten first).

May import: protocol.cookie, relay.ratelimit.
"""

from __future__ import annotations

import enum
import os
from collections import OrderedDict
from dataclasses import dataclass

from shadowmesh_client.crypto import RandomSource
from shadowmesh_client.protocol.cookie import CookieJar, encode_reply
from shadowmesh_client.relay.ratelimit import TokenBucket

_SENDER = slice(8, 40)   # spec "Frame Format": the sender's 32-byte key


class Verdict(enum.Enum):
    VERIFY = "verify"    # go on: open the frame with the Session
    COOKIE = "cookie"    # under load, no valid cookie: send ``reply`` (then close the link)
    DROP = "drop"        # over the source's rate: refuse like any other failure


@dataclass(frozen=True)
class GuardConfig:
    """Rates in hellos per second, bursts in hellos."""

    verify_per_second: float = 500.0     # the relay verifies ~1,400-2,900 handshakes/s per core
    verify_burst: float = 1_000.0
    per_source_per_second: float = 2.0   # a reconnecting device needs < 1/s (backoff from 0.25 s)
    per_source_burst: float = 10.0
    max_sources: int = 65_536


@dataclass(frozen=True)
class Challenge:
    """What an accept hook returns for a COOKIE verdict: ``reply`` (protocol/cookie.py) is sent as the
    link's only message, then the link is closed with ``CLOSE_COOKIE``; the initiator retries with it."""

    reply: bytes


@dataclass(frozen=True, slots=True)
class Check:
    verdict: Verdict
    reply: bytes | None = None    # the cookie reply (COOKIE only)


class HelloGuard:
    """See the module docstring. Counters: ``cookies_sent``, ``dropped``, ``cookies_accepted``."""

    def __init__(self, config: GuardConfig | None = None, *, now: float, rng: RandomSource = os.urandom) -> None:
        self.config = c = config or GuardConfig()
        self._load = TokenBucket(c.verify_per_second, c.verify_burst, now)
        self._jar = CookieJar(rng, now)
        self._sources: OrderedDict[object, TokenBucket] = OrderedDict()
        self.cookies_sent = 0
        self.cookies_accepted = 0
        self.dropped = 0

    def under_load(self, now: float) -> bool:
        return self._load.available(now) < 1.0

    def check(self, frame: bytes, cookie: bytes | None, source: object, now: float) -> Check:
        src = source if source is not None else frame[_SENDER]
        src_bytes = src if isinstance(src, bytes) else repr(src).encode()
        if self.under_load(now):
            if cookie is None or not self._jar.check(src_bytes, cookie, now):
                self.cookies_sent += 1
                return Check(Verdict.COOKIE, encode_reply(self._jar.cookie_for(src_bytes, now)))
            self.cookies_accepted += 1
        bucket = self._sources.get(src)
        if bucket is None:
            c = self.config
            bucket = self._sources[src] = TokenBucket(c.per_source_per_second, c.per_source_burst, now)
            if len(self._sources) > c.max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(src)
        if not bucket.consume(1, now):
            self.dropped += 1
            return Check(Verdict.DROP)
        self._load.consume(1, now)   # may fail: then the next hellos need cookies (that is the signal)
        return Check(Verdict.VERIFY)

    def status(self) -> dict:
        return {"cookies_sent": self.cookies_sent, "cookies_accepted": self.cookies_accepted,
                "dropped": self.dropped, "sources": len(self._sources)}
