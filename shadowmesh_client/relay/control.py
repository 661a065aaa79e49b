"""Control messages on a device-relay link, sealed inside the device-relay Session: the ONE place that
seals and opens them (issue 12 "Cleartext on relay links").

Before, payments control messages (payer wallet, device id, byte counts, price; rewards/messages.py) crossed
relay links as bare LOCAL payloads, readable by anyone who could read the link (ws://, a TLS-terminating
CDN). Now every control message travels as one packet of a DATA frame of the device-relay Session (the
same session whose handshake opened the link), in a LOCAL envelope::

    LOCAL envelope (0x03) || DATA frame of the device-relay session (protocol/frames.py)
                              packets = [control message, ...]    (each one whole message)

so it is encrypted and authenticated like relayed traffic, numbered and replay-checked. A bare control
payload in a LOCAL envelope (the old, cleartext form) is refused and counted by both ends.

Control message kinds (first byte selects the family; no protocol frame starts with 0xFA or 0xFB):

* 0xFA ...: payments (rewards/messages.py: RECEIPT, RECEIPT_ACK, RECEIPT_STATE, RELAY_COUNT);
* 0xFB 0x42 ("B") BLOCK, device -> relay: ``source key (32) || seconds (uint16)``: stop forwarding frames
  from ``source`` to me for ``seconds`` (the node sends it for a source whose frames it only ever rejects:
  garbage with valid headers and wrong tags). The relay applies it to the authenticated link's key only,
  so a device can only block traffic TO ITSELF.

Pure: ``now`` is an argument; the Session is the caller's. May import: protocol, relay.envelope.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from shadowmesh_client.protocol import ProtocolError, Session

BLOCK_MAGIC = b"\xfb\x42"
_BLOCK = struct.Struct(">2s32sH")
BLOCK_BYTES = _BLOCK.size
MAX_BLOCK_SECONDS = 3_600
"""Seconds: the longest block a device may ask for (the relay caps the request)."""


def encode_block(source: bytes, seconds: int) -> bytes:
    if len(source) != 32:
        raise ValueError("BLOCK names a 32-byte Ed25519 key")
    return _BLOCK.pack(BLOCK_MAGIC, source, max(0, min(int(seconds), 0xFFFF)))


def decode_block(payload: bytes | memoryview) -> tuple[bytes, int] | None:
    """(source key, seconds) of a BLOCK message, or None if ``payload`` is not one."""
    if len(payload) != BLOCK_BYTES or bytes(payload[:2]) != BLOCK_MAGIC:
        return None
    _, source, seconds = _BLOCK.unpack(bytes(payload))
    return source, seconds


def is_bare_control(payload: bytes | memoryview) -> bool:
    """A LOCAL payload that is a control message in the clear (the old form): refused."""
    return len(payload) >= 2 and payload[0] in (0xFA, 0xFB)


def seal_controls(session: Session, payloads: Sequence[bytes], now: float) -> list[bytearray]:
    """DATA frames of ``session`` carrying ``payloads`` (one each; the caller puts each in a LOCAL
    envelope: ``relay.encode_local``); what finds no usable key is left out."""
    out: list[bytearray] = []
    for payload in payloads:
        try:
            out.append(session.seal_packets([payload], now))
        except ProtocolError:   # no usable key (closed, used up): the caller's next message retries
            return out
    return out


@dataclass(slots=True)
class Opened:
    """What one LOCAL frame of the device-relay session held."""

    controls: list[bytes] = field(default_factory=list)   # control messages (DATA packets)
    outgoing: list[bytearray] = field(default_factory=list)   # protocol frames to send back (as LOCAL)
    events: list = field(default_factory=list)


def open_local(session: Session, frame: bytes | memoryview, now: float) -> Opened:
    """Open one LOCAL protocol frame with ``session``; raises ProtocolError if it does not authenticate."""
    received = session.open(bytes(frame), now)
    return Opened(received.packets, received.outgoing, received.events)
