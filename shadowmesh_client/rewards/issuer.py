"""Device side: when to sign a receipt for a relay, and for how many bytes (docs/payments.md "Device").

Pure: no I/O, no clock; every time-dependent call takes ``now`` (seconds, one monotonic clock chosen by the
caller). One :class:`ReceiptIssuer` per (relay, channel); not thread- or task-safe.

What a device counts for a relay ("billable bytes", the same metric as RelayCore's DeviceUsage
``bytes_in + bytes_out``): the length of every WebSocket message the device sends to the relay, plus the
length of every DELIVER message the relay sends it. LOCAL messages from the relay (acks) are not counted.

Guarantee: the cumulative bytes in a receipt never exceed ``counted + tolerance_bytes``, where ``counted`` is
the device's own count (plus a baseline it can prove it signed before, see :meth:`adopt`), minus what it
wrote off on the relay's word (:meth:`on_relay_count`). The relay's own figure (carried in its acks) is used
only to round the next receipt up within that tolerance, so in-flight data the relay has already counted
does not look unreceipted to it forever; it never raises ``counted``.

Price (payments v2, issue 10 "price agreed at session start"): a receipt carries the price the device
accepted when its session with the relay started: the relay's advertised ``relayPrice`` read on chain at
connect (:meth:`ReceiptIssuer.start_session`), if it is at most ``max_price_per_byte``. Until a price is
accepted the issuer signs nothing; within a session it never signs a higher price than the one it accepted
(a relay that raises its price mid-session gets the old one; the new one only after a reconnect). Because a
receipt's price applies to every unpaid byte of the channel, a price RISE between sessions is signed only
once the chain has paid up to the last receipt signed at the old price; until then the device signs the
lower, old price (docs/payments-v2-interface.md "What the device/payer client must do").

Converging after the relay lost part of its count (docs/payments.md "Lost counts"): a relay killed before it
persisted its latest usage, or a link that died with data the relay never received, leaves the relay's count
below the device's for good, so every later receipt would be rejected OVER_COUNT and the device cut off when
its credit runs out. The relay therefore answers such a rejection with RELAY_COUNT (its own count when it
checked that receipt); :meth:`on_relay_count` lowers ``counted`` by the difference, in the device's favour
(never raising it), at most once per receipt signed since the previous correction, so one loss reported by
several in-flight receipts is written off once.
"""

from __future__ import annotations

from dataclasses import dataclass

from shadowmesh_client.rewards.errors import PaymentConfigError, ReceiptError
from shadowmesh_client.rewards.receipts import Receipt, ReceiptDomain, SignedReceipt, sign_receipt

MB = 1_000_000  # bytes
_OPEN_MAX = 256  # receipts remembered (figures signed since the last correction) to match RELAY_COUNT answers


@dataclass(frozen=True)
class IssuerConfig:
    """``every_bytes``: sign once this many new bytes are counted (default 16 MB:
    signing costs ~4 ms of CPU, so at 1 Gbit/s that is ~8 receipts/s, ~3 % of a core); ``every_seconds``: or once
    this long has passed with any new bytes (default 10 s); ``tolerance_bytes``: how far above its own count
    the device will follow the relay's count (in-flight data, default 256 KiB); ``max_price_per_byte``: the
    highest advertised price the device accepts at session start, SMT base units per byte (a relay charging
    more gets no receipts, and stops carrying the device after its credit)."""

    every_bytes: int = 16 * MB
    every_seconds: float = 10.0
    tolerance_bytes: int = 256 * 1024
    max_price_per_byte: int = 10**9

    def __post_init__(self) -> None:
        if self.every_bytes <= 0:
            raise PaymentConfigError("payments.every_bytes must be a positive number of bytes")
        if self.every_seconds <= 0:
            raise PaymentConfigError("payments.every_seconds must be positive (seconds)")
        if self.tolerance_bytes < 0:
            raise PaymentConfigError("payments.tolerance_bytes must be >= 0")
        if self.max_price_per_byte <= 0:
            raise PaymentConfigError("payments.max_price_per_byte must be > 0 (SMT base units per byte)")


class ReceiptIssuer:
    """Signs cumulative receipts for one (payer, device, relay) channel from the device's own byte counts."""

    def __init__(self, config: IssuerConfig, domain: ReceiptDomain, account, payer: str, device_id: bytes,
                 relay: str, *, baseline: int = 0, now: float = 0.0) -> None:
        self.config = config
        self.domain = domain
        self._account = account  # eth-account LocalAccount: payer or a signer authorised with setReceiptSigner
        self._template = Receipt(payer, device_id, relay, 0, 0)
        self.price: int | None = None    # the price accepted for the current session (None: sign nothing)
        self.refused_price: int | None = None   # an advertised price above max_price_per_byte (status)
        self.counted = baseline          # bytes this device counted for the relay, cumulative, minus written_off
        self.signed = baseline           # floor of the next receipt: the last one signed (lowered by a correction)
        self.highest = baseline          # the highest cumulative ever signed (acks above it are not ours)
        self.acked = 0                   # cumulative bytes the relay acknowledged storing
        self.relay_counted = 0           # the relay's own figure from its last ack (untrusted)
        self.written_off = 0             # bytes taken off ``counted`` because the relay never counted them
        self._open: dict[int, None] = {}  # figures signed since the last correction (insertion-ordered)
        self._signed_at = now
        self.last: SignedReceipt | None = None

    @property
    def channel(self) -> Receipt:
        return self._template

    def start_session(self, advertised: int, paid: int | None = None) -> bool:
        """A new session with the relay: accept its ``advertised`` price (``relayPrice``, read on chain at
        connect) if it is at most ``max_price_per_byte``; ``paid``: ``paidBytes`` of this channel read at the
        same time (None: unknown). Returns whether receipts will be signed in this session."""
        self.price = None
        if advertised > self.config.max_price_per_byte:
            self.refused_price = advertised
            return False
        self.refused_price = None
        price = advertised
        last = self.last
        if last is not None and last.receipt.price_per_byte < price and (paid is None or
                                                                         paid < last.receipt.cumulative_bytes):
            price = last.receipt.price_per_byte   # a rise re-prices unpaid bytes: keep the old price until paid
        self.price = price
        return price > 0

    def end_session(self) -> None:
        """The link to the relay closed: sign nothing until the next session's price is accepted."""
        self.price = None

    def record(self, nbytes: int) -> None:
        """Add ``nbytes`` billable bytes (see module docstring) to the device's own count."""
        if nbytes < 0:
            raise ValueError("byte counts only grow")
        self.counted += nbytes

    def limit(self) -> int:
        """The most this device will sign for now: its own count plus the tolerance."""
        return self.counted + self.config.tolerance_bytes

    def target(self) -> int:
        """What the next receipt would state: the own count, rounded up towards the relay's figure but never
        above :meth:`limit`, and never below what was already signed."""
        want = max(self.counted, min(self.relay_counted, self.limit()))
        return max(want, self.signed)

    def due(self, now: float) -> bool:
        if not self.price:
            return False
        new = self.target() - self.signed
        if new <= 0:
            return False
        return new >= self.config.every_bytes or now - self._signed_at >= self.config.every_seconds

    def poll(self, now: float, *, force: bool = False) -> SignedReceipt | None:
        """A new signed receipt if one is due (or ``force`` and there is anything new), else None."""
        if not self.price or not (self.due(now) or (force and self.target() > self.signed)):
            return None
        cumulative = self.target()
        assert cumulative <= self.limit()  # the guarantee of this module
        signed = sign_receipt(self.domain, Receipt(self._template.payer, self._template.device_id,
                                                   self._template.relay, cumulative, self.price),
                              self._account)
        self.signed, self._signed_at, self.last = cumulative, now, signed
        self.highest = max(self.highest, cumulative)
        self._open[cumulative] = None
        if len(self._open) > _OPEN_MAX:
            del self._open[next(iter(self._open))]
        return signed

    def on_ack(self, cumulative: int, relay_counted: int) -> None:
        """The relay stored our receipt up to ``cumulative`` and counts ``relay_counted`` bytes for us."""
        if cumulative <= self.highest:
            self.acked = max(self.acked, cumulative)
        self.relay_counted = relay_counted  # latest figure (the relay's count only grows; a lower one is its loss)

    def on_relay_count(self, rejected: int, stored: int, relay_counted: int) -> int:
        """The relay rejected our receipt for ``rejected`` bytes as above its count, which was ``relay_counted``
        when it checked it (``stored``: the receipt it keeps). Writes the difference off our count so the next
        receipt matches the relay's figure; returns the bytes written off (0: nothing to do, or an answer to a
        receipt signed before the last correction, or to none of ours, ignored).

        Only ever lowers ``counted``: by ``rejected - max(relay_counted, acked)``, never below what the relay
        acknowledged storing. The bytes since the rejected receipt was signed stay counted, so the device keeps
        paying for what it carries after the loss. The caller should send a receipt at once (``poll(force=True)``)."""
        if rejected not in self._open:
            return 0
        self.on_ack(stored, relay_counted)
        lost = rejected - max(relay_counted, self.acked)
        if lost <= 0:
            return 0
        lost = min(lost, self.counted - self.acked)
        if lost <= 0:
            return 0
        self.counted -= lost
        self.written_off += lost
        self.signed = self.acked          # receipts signed before the correction were rejected or are moot
        self._open.clear()                # their answers describe the loss just written off: ignore them
        return lost

    def adopt(self, stored: SignedReceipt) -> bool:
        """Resume after a restart from the latest receipt the relay holds for this channel: accepted only if
        it is for this channel and domain and WE signed it, so the baseline is a figure we signed before.
        Returns whether it was adopted (a higher baseline than ours)."""
        rc = stored.receipt
        t = self._template
        if (rc.payer, rc.device_id, rc.relay) != (t.payer, t.device_id, t.relay):
            raise ReceiptError("the relay's stored receipt is for another channel: ignored")
        if stored.recover(self.domain) != self._account.address:
            raise ReceiptError("the relay's stored receipt is not signed by this device's signer: ignored")
        self.acked = max(self.acked, rc.cumulative_bytes)
        self.highest = max(self.highest, rc.cumulative_bytes)
        if self.last is None or rc.cumulative_bytes >= self.last.receipt.cumulative_bytes:
            self.last = stored   # its price is the channel's price for unpaid bytes (start_session)
        if rc.cumulative_bytes <= self.signed:
            return False
        self.counted = max(self.counted, rc.cumulative_bytes)
        self.signed = rc.cumulative_bytes
        return True
