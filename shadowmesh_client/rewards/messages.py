"""Payments control messages between a device and a relay, carried in LOCAL relay envelopes
(relay_core/envelope.py). Pure; no I/O. Layout documented in docs/payments.md "Control messages".

Every message starts with ``MAGIC`` (0xFA, which no protocol frame starts with: those begin with
version << 4 = 0x1X) and a version byte (1), then a kind byte. Integers are big-endian, addresses 20 bytes::

    RECEIPT        (0x01, device -> relay), 203 bytes (3 header + 200):
        payer 20 | deviceId 32 | relay 20 | cumulativeBytes 32 | pricePerByte 32 | r 32 | vs 32
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
    RELAY_NOTICE   (0x05, relay -> device, when it stops or resumes carrying the device; issue 11 item 2),
                   100 bytes (3 header + 97): reason 1 (NoticeReason) | pricePerByte 32 (the session's agreed
                   price) | owed 32 (SMT base units the payer owes this relay, receipted + unreceipted) |
                   guaranteed 32 (guaranteedAmount(payer, relay) as the relay last read it)

They travel SEALED in the device-relay session (relay/control.py), never as bare LOCAL payloads.

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
_NOTICE = struct.Struct(">B32s32s32s")               # 97 bytes (+3 header = 100)


class Kind(IntEnum):
    RECEIPT = 0x01
    RECEIPT_ACK = 0x02
    RECEIPT_STATE = 0x03
    RELAY_COUNT = 0x04
    RELAY_NOTICE = 0x05


class RejectReason(IntEnum):
    STORED = 0
    BAD_SIGNATURE = 1      # not signed by the payer or an authorised signer (or other chain/contract)
    WRONG_RELAY = 2        # receipt names another relay
    STALE = 3              # not above the stored cumulative
    OVER_COUNT = 4         # more bytes than the relay counted + tolerance
    UNKNOWN_DEVICE = 5     # the relay cannot map this device to a payer/device id
    PRICE_MISMATCH = 6     # pricePerByte is not the price the relay advertised when the session started
    MALFORMED = 7
    SIGNER_EXPIRING = 8    # a revoked signer whose validUntil is too close for the relay to claim in time


class NoticeReason(IntEnum):
    """Why a relay stopped (or resumed) carrying a device (RELAY_NOTICE)."""

    RESUMED = 0
    CREDIT_EXCEEDED = 1    # too many bytes carried without a receipt: send receipts (is a signer configured?)
    RESERVE_EXHAUSTED = 2  # the payer's reserve for this relay does not cover what is owed: fund it
    SIGNER_CAP = 3         # the device's signer reached its cap for the period: raise it or wait
    NO_PRICE = 4           # receipts at the session's agreed price are missing or refused: reconnect


NOTICE_ADVICE = {
    NoticeReason.RESUMED: "nothing to do",
    NoticeReason.CREDIT_EXCEEDED: "this device sends no (or too few) receipts: check `payments:` (a signer "
                                  "key and its password) in the config",
    NoticeReason.RESERVE_EXHAUSTED: "fund the payer's reserve for this relay: `shadowmesh-client deposit "
                                    "--relay RELAY_ADDRESS AMOUNT`",
    NoticeReason.SIGNER_CAP: "the receipt signer reached its cap for this period: raise it with "
                             "`shadowmesh-client authorize-signer SIGNER --cap ...`, or wait for the next period",
    NoticeReason.NO_PRICE: "the relay refuses receipts at the price agreed when the session started: reconnect",
}
"""What the device's owner should do, per reason (the device logs it with the WARNING)."""


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
            rc.cumulative_bytes.to_bytes(32, "big"), rc.price_per_byte.to_bytes(32, "big"),
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


@dataclass(frozen=True)
class NoticeMessage:
    """The relay stopped (reason != RESUMED) or resumed carrying the device; figures in SMT base units."""

    reason: NoticeReason
    price_per_byte: int
    owed: int
    guaranteed: int

    def encode(self) -> bytes:
        return _HEAD.pack(MAGIC, VERSION, Kind.RELAY_NOTICE) + _NOTICE.pack(
            self.reason, self.price_per_byte.to_bytes(32, "big"), min(self.owed, 2**256 - 1).to_bytes(32, "big"),
            min(self.guaranteed, 2**256 - 1).to_bytes(32, "big"))

    @property
    def advice(self) -> str:
        return NOTICE_ADVICE[self.reason]


Message = ReceiptMessage | AckMessage | CountMessage | NoticeMessage


def decode(payload: bytes | memoryview) -> Message:
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
    if kind is Kind.RELAY_NOTICE:
        if len(body) != _NOTICE.size:
            raise ControlMessageError(f"RELAY_NOTICE body must be {_NOTICE.size} bytes, got {len(body)}")
        reason, price, owed, guaranteed = _NOTICE.unpack(body)
        try:
            why = NoticeReason(reason)
        except ValueError:
            raise ControlMessageError(f"unknown relay notice reason {reason}") from None
        return NoticeMessage(why, int.from_bytes(price, "big"), int.from_bytes(owed, "big"),
                             int.from_bytes(guaranteed, "big"))
    if len(body) != _ACK.size:
        raise ControlMessageError(f"RECEIPT_ACK body must be {_ACK.size} bytes, got {len(body)}")
    payer, device, cum, counted, status = _ACK.unpack(body)
    try:
        status = RejectReason(status)
    except ValueError:
        raise ControlMessageError(f"unknown receipt ack status {status}") from None
    return AckMessage(to_checksum_address("0x" + payer.hex()), device, int.from_bytes(cum, "big"), counted, status)
