"""The relay daemon's payments wiring (docs/payments.md "Integration"; spec "Token System", issue 6).

Glue between ``RelayDaemon`` (event loop) and ``rewards.RelayPayments`` (receipt ledger in SQLite, credit
policy). What it does:

* **Receipts**: a LOCAL payload that ``messages.is_control`` recognises goes to ``on_control``; the device's
  usage counted so far is written to the ledger first (so the receipt is checked against every byte the
  relay received before it on that ordered link), then ``RelayPayments.on_control`` verifies and stores it
  and only then is the ack returned for sending. The ledger lives in ``<state_dir>/receipts.sqlite``
  (``rewards.ledger.LEDGER_FILE``), the file ``shadowmesh-client claim`` reads.
* **Usage**: ``add_usage(key, nbytes)`` (RelayCore.take_usage's ``bytes_in + bytes_out``, from the
  daemon's accounting) accumulates on the loop; ``settle`` writes it (one fsync'd write per active device)
  and recomputes, per connected device, ``RelayPayments.decision``.
* **Gating**: every connected device gets a byte budget in ``RelayCore.budgets``: ``credit_bytes`` minus its
  unreceipted bytes while ``RelayPayments.decision`` allows it, 0 when it says "credit exceeded" or "deposit
  exhausted". The core spends it per FORWARD (sender and destination) and drops as ``unpaid`` at 0, so a
  device is cut off within one message of its credit, not one settle round. Budgets are recomputed every
  ``SETTLE_SECONDS`` and right after each stored receipt; receipts (LOCAL) always get through, so a device
  that catches up resumes (hysteresis: at ``resume_bytes``). A relay whose on-chain price is 0 is free: it
  stores receipts it is sent but sets no budgets.
* **Lost counts**: a receipt above the relay's count (+ tolerance) is rejected OVER_COUNT and answered with
  RELAY_COUNT as well (``RelayPayments.on_control``): usage lost in a crash (up to ``SETTLE_SECONDS`` of it)
  or on a dead link makes the device's count run ahead of ours for good, and the device lowers its count to
  ours instead of being cut off (docs/payments.md "Lost counts"; ``count_answers`` in the status).
* **RECEIPT_STATE**: ``state_for(key)`` gives the latest stored receipt of the device's channel (kept in
  memory) for the daemon to send right after the handshake response.

Threads (the ledger's SQLite connection is bound to the thread that opened it, and one thread also
serialises its writes, so ``asyncio.to_thread``, a pool, is not used):

* the WORKER: one dedicated thread (``_run``, a one-thread executor) opens, uses and closes the ledger, the
  chain client, ``RelayPayments``/``CreditPolicy`` and the escrow/price cache (``_w_*``, ``chain``,
  ``ledger``, ``pay``). Nothing else ever touches them. Jobs run in submission order; each ``_run`` is
  shielded, so a cancelled caller never drops a job (usage handed over is always written), and ``close()``
  queues the ledger's close behind every job already queued;
* the LOOP: everything else (``_pending``, ``_channels``, ``_state``, the published figures, counters and
  ``RelayCore.budgets``). Worker jobs get loop data as arguments and give results back as return values,
  applied on the loop; the one exception is ``_channels``, which the worker reads with ``dict.get``
  (RelayPayments' ``resolve``; atomic under the GIL) while the loop only adds entries.

Receipt verification (an Ed25519/secp256k1 recovery, a cached chain read) and the fsync'd commit therefore
never block the event loop. Not for use from other threads.

Figures the daemon publishes (``status()``): per device counted / receipted / paid bytes and the decision,
and counts of receipts stored and rejected.

May import: rewards, relay.settings, eth_utils; chain access through rewards.onchain (on the worker).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from shadowmesh_client.relay.settings import SETTLE_SECONDS  # noqa: F401 - the biller's tick, re-exported
from shadowmesh_client.rewards import CreditConfig, CreditPolicy, ReceiptLedger, RelayPayments, SignerCache
from shadowmesh_client.rewards.ledger import LEDGER_FILE
from shadowmesh_client.rewards.messages import AckMessage, CountMessage, Kind, ReceiptMessage, RejectReason, decode

log = logging.getLogger(__name__)

__all__ = ["LEDGER_FILE", "SETTLE_SECONDS", "BillingSettings", "RelayBilling"]


@dataclass(frozen=True)
class BillingSettings:
    """What the relay daemon needs to bill (built by cli/mesh.py from the config)."""

    rpc_url: str
    deployment: object                       # chain.Deployment with the token
    state_dir: Path
    credit_bytes: int = 64_000_000           # bytes
    resume_bytes: int | None = None          # bytes; None: credit_bytes // 2
    escrow_refresh_seconds: float = 10.0     # seconds a price / escrow read is reused
    tolerance_bytes: int = 256 * 1024        # bytes a receipt may exceed our count by


@dataclass
class _Outcome:
    """What one worker job found, applied to the loop-side figures by ``_publish``."""

    price: int
    figures: dict[bytes, dict] = field(default_factory=dict)
    decisions: dict[bytes, str] = field(default_factory=dict)
    stored: int = 0
    rejected: int = 0
    count_answers: int = 0
    state: dict[tuple[str, bytes], bytes] = field(default_factory=dict)


class RelayBilling:
    """Create with ``await RelayBilling.open(settings, relay_owner)``; ``attach(core)`` once the server
    exists; ``await close()`` at shutdown, after every task that calls it has ended (flushes pending usage)."""

    def __init__(self, settings: BillingSettings, relay_owner: str) -> None:
        self.settings = settings
        self.relay = to_checksum_address(relay_owner)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-billing")
        # ---- loop side
        self._channels: dict[bytes, tuple[str, bytes]] = {}   # device key -> (payer, device id); see Threads
        self._pending: dict[bytes, int] = {}                  # device key -> bytes not yet in the ledger
        self._state: dict[tuple[str, bytes], bytes] = {}      # channel -> RECEIPT_STATE payload
        self._decisions: dict[bytes, str] = {}
        self._figures: dict[bytes, dict] = {}                 # device key -> ledger figures at the last look
        self._blocked: set[bytes] = set()
        self.price = 0                                        # as the worker last read it
        self.core: Any = None                                 # RelayCore, after attach()
        self.stored = 0
        self.rejected = 0
        self.count_answers = 0    # RELAY_COUNT messages sent (after OVER_COUNT rejections)
        self.cutoffs = 0
        # ---- worker side (only inside _run jobs)
        # (set by _open on the worker before any other job runs)
        self.chain: Any = None                                # rewards.onchain.TokenChain
        self.ledger: ReceiptLedger = None  # type: ignore[assignment]
        self.pay: RelayPayments = None  # type: ignore[assignment]
        self._w_price = 0
        self._w_price_at = 0.0
        self._w_escrow: dict[str, tuple[int, float]] = {}     # payer -> (base units, monotonic read time)
        self._closed = False

    # ---- lifecycle (loop) -----------------------------------------------------------------------------
    @classmethod
    async def open(cls, settings: BillingSettings, relay_owner: str) -> RelayBilling:
        b = cls(settings, relay_owner)
        try:
            price, state = await b._run(b._open)
        except BaseException:
            b._pool.shutdown(wait=False)
            raise
        b.price, b._state = price, state
        return b

    def attach(self, core) -> None:
        self.core = core

    async def close(self) -> None:
        """Write pending usage, close the ledger ON the worker (behind every job already queued), stop the
        worker. Idempotent."""
        if self._closed:
            return
        self._closed = True
        pending, self._pending = self._pending, {}
        try:
            await self._run(self._close, pending, time.time())
        finally:
            self._pool.shutdown(wait=False)   # its queue is empty: _close was the last job

    async def _run(self, fn, *args):
        """Run ``fn(*args)`` on the worker thread. Shielded: if the caller is cancelled the job still runs
        to its end (its result is dropped), so the ledger never misses usage it was handed."""
        return await asyncio.shield(asyncio.get_running_loop().run_in_executor(self._pool, fn, *args))

    # ---- loop side ------------------------------------------------------------------------------------
    def learn(self, key: bytes, owner: str, device_id: bytes) -> None:
        """The directory's (payer, device id) of an authenticated device key (call on every connect)."""
        self._channels[key] = (to_checksum_address(owner), bytes(device_id))

    def state_for(self, key: bytes) -> list[bytes]:
        """RECEIPT_STATE payloads to send the device after the handshake response (may be empty)."""
        ch = self._channels.get(key)
        payload = self._state.get(ch) if ch else None
        return [payload] if payload else []

    def add_usage(self, key: bytes, nbytes: int) -> None:
        if nbytes > 0:
            self._pending[key] = self._pending.get(key, 0) + nbytes

    async def on_control(self, key: bytes, payload: bytes) -> list[bytes]:
        """A payments control message from ``key`` (add its usage first); returns the ack(s) to send, built
        after the ledger committed. A stored receipt also renews the device's budget."""
        pending, self._pending = self._pending, {}
        out, budget, outcome = await self._run(self._control, pending, key, payload, time.time())
        self._publish(outcome)
        if budget is not None and self.core is not None:
            self._set_budgets({**self.core.budgets, key: budget})
        return out

    async def settle(self, connected) -> None:
        """Write pending usage; recompute the budgets of the ``connected`` keys (RelayCore.budgets)."""
        pending, self._pending = self._pending, {}
        budgets, outcome = await self._run(self._settle, pending, list(connected), time.time())
        self._publish(outcome)
        if self.core is not None:
            self._set_budgets(budgets)

    def _publish(self, o: _Outcome) -> None:
        self.price = o.price
        self._figures.update(o.figures)
        self._decisions.update(o.decisions)
        self._state.update(o.state)
        self.stored += o.stored
        self.rejected += o.rejected
        self.count_answers += o.count_answers

    def _set_budgets(self, budgets: dict[bytes, int]) -> None:
        old = self.core.budgets
        for key, left in budgets.items():
            was = old.get(key)
            if left <= 0 and key not in self._blocked:   # newly stopped (the core may have spent it to 0)
                self.cutoffs += 1
                log.warning("device %s: relaying stopped: %s", key.hex()[:16], self._decisions.get(key))
            elif left > 0 and was is not None and was <= 0 and key in self._blocked:
                log.info("device %s: relaying resumed (caught up)", key.hex()[:16])
        self._blocked = {k for k, v in budgets.items() if v <= 0}
        self.core.budgets = budgets

    # ---- worker thread --------------------------------------------------------------------------------
    def _open(self) -> tuple[int, dict]:
        from shadowmesh_client.rewards.onchain import TokenChain

        self.chain = TokenChain(self.settings.rpc_url, self.settings.deployment, timeout=5.0)
        token = self.chain.token
        cache = SignerCache(lambda payer, signer: token.functions.isReceiptSigner(payer, signer).call())
        self._refresh_price(time.monotonic())
        self.ledger = ReceiptLedger(Path(self.settings.state_dir) / LEDGER_FILE, self.chain.domain, self.relay, cache,
                                    tolerance_bytes=self.settings.tolerance_bytes, price_per_byte=self._w_price)
        policy = CreditPolicy(CreditConfig(self.settings.credit_bytes, self.settings.resume_bytes))
        self.pay = RelayPayments(self.ledger, policy, self._channels.get, self._escrow_of, self._w_price)
        state = {(rec.payer, rec.device_id): ReceiptMessage(rec.latest, Kind.RECEIPT_STATE).encode()
                 for rec in self.ledger.channels() if rec.latest is not None}
        log.info("billing: relay account %s, price %d base units/byte, ledger %s (%d channel(s))", self.relay,
                 self._w_price, self.ledger.path, len(state))
        return self._w_price, state

    def _close(self, pending: dict[bytes, int], now: float) -> None:
        try:
            if pending and self.pay is not None:
                self._apply_usage(pending, now)
        finally:
            if self.ledger is not None:
                self.ledger.close()

    def _refresh_price(self, t: float) -> None:
        try:
            self._w_price = int(self.chain.token.functions.relayPrice(self.relay).call())
            self._w_price_at = t
        except Exception as exc:  # noqa: BLE001 - RPC errors: keep the last known price
            log.warning("billing: cannot read this relay's price (%s); keeping %d", type(exc).__name__, self._w_price)
        if self.pay is not None:
            self.pay.price_per_byte = self.ledger.price_per_byte = self._w_price

    def _escrow_of(self, payer: str) -> int:
        t = time.monotonic()
        hit = self._w_escrow.get(payer)
        if hit is not None and t - hit[1] < self.settings.escrow_refresh_seconds:
            return hit[0]
        try:
            value = int(self.chain.token.functions.escrowOf(payer).call()[0])
        except Exception as exc:  # noqa: BLE001 - RPC errors: the last figure, or 0 (no credit) if none
            log.warning("billing: cannot read the escrow of %s (%s)", payer, type(exc).__name__)
            value = hit[0] if hit else 0
        self._w_escrow[payer] = (value, t)
        return value

    def _apply_usage(self, pending: dict[bytes, int], now: float) -> None:
        for key, n in pending.items():
            self.pay.on_usage(key, n, now)

    def _budget(self, key: bytes, now: float, o: _Outcome) -> int | None:
        """Bytes ``key`` may still have relayed (None: not limited: unknown device or free relay)."""
        ch = self._channels.get(key)
        if ch is None:
            return None
        rec = self.ledger.channel(*ch)
        o.figures[key] = {"counted": rec.counted, "receipted": rec.receipted, "paid": rec.paid}
        if self._w_price == 0:
            o.decisions[key] = "ok (free relay)"
            return None
        d = self.pay.decision(key, now)
        o.decisions[key] = d.reason
        return self.settings.credit_bytes - max(0, rec.counted - rec.receipted) if d.allowed else 0

    def _control(self, pending: dict[bytes, int], key: bytes, payload: bytes, now: float):
        self._apply_usage(pending, now)
        out = self.pay.on_control(key, payload, now)
        o = _Outcome(self._w_price)
        budget = None
        for reply in out:
            try:
                ack = decode(reply)
            except Exception:  # noqa: BLE001 - our own message; cannot fail
                continue
            if isinstance(ack, AckMessage) and ack.status is RejectReason.STORED:
                o.stored += 1
                latest = self.ledger.latest(ack.payer, ack.device_id)
                if latest is not None:
                    o.state[(latest.receipt.payer, latest.receipt.device_id)] = \
                        ReceiptMessage(latest, Kind.RECEIPT_STATE).encode()
                budget = self._budget(key, now, o)
            elif isinstance(ack, AckMessage):
                o.rejected += 1
            elif isinstance(ack, CountMessage):
                o.count_answers += 1
                log.info("device %s: receipt for %d bytes above our count %d (usage lost in a restart or on a "
                         "dead link): sent our count so it converges down to it", key.hex()[:16],
                         ack.receipt_cumulative, ack.relay_counted)
        return out, budget, o

    def _settle(self, pending: dict[bytes, int], connected: list[bytes], now: float):
        self._apply_usage(pending, now)
        t = time.monotonic()
        if t - self._w_price_at >= self.settings.escrow_refresh_seconds:
            self._refresh_price(t)
        o = _Outcome(self._w_price)
        budgets = {}
        for key in connected:
            left = self._budget(key, now, o)
            if left is not None:
                budgets[key] = left
        return budgets, o

    # ---- observation (loop) ---------------------------------------------------------------------------
    def status(self) -> dict:
        return {"relay_account": self.relay, "price_per_byte": self.price, "receipts_stored": self.stored,
                "receipts_rejected": self.rejected, "count_answers": self.count_answers, "cutoffs": self.cutoffs,
                "blocked": sorted(k.hex() for k in self._blocked),
                "devices": {k.hex(): dict(self._figures.get(k, {}), decision=v) for k, v in self._decisions.items()}}
