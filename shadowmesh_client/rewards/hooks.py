"""The integration API the mesh daemons call (docs/payments.md "Integration"). No sockets, no asyncio;
time is passed in as ``now``. Control messages go in LOCAL relay envelopes (``encode_local(payload)``).

Device daemon (node), per relay it uses::

    pay = DevicePayments(domain, signer_account, payer, device_id, IssuerConfig(...))
    pay.add_relay(relay_key, relay_address)              # relay_address: the relay's owner (directory)
    pay.start_session(relay_key, relayPrice, paidBytes)  # on every (re)connect: the price this session signs
    pay.end_session(relay_key)                           # the link closed
    out = pay.on_usage(relay_key, nbytes, now)           # every message sent to / DELIVER received from it
    out += pay.poll(now)                                 # on a timer (e.g. every second)
    out += pay.on_control(relay_key, payload, now)       # a LOCAL payload with messages.is_control(payload):
                                                         # acks, RECEIPT_STATE, RELAY_COUNT (may answer a receipt)
    for payload in out: send encode_local(payload) to that relay     (out: list[(relay_key, payload)])

Relay daemon::

    pay = RelayPayments(ledger, CreditPolicy(CreditConfig(...)), resolve, guarantee_of, allowance_of, price)
    pay.start_session(device_key, price)          # at authentication: the price this session's receipts carry
    pay.on_connect(device_key) -> payloads        # the RECEIPT_STATE to send after authentication
    pay.on_usage(device_key, nbytes, now)         # from RelayCore.take_usage(): bytes_in + bytes_out
    pay.on_control(device_key, payload, now) -> payloads (the ack, after an OVER_COUNT rejection also the
                                                  RELAY_COUNT: send only what this returns, after it returns)
    pay.budgets(connected_keys, now) -> {key: Grant}   # bytes each may still be carried for (0: stopped)

``resolve(device_key) -> (payer, device_id) | None`` maps an authenticated Ed25519 key to its owner address
and registry device id (from the directory); ``guarantee_of(payer) -> int`` is guaranteedAmount(payer, relay)
and ``allowance_of(payer, signer, device_id) -> int`` the hot signer's signerAllowance, in SMT base units
(cached chain reads the daemon refreshes on a timer and on the token's events).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from shadowmesh_client.rewards import credit as cr
from shadowmesh_client.rewards.credit import ChannelFigures, CreditPolicy, PayerFigures
from shadowmesh_client.rewards.errors import ControlMessageError, PaymentError, ReceiptError, ReceiptRejected
from shadowmesh_client.rewards.issuer import IssuerConfig, ReceiptIssuer
from shadowmesh_client.rewards.ledger import ReceiptLedger
from shadowmesh_client.rewards.messages import (
    AckMessage,
    CountMessage,
    Kind,
    NoticeMessage,
    NoticeReason,
    ReceiptMessage,
    RejectReason,
    decode,
)
from shadowmesh_client.rewards.receipts import ReceiptDomain

log = logging.getLogger(__name__)


class DevicePayments:
    """Receipt issuing for all relays a device uses. Not thread-safe."""

    def __init__(self, domain: ReceiptDomain, account, payer: str, device_id: bytes, config: IssuerConfig) -> None:
        self.domain, self._account, self.payer, self.device_id, self.config = domain, account, payer, device_id, config
        self.issuers: dict[bytes, ReceiptIssuer] = {}
        self.notices: dict[bytes, NoticeMessage] = {}   # relay key -> its latest RELAY_NOTICE (status)

    def add_relay(self, relay_key: bytes, relay_address: str, now: float = 0.0) -> None:
        if relay_key not in self.issuers:
            self.issuers[relay_key] = ReceiptIssuer(self.config, self.domain, self._account, self.payer,
                                                    self.device_id, relay_address, now=now)

    def start_session(self, relay_key: bytes, advertised: int, paid: int | None = None) -> bool:
        """A (re)connected relay's session: accept its advertised price (read on chain at connect; see
        ReceiptIssuer.start_session). False: this session signs nothing (price 0, or above the cap: logged)."""
        issuer = self.issuers.get(relay_key)
        if issuer is None:
            return False
        ok = issuer.start_session(advertised, paid)
        if issuer.refused_price is not None:
            log.warning("relay %s advertises %d base units/byte, above payments.max_price_per_byte %d: no "
                        "receipts for it (it stops carrying this device after its credit)",
                        issuer.channel.relay, advertised, self.config.max_price_per_byte)
        elif issuer.price is not None and issuer.price < advertised:
            log.info("relay %s raised its price to %d; signing the old %d until the chain paid the older receipts",
                     issuer.channel.relay, advertised, issuer.price)
        return ok

    def end_session(self, relay_key: bytes) -> None:
        issuer = self.issuers.get(relay_key)
        if issuer is not None:
            issuer.end_session()

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
        if isinstance(msg, NoticeMessage):
            before = self.notices.get(relay_key)
            self.notices[relay_key] = msg
            if msg.reason is NoticeReason.RESUMED:
                if before is not None and before.reason is not NoticeReason.RESUMED:
                    log.info("relay %s carries this device again", issuer.channel.relay)
            else:
                log.warning("relay %s stopped carrying this device: %s (owed %d, reserve guarantees %d base "
                            "units, price %d/byte); what to do: %s", issuer.channel.relay,
                            msg.reason.name.lower().replace("_", " "), msg.owed, msg.guaranteed, msg.price_per_byte,
                            msg.advice.replace("RELAY_ADDRESS", issuer.channel.relay))
            return []
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


@dataclass(frozen=True)
class Grant:
    """What one connected device may still have relayed: ``budget`` bytes (0: stopped), why, and the payer's
    figures behind it (for the RELAY_NOTICE and the status)."""

    budget: int
    reason: str
    payer: str
    owed: int = 0            # SMT base units, receipted + unreceipted, all the payer's devices
    guaranteed: int = 0
    price: int = 0

    def notice(self) -> NoticeMessage:
        why = {cr.OK: NoticeReason.RESUMED, cr.CREDIT: NoticeReason.CREDIT_EXCEEDED,
               cr.RESERVE: NoticeReason.RESERVE_EXHAUSTED, cr.SIGNER_CAP: NoticeReason.SIGNER_CAP}
        return NoticeMessage(why.get(self.reason, NoticeReason.NO_PRICE), self.price, self.owed, self.guaranteed)


class RelayPayments:
    """Receipt checking, storage and credit decisions for all devices of a relay. Not thread-safe."""

    def __init__(self, ledger: ReceiptLedger, policy: CreditPolicy,
                 resolve: Callable[[bytes], tuple[str, bytes] | None], guarantee_of: Callable[[str], int],
                 allowance_of: Callable[[str, str, bytes], int], price_per_byte: int, *,
                 message_slack: int = 0) -> None:
        """``message_slack``: bytes kept back from every device's budget: the relay core lets one message
        through while a budget is above 0, so a device may overshoot by up to one message; with the link's
        largest message here, what the payer's devices are carried for never exceeds its credit."""
        self.message_slack = message_slack
        self.ledger, self.policy, self.resolve = ledger, policy, resolve
        self.guarantee_of, self.allowance_of = guarantee_of, allowance_of
        self.price_per_byte = price_per_byte            # the current advertised price (new sessions get it)
        self.session_price: dict[bytes, int] = {}       # device key -> the price its session started at

    def start_session(self, device_key: bytes, price: int | None = None) -> None:
        """The device's session started now: its receipts must carry ``price`` (default the current one)."""
        self.session_price[device_key] = self.price_per_byte if price is None else price

    def price_of(self, device_key: bytes) -> int:
        return self.session_price.get(device_key, self.price_per_byte)

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
            self.ledger.accept(msg.signed, now, expected_price=self.price_of(device_key))
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

    def payer_figures(self, payer: str, price: int) -> PayerFigures:
        """The payer's exposure on this relay: every channel of it (connected or not) from the ledger."""
        recs = self.ledger.payer_channels(payer)
        return PayerFigures(self.guarantee_of(payer), sum(r.owed for r in recs),
                            sum(max(0, r.counted - r.receipted) for r in recs), price)

    def budgets(self, keys, now: float) -> dict[bytes, Grant]:
        """A Grant per key of ``keys`` (connected devices) the relay can map to a payer: the payer's budget
        (CreditPolicy) split evenly among its connected devices, so however many devices a payer connects
        they are carried for at most its one credit together; a hot signer's device also within the signer's
        allowance."""
        by_payer: dict[str, list[tuple[bytes, bytes]]] = {}
        for key in keys:
            ch = self.resolve(key)
            if ch is not None:
                by_payer.setdefault(ch[0], []).append((key, ch[1]))
        out: dict[bytes, Grant] = {}
        for payer, devices in by_payer.items():
            price = max(self.price_of(k) for k, _ in devices)
            f = self.payer_figures(payer, price)
            d = self.policy.decide(payer, f)
            share = max(0, d.budget // len(devices) - self.message_slack) if d.allowed else 0
            reason = d.reason
            if d.allowed and share == 0:   # what is left is less than a message per device: say which bound
                room = (f.guaranteed - f.exposure) // max(price, 1)
                reason = cr.RESERVE if room <= self.policy.config.credit_bytes - f.unreceipted else cr.CREDIT
            for key, device_id in devices:
                grant = Grant(share, reason, payer, f.exposure, f.guaranteed, price)
                rec = self.ledger.channel(payer, device_id)
                if share and rec.signer is not None and rec.signer != payer:
                    unrec = max(0, rec.counted - rec.receipted)
                    room = self.policy.signer_room(ChannelFigures(
                        rec.owed + unrec * price, self.allowance_of(payer, rec.signer, device_id), price))
                    room = max(0, room - self.message_slack)
                    if room == 0:
                        grant = Grant(0, cr.SIGNER_CAP, payer, f.exposure, f.guaranteed, price)
                    elif room < share:
                        grant = Grant(room, d.reason, payer, f.exposure, f.guaranteed, price)
                out[key] = grant
        return out

    def decision(self, device_key: bytes, now: float) -> Grant:
        """The grant of ``device_key`` as if it were the payer's only connected device."""
        return self.budgets([device_key], now).get(device_key) or Grant(0, "unknown device", "")

    def allowed(self, device_key: bytes, now: float) -> bool:
        return self.decision(device_key, now).budget > 0
