"""The outer relay envelope around an end-to-end protocol frame. Pure; no I/O.

Spec: "Data Plane" (relay fallback), "Security Architecture" (malicious relay cannot decrypt), issue 5
"Relay". Full rationale: docs/transport.md, section "Relay envelope".

On a link between a device and a relay, EVERY binary message after the upgrade is an envelope::

    offset  size  field
    0       1     type: 0x01 FORWARD (device -> relay), 0x02 DELIVER (relay -> device),
                        0x03 LOCAL   (device <-> relay itself, e.g. a CLOSE frame of their own session)
    1       32    key:  FORWARD: destination device's Ed25519 public key
                        DELIVER: source device's Ed25519 public key, written BY THE RELAY from the
                                 authenticated identity of the link the frame arrived on
                        LOCAL:   absent (the frame starts at offset 1)
    33      n     inner: the protocol frame, byte for byte as the sending device produced it

The inner frame (spec "Frame Format") begins with a 64-byte header whose bytes 8..40 are the SENDER's
Ed25519 public key; the whole header is AEAD associated data, so nobody but the sender can change it.

Who checks what:
* relay, on FORWARD: inner sender == the link's authenticated key (else dropped as spoofed), so a
  device cannot make the relay deliver frames in another device's name (nor bill them to it);
* receiver, on DELIVER: ``open_delivery`` requires envelope source == inner sender; then the protocol
  core authenticates the inner frame with the session key it shares with that sender only.
A lying relay can therefore drop, delay, reorder or replay frames (the replay window rejects replays)
but cannot forge, alter or re-attribute them. It learns: both public keys, sizes, timing, and the inner
header's clear fields (type, flags, sequence number, nonce).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from shadowmesh_client.relay.errors import EnvelopeError

KEY_BYTES = 32                    # Ed25519 public key
ENVELOPE_HEADER_BYTES = 1 + KEY_BYTES  # type + key, before the inner frame
LOCAL_HEADER_BYTES = 1
INNER_SENDER_OFFSET = 8           # spec "Frame Format": Version/Type/Flags/Length (4) + Sequence (4)
INNER_MIN_BYTES = 64              # spec "Frame Format" header: 4 + 4 + 32 + 24 bytes
_SENDER_AT = ENVELOPE_HEADER_BYTES + INNER_SENDER_OFFSET
ENVELOPE_SENDER = slice(_SENDER_AT, _SENDER_AT + KEY_BYTES)
"""The inner frame's sender key within a FORWARD/DELIVER envelope (checked in place on the hot paths)."""


class EnvelopeType(IntEnum):
    FORWARD = 0x01
    DELIVER = 0x02
    LOCAL = 0x03


@dataclass(frozen=True, slots=True)
class Envelope:
    type: EnvelopeType
    key: bytes | None        # destination (FORWARD) or source (DELIVER); None for LOCAL
    inner: memoryview        # a view into the received message: no copy

    def encode(self) -> bytes:
        if self.type is EnvelopeType.LOCAL:
            return encode_local(self.inner)
        return _encode(self.type, self.key, self.inner)


def inner_sender(inner: bytes | memoryview) -> bytes:
    """The sender key from an inner frame's header (no crypto; the receiver's AEAD check binds it)."""
    if len(inner) < INNER_MIN_BYTES:
        raise EnvelopeError(f"inner frame of {len(inner)} bytes is shorter than the {INNER_MIN_BYTES}-byte header")
    return bytes(inner[INNER_SENDER_OFFSET:INNER_SENDER_OFFSET + KEY_BYTES])


def _encode(kind: EnvelopeType, key: bytes | None, inner: bytes | memoryview) -> bytes:
    if key is None or len(key) != KEY_BYTES:
        raise EnvelopeError(f"envelope key must be a {KEY_BYTES}-byte Ed25519 public key")
    return b"".join((bytes((kind,)), key, inner))


def encode_forward(destination: bytes, inner: bytes | memoryview) -> bytes:
    """Device -> relay: please forward ``inner`` to ``destination``."""
    return _encode(EnvelopeType.FORWARD, destination, inner)


def encode_deliver(source: bytes, inner: bytes | memoryview) -> bytes:
    """Relay -> device: ``inner`` arrived from the device authenticated as ``source``."""
    return _encode(EnvelopeType.DELIVER, source, inner)


def encode_local(frame: bytes | bytearray | memoryview) -> bytes:
    """A frame for the relay itself (or from it), not to be forwarded."""
    return b"".join((bytes((EnvelopeType.LOCAL,)), frame))


def decode(message: bytes) -> Envelope:
    """Parse an envelope (raises EnvelopeError; never returns a partially checked result)."""
    if not message:
        raise EnvelopeError("empty relay message")
    try:
        kind = EnvelopeType(message[0])
    except ValueError:
        raise EnvelopeError(f"unknown relay envelope type 0x{message[0]:02x}") from None
    view = memoryview(message)
    if kind is EnvelopeType.LOCAL:
        return Envelope(kind, None, view[LOCAL_HEADER_BYTES:])
    if len(message) < ENVELOPE_HEADER_BYTES + INNER_MIN_BYTES:
        raise EnvelopeError(f"relay envelope of {len(message)} bytes is too short to hold a frame")
    return Envelope(kind, bytes(view[1:ENVELOPE_HEADER_BYTES]), view[ENVELOPE_HEADER_BYTES:])


def open_delivery(message: bytes) -> tuple[bytes, memoryview]:
    """Receiver side: ``(source_key, inner_frame)`` of a DELIVER envelope, after checking that the
    relay-written source equals the sender in the inner (AEAD-authenticated) header. The caller then
    hands ``inner`` to the session of ``source_key``, whose AEAD check is what actually authenticates."""
    # Every relayed frame a node receives passes here (issue 17): a well-formed DELIVER is checked in place
    # (the same checks as below, ~5x cheaper than the Envelope); anything else takes the full path for its
    # error.
    if len(message) >= ENVELOPE_HEADER_BYTES + INNER_MIN_BYTES and message[0] == EnvelopeType.DELIVER:
        if type(message) is not bytes:
            message = bytes(message)
        source = message[1:ENVELOPE_HEADER_BYTES]
        if message[ENVELOPE_SENDER] == source:
            return source, memoryview(message)[ENVELOPE_HEADER_BYTES:]
    env = decode(message)
    if env.type is not EnvelopeType.DELIVER:
        raise EnvelopeError(f"expected a DELIVER envelope from the relay, got {env.type.name}")
    if inner_sender(env.inner) != env.key:
        raise EnvelopeError("relay envelope source does not match the frame's sender: dropped")
    return env.key, env.inner
