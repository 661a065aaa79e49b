"""The one trust policy: who may talk to whom, asked by the node and the relay alike.

The directory (``core.Directory``) says which registrations are live; this module turns that into the
decisions the daemons make, so each rule is written once:

* ``is_trusted(key)``: an active, unexpired, unrevoked, unsuspended registration with a valid proof of
  possession in this network, now. Given to every protocol ``Session`` as its trust callback (asked at
  every handshake and rekey).
* ``admit_hello(hello)``: a first message may open a link only if it is a HANDSHAKE_INIT (checked on the
  64-byte header, before any crypto) from a trusted key that is not ours; returns the sender's key.
* ``peer_role(key)``: what a trusted key is to us: ``Role.PEER`` (a device we tunnel to), ``Role.RELAY``
  (a device registered with the relay flag), or None (not trusted).
* ``untrusted(keys)``: the subset of ``keys`` no longer trusted (the trust sweeps of node and relay).

Pure: the clock is injected (``clock() -> Unix seconds``; handshake timestamps are wall-clock), no I/O.
Not task-safe beyond the event loop that owns the directory.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable

from shadowmesh_client.directory.core import Directory, Peer
from shadowmesh_client.errors import ProtocolError
from shadowmesh_client.protocol import FrameType, peek_header


class Role(enum.Enum):
    PEER = "peer"
    RELAY = "relay"


class TrustPolicy:
    """``TrustPolicy(directory, my_key)``; ``clock`` defaults to wall-clock seconds."""

    __slots__ = ("directory", "me", "_clock")

    def __init__(self, directory: Directory, my_key: bytes, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.me = bytes(my_key)
        self._clock = clock

    def now(self) -> float:
        return self._clock()

    def is_trusted(self, key: bytes) -> bool:
        """True iff ``key`` has a live registration in this network now (see module docstring)."""
        return self.directory.is_trusted(key, self._clock())

    def peer(self, key: bytes) -> Peer | None:
        """The directory entry of a trusted ``key`` now, or None."""
        return self.directory.peer_for_key(key, self._clock())

    def peer_role(self, key: bytes) -> Role | None:
        """``Role.RELAY`` or ``Role.PEER`` for a trusted key other than ours; None otherwise."""
        if key == self.me:
            return None
        p = self.peer(key)
        if p is None:
            return None
        return Role.RELAY if p.relay else Role.PEER

    def admit_hello(self, hello: bytes | bytearray | memoryview, *, role: Role | None = None) -> bytes | None:
        """The sender's key if ``hello`` may open a link: a well-formed HANDSHAKE_INIT header from a
        trusted key that is not ours (and, with ``role``, of that role). None otherwise. No crypto."""
        try:
            header = peek_header(hello)
        except ProtocolError:
            return None
        if header.type is not FrameType.HANDSHAKE_INIT:
            return None
        key = header.sender
        actual = self.peer_role(key)
        if actual is None or (role is not None and actual is not role):
            return None
        return key

    def untrusted(self, keys: Iterable[bytes]) -> list[bytes]:
        """The keys of ``keys`` that are no longer trusted now (order kept, duplicates kept)."""
        t = self._clock()
        d = self.directory
        return [k for k in keys if not d.is_trusted(k, t)]
