"""Relay side: verify receipts and keep the latest one per (payer, device) durably (docs/payments.md "Relay").

:class:`ReceiptLedger` is a SQLite file (WAL, ``synchronous=FULL``). :meth:`ReceiptLedger.accept` returns
only after the transaction that stores the receipt has committed, so an ack sent after it returns survives a
crash of the relay process or the machine at any later point (tests/client/payments/test_ledger_crash.py
kills a process with SIGKILL right after its ack). The same file holds, per channel, the bytes the relay
counted itself (:meth:`add_counted`) and the bytes the chain has paid (:meth:`set_paid`, after claims).

Checks made before storing (each failure is a :class:`ReceiptRejected` with its ``RejectReason``):
  * the receipt names this relay's address;
  * its signature, over the EIP-712 digest of THIS chain id and token contract, recovers to the payer or to
    a signer the payer bound to THIS device id (``binding(payer, signer, device_id) -> (bound, validUntil)``,
    on-chain view calls, cached by :class:`SignerCache`; a receipt for another chain or contract recovers to
    a random address), and a revoked signer's ``validUntil`` is at least ``signer_margin`` seconds ahead
    (SIGNER_EXPIRING: the relay could not claim it in time; a receipt acknowledged before stays claimable
    until ``validUntil`` because revocation only takes effect after the notice);
  * ``pricePerByte`` is the price the relay advertised when the device's session started (``expected_price``
    argument), or the price of the channel's stored receipt when that is lower (the device keeps the old
    price for unpaid bytes after a rise: rewards/issuer.py); anything else is PRICE_MISMATCH;
  * cumulative bytes above the stored receipt's (equal: already stored, acknowledged again; lower: stale);
  * cumulative bytes at most what the relay counted for the channel + ``tolerance_bytes``.

Not thread-safe: one ledger object per thread/process; several processes may open the same file (WAL; the
claim command reads it while the relay daemon writes).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from eth_utils import to_checksum_address

from shadowmesh_client.rewards.errors import PaymentError, ReceiptRejected
from shadowmesh_client.rewards.messages import RejectReason
from shadowmesh_client.rewards.receipts import Receipt, ReceiptDomain, SignedReceipt

LEDGER_FILE = "receipts.sqlite"
"""The ledger's file name in a relay's ``state_dir``: the relay daemon writes it (relay/billing.py), the
``claim`` and ``earnings`` commands read it (cli/payments.py). Defined here only."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS channels (
    payer TEXT NOT NULL, device_id BLOB NOT NULL,
    cumulative TEXT NOT NULL DEFAULT '0', max_price TEXT, r BLOB, vs BLOB, signer TEXT, stored_at REAL,
    counted TEXT NOT NULL DEFAULT '0', paid TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (payer, device_id));
"""


Binding = tuple[bool, int]
"""(bound: the payer bound the signer to this device and it is not past validUntil, validUntil: 0 = no end)."""


class SignerCache:
    """Caches ``binding(payer, signer, device_id) -> (bound, validUntil)`` answers for ``ttl`` seconds
    (a revocation only takes effect ``withdrawalDelay`` after it, so a cache much shorter than that cannot
    make the relay acknowledge a receipt that will not pay; the relay also drops entries when it sees
    SignerRevoked / SignerAuthorized: :meth:`forget`). A failing lookup raises PaymentError (and caches
    nothing): the caller must not acknowledge."""

    def __init__(self, binding: Callable[[str, str, bytes], Binding], ttl: float = 60.0) -> None:
        self._check = binding
        self.ttl = ttl
        self._cache: dict[tuple[str, str, bytes], tuple[Binding, float]] = {}
        self.lookups = 0

    def __call__(self, payer: str, signer: str, device_id: bytes, now: float) -> Binding:
        if signer == payer:
            return (True, 0)
        key = (payer, signer, bytes(device_id))
        hit = self._cache.get(key)
        if hit is not None and now - hit[1] < self.ttl:
            return hit[0]
        self.lookups += 1
        try:
            bound, valid_until = self._check(payer, signer, bytes(device_id))
            answer = (bool(bound), int(valid_until))
        except Exception as exc:  # noqa: BLE001 - RPC errors of any kind: "cannot tell now", never "yes"
            raise PaymentError(f"cannot check receipt signer {signer} for {payer} on chain "
                               f"({type(exc).__name__}); the receipt is not acknowledged") from None
        self._cache[key] = (answer, now)
        return answer

    def forget(self, payer: str | None = None) -> None:
        """Drop cached answers (of ``payer``, or all): the next receipt asks the chain again."""
        if payer is None:
            self._cache.clear()
        else:
            for key in [k for k in self._cache if k[0] == payer]:
                del self._cache[key]


@dataclass(frozen=True)
class ChannelRecord:
    payer: str
    device_id: bytes
    latest: SignedReceipt | None   # the latest stored receipt (None: counted bytes but no receipt yet)
    counted: int                   # bytes the relay counted itself
    paid: int                      # bytes paid on chain as last seen by this relay
    signer: str | None = None      # who signed ``latest`` (the payer or a hot signer bound to the device)

    @property
    def receipted(self) -> int:
        return self.latest.receipt.cumulative_bytes if self.latest else 0

    @property
    def owed(self) -> int:
        """SMT base units the stored receipt still pays (unpaid receipted bytes at the receipt's price)."""
        return max(0, self.receipted - self.paid) * self.latest.receipt.price_per_byte if self.latest else 0


class ReceiptLedger:
    def __init__(self, path: str | os.PathLike, domain: ReceiptDomain, relay: str,
                 binding: Callable[[str, str, bytes, float], Binding] | None = None, *,
                 tolerance_bytes: int = 256 * 1024, price_per_byte: int = 0, signer_margin: float = 600.0) -> None:
        """``binding(payer, signer, device_id, now) -> (bound, validUntil)``: e.g. a :class:`SignerCache`
        around the token's ``signerBinding``/``isReceiptSigner``; None accepts only receipts signed by the
        payer itself. ``price_per_byte``: the expected price when ``accept`` is not given one.
        ``signer_margin``: seconds a revoked signer's validUntil must still be ahead."""
        self.path = Path(path)
        self.domain = domain
        self.relay = to_checksum_address(relay)
        self._binding = binding or (lambda payer, signer, device_id, now: (payer == signer, 0))
        self.tolerance_bytes = tolerance_bytes
        self.price_per_byte = price_per_byte
        self.signer_margin = signer_margin
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise PaymentError(f"cannot open the receipt ledger {self.path}: {exc}") from None
        self._check_identity()

    def _check_identity(self) -> None:
        want = {"chain_id": str(self.domain.chain_id), "contract": self.domain.contract, "relay": self.relay}
        with self._tx():
            rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if not rows:
                self._db.executemany("INSERT INTO meta VALUES (?, ?)", list(want.items()))
                return
        for key, value in want.items():
            if rows.get(key) != value:
                raise PaymentError(
                    f"the receipt ledger {self.path} belongs to {key} {rows.get(key)}, not {value}: "
                    "use another state_dir for another chain, token or relay account")

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, exc, tb):
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            return False

    def _tx(self) -> _Tx:
        return ReceiptLedger._Tx(self._db)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ reads
    def _row_to_record(self, row) -> ChannelRecord:
        payer, device, cum, price, r, vs, signer, counted, paid = row
        latest = None
        if r is not None:
            latest = SignedReceipt(Receipt(payer, bytes(device), self.relay, int(cum), int(price)), r, vs)
        return ChannelRecord(payer, bytes(device), latest, int(counted), int(paid), signer)

    _COLUMNS = "payer, device_id, cumulative, max_price, r, vs, signer, counted, paid"

    def channel(self, payer: str, device_id: bytes) -> ChannelRecord:
        payer = to_checksum_address(payer)
        row = self._db.execute(f"SELECT {self._COLUMNS} FROM channels WHERE payer=? AND device_id=?",
                               (payer, bytes(device_id))).fetchone()
        return self._row_to_record(row) if row else ChannelRecord(payer, bytes(device_id), None, 0, 0)

    def channels(self) -> Iterator[ChannelRecord]:
        for row in self._db.execute(f"SELECT {self._COLUMNS} FROM channels ORDER BY payer, device_id").fetchall():
            yield self._row_to_record(row)

    def payer_channels(self, payer: str) -> list[ChannelRecord]:
        """Every channel of ``payer`` on this relay (all its devices: one reserve pays for them all)."""
        rows = self._db.execute(f"SELECT {self._COLUMNS} FROM channels WHERE payer=? ORDER BY device_id",
                                (to_checksum_address(payer),)).fetchall()
        return [self._row_to_record(row) for row in rows]

    def latest(self, payer: str, device_id: bytes) -> SignedReceipt | None:
        return self.channel(payer, device_id).latest

    # ------------------------------------------------------------------ writes (each one commits)
    def add_counted(self, payer: str, device_id: bytes, nbytes: int) -> int:
        """Add bytes the relay counted for this channel; returns the new total."""
        payer = to_checksum_address(payer)
        with self._tx() as db:
            row = db.execute("SELECT counted FROM channels WHERE payer=? AND device_id=?",
                             (payer, bytes(device_id))).fetchone()
            total = (int(row[0]) if row else 0) + nbytes
            db.execute("INSERT INTO channels (payer, device_id, counted) VALUES (?, ?, ?) ON CONFLICT "
                       "(payer, device_id) DO UPDATE SET counted=excluded.counted",
                       (payer, bytes(device_id), str(total)))
        return total

    def set_paid(self, payer: str, device_id: bytes, paid_bytes: int) -> None:
        """Record the chain's paidBytes for the channel (never lowers it)."""
        payer = to_checksum_address(payer)
        with self._tx() as db:
            row = db.execute("SELECT paid FROM channels WHERE payer=? AND device_id=?",
                             (payer, bytes(device_id))).fetchone()
            if row is None:
                db.execute("INSERT INTO channels (payer, device_id, paid) VALUES (?, ?, ?)",
                           (payer, bytes(device_id), str(paid_bytes)))
            elif paid_bytes > int(row[0]):
                db.execute("UPDATE channels SET paid=? WHERE payer=? AND device_id=?",
                           (str(paid_bytes), payer, bytes(device_id)))

    def accept(self, signed: SignedReceipt, now: float | None = None, *, expected_price: int | None = None) -> int:
        """Verify and durably store ``signed``; return the stored cumulative bytes (ack only after this
        returns). ``expected_price``: the price this relay advertised when the device's session started
        (default ``price_per_byte``). Raises ReceiptRejected (with ``reason``) and stores nothing if a check
        fails. ``now``: unix seconds (compared with a revoked signer's validUntil)."""
        now = time.time() if now is None else now
        rc = signed.receipt
        expected = self.price_per_byte if expected_price is None else expected_price
        if rc.relay != self.relay:
            raise ReceiptRejected(f"receipt is for relay {rc.relay}, this relay is {self.relay}",
                                  RejectReason.WRONG_RELAY)
        if rc.price_per_byte != expected:
            stored_price = self._db.execute("SELECT max_price FROM channels WHERE payer=? AND device_id=?",
                                            (rc.payer, rc.device_id)).fetchone()
            if not (stored_price and stored_price[0] is not None and int(stored_price[0]) == rc.price_per_byte
                    and rc.price_per_byte < expected):
                raise ReceiptRejected(f"receipt is priced {rc.price_per_byte} per byte; the price of this session "
                                      f"is {expected}", RejectReason.PRICE_MISMATCH)
        signer = signed.recover(self.domain)  # ReceiptError if not a signature at all
        if signer != rc.payer:
            bound, valid_until = self._binding(rc.payer, signer, rc.device_id, now)
            if not bound:
                raise ReceiptRejected(f"receipt signed by {signer}, who is neither payer {rc.payer} nor a signer it "
                                      "bound to this device (or it is for another chain or contract)",
                                      RejectReason.BAD_SIGNATURE)
            if valid_until and valid_until < now + self.signer_margin:
                raise ReceiptRejected(f"signer {signer} was revoked and stops paying at {valid_until}: too soon to "
                                      "claim a new receipt", RejectReason.SIGNER_EXPIRING)
        with self._tx() as db:
            row = db.execute("SELECT cumulative, counted FROM channels WHERE payer=? AND device_id=?",
                             (rc.payer, rc.device_id)).fetchone()
            stored, counted = (int(row[0]), int(row[1])) if row else (0, 0)
            if rc.cumulative_bytes == stored and stored > 0:
                return stored  # the same figure again (e.g. a resent receipt): already durable
            if rc.cumulative_bytes <= stored:
                raise ReceiptRejected(f"receipt for {rc.cumulative_bytes} bytes is not above the stored "
                                      f"{stored}", RejectReason.STALE)
            if rc.cumulative_bytes > counted + self.tolerance_bytes:
                raise ReceiptRejected(f"receipt for {rc.cumulative_bytes} bytes exceeds the {counted} this relay "
                                      f"counted + {self.tolerance_bytes} tolerance", RejectReason.OVER_COUNT)
            db.execute(
                "INSERT INTO channels (payer, device_id, cumulative, max_price, r, vs, signer, stored_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (payer, device_id) DO UPDATE SET "
                "cumulative=excluded.cumulative, max_price=excluded.max_price, r=excluded.r, vs=excluded.vs, "
                "signer=excluded.signer, stored_at=excluded.stored_at",
                (rc.payer, rc.device_id, str(rc.cumulative_bytes), str(rc.price_per_byte), signed.r,
                 signed.vs, signer, now))
        return rc.cumulative_bytes  # committed (synchronous=FULL: on disk)
