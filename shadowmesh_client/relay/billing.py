"""The relay daemon's payments wiring (docs/payments.md "Integration"; spec "Token System", issues 6 and 10).

Glue between ``RelayDaemon`` (event loop) and ``rewards.RelayPayments`` (receipt ledger in SQLite, credit
policy). What it does:

* **Receipts**: a payments control message (sealed in the device-relay session, relay/control.py) goes to
  ``on_control``; the device's usage counted so far is written to the ledger first (so the receipt is
  checked against every byte the relay received before it on that ordered link), then
  ``RelayPayments.on_control`` verifies and stores it and only then is the ack returned for sending. A
  receipt must carry the price this relay advertised when the device's session started (``learn``, at
  authentication: ``session price``), and a hot signer must be bound to the device on chain with a
  ``validUntil`` at least ``claim_margin_seconds`` ahead. The ledger lives in ``<state_dir>/receipts.sqlite``
  (``rewards.ledger.LEDGER_FILE``), the file ``shadowmesh-client claim`` reads.
* **Usage**: ``add_usage(key, nbytes)`` (RelayCore.take_usage's ``bytes_in + bytes_out``, from the
  daemon's accounting) accumulates on the loop; ``settle`` writes it (one fsync'd write per active device)
  and recomputes the grants of the connected devices (``RelayPayments.budgets``).
* **Gating** (payments v2): credit is per PAYER, summed over all its devices on this relay: what it owes
  (unpaid receipts at their price + unreceipted bytes at the session price) stays within
  ``guaranteedAmount(payer, relay)`` (reserve minus pending withdrawal, read ``confirmations`` blocks behind
  the head, refreshed every ``escrow_refresh_seconds`` and on the reserve events), and its unreceipted bytes
  within ``credit_bytes``. The payer's byte budget is split evenly among its connected devices in
  ``RelayCore.budgets`` (the core spends it per FORWARD, sender and destination, and drops as ``unpaid`` at
  0), so N Sybil devices of one payer share one credit. A relay whose price is 0 is free: no budgets.
* **Notices** (issue 11 item 2): when a device is newly stopped (or resumed) the relay queues a RELAY_NOTICE
  with the reason and the figures; the daemon seals and sends it (``take_notices``).
* **Watching and claiming** (issue 10): every ``watch_seconds`` the worker reads the token's events
  (rewards/watch.py): ``ReserveWithdrawalRequested`` on one of this relay's reserves or ``SignerRevoked`` of a
  payer it serves drop the cached figures and make that payer's receipts due for a claim; so does owing
  more than ``claim_threshold`` x the guarantee, or a reserve whose ``unlockAt`` is less than
  ``claim_margin_seconds`` away. With ``claim_account`` (the relay owner's key) the worker claims them with
  ``claimBatch`` (rewards.onchain.claim: ``ClaimSkipped`` entries reported with their reason, the rest
  paid); without it the status lists them (``claims_due``) for ``shadowmesh-client claim``.
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
  applied on the loop; the exceptions are ``_channels`` and ``_session_price``, which the worker reads with
  ``dict.get`` (RelayPayments' ``resolve`` and ``price_of``; atomic under the GIL) while the loop only sets
  entries. Automatic claims (a transaction and its receipt, ~1 block) run on the worker too, so they delay
  the next receipt's ack by that much, never the event loop.

Receipt verification (an Ed25519/secp256k1 recovery, a cached chain read) and the fsync'd commit therefore
never block the event loop. Not for use from other threads.

Figures the daemon publishes (``status()``): per device counted / receipted / paid bytes, the decision and
the payer's owed / guaranteed amounts; counts of receipts stored and rejected, notices sent, claims made
(automatic, with the amounts and the entries the contract skipped) and claims due.

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

from shadowmesh_client.config import confirmations_for
from shadowmesh_client.daemon_common import LINK_MAX_MESSAGE_BYTES
from shadowmesh_client.relay.settings import SETTLE_SECONDS  # noqa: F401 - the biller's tick, re-exported
from shadowmesh_client.rewards import (
    CreditConfig,
    CreditPolicy,
    Grant,
    ReceiptLedger,
    RelayPayments,
    SignerCache,
    watch,
)
from shadowmesh_client.rewards import credit as cr
from shadowmesh_client.rewards.ledger import LEDGER_FILE
from shadowmesh_client.rewards.messages import AckMessage, CountMessage, Kind, ReceiptMessage, RejectReason, decode

log = logging.getLogger(__name__)

__all__ = ["LEDGER_FILE", "SETTLE_SECONDS", "BillingSettings", "RelayBilling", "settings_from_config"]

CLAIM_RETRY_SECONDS = 30.0
"""Seconds before a payer whose claim failed or paid nothing is tried again (the reasons stay due)."""


@dataclass(frozen=True)
class BillingSettings:
    """What the relay daemon needs to bill (built by cli/mesh.py from the config)."""

    rpc_url: str
    deployment: object                       # chain.Deployment with the token
    state_dir: Path
    credit_bytes: int = 64_000_000           # bytes, per payer (all its devices together)
    resume_bytes: int | None = None          # bytes; None: credit_bytes // 2
    escrow_refresh_seconds: float = 10.0     # seconds a price / reserve / allowance read is reused
    tolerance_bytes: int = 256 * 1024        # bytes a receipt may exceed our count by
    confirmations: int | None = None         # blocks behind the head for reads; None: config.confirmations_for
    claim_account: object | None = None      # eth-account of the relay owner: automatic claims (None: by hand)
    claim_threshold: float = 0.5             # claim when owed >= this x the payer's guarantee
    claim_margin_seconds: float = 600.0      # claim this long before unlockAt; refuse signers expiring sooner
    watch_seconds: float = 2.0               # seconds between reads of the token's events
    signer_cache_seconds: float = 60.0       # seconds a signer binding answer is reused (events also drop it)
    message_slack: int = LINK_MAX_MESSAGE_BYTES   # bytes kept back per device budget (RelayPayments): one message

    def __repr__(self) -> str:   # keep the key out of logs
        return (f"BillingSettings(rpc_url={self.rpc_url!r}, state_dir={str(self.state_dir)!r}, credit_bytes="
                f"{self.credit_bytes}, auto_claim={self.claim_account is not None})")


def settings_from_config(state, dep) -> BillingSettings:
    """BillingSettings from the config (cli_common.State) and its deployment record; the relay owner's key
    for automatic claims when ``payments.auto_claim`` and its password is available without a prompt
    (--owner-password-file or SHADOWMESH_OWNER_PASSWORD), else claims are left to `shadowmesh-client claim`."""
    import os

    cfg, p = state.config, state.config.payments
    account = None
    if p.auto_claim and cfg.owner_keystore is not None and (state.owner_password_file or
                                                            os.environ.get("SHADOWMESH_OWNER_PASSWORD")):
        try:
            account = state.owner_account()
        except Exception as exc:  # noqa: BLE001 - a wrong password or file: run without automatic claims
            log.warning("automatic claims off: cannot unlock the owner keystore (%s)", exc)
    elif p.auto_claim:
        log.warning("automatic claims off: no password for the owner keystore without a prompt (pass "
                    "--owner-password-file or set SHADOWMESH_OWNER_PASSWORD); claim with `shadowmesh-client claim`")
    return BillingSettings(cfg.rpc_url, dep, cfg.state_dir, credit_bytes=p.credit_bytes, resume_bytes=p.resume_bytes,
                           escrow_refresh_seconds=p.escrow_refresh_seconds, tolerance_bytes=p.tolerance_bytes,
                           confirmations=cfg.confirmations, claim_account=account,
                           claim_threshold=p.claim_threshold, claim_margin_seconds=p.claim_margin_seconds)


@dataclass
class _Outcome:
    """What one worker job found, applied to the loop-side figures by ``_publish``."""

    price: int
    figures: dict[bytes, dict] = field(default_factory=dict)
    decisions: dict[bytes, str] = field(default_factory=dict)
    grants: dict[bytes, Grant] = field(default_factory=dict)
    stored: int = 0
    rejected: int = 0
    count_answers: int = 0
    state: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    claims: list[dict] = field(default_factory=list)
    due: dict[str, str] = field(default_factory=dict)


class RelayBilling:
    """Create with ``await RelayBilling.open(settings, relay_owner)``; ``attach(core)`` once the server
    exists; ``await close()`` at shutdown, after every task that calls it has ended (flushes pending usage)."""

    def __init__(self, settings: BillingSettings, relay_owner: str) -> None:
        self.settings = settings
        self.relay = to_checksum_address(relay_owner)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-billing")
        # ---- loop side
        self._channels: dict[bytes, tuple[str, bytes]] = {}   # device key -> (payer, device id); see Threads
        self._session_price: dict[bytes, int] = {}            # device key -> price at session start; see Threads
        self._pending: dict[bytes, int] = {}                  # device key -> bytes not yet in the ledger
        self._state: dict[tuple[str, bytes], bytes] = {}      # channel -> RECEIPT_STATE payload
        self._decisions: dict[bytes, str] = {}
        self._figures: dict[bytes, dict] = {}                 # device key -> ledger figures at the last look
        self._blocked: set[bytes] = set()
        self._notices: dict[bytes, bytes] = {}                # device key -> RELAY_NOTICE to send
        self.price = 0                                        # as the worker last read it
        self.core: Any = None                                 # RelayCore, after attach()
        self.stored = 0
        self.rejected = 0
        self.count_answers = 0    # RELAY_COUNT messages sent (after OVER_COUNT rejections)
        self.cutoffs = 0
        self.notices_sent = 0
        self.claims: list[dict] = []                          # the latest automatic claims (at most 20)
        self.claimed_base = 0                                 # SMT base units claimed automatically
        self.claims_due: dict[str, str] = {}                  # payer -> why its receipts should be claimed
        # ---- worker side (only inside _run jobs)
        # (set by _open on the worker before any other job runs)
        self.chain: Any = None                                # rewards.onchain.TokenChain
        self.ledger: ReceiptLedger = None  # type: ignore[assignment]
        self.pay: RelayPayments = None  # type: ignore[assignment]
        self.signers: SignerCache = None  # type: ignore[assignment]
        self.confirmations = 0
        self._w_price = 0
        self._w_price_at = 0.0
        self._w_guarantee: dict[str, tuple[int, int, float]] = {}   # payer -> (guaranteed, unlockAt, read time)
        self._w_allowance: dict[tuple[str, str, bytes], tuple[int, float]] = {}
        self._w_due: dict[str, str] = {}                      # payer -> reason a claim is due
        self._w_retry: dict[str, float] = {}                  # payer -> monotonic time of the next attempt
        self._w_watch_block: int | None = None
        self._w_watch_at = 0.0
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
        """The directory's (payer, device id) of an authenticated device key, and the start of its session:
        its receipts must carry the price advertised now (call on every authentication)."""
        self._channels[key] = (to_checksum_address(owner), bytes(device_id))
        self._session_price[key] = self.price

    def state_for(self, key: bytes) -> list[bytes]:
        """RECEIPT_STATE payloads to send the device after the handshake response (may be empty)."""
        ch = self._channels.get(key)
        payload = self._state.get(ch) if ch else None
        return [payload] if payload else []

    def add_usage(self, key: bytes, nbytes: int) -> None:
        if nbytes > 0:
            self._pending[key] = self._pending.get(key, 0) + nbytes

    def take_notices(self) -> dict[bytes, bytes]:
        """RELAY_NOTICE payloads to send (sealed) to devices newly stopped or resumed; cleared. The caller
        reports each with ``notice_done(key, payload, sent)``: one that found no room is kept for the next
        round (unless a newer notice for that device came meanwhile)."""
        out, self._notices = self._notices, {}
        return out

    def notice_done(self, key: bytes, payload: bytes, sent: bool) -> None:
        if sent:
            self.notices_sent += 1
        else:
            self._notices.setdefault(key, payload)

    async def on_control(self, key: bytes, payload: bytes) -> list[bytes]:
        """A payments control message from ``key`` (add its usage first); returns the ack(s) to send, built
        after the ledger committed. A stored receipt also renews the budgets of the payer's devices."""
        pending, self._pending = self._pending, {}
        ch = self._channels.get(key)
        siblings = [k for k, c in self._channels.items() if ch and c[0] == ch[0] and
                    (self.core is None or k in self.core.budgets or k == key)]
        out, stored, outcome = await self._run(self._control, pending, key, siblings, payload, time.time())
        self._publish(outcome)
        if stored and self.core is not None and outcome.grants:
            self._set_budgets({**self.core.budgets, **{k: g.budget for k, g in outcome.grants.items()}},
                              outcome.grants)
        return out

    async def settle(self, connected) -> None:
        """Write pending usage; recompute the budgets of the ``connected`` keys (RelayCore.budgets); watch the
        token's events and claim what is due (worker)."""
        pending, self._pending = self._pending, {}
        outcome = await self._run(self._settle, pending, list(connected), time.time())
        self._publish(outcome)
        if self.core is not None and outcome.price:
            self._set_budgets({k: g.budget for k, g in outcome.grants.items()}, outcome.grants)
        elif self.core is not None:
            self.core.budgets = {}   # a free relay (price 0): no gating

    def _publish(self, o: _Outcome) -> None:
        self.price = o.price
        self._figures.update(o.figures)
        self._decisions.update(o.decisions)
        self._state.update(o.state)
        self.stored += o.stored
        self.rejected += o.rejected
        self.count_answers += o.count_answers
        self.claims = (self.claims + o.claims)[-20:]
        self.claimed_base += sum(c["total_base"] for c in o.claims)
        self.claims_due = o.due if o.due is not None else self.claims_due

    def _set_budgets(self, budgets: dict[bytes, int], grants: dict[bytes, Grant]) -> None:
        """Install ``budgets``; a device whose grant was just recomputed (in ``grants``) and is now 0 is
        newly stopped (logged, RELAY_NOTICE queued with the reason), one above 0 that was stopped resumes.
        Devices without a new grant keep their state until their own recompute."""
        for key, grant in grants.items():
            left = budgets.get(key, 0)
            if left <= 0 and key not in self._blocked:   # newly stopped (the core may have spent it to 0)
                self.cutoffs += 1
                why = grant.reason if grant.reason != cr.OK else cr.CREDIT
                log.warning("device %s: relaying stopped: %s", key.hex()[:16], why)
                g = Grant(0, why, grant.payer, grant.owed, grant.guaranteed, grant.price)
                self._notices[key] = g.notice().encode()
            elif left > 0 and key in self._blocked:
                log.info("device %s: relaying resumed (caught up)", key.hex()[:16])
                self._notices[key] = grant.notice().encode()
        self._blocked = ({k for k in self._blocked if k not in grants and k in budgets}
                         | {k for k in grants if budgets.get(k, 0) <= 0})
        self.core.budgets = budgets

    # ---- worker thread --------------------------------------------------------------------------------
    def _open(self) -> tuple[int, dict]:
        from shadowmesh_client.rewards.onchain import TokenChain

        s = self.settings
        self.chain = TokenChain(s.rpc_url, s.deployment, timeout=5.0)
        self.confirmations = confirmations_for(self.chain.chain_id, s.confirmations)
        self.signers = SignerCache(self._binding, ttl=s.signer_cache_seconds)
        self._refresh_price(time.monotonic())
        self.ledger = ReceiptLedger(Path(s.state_dir) / LEDGER_FILE, self.chain.domain, self.relay, self.signers,
                                    tolerance_bytes=s.tolerance_bytes, price_per_byte=self._w_price,
                                    signer_margin=s.claim_margin_seconds)
        policy = CreditPolicy(CreditConfig(s.credit_bytes, s.resume_bytes))
        self.pay = RelayPayments(self.ledger, policy, self._channels.get, self._guarantee_of, self._allowance_of,
                                 self._w_price, message_slack=s.message_slack)
        self.pay.session_price = self._session_price   # loop-written, worker-read (see Threads)
        state = {(rec.payer, rec.device_id): ReceiptMessage(rec.latest, Kind.RECEIPT_STATE).encode()
                 for rec in self.ledger.channels() if rec.latest is not None}
        self._w_watch_block = self._target_block()
        log.info("billing: relay account %s, price %d base units/byte, ledger %s (%d channel(s)), %d confirmations, "
                 "automatic claims %s", self.relay, self._w_price, self.ledger.path, len(state), self.confirmations,
                 "on" if s.claim_account is not None else "off (run `shadowmesh-client claim`)")
        return self._w_price, state

    def _close(self, pending: dict[bytes, int], now: float) -> None:
        try:
            if pending and self.pay is not None:
                self._apply_usage(pending, now)
        finally:
            if self.ledger is not None:
                self.ledger.close()

    def _target_block(self) -> int:
        return max(0, int(self.chain.w3.eth.block_number) - self.confirmations)

    def _at(self):
        """The block chain reads use: ``confirmations`` behind the head ("latest" when 0)."""
        return "latest" if self.confirmations == 0 else self._target_block()

    def _refresh_price(self, t: float) -> None:
        try:
            self._w_price = int(self.chain.token.functions.relayPrice(self.relay).call(block_identifier=self._at()))
            self._w_price_at = t
        except Exception as exc:  # noqa: BLE001 - RPC errors: keep the last known price
            log.warning("billing: cannot read this relay's price (%s); keeping %d", type(exc).__name__, self._w_price)
        if self.pay is not None:
            self.pay.price_per_byte = self.ledger.price_per_byte = self._w_price

    def _binding(self, payer: str, signer: str, device_id: bytes) -> tuple[bool, int]:
        token, at = self.chain.token, self._at()
        bound = token.functions.isReceiptSigner(payer, signer, device_id).call(block_identifier=at)
        valid_until = token.functions.signerBinding(payer, signer, device_id).call(block_identifier=at)[4]
        return bool(bound), int(valid_until)

    def _guarantee(self, payer: str) -> tuple[int, int]:
        """(guaranteedAmount, unlockAt) of ``payer``'s reserve for this relay (cached; 0, 0 if unreadable)."""
        t = time.monotonic()
        hit = self._w_guarantee.get(payer)
        if hit is not None and t - hit[2] < self.settings.escrow_refresh_seconds:
            return hit[0], hit[1]
        try:
            at = self._at()
            value = int(self.chain.token.functions.guaranteedAmount(payer, self.relay).call(block_identifier=at))
            unlock = int(self.chain.token.functions.reserveOf(payer, self.relay).call(block_identifier=at)[2])
        except Exception as exc:  # noqa: BLE001 - RPC errors: the last figure, or 0 (no credit) if none
            log.warning("billing: cannot read the reserve of %s (%s)", payer, type(exc).__name__)
            value, unlock = (hit[0], hit[1]) if hit else (0, 0)
        self._w_guarantee[payer] = (value, unlock, t)
        return value, unlock

    def _guarantee_of(self, payer: str) -> int:
        return self._guarantee(payer)[0]

    def _allowance_of(self, payer: str, signer: str, device_id: bytes) -> int:
        t = time.monotonic()
        key = (payer, signer, bytes(device_id))
        hit = self._w_allowance.get(key)
        if hit is not None and t - hit[1] < self.settings.escrow_refresh_seconds:
            return hit[0]
        try:
            value = int(self.chain.token.functions.signerAllowance(payer, signer, device_id).call(
                block_identifier=self._at()))
        except Exception as exc:  # noqa: BLE001 - RPC errors: the last figure, or 0 (no credit) if none
            log.warning("billing: cannot read the allowance of signer %s (%s)", signer, type(exc).__name__)
            value = hit[0] if hit else 0
        self._w_allowance[key] = (value, t)
        return value

    def _forget(self, payer: str) -> None:
        self._w_guarantee.pop(payer, None)
        for key in [k for k in self._w_allowance if k[0] == payer]:
            del self._w_allowance[key]
        self.signers.forget(payer)

    def _apply_usage(self, pending: dict[bytes, int], now: float) -> None:
        for key, n in pending.items():
            self.pay.on_usage(key, n, now)

    def _grants(self, keys: list[bytes], now: float, o: _Outcome) -> None:
        """Grants of ``keys`` (connected devices) into ``o``, with their figures and decisions."""
        if self._w_price == 0 and not any(self._session_price.get(k) for k in keys):
            for key in keys:
                if key in self._channels:
                    o.decisions[key] = "ok (free relay)"
            return
        grants = self.pay.budgets(keys, now)
        for key, g in grants.items():
            rec = self.ledger.channel(*self._channels[key])
            o.figures[key] = {"counted": rec.counted, "receipted": rec.receipted, "paid": rec.paid,
                              "owed_base": g.owed, "guaranteed_base": g.guaranteed, "price": g.price}
            o.decisions[key] = g.reason
        o.grants.update(grants)

    def _control(self, pending: dict[bytes, int], key: bytes, siblings: list[bytes], payload: bytes, now: float):
        self._apply_usage(pending, now)
        out = self.pay.on_control(key, payload, now)
        o = _Outcome(self._w_price, due=None)  # type: ignore[arg-type]
        stored = False
        for reply in out:
            try:
                ack = decode(reply)
            except Exception:  # noqa: BLE001 - our own message; cannot fail
                continue
            if isinstance(ack, AckMessage) and ack.status is RejectReason.STORED:
                o.stored += 1
                stored = True
                latest = self.ledger.latest(ack.payer, ack.device_id)
                if latest is not None:
                    o.state[(latest.receipt.payer, latest.receipt.device_id)] = \
                        ReceiptMessage(latest, Kind.RECEIPT_STATE).encode()
            elif isinstance(ack, AckMessage):
                o.rejected += 1
            elif isinstance(ack, CountMessage):
                o.count_answers += 1
                log.info("device %s: receipt for %d bytes above our count %d (usage lost in a restart or on a "
                         "dead link): sent our count so it converges down to it", key.hex()[:16],
                         ack.receipt_cumulative, ack.relay_counted)
        if stored:
            self._grants(siblings, now, o)
        return out, stored, o

    def _settle(self, pending: dict[bytes, int], connected: list[bytes], now: float) -> _Outcome:
        self._apply_usage(pending, now)
        t = time.monotonic()
        if t - self._w_price_at >= self.settings.escrow_refresh_seconds:
            self._refresh_price(t)
        if t - self._w_watch_at >= self.settings.watch_seconds:
            self._w_watch_at = t
            self._watch()
        o = _Outcome(self._w_price)
        self._grants(connected, now, o)
        self._claims(now, t, o)
        o.due = dict(self._w_due)
        return o

    # ---- watching and claiming (worker) ---------------------------------------------------------------
    def _watch(self) -> None:
        """Read the token events since the last look (rewards/watch.py) and act on those about us."""
        try:
            to = self._target_block()
            start = (self._w_watch_block or 0) + 1
            if start > to:
                return
            logs = []
            for params in watch.filters(self.chain.token.address, self.relay, start, to):
                logs += self.chain.w3.eth.get_logs(params)
        except Exception as exc:  # noqa: BLE001 - RPC errors: try again next round from the same block
            log.warning("billing: cannot read the token's events (%s)", type(exc).__name__)
            return
        self._w_watch_block = to
        served = {ch[0] for ch in self._channels.values()}
        for raw in logs:
            e = watch.decode(raw)
            if e is None:
                continue
            if e.name in watch.RESERVE_EVENTS:
                if e.relay != self.relay:
                    continue
                self._forget(e.payer)
                if e.name == "ReserveWithdrawalRequested":
                    log.warning("billing: payer %s asked to withdraw its reserve (unlocks at %d): claiming what it "
                                "owes now", e.payer, e.unlock_at)
                    self._w_due[e.payer] = "reserve withdrawal requested"
                    self._w_retry.pop(e.payer, None)
            elif e.payer in served or self.ledger.payer_channels(e.payer):
                self._forget(e.payer)
                if e.name == "SignerRevoked":
                    log.warning("billing: payer %s revoked signer %s (receipts pay until %d): claiming them now",
                                e.payer, e.signer, e.valid_until)
                    self._w_due[e.payer] = "signer revoked"
                    self._w_retry.pop(e.payer, None)

    def _claims(self, now: float, t: float, o: _Outcome) -> None:
        """Mark payers due (threshold, unlockAt near) and, with a claim account, claim them."""
        s = self.settings
        for rec_payer in {rec.payer for rec in self.ledger.channels() if rec.latest is not None}:
            owed = sum(r.owed for r in self.ledger.payer_channels(rec_payer))
            if owed <= 0:
                self._w_due.pop(rec_payer, None)
                continue
            guaranteed, unlock = self._guarantee(rec_payer)
            if rec_payer in self._w_due:
                continue
            if owed >= s.claim_threshold * guaranteed:
                self._w_due[rec_payer] = "owed passed the threshold"
            elif unlock and now >= unlock - s.claim_margin_seconds:
                self._w_due[rec_payer] = "reserve unlocks soon"
        if s.claim_account is None:
            return
        due = {p: why for p, why in self._w_due.items() if self._w_retry.get(p, 0.0) <= t}
        if not due:
            return
        from shadowmesh_client.rewards.onchain import claim

        try:
            report = claim(self.chain, s.claim_account, self.ledger, payers=set(due))
        except Exception as exc:  # noqa: BLE001 - RPC/transaction errors: retry later, the reasons stay due
            log.warning("billing: automatic claim failed (%s: %s); retrying in %.0f s", type(exc).__name__, exc,
                        CLAIM_RETRY_SECONDS)
            for p in due:
                self._w_retry[p] = t + CLAIM_RETRY_SECONDS
            return
        for p in due:
            self._forget(p)
            if sum(r.owed for r in self.ledger.payer_channels(p)) <= 0:
                self._w_due.pop(p, None)
            else:   # what is left cannot pay now (reserve empty, signer cap): try again later
                self._w_retry[p] = t + CLAIM_RETRY_SECONDS
        d = report.to_dict()
        skipped = [x for x in d["claims"] if x["status"].startswith("skipped on chain")]
        o.claims.append({"at": now, "reasons": sorted(set(due.values())), "payers": sorted(due),
                         "total": d["total"], "total_base": d["total_base"],
                         "claimed": [x for x in d["claims"] if x["status"] == "claimed"], "skipped_on_chain": skipped})
        log.info("billing: claimed %s SMT automatically (%s)%s", d["total"], ", ".join(sorted(set(due.values()))),
                 f"; {len(skipped)} entr(y/ies) skipped by the contract: " +
                 ", ".join(x["status"] for x in skipped) if skipped else "")

    # ---- observation (loop) ---------------------------------------------------------------------------
    def status(self) -> dict:
        return {"relay_account": self.relay, "price_per_byte": self.price, "receipts_stored": self.stored,
                "receipts_rejected": self.rejected, "count_answers": self.count_answers, "cutoffs": self.cutoffs,
                "notices_sent": self.notices_sent, "notices_pending": len(self._notices),
                "auto_claim": self.settings.claim_account is not None,
                "claimed_base": self.claimed_base, "claims": self.claims, "claims_due": self.claims_due,
                "blocked": sorted(k.hex() for k in self._blocked),
                "devices": {k.hex(): dict(self._figures.get(k, {}), decision=v) for k, v in self._decisions.items()}}
