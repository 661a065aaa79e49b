"""ShadowMesh frame: the binary wire format of spec "Frame Format (Binary)", exactly as drawn there.

Layout (all multi-byte integers big-endian / network byte order; bit 0 is the most significant bit)::

    offset size  field
    0      4 bit Version      protocol version, high nibble of byte 0; this code speaks 1
    0      4 bit Type         FrameType, low nibble of byte 0 (1..6; 0 and 7..15 are rejected)
    1      1     Flags        Flags bit set; unknown bits must be 0
                                0x01 PADDED     payload was padded to a size bucket (DATA/KEEPALIVE/CLOSE)
                                0x02 KEY_PHASE  which session key sealed the frame (flips at each rekey)
                                0x04 RESPONSE   on REKEY frames: this is the answer, not the request
                                0x08 OFFLOAD    on HANDSHAKE_INIT/RESPONSE: the sender accepts offload-form
                                                DATA frames (tun/gso.py; docs/protocol.md "Offload");
                                                on DATA: the packets are in offload form (only ever sent
                                                to a peer whose handshake carried the flag)
                                0x80 JUMBO      the encrypted payload is longer than 65,535 bytes
    2      2     Length       length of the Encrypted Payload in bytes, NOT counting the 64-byte header
                              or the 16-byte tag. If the payload exceeds 65,535 bytes, JUMBO is set and
                              Length holds the payload length modulo 65,536; the full length is then the
                              frame's size minus 80. A frame always travels as exactly one transport message
                              (one binary WebSocket message, or one relay envelope), so its end is known;
                              the decoder requires Length and JUMBO to agree with that size. Max payload:
                              1 MiB (MAX_PAYLOAD), so a 64 KiB IP packet (plus its 4 bytes of batch
                              framing) fits in one frame.
    4      4     Sequence     per-key, per-direction counter, starting at 0; checked by the receiver's
                              replay window. Handshake frames carry 0. A key is replaced before it wraps.
    8      32    Peer Public Key  the SENDER's 32-byte Ed25519 identity key (its registry identity). The
                              receiver uses it to find the session without decrypting; a relay reads it to
                              know who sent the frame. It is authenticated (part of the associated data),
                              so nobody can re-label a frame as coming from someone else.
    40     24    Nonce        XChaCha20 nonce. Session frames: 20-byte random per-key prefix || Sequence
                              (so nonces never repeat under a key, without a syscall per frame). Handshake
                              frames: 24 random bytes (their key is shared by the whole network).
    64     n     Encrypted Payload   XChaCha20-Poly1305 ciphertext of the plaintext payload
    64+n   16    Auth Tag     Poly1305 tag over the associated data = header bytes 0..63, and the ciphertext

Every header bit is associated data: flipping any bit of the frame makes it fail to open.

Plaintext payloads by type:
  DATA        batch of IP packets: count (uint16, 1..1024) || count x (packet length - 1) (uint16 each) ||
              the packets back to back || zero padding (only with PADDED). Packets are 1..65,536 bytes.
  KEEPALIVE   empty (or zero padding with PADDED)
  CLOSE       one reason byte (0 = normal shutdown) (+ zero padding with PADDED)
  HANDSHAKE_* and REKEY: see ``handshake``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from shadowmesh_client import crypto
from shadowmesh_client.protocol import constants as C
from shadowmesh_client.protocol.errors import FrameFormatError


class FrameType(enum.IntEnum):
    """The 4-bit Type field."""

    HANDSHAKE_INIT = 1
    HANDSHAKE_RESPONSE = 2
    DATA = 3
    KEEPALIVE = 4
    REKEY = 5
    CLOSE = 6


class Flags(enum.IntFlag):
    """The 8-bit Flags field."""

    PADDED = 0x01
    KEY_PHASE = 0x02
    RESPONSE = 0x04
    OFFLOAD = 0x08
    JUMBO = 0x80


BytesLike: TypeAlias = bytes | bytearray | memoryview
"""What frames and packets may arrive as: bytes from the network, views and buffers from the TUN reader."""

KNOWN_FLAGS = int(Flags.PADDED | Flags.KEY_PHASE | Flags.RESPONSE | Flags.OFFLOAD | Flags.JUMBO)
_VALID_TYPES = frozenset(int(t) for t in FrameType)

HEADER = struct.Struct(">BBHI32s24s")  # version|type, flags, length, seq, sender, nonce
SESSION_HEADER = struct.Struct(">BBHI32s20sI")  # the same with nonce = prefix(20) || seq(4)
_COUNT = struct.Struct(">H")
_U16 = ">%dH"
NONCE_OFFSET = 40  # bytes: where the nonce starts in the header
_DATA_ONE = struct.Struct(">BBHI32s20sIHH")  # session header + count + (length - 1) of a single packet
_PADDED = 0x01
_JUMBO = 0x80
assert HEADER.size == SESSION_HEADER.size == C.HEADER_SIZE
_DATA_VT = (C.PROTOCOL_VERSION << 4) | FrameType.DATA


@dataclass(frozen=True)
class FrameHeader:
    """The 64-byte header; ``length`` is the field as on the wire (see the module docstring)."""

    version: int
    type: FrameType
    flags: int
    length: int
    seq: int
    sender: bytes
    nonce: bytes

    def encode(self) -> bytes:
        """The 64 header bytes."""
        return HEADER.pack((self.version << 4) | int(self.type), self.flags, self.length, self.seq,
                           self.sender, self.nonce)

    @classmethod
    def decode(cls, data: bytes) -> FrameHeader:
        """Parse exactly 64 header bytes (no check against a payload size; see ``peek_header``)."""
        if len(data) != C.HEADER_SIZE:
            raise FrameFormatError(f"a frame header is {C.HEADER_SIZE} bytes, got {len(data)}")
        return _parse(data)

    @property
    def payload_length(self) -> int:
        """Bytes of encrypted payload the header announces (low 16 bits only when JUMBO)."""
        return self.length


def _parse(data: BytesLike) -> FrameHeader:
    vt, flags, length, seq, sender, nonce = HEADER.unpack_from(data)
    version, ftype = vt >> 4, vt & 0x0F
    if version != C.PROTOCOL_VERSION:
        raise FrameFormatError(f"unsupported frame version {version} (this client speaks {C.PROTOCOL_VERSION})")
    if ftype not in _VALID_TYPES:
        raise FrameFormatError(f"unknown frame type {ftype}")
    if flags & ~KNOWN_FLAGS:
        raise FrameFormatError(f"unknown flag bits 0x{flags & ~KNOWN_FLAGS:02x}")
    return FrameHeader(version, FrameType(ftype), flags, length, seq, sender, nonce)


def check_length(flags: int, length: int, frame_size: int) -> int:
    """Validate Length/JUMBO against the frame's size; return the encrypted payload size in bytes."""
    payload = frame_size - C.OVERHEAD
    if payload < 0:
        raise FrameFormatError(f"frame of {frame_size} bytes is shorter than header + tag ({C.OVERHEAD})")
    if payload > C.MAX_PAYLOAD:
        raise FrameFormatError(f"frame payload of {payload} bytes exceeds the {C.MAX_PAYLOAD}-byte maximum")
    jumbo = bool(flags & _JUMBO)
    if jumbo != (payload > C.MAX_SHORT_PAYLOAD) or length != payload & 0xFFFF:
        raise FrameFormatError("frame Length field does not match the frame size (truncated or padded?)")
    return payload


def peek_header(frame: BytesLike) -> FrameHeader:
    """The header of ``frame`` after checking version, type, flags and length; no decryption.

    What a router or relay needs: ``peek_header(frame).sender`` is the sending device's key.
    """
    if len(frame) < C.OVERHEAD:
        raise FrameFormatError(f"frame of {len(frame)} bytes is shorter than header + tag ({C.OVERHEAD})")
    header = _parse(frame)
    check_length(header.flags, header.length, len(frame))
    return header


def peek_sender(frame: BytesLike) -> bytes:
    """The sender's 32-byte public key (bytes 8..40) without any validation: a fast routing hint only."""
    if len(frame) < C.OVERHEAD:
        raise FrameFormatError(f"frame of {len(frame)} bytes is shorter than header + tag ({C.OVERHEAD})")
    return bytes(frame[8:40])


def _length_fields(payload_size: int, flags: int) -> tuple[int, int]:
    if payload_size > C.MAX_PAYLOAD:
        raise FrameFormatError(
            f"payload of {payload_size} bytes exceeds the {C.MAX_PAYLOAD}-byte frame maximum; split the batch"
        )
    if payload_size > C.MAX_SHORT_PAYLOAD:
        flags |= _JUMBO
    return payload_size & 0xFFFF, int(flags)


def pad_size(size: int) -> int:
    """The size a PADDED plaintext of ``size`` bytes grows to (next bucket; see constants.PAD_BUCKETS)."""
    for bucket in C.PAD_BUCKETS:
        if size <= bucket:
            return bucket
    step = C.PAD_LARGE_STEP
    return -(-size // step) * step


def seal(ftype: int, flags: int, seq: int, sender: bytes, nonce: bytes, plaintext: bytes, key: bytes,
         pad: bool = False) -> bytearray:
    """A complete frame: header (Length and JUMBO computed here) + XChaCha20-Poly1305(plaintext, ad=header).

    With ``pad`` the plaintext is zero-padded to its size bucket and the PADDED flag is set.
    Returns a bytearray (send it as is; WebSocket libraries accept any bytes-like object).
    """
    size = len(plaintext)
    n = pad_size(size) if pad else size
    if pad:
        flags |= _PADDED
    length, flags = _length_fields(n, flags)
    frame = bytearray(C.OVERHEAD + n)
    HEADER.pack_into(frame, 0, (C.PROTOCOL_VERSION << 4) | ftype, flags, length, seq, sender, nonce)
    frame[C.HEADER_SIZE : C.HEADER_SIZE + size] = plaintext
    crypto.aead_seal_in_place(frame, C.HEADER_SIZE, NONCE_OFFSET, n, key)
    return frame


def check_batch(packets: Sequence[BytesLike]) -> None:
    """FrameFormatError unless ``packets`` is a batch ``seal_packets`` accepts: 1..1024 packets of
    1..65,536 bytes each, at most MAX_PAYLOAD bytes of plaintext in all."""
    count = len(packets)
    if not 0 < count <= C.MAX_PACKETS_PER_FRAME:
        raise FrameFormatError(f"a data frame carries 1..{C.MAX_PACKETS_PER_FRAME} packets, got {count}")
    lengths = [len(p) for p in packets]
    if min(lengths) < 1 or max(lengths) > C.MAX_PACKET_SIZE:
        raise FrameFormatError(f"IP packets must be 1..{C.MAX_PACKET_SIZE} bytes")
    if 2 + 2 * count + sum(lengths) > C.MAX_PAYLOAD:
        raise FrameFormatError(f"a batch of more than {C.MAX_PAYLOAD} bytes does not fit one frame; split it")


def seal_packets(flags: int, seq: int, sender: bytes, prefix: bytes, packets: Sequence[BytesLike], pad: bool,
                 key: bytes) -> bytearray:
    """A DATA frame carrying ``packets``: the batch is written once into the frame buffer and encrypted
    in place by one AEAD call (no intermediate plaintext object)."""
    count = len(packets)
    if count == 1:  # the common case at MTU 1,400 without batching: no per-packet loops
        packet = packets[0]
        size = len(packet)
        if not 0 < size <= C.MAX_PACKET_SIZE:
            raise FrameFormatError(f"IP packets must be 1..{C.MAX_PACKET_SIZE} bytes, got {size}")
        total = 4 + size
        n = pad_size(total) if pad else total
        if pad:
            flags |= _PADDED
        length, flags = _length_fields(n, flags) if n > C.MAX_SHORT_PAYLOAD else (n, flags)
        frame = bytearray(C.OVERHEAD + n)
        _DATA_ONE.pack_into(frame, 0, _DATA_VT, flags, length, seq, sender, prefix, seq, 1, size - 1)
        frame[68 : 68 + size] = packet
        crypto.aead_seal_in_place(frame, C.HEADER_SIZE, NONCE_OFFSET, n, key)
        return frame
    if not 0 < count <= C.MAX_PACKETS_PER_FRAME:
        raise FrameFormatError(f"a data frame carries 1..{C.MAX_PACKETS_PER_FRAME} packets, got {count}")
    lengths = [len(p) for p in packets]
    total = 2 + 2 * count + sum(lengths)
    if min(lengths) < 1 or max(lengths) > C.MAX_PACKET_SIZE:
        raise FrameFormatError(f"IP packets must be 1..{C.MAX_PACKET_SIZE} bytes")
    n = pad_size(total) if pad else total
    if pad:
        flags |= _PADDED
    length, flags = _length_fields(n, flags)
    frame = bytearray(C.OVERHEAD + n)
    SESSION_HEADER.pack_into(frame, 0, _DATA_VT, flags, length, seq, sender, prefix, seq)
    pos = C.HEADER_SIZE + 2 + 2 * count
    struct.pack_into(f">H{count}H", frame, C.HEADER_SIZE, count, *[x - 1 for x in lengths])
    for p, ln in zip(packets, lengths, strict=False):  # lengths was built from packets: same length
        frame[pos : pos + ln] = p
        pos += ln
    crypto.aead_seal_in_place(frame, C.HEADER_SIZE, NONCE_OFFSET, n, key)
    return frame


def open_payload(frame: BytesLike, key: bytes) -> bytearray | None:
    """Decrypt the payload of a frame whose header was validated; None if the tag does not verify."""
    return crypto.aead_open(frame, C.HEADER_SIZE, NONCE_OFFSET, key)


def decode_packets(plaintext: BytesLike, padded: bool) -> list[bytes]:
    """The IP packets of a DATA plaintext (see the module docstring); FrameFormatError if malformed.

    Each packet is copied exactly once, from a memoryview of ``plaintext`` into its ``bytes`` (slicing
    the plaintext first would copy twice). Zero-copy views were tried: a memoryview of a bytearray is
    unhashable, and callers rely on packets being ordinary hashable ``bytes``.
    """
    size = len(plaintext)
    if size < 2:
        raise FrameFormatError("data frame too short for its packet count")
    (count,) = _COUNT.unpack_from(plaintext, 0)
    if not 0 < count <= C.MAX_PACKETS_PER_FRAME or size < 2 + 2 * count:
        raise FrameFormatError("data frame packet count is invalid")
    pos = 2 + 2 * count
    if count == 1:
        end = pos + _COUNT.unpack_from(plaintext, 2)[0] + 1
        if end > size or (end != size and not padded):
            raise FrameFormatError("data frame packet lengths do not match its size")
        return [bytes(memoryview(plaintext)[pos:end])]
    view = memoryview(plaintext)
    out = []
    for ln in struct.unpack_from(_U16 % count, plaintext, 2):
        end = pos + ln + 1
        out.append(bytes(view[pos:end]))
        pos = end
    if pos > size or (pos != size and not padded):
        raise FrameFormatError("data frame packet lengths do not match its size")
    return out
