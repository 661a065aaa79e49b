"""Handshake cookies (as WireGuard's cookie reply): under load a hello must echo a MAC over its source.

Issue 12 "Handshake floods". Wire format (versioned by its magic bytes; a hello without a trailer is the
unchanged version-1 hello, so old initiators keep working whenever the responder is not under load)::

    hello          = HANDSHAKE_INIT frame (216 bytes) [ || COOKIE_MAGIC (2) || cookie (16) ]
    cookie reply   = REPLY_MAGIC (2) || cookie (16)          (sent as the only message of a link that
                                                              the responder then closes)
    cookie         = BLAKE2b-128(key = secret_epoch, person "sm1-cookie", source)

``source`` is what the responder can check the initiator really holds: its network address when the
transport tells it (``authenticate(hello, source=...)``), else the claimed sender key (weaker: anyone can
ask for the cookie of any key; docs/protocol.md "Handshake floods"). ``secret_epoch`` rotates every
``COOKIE_SECONDS`` and the previous one is still accepted, so a cookie lives 2-4 minutes. Checking one
costs one keyed BLAKE2b over a few bytes (~1 us), against ~60-100 us for the Ed25519 verification it
saves. The magics start with 0xFB: no protocol frame starts with it (version 1 << 4 = 0x1X) and payments
control messages use 0xFA.

Pure: the secret comes from the caller's ``rng``, time is ``now``. Not task-safe: one event loop.
"""

from __future__ import annotations

import hmac

from shadowmesh_client import crypto

COOKIE_BYTES = 16
COOKIE_MAGIC = b"\xfb\x43"    # "C": a hello trailer carrying a cookie
REPLY_MAGIC = b"\xfb\x52"     # "R": the responder's cookie reply
TRAILER_BYTES = len(COOKIE_MAGIC) + COOKIE_BYTES
REPLY_BYTES = len(REPLY_MAGIC) + COOKIE_BYTES
CLOSE_COOKIE = 4002
"""Application close code (RFC 6455 4000-4999; transport/base.py has 4000/4001) of a link that only
carried a cookie reply: dial again with the cookie."""
COOKIE_SECONDS = 120.0
"""Seconds between secret rotations (the previous secret stays valid for one more period)."""


def split_hello(hello: bytes | bytearray | memoryview) -> tuple[bytes, bytes | None]:
    """(handshake frame, cookie or None): strips a cookie trailer if the hello carries one."""
    data = bytes(hello)
    if len(data) > TRAILER_BYTES and data[-TRAILER_BYTES:-COOKIE_BYTES] == COOKIE_MAGIC:
        return data[:-TRAILER_BYTES], data[-COOKIE_BYTES:]
    return data, None


def with_cookie(frame: bytes | bytearray, cookie: bytes | None) -> bytes:
    """The hello to send: ``frame`` plus the trailer when we hold a cookie from this responder."""
    if cookie is None:
        return bytes(frame)
    return bytes(frame) + COOKIE_MAGIC + cookie


def encode_reply(cookie: bytes) -> bytes:
    return REPLY_MAGIC + cookie


def parse_reply(message: bytes | bytearray | memoryview) -> bytes | None:
    """The cookie of a cookie reply, or None if ``message`` is not one."""
    if len(message) == REPLY_BYTES and bytes(message[:2]) == REPLY_MAGIC:
        return bytes(message[2:])
    return None


class CookieJar:
    """Responder side: ``cookie_for(source, now)``, ``check(source, cookie, now)``."""

    __slots__ = ("_rng", "_secret", "_previous", "_epoch")

    def __init__(self, rng: crypto.RandomSource, now: float) -> None:
        self._rng = rng
        self._secret = rng(32)
        self._previous = rng(32)
        self._epoch = int(now // COOKIE_SECONDS)

    def _rotate(self, now: float) -> None:
        epoch = int(now // COOKIE_SECONDS)
        if epoch != self._epoch:
            self._previous = self._secret if epoch == self._epoch + 1 else self._rng(32)
            self._secret = self._rng(32)
            self._epoch = epoch

    @staticmethod
    def _mac(secret: bytes, source: bytes) -> bytes:
        return crypto.blake2b(source, key=secret, person=b"sm1-cookie", size=COOKIE_BYTES)

    def cookie_for(self, source: bytes, now: float) -> bytes:
        self._rotate(now)
        return self._mac(self._secret, source)

    def check(self, source: bytes, cookie: bytes, now: float) -> bool:
        self._rotate(now)
        return (hmac.compare_digest(cookie, self._mac(self._secret, source))
                or hmac.compare_digest(cookie, self._mac(self._previous, source)))
