"""The member mesh's wire format and member authentication, sans-I/O (issue 13 "Cluster"; docs/cluster.md).

Members of one relay cluster share ONE relay identity: the Ed25519 key registered as the network's relay
(and its endpoint, the load balancer's URL). A member proves it is one by signing with that key, and a
member accepts a mesh link only from a peer that proves the same, while the directory still lists the key
as a relay ("registry-based" authentication; docs/cluster.md says why not a separate cluster key).

Opening of a mesh link (the hello rides in the link's upgrade, as a device's handshake does)::

    HELLO   = "SMC1" | member id (16) | time (uint64 ms) | nonce (16) | Ed25519 signature (64)       108 bytes
              signed: HELLO_CONTEXT | binding | relay key | member id | time | nonce
    WELCOME = "SMC2" | member id (16) | Ed25519 signature (64)                                        84 bytes
              signed: WELCOME_CONTEXT | binding | relay key | member id | dialer's member id | dialer's nonce

``binding`` is the network binding (chain id, registry, network id) so a hello of one network is not
accepted in another. Freshness: the acceptor refuses a hello older or newer than ``HELLO_WINDOW_SECONDS``
and a nonce it has seen inside that window (``NonceCache``, bounded); the WELCOME answers the dialer's
fresh nonce, so neither side can be fooled by a replay.

Mesh messages after the opening (one per link message; type byte first)::

    PRESENT = 0x01 | device keys (32 each)     the sender now holds these devices (acceptor -> dialer)
    GONE    = 0x02 | device keys (32 each)     the sender no longer holds them       (acceptor -> dialer)
    FORWARD = 0x04 | source key (32) | device FORWARD envelope (relay/envelope.py)      (dialer -> acceptor)

A FORWARD's source is the identity the SENDING member authenticated on its device link; the receiving
member delivers it only to a device it holds itself (one hop, never forwarded again).

Pure: no sockets, no asyncio; time is an argument. Errors raise ClusterWireError.
May import: crypto (Ed25519 sign/verify), relay.envelope, errors.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

from shadowmesh_client.crypto import Identity, verify_signature
from shadowmesh_client.errors import ShadowMeshError
from shadowmesh_client.relay.envelope import KEY_BYTES, EnvelopeType

MEMBER_ID_BYTES = 16
NONCE_BYTES = 16
SIGNATURE_BYTES = 64
HELLO_MAGIC = b"SMC1"
WELCOME_MAGIC = b"SMC2"
HELLO_CONTEXT = b"shadowmesh-cluster-hello-v1"
WELCOME_CONTEXT = b"shadowmesh-cluster-welcome-v1"
HELLO_WINDOW_SECONDS = 60.0
"""Seconds a hello's time may differ from the acceptor's clock (members' clocks are NTP-synced)."""

_HELLO = struct.Struct(f">4s{MEMBER_ID_BYTES}sQ{NONCE_BYTES}s{SIGNATURE_BYTES}s")
_WELCOME = struct.Struct(f">4s{MEMBER_ID_BYTES}s{SIGNATURE_BYTES}s")

PRESENT = 0x01
GONE = 0x02
FORWARD = 0x04
FORWARD_HEADER_BYTES = 1 + KEY_BYTES


class ClusterWireError(ShadowMeshError, ValueError):
    """A mesh message or opening that is not well formed or not authentic."""


@dataclass(frozen=True, slots=True)
class Hello:
    member_id: bytes
    time_ms: int
    nonce: bytes


def _hello_signed(binding: bytes, relay_key: bytes, member_id: bytes, time_ms: int, nonce: bytes) -> bytes:
    return b"".join((HELLO_CONTEXT, binding, relay_key, member_id, time_ms.to_bytes(8, "big"), nonce))


def _welcome_signed(binding: bytes, relay_key: bytes, member_id: bytes, hello: Hello) -> bytes:
    return b"".join((WELCOME_CONTEXT, binding, relay_key, member_id, hello.member_id, hello.nonce))


def make_hello(identity: Identity, binding: bytes, member_id: bytes, now: float, nonce: bytes) -> bytes:
    """The dialer's opening (``now``: seconds since the epoch; ``nonce``: 16 fresh random bytes)."""
    t = int(now * 1000)
    sig = identity.sign(_hello_signed(binding, identity.public_key, member_id, t, nonce))
    return _HELLO.pack(HELLO_MAGIC, member_id, t, nonce, sig)


def open_hello(message: bytes, relay_key: bytes, binding: bytes, now: float) -> Hello:
    """Check a hello against the relay key and the clock; raises ClusterWireError (replays: NonceCache)."""
    if len(message) != _HELLO.size:
        raise ClusterWireError(f"cluster hello of {len(message)} bytes, expected {_HELLO.size}")
    magic, member_id, t, nonce, sig = _HELLO.unpack(message)
    if magic != HELLO_MAGIC:
        raise ClusterWireError("not a cluster hello")
    if abs(now - t / 1000) > HELLO_WINDOW_SECONDS:
        raise ClusterWireError("cluster hello outside the time window: check the members' clocks (NTP)")
    if not verify_signature(relay_key, _hello_signed(binding, relay_key, member_id, t, nonce), sig):
        raise ClusterWireError("cluster hello not signed by this network's relay key")
    return Hello(member_id, t, nonce)


def make_welcome(identity: Identity, binding: bytes, member_id: bytes, hello: Hello) -> bytes:
    sig = identity.sign(_welcome_signed(binding, identity.public_key, member_id, hello))
    return _WELCOME.pack(WELCOME_MAGIC, member_id, sig)


def open_welcome(message: bytes, relay_key: bytes, binding: bytes, hello: Hello) -> bytes:
    """The acceptor's member id, after checking its answer to OUR ``hello``; raises ClusterWireError."""
    if len(message) != _WELCOME.size:
        raise ClusterWireError(f"cluster welcome of {len(message)} bytes, expected {_WELCOME.size}")
    magic, member_id, sig = _WELCOME.unpack(message)
    if magic != WELCOME_MAGIC or not verify_signature(
            relay_key, _welcome_signed(binding, relay_key, member_id, hello), sig):
        raise ClusterWireError("cluster welcome not signed by this network's relay key")
    return bytes(member_id)


class NonceCache:
    """Hello nonces seen within the window (bounded: ``capacity`` entries, oldest evicted first; an
    evicted nonce is older than the window unless more than ``capacity`` hellos came within it). Not
    task-safe (one event loop)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def fresh(self, nonce: bytes, now: float) -> bool:
        """True the first time ``nonce`` is seen (it is remembered), False for a replay."""
        while self._seen and (len(self._seen) >= self.capacity
                              or next(iter(self._seen.values())) < now - 2 * HELLO_WINDOW_SECONDS):
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return False
        self._seen[nonce] = now
        return True


# ---- mesh messages -------------------------------------------------------------------------------------------
def encode_presence(kind: int, keys: list[bytes], max_message_bytes: int) -> list[bytes]:
    """PRESENT or GONE messages for ``keys``, as many as needed to stay within ``max_message_bytes``."""
    per = max(1, (max_message_bytes - 1) // KEY_BYTES)
    return [bytes((kind,)) + b"".join(keys[i:i + per]) for i in range(0, len(keys), per)]


def decode_presence(message: bytes) -> tuple[int, list[bytes]]:
    if not message or message[0] not in (PRESENT, GONE) or (len(message) - 1) % KEY_BYTES:
        raise ClusterWireError("malformed cluster presence message")
    return message[0], [bytes(message[i:i + KEY_BYTES]) for i in range(1, len(message), KEY_BYTES)]


def forward_from_deliver(destination: bytes, deliver: bytes | memoryview) -> bytes:
    """FORWARD for the member holding ``destination``, from the DELIVER envelope the core queued for it
    (``DELIVER | source | inner``): one copy, the source stays the one the core wrote."""
    view = memoryview(deliver)
    return b"".join((bytes((FORWARD,)), view[1:1 + KEY_BYTES], bytes((EnvelopeType.FORWARD,)), destination,
                     view[1 + KEY_BYTES:]))


def decode_forward(message: bytes) -> tuple[bytes, bytes, memoryview]:
    """``(source, destination, device FORWARD envelope)`` of a mesh FORWARD (the envelope is a view)."""
    if len(message) < FORWARD_HEADER_BYTES + 1 + KEY_BYTES or message[0] != FORWARD \
            or message[FORWARD_HEADER_BYTES] != EnvelopeType.FORWARD:
        raise ClusterWireError("malformed cluster FORWARD")
    view = memoryview(message)
    start = FORWARD_HEADER_BYTES + 1
    return bytes(view[1:FORWARD_HEADER_BYTES]), bytes(view[start:start + KEY_BYTES]), view[FORWARD_HEADER_BYTES:]
