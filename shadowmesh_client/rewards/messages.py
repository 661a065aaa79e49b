"""Payments control messages between a device and a relay, carried in LOCAL relay envelopes
(relay_core/envelope.py). Pure; no I/O. Layout documented in docs/payments.md "Control messages".

Every message starts with ``MAGIC`` (0xFA, which no protocol frame starts with: those begin with
version << 4 = 0x1X) and a version byte (1), then a kind byte. Integers are big-endian, addresses 20 bytes::

    RECEIPT        (0x01, device -> relay), 203 bytes (3 header + 200):
        payer 20 | deviceId 32 | relay 20 | cumulativeBytes 32 | maxPricePerByte 32 | r 32 | vs 32
    RECEIPT_ACK    (0x02, relay -> device), 96 bytes:
        payer 20 | deviceId 32 | cumulativeBytes 32 (latest stored) | relayCounted 8 | status 1
                   (status 0 = stored; else a RejectReason and cumulativeBytes is what stays stored)
    RECEIPT_STATE  (0x03, relay -> device on connect), same body as RECEIPT: the latest receipt the relay
                   holds for the device, so a restarted device resumes from a figure it signed itself.
    RELAY_COUNT    (0x04, relay -> device, right after an OVER_COUNT ack), 151 bytes:
        payer 20 | deviceId 32 | receiptCumulative 32 (the rejected receipt's figure) |
        storedCumulative 32 | relayCounted 32 (the relay's own count when it checked that receipt)
                   Lets the device lower its count to the relay's after the relay lost part of its count
                   (crash, bytes lost on a dead link); rewards/issuer.py ReceiptIssuer.on_relay_count.
                   Added in version 1 as a new kind: older devices ignore it (unknown kind), and every
                   older message still decodes unchanged.

Decoding checks exact lengths and raises ControlMessageError only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from eth_utils import to_checksum_address

from shadowmesh_client.rewards.errors import ControlMessageError, ReceiptError
from shadowmesh_client.rewards.receipts import Receipt, SignedReceipt

MAGIC = 0xFA
VERSION = 1
_HEAD = struct.Struct(">BBB")
_RECEIPT = struct.Struct(">20s32s20s32s32s32s32s")  # 200 bytes
_ACK = struct.Struct(">20s32s32sQB")                 # 93 bytes (+3 header = 96)
_COUNT = struct.Struct(">20s32s32s32s32s")           # 148 bytes (+3 header = 151)


class Kind(IntEnum):
    RECEIPT = 0x01
    RECEIPT_ACK = 0x02
    RECEIPT_STATE = 0x03
    RELAY_COUNT = 0x04


class RejectReason(IntEnum):
    STORED = 0
    BAD_SIGNATURE = 1      # not signed by the payer or an authorised signer (or other chain/contract)
    WRONG_RELAY = 2        # receipt names another relay
    STALE = 3              # not above the stored cumulative
    OVER_COUNT = 4         # more bytes than the relay counted + tolerance
    UNKNOWN_DEVICE = 5     # the relay cannot map this device to a payer/device id
    PRICE_TOO_LOW = 6      # maxPricePerByte below the relay's price
    MALFORMED = 7


def is_control(payload: bytes | memoryview) -> bool:
    """Whether a LOCAL payload is a payments control message (else: a protocol frame for the link)."""
    return len(payload) >= 2 and payload[0] == MAGIC and payload[1] == VERSION


@dataclass(frozen=True)
class ReceiptMessage:
    signed: SignedReceipt
    kind: Kind = Kind.RECEIPT

    def encode(self) -> bytes:
        rc = self.signed.receipt
        return _HEAD.pack(MAGIC, VERSION, self.kind) + _RECEIPT.pack(
            bytes.fromhex(rc.payer[2:]), rc.device_id, bytes.fromhex(rc.relay[2:]),
            rc.cumulative_bytes.to_bytes(32, "big"), rc.max_price_per_byte.to_bytes(32, "big"),
            self.signed.r, self.signed.vs)


@dataclass(frozen=True)
class AckMessage:
    payer: str
    device_id: bytes
    cumulative_bytes: int
    relay_counted: int
    status: RejectReason = RejectReason.STORED

    def encode(self) -> bytes:
        return _HEAD.pack(MAGIC, VERSION, Kind.RECEIPT_ACK) + _ACK.pack(
            bytes.fromhex(to_checksum_address(self.payer)[2:]), self.device_id,
            self.cumulative_bytes.to_bytes(32, "big"), min(self.relay_counted, 2**64 - 1), self.status)


@dataclass(frozen=True)
class CountMessage:
    """The relay's own count for a channel, sent after it rejected ``receipt_cumulative`` as OVER_COUNT."""

    payer: str
    device_id: bytes
    receipt_cumulative: int
    stored_cumulative: int
    relay_counted: int

    def encode(self) -> bytes:
        return _HEAD.pack(MAGIC, VERSION, Kind.RELAY_COUNT) + _COUNT.pack(
            bytes.fromhex(to_checksum_address(self.payer)[2:]), self.device_id,
            self.receipt_cumulative.to_bytes(32, "big"), self.stored_cumulative.to_bytes(32, "big"),
            self.relay_counted.to_bytes(32, "big"))


def decode(payload: bytes | memoryview) -> ReceiptMessage | AckMessage | CountMessage:
    data = bytes(payload)
    if len(data) < _HEAD.size:
        raise ControlMessageError(f"payments control message of {len(data)} bytes is too short")
    magic, version, kind = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise ControlMessageError("not a payments control message (bad magic byte)")
    if version != VERSION:
        raise ControlMessageError(f"payments control message version {version} is not supported (this client: 1)")
    body = data[_HEAD.size:]
    try:
        kind = Kind(kind)
    except ValueError:
        raise ControlMessageError(f"unknown payments control message kind 0x{kind:02x}") from None
    if kind in (Kind.RECEIPT, Kind.RECEIPT_STATE):
        if len(body) != _RECEIPT.size:
            raise ControlMessageError(f"{kind.name} body must be {_RECEIPT.size} bytes, got {len(body)}")
        payer, device, relay, cum, price, r, vs = _RECEIPT.unpack(body)
        try:
            rc = Receipt("0x" + payer.hex(), device, "0x" + relay.hex(), int.from_bytes(cum, "big"),
                         int.from_bytes(price, "big"))
            return ReceiptMessage(SignedReceipt(rc, r, vs), kind)
        except ReceiptError as exc:
            raise ControlMessageError(str(exc)) from None
    if kind is Kind.RELAY_COUNT:
        if len(body) != _COUNT.size:
            raise ControlMessageError(f"RELAY_COUNT body must be {_COUNT.size} bytes, got {len(body)}")
        payer, device, rejected, stored, counted = _COUNT.unpack(body)
        return CountMessage(to_checksum_address("0x" + payer.hex()), device, int.from_bytes(rejected, "big"),
                            int.from_bytes(stored, "big"), int.from_bytes(counted, "big"))
    if len(body) != _ACK.size:
        raise ControlMessageError(f"RECEIPT_ACK body must be {_ACK.size} bytes, got {len(body)}")
    payer, device, cum, counted, status = _ACK.unpack(body)
    try:
        status = RejectReason(status)
    except ValueError:
        raise ControlMessageError(f"unknown receipt ack status {status}") from None
    return AckMessage(to_checksum_address("0x" + payer.hex()), device, int.from_bytes(cum, "big"), counted, status)
