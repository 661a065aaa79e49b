"""Stream messages: the wire format of TCP streams and UDP flows carried inside the encrypted session.

Each message travels as one "packet" of a DATA frame's batch (protocol/frames.py): the protocol core,
padding, rekeying, replay protection and the relay see nothing new. What tells a stream message from
an IP packet is the first byte: an IP packet's high nibble is its version (4 or 6); a stream message's
high nibble is 0. A node sends stream messages in frames of their own (never mixed with IP packets), so
the receiver looks at the first byte of a frame's first packet only (node/pump.py ``on_frame``). A node
without this layer writes them to its TUN device, whose kernel refuses them (EINVAL, counted in
``tun tx_errors``): the session is unaffected, the opener sees no answer and gives up after
OPEN_TIMEOUT.

Layout (big-endian)::

    0   1  type      MessageType (1..8)
    1   4  id        stream / flow id; bit 31 (THEIRS) is set when the RECEIVER of the message allocated
                     the id (it opened the stream), so both sides may open streams without collisions
    OPEN    5: window u32 (the opener's receive window, bytes) | port u16 | IPv4 address (4)   = 15 bytes
    ACCEPT  5: window u32 (the acceptor's receive window, bytes)                            =  9 bytes
    REFUSE  5: reason u8 (SOCKS5 reply codes, ``Reason``)                                    =  6 bytes
    DATA    5: offset u64 (stream bytes sent before this payload) | payload (1..MAX_DATA)   >= 14 bytes
    WINDOW  5: increment u32 (bytes the sender may send more)                                =  9 bytes
    FIN     5: offset u64 (total bytes sent: no more follow; half-close)                     = 13 bytes
    RST     5: reason u8                                                                     =  6 bytes
    DGRAM   5: port u16 | IPv4 address (4) | payload (0..MAX_DATAGRAM)                      >= 11 bytes
               (to the acceptor: the target; back to the opener: the source of the reply)

The offsets make any loss visible (a WebSocket reconnect drops frames in flight; the inner stream has
no retransmission): a DATA or FIN whose offset is not the next expected byte resets the stream instead
of corrupting it. Pure: no I/O. ``decode`` raises ``StreamFormatError`` on any malformed message.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from shadowmesh_client.errors import ProtocolError


class StreamFormatError(ProtocolError, ValueError):
    """A stream message is malformed (wrong length, unknown type)."""


class MessageType(enum.IntEnum):
    OPEN = 1
    ACCEPT = 2
    REFUSE = 3
    DATA = 4
    WINDOW = 5
    FIN = 6
    RST = 7
    DGRAM = 8


class Reason(enum.IntEnum):
    """Why a stream was refused or reset: the SOCKS5 reply codes (RFC 1928 section 6), so the proxy
    passes them on unchanged."""

    GENERAL = 1
    NOT_ALLOWED = 2
    NETWORK_UNREACHABLE = 3
    HOST_UNREACHABLE = 4
    CONNECTION_REFUSED = 5
    TTL_EXPIRED = 6          # used for: the target did not answer within CONNECT_TIMEOUT


THEIRS = 0x8000_0000
"""Bit 31 of the id: the receiver of this message allocated the id."""

MAX_MESSAGE = 65_536
"""Bytes: a DATA batch entry is at most 65,536 bytes (protocol/frames.py)."""

MAX_DATA = 65_000
"""Bytes of payload per DATA message (a message plus the batch framing fits one 64 KiB frame payload)."""

MAX_DATAGRAM = MAX_MESSAGE - 11
"""Bytes of a UDP payload in one DGRAM message."""

_HEAD = struct.Struct(">BI")
_OPEN = struct.Struct(">BIIH4s")
_U32 = struct.Struct(">BII")
_U8 = struct.Struct(">BIB")
_U64 = struct.Struct(">BIQ")
_DGRAM = struct.Struct(">BIH4s")
_FIXED = {MessageType.OPEN: _OPEN.size, MessageType.ACCEPT: _U32.size, MessageType.REFUSE: _U8.size,
          MessageType.WINDOW: _U32.size, MessageType.FIN: _U64.size, MessageType.RST: _U8.size}

DATA_HEADER = _U64.size
"""Bytes in front of a DATA payload (type, id, offset)."""


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded message. ``value``: window (OPEN, ACCEPT, WINDOW), reason (REFUSE, RST) or offset (DATA,
    FIN); ``port``/``address`` (4 raw bytes): OPEN and DGRAM; ``payload``: DATA and DGRAM."""

    type: MessageType
    id: int
    value: int = 0
    port: int = 0
    address: bytes = b""
    payload: bytes = b""


def is_stream_message(packet) -> bool:
    """True if ``packet`` (bytes-like, non-empty) is a stream message, not an IP packet."""
    return packet[0] < 0x10


def open_(sid: int, window: int, port: int, address: bytes) -> bytes:
    return _OPEN.pack(MessageType.OPEN, sid, window, port, address)


def accept(sid: int, window: int) -> bytes:
    return _U32.pack(MessageType.ACCEPT, sid, window)


def refuse(sid: int, reason: int) -> bytes:
    return _U8.pack(MessageType.REFUSE, sid, reason)


def window(sid: int, increment: int) -> bytes:
    return _U32.pack(MessageType.WINDOW, sid, increment)


def fin(sid: int, offset: int) -> bytes:
    return _U64.pack(MessageType.FIN, sid, offset)


def rst(sid: int, reason: int) -> bytes:
    return _U8.pack(MessageType.RST, sid, reason)


def data(sid: int, offset: int, payload) -> bytes:
    """One DATA message (``payload``: 1..MAX_DATA bytes; callers split larger writes)."""
    return _U64.pack(MessageType.DATA, sid, offset) + payload


def dgram(fid: int, port: int, address: bytes, payload) -> bytes:
    return _DGRAM.pack(MessageType.DGRAM, fid, port, address) + payload


def decode(packet) -> Message:
    """Parse one message; StreamFormatError if the type is unknown or the length is wrong."""
    size = len(packet)
    if size < _HEAD.size:
        raise StreamFormatError(f"stream message of {size} bytes is too short")
    kind = packet[0]
    if kind == MessageType.DATA:
        if size <= DATA_HEADER or size > DATA_HEADER + MAX_DATA:
            raise StreamFormatError(f"DATA message of {size} bytes (payload must be 1..{MAX_DATA} bytes)")
        _, sid, offset = _U64.unpack_from(packet)
        return Message(MessageType.DATA, sid, offset, payload=bytes(packet[DATA_HEADER:]))
    if kind == MessageType.DGRAM:
        if size < _DGRAM.size:
            raise StreamFormatError(f"DGRAM message of {size} bytes is too short")
        _, fid, port, address = _DGRAM.unpack_from(packet)
        return Message(MessageType.DGRAM, fid, port=port, address=address, payload=bytes(packet[_DGRAM.size:]))
    try:
        mtype = MessageType(kind)
    except ValueError:
        raise StreamFormatError(f"unknown stream message type {kind}") from None
    if size != _FIXED[mtype]:
        raise StreamFormatError(f"{mtype.name} message must be {_FIXED[mtype]} bytes, got {size}")
    if mtype == MessageType.OPEN:
        _, sid, win, port, address = _OPEN.unpack_from(packet)
        return Message(mtype, sid, win, port, address)
    if mtype == MessageType.FIN:
        _, sid, offset = _U64.unpack_from(packet)
        return Message(mtype, sid, offset)
    if mtype in (MessageType.REFUSE, MessageType.RST):
        _, sid, reason = _U8.unpack_from(packet)
        return Message(mtype, sid, reason)
    _, sid, win = _U32.unpack_from(packet)
    return Message(mtype, sid, win)
