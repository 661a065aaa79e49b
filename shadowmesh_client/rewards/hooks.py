"""The integration API the mesh daemons call (docs/payments.md "Integration"). No sockets, no asyncio;
time is passed in as ``now``. Control messages go in LOCAL relay envelopes (``encode_local(payload)``).

Device daemon (node), per relay it uses::

    pay = DevicePayments(domain, signer_account, payer, device_id, IssuerConfig(...))
    pay.add_relay(relay_key, relay_address)              # relay_address: the relay's owner (directory)
    out = pay.on_usage(relay_key, nbytes, now)           # every message sent to / DELIVER received from it
    out += pay.poll(now)                                 # on a timer (e.g. every second)
    out += pay.on_control(relay_key, payload, now)       # a LOCAL payload with messages.is_control(payload):
                                                         # acks, RECEIPT_STATE, RELAY_COUNT (may answer a receipt)
    for payload in out: send encode_local(payload) to that relay     (out: list[(relay_key, payload)])

Relay daemon::

    pay = RelayPayments(ledger, CreditPolicy(CreditConfig(...)), resolve, escrow_of, price)
    pay.on_connect(device_key) -> payloads        # the RECEIPT_STATE to send after authentication
    pay.on_usage(device_key, nbytes, now)         # from RelayCore.take_usage(): bytes_in + bytes_out
    pay.on_control(device_key, payload, now) -> payloads (the ack, after an OVER_COUNT rejection also the
                                                  RELAY_COUNT: send only what this returns, after it returns)
    pay.allowed(device_key, now) -> bool          # False: stop forwarding for it (drop its FORWARDs)

``resolve(device_key) -> (payer, device_id) | None`` maps an authenticated Ed25519 key to its owner address
and registry device id (from the directory); ``escrow_of(payer) -> int`` returns the payer's escrow balance
in SMT base units (a cached chain read; the daemon refreshes it, e.g. every 30 s).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from shadowmesh_client.rewards.credit import ChannelFigures, CreditPolicy, Decision
from shadowmesh_client.rewards.errors import ControlMessageError, PaymentError, ReceiptError, ReceiptRejected
from shadowmesh_client.rewards.issuer import IssuerConfig, ReceiptIssuer
from shadowmesh_client.rewards.ledger import ReceiptLedger
from shadowmesh_client.rewards.messages import AckMessage, CountMessage, Kind, ReceiptMessage, RejectReason, decode
from shadowmesh_client.rewards.receipts import ReceiptDomain

log = logging.getLogger(__name__)


class DevicePayments:
    """Receipt issuing for all relays a device uses. Not thread-safe."""

    def __init__(self, domain: ReceiptDomain, account, payer: str, device_id: bytes, config: IssuerConfig) -> None:
        self.domain, self._account, self.payer, self.device_id, self.config = domain, account, payer, device_id, config
        self.issuers: dict[bytes, ReceiptIssuer] = {}

    def add_relay(self, relay_key: bytes, relay_address: str, now: float = 0.0) -> None:
        if relay_key not in self.issuers:
            self.issuers[relay_key] = ReceiptIssuer(self.config, self.domain, self._account, self.payer,
                                                    self.device_id, relay_address, now=now)

    def on_usage(self, relay_key: bytes, nbytes: int, now: float) -> list[tuple[bytes, bytes]]:
        issuer = self.issuers.get(relay_key)
        if issuer is None:
            return []
        issuer.record(nbytes)
        return self._maybe(relay_key, issuer, now)

    def poll(self, now: float) -> list[tuple[bytes, bytes]]:
        out = []
        for key, issuer in self.issuers.items():
            out += self._maybe(key, issuer, now)
        return out

    def _maybe(self, key: bytes, issuer: ReceiptIssuer, now: float, force: bool = False) -> list[tuple[bytes, bytes]]:
        signed = issuer.poll(now, force=force)
        return [(key, ReceiptMessage(signed).encode())] if signed else []

    def on_control(self, relay_key: bytes, payload: bytes, now: float) -> list[tuple[bytes, bytes]]:
        issuer = self.issuers.get(relay_key)
        if issuer is None:
            return []
        try:
            msg = decode(payload)
        except ControlMessageError as exc:
            log.warning("bad payments message from relay: %s", exc)
            return []
        if isinstance(msg, AckMessage):
            if msg.status is RejectReason.STORED:
                issuer.on_ack(msg.cumulative_bytes, msg.relay_counted)
            else:
                log.warning("relay rejected our receipt: %s", msg.status.name)
                issuer.on_ack(0, msg.relay_counted)
            return self._maybe(relay_key, issuer, now)
        if isinstance(msg, CountMessage):
            t = issuer.channel
            if (msg.payer, msg.device_id) != (t.payer, t.device_id):
                return []
            lost = issuer.on_relay_count(msg.receipt_cumulative, msg.stored_cumulative, msg.relay_counted)
            if not lost:
                return []
            log.info("relay counted %d bytes fewer than this device (lost in a relay restart or on a dead link): "
                     "written off, resending a receipt for %d bytes", lost, issuer.target())
            return self._maybe(relay_key, issuer, now, force=True)
        if msg.kind is Kind.RECEIPT_STATE:
            try:
                issuer.adopt(msg.signed)
            except ReceiptError as exc:
                log.warning("%s", exc)
        return []


class RelayPayments:
    """Receipt checking, storage and credit decisions for all devices of a relay. Not thread-safe."""

    def __init__(self, ledger: ReceiptLedger, policy: CreditPolicy,
                 resolve: Callable[[bytes], tuple[str, bytes] | None], escrow_of: Callable[[str], int],
                 price_per_byte: int) -> None:
        self.ledger, self.policy, self.resolve, self.escrow_of = ledger, policy, resolve, escrow_of
        self.price_per_byte = price_per_byte

    def on_connect(self, device_key: bytes) -> list[bytes]:
        ch = self.resolve(device_key)
        latest = self.ledger.latest(*ch) if ch else None
        return [ReceiptMessage(latest, Kind.RECEIPT_STATE).encode()] if latest else []

    def on_usage(self, device_key: bytes, nbytes: int, now: float) -> None:
        ch = self.resolve(device_key)
        if ch is not None and nbytes > 0:
            self.ledger.add_counted(ch[0], ch[1], nbytes)

    def on_control(self, device_key: bytes, payload: bytes, now: float) -> list[bytes]:
        """Handle a RECEIPT; returns the ack to send, built only after the receipt is committed."""
        ch = self.resolve(device_key)
        try:
            msg = decode(payload)
        except ControlMessageError:
            return []
        if not isinstance(msg, ReceiptMessage) or msg.kind is not Kind.RECEIPT:
            return []
        rc = msg.signed.receipt
        if ch is None or (rc.payer, rc.device_id) != ch:
            # A device may only send receipts for itself: its own payer and device id.
            return [AckMessage(rc.payer, rc.device_id, 0, 0, RejectReason.UNKNOWN_DEVICE).encode()]
        status = RejectReason.STORED
        try:
            self.ledger.accept(msg.signed, now)
        except ReceiptRejected as exc:
            status = exc.reason
            log.info("receipt from %s rejected: %s", device_key.hex()[:16], exc)
        except ReceiptError:
            status = RejectReason.BAD_SIGNATURE
        except (PaymentError, sqlite3.Error) as exc:
            # Could not verify (chain unreachable) or not store (disk): no ack; the device's next cumulative
            # receipt covers these bytes.
            log.warning("receipt from %s not acknowledged: %s", device_key.hex()[:16], exc)
            return []
        rec = self.ledger.channel(*ch)
        out = [AckMessage(rc.payer, rc.device_id, rec.receipted, rec.counted, status).encode()]
        if status is RejectReason.OVER_COUNT:
            # Our count is below the device's (we lost some): tell it ours, so it converges down to it.
            out.append(CountMessage(rc.payer, rc.device_id, rc.cumulative_bytes, rec.receipted, rec.counted).encode())
        return out

    def decision(self, device_key: bytes, now: float) -> Decision:
        ch = self.resolve(device_key)
        if ch is None:
            return Decision(False, "unknown device")
        rec = self.ledger.channel(*ch)
        return self.policy.decide(device_key, ChannelFigures(rec.counted, rec.receipted, rec.paid,
                                                             self.escrow_of(ch[0]), self.price_per_byte))

    def allowed(self, device_key: bytes, now: float) -> bool:
        return self.decision(device_key, now).allowed
