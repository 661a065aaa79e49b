"""Payments on chain (payments v2, docs/payments-v2-interface.md): deposits and per-relay reserves (withdrawal
with notice), receipt signers bound to a device with a cap per period, balances, claims and earnings
(docs/payments.md). Uses chain.py's Chain for sending transactions (gas estimated first, so a revert is a
ChainError before anything is sent); :class:`TokenChain` only widens its error decoding to the token's
custom errors. Amounts: integers in SMT base units (10**-DECIMALS SMT); :func:`parse_smt`/:func:`format_smt`
convert to and from the decimal strings users type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from eth_utils import to_checksum_address
from web3.logs import DISCARD

from shadowmesh_client.chain import Chain
from shadowmesh_client.errors import ChainError
from shadowmesh_client.rewards.errors import PaymentError
from shadowmesh_client.rewards.ledger import ReceiptLedger
from shadowmesh_client.rewards.receipts import ReceiptDomain

DECIMALS = 18           # ERC-20 decimals of SMT
BATCH_SIZE = 50         # receipts per claimBatch transaction (gas: <= 45k each, see README)
RESERVE_MAX = 2**96 - 1  # base units: ShadowMeshToken keeps each reserve in a uint96 (EscrowOverflow above)
CAP_MAX = 2**80 - 1      # base units: a signer's capPerPeriod (CapOverflow above)

SKIP_REASONS = {0: "invalid signer", 1: "signer revoked", 2: "zero price", 3: "already paid",
                4: "reserve empty", 5: "signer cap reached"}
"""ClaimSkipped.reason (IShadowMeshToken.ClaimFailure) in words; 4 and 5 are retryable later, 1 is final."""


def parse_smt(text: str) -> int:
    """"1.5" -> 1.5 * 10**18 base units; PaymentError for negative, non-numeric or too many decimals."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise PaymentError(f"{text!r} is not an amount of SMT (e.g. 12.5)") from None
    if not value.is_finite() or value < 0:
        raise PaymentError(f"{text!r} is not a positive amount of SMT")
    base = value.scaleb(DECIMALS)
    if base != base.to_integral_value():
        raise PaymentError(f"{text!r} has more than {DECIMALS} decimals")
    return int(base)


def format_smt(base_units: int) -> str:
    """Base units as a decimal SMT string without trailing zeros (10**18 -> "1")."""
    sign = "-" if base_units < 0 else ""
    whole, frac = divmod(abs(base_units), 10**DECIMALS)
    frac_text = f"{frac:0{DECIMALS}d}".rstrip("0")
    return f"{sign}{whole}" + (f".{frac_text}" if frac_text else "")


class TokenChain(Chain):
    """A Chain with ShadowMeshToken bound as ``token`` (Chain.explain already names the token's errors)."""

    def __init__(self, rpc_url: str, deployment, **kw) -> None:
        super().__init__(rpc_url, deployment, **kw)
        if not deployment.token or not deployment.token_abi:
            raise PaymentError(f"{deployment.path} has no ShadowMeshToken: deploy the token or use a newer record")
        self.token = self.w3.eth.contract(address=deployment.token, abi=deployment.token_abi)
        self.domain = ReceiptDomain(self.chain_id, deployment.token)


# ------------------------------------------------------------------ deposits and reserves


@dataclass(frozen=True)
class ReserveState:
    relay: str
    balance: int             # base units in the reserve (only ``relay`` can claim from it)
    pending_withdrawal: int  # requested by the payer
    unlock_at: int           # 0 = no request; from then on ``withdrawReserve`` pays min(pending, balance)
    guaranteed: int          # guaranteedAmount(payer, relay) = balance - min(pending, balance)

    def to_dict(self, chain_time: int) -> dict:
        return {"relay": self.relay, "balance": format_smt(self.balance), "balance_base": self.balance,
                "pending_withdrawal": format_smt(self.pending_withdrawal), "unlock_at": self.unlock_at,
                "seconds_left": max(0, self.unlock_at - chain_time) if self.unlock_at else None,
                "guaranteed": format_smt(self.guaranteed), "guaranteed_base": self.guaranteed}


@dataclass(frozen=True)
class Balance:
    address: str
    wallet: int              # SMT in the account (base units)
    unallocated: int         # deposited, in no reserve: nobody's collateral, withdrawable at once
    reserves: tuple[ReserveState, ...]
    chain_time: int          # latest block timestamp

    @property
    def escrow(self) -> int:
        """Everything the payer has in the contract: unallocated + reserves."""
        return self.unallocated + sum(r.balance for r in self.reserves)

    def to_dict(self) -> dict:
        return {"address": self.address, "wallet": format_smt(self.wallet), "unallocated": format_smt(self.unallocated),
                "unallocated_base": self.unallocated, "escrow": format_smt(self.escrow),
                "reserves": [r.to_dict(self.chain_time) for r in self.reserves]}


def reserve(chain: TokenChain, payer: str, relay: str, block="latest") -> ReserveState:
    payer, relay = to_checksum_address(payer), to_checksum_address(relay)
    bal, pending, unlock = chain.token.functions.reserveOf(payer, relay).call(block_identifier=block)
    guaranteed = chain.token.functions.guaranteedAmount(payer, relay).call(block_identifier=block)
    return ReserveState(relay, int(bal), int(pending), int(unlock), int(guaranteed))


def _relays_of(chain: TokenChain, payer: str) -> list[str]:
    """The relays ``payer`` ever funded a reserve for (ReserveFunded events, topic 1 = payer)."""
    try:
        logs = chain.token.events.ReserveFunded().get_logs(from_block=chain.deployment.deploy_block,
                                                          argument_filters={"payer": payer})
    except Exception as exc:  # noqa: BLE001 - RPC failures
        raise ChainError(f"cannot read ReserveFunded events: {chain.explain(exc)}") from None
    return list(dict.fromkeys(to_checksum_address(e["args"]["relay"]) for e in logs))


def balance(chain: TokenChain, address: str, relays: list[str] | None = None) -> Balance:
    """Wallet, unallocated deposit and every reserve of ``address`` (``relays``: only these)."""
    address = to_checksum_address(address)
    wallet = chain.call(chain.token.functions.balanceOf(address))
    unallocated = chain.call(chain.token.functions.depositOf(address))
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    names = [to_checksum_address(r) for r in relays] if relays is not None else _relays_of(chain, address)
    return Balance(address, int(wallet), int(unallocated), tuple(reserve(chain, address, r) for r in names), now)


def _tx(r) -> str:
    return r["transactionHash"].to_0x_hex()


def deposit(chain: TokenChain, account, amount: int, relay: str | None = None) -> dict:
    """Without ``relay``: wallet -> unallocated deposit. With: into the reserve for ``relay``, taken from the
    unallocated deposit when it holds enough (``fundReserve``), else from the wallet (``depositToReserve``)."""
    if amount <= 0:
        raise PaymentError("deposit amount must be positive")
    if relay is None:
        r = chain.transact(account, chain.token.functions.deposit(amount))
        return {"amount": format_smt(amount), "tx_hash": _tx(r), "gas_used": r["gasUsed"]}
    relay = to_checksum_address(relay)
    if reserve(chain, account.address, relay).balance + amount > RESERVE_MAX:
        raise PaymentError(f"a reserve holds at most {format_smt(RESERVE_MAX)} SMT: deposit less")
    unallocated = chain.call(chain.token.functions.depositOf(account.address))
    fn = (chain.token.functions.fundReserve(relay, amount) if unallocated >= amount
          else chain.token.functions.depositToReserve(relay, amount))
    r = chain.transact(account, fn)
    ev = chain.token.events.ReserveFunded().process_receipt(r, errors=DISCARD)[0]["args"]
    return {"amount": format_smt(amount), "relay": relay, "reserve": format_smt(ev["balance"]),
            "from": "deposit" if unallocated >= amount else "wallet", "tx_hash": _tx(r), "gas_used": r["gasUsed"]}


def withdraw(chain: TokenChain, account, amount: int | None = None, relay: str | None = None) -> dict:
    """Without ``relay``: ``amount`` of the unallocated deposit back to the wallet, at once. With ``relay``
    and ``amount``: request a reserve withdrawal (starts the notice; the relay can still claim until it is
    made). With ``relay`` only: make the pending one once its notice has passed, else PaymentError saying
    how long is left."""
    if relay is None:
        if not amount or amount <= 0:
            raise PaymentError("give the amount to withdraw from the unallocated deposit (or --relay R)")
        have = chain.call(chain.token.functions.depositOf(account.address))
        if amount > have:
            raise PaymentError(f"the unallocated deposit holds {format_smt(have)} SMT; cannot withdraw "
                               f"{format_smt(amount)} (reserves need `withdraw --relay RELAY`)")
        r = chain.transact(account, chain.token.functions.withdraw(amount))
        ev = chain.token.events.Withdrawn().process_receipt(r, errors=DISCARD)[0]["args"]
        return {"action": "withdrawn", "amount": format_smt(amount), "amount_base": amount,
                "unallocated_left": format_smt(ev["balance"]), "tx_hash": _tx(r)}
    relay = to_checksum_address(relay)
    res = reserve(chain, account.address, relay)
    chain_time = int(chain.w3.eth.get_block("latest")["timestamp"])
    if amount is not None:
        if amount <= 0:
            raise PaymentError("withdrawal amount must be positive")
        if amount > res.balance:
            raise PaymentError(f"the reserve for {relay} holds {format_smt(res.balance)} SMT; cannot withdraw "
                               f"{format_smt(amount)}")
        r = chain.transact(account, chain.token.functions.requestReserveWithdrawal(relay, amount))
        ev = chain.token.events.ReserveWithdrawalRequested().process_receipt(r, errors=DISCARD)[0]["args"]
        now = int(chain.w3.eth.get_block(r["blockNumber"])["timestamp"])
        return {"action": "requested", "relay": relay, "amount": format_smt(amount), "unlock_at": ev["unlockAt"],
                "seconds_left": max(0, ev["unlockAt"] - now), "tx_hash": _tx(r)}
    if not res.unlock_at:
        raise PaymentError(f"no withdrawal from the reserve for {relay} is pending: request one with "
                           "`withdraw --relay RELAY --amount X` first")
    if chain_time < res.unlock_at:
        raise PaymentError(f"the notice period ends in {duration(res.unlock_at - chain_time)} (at block time "
                           f"{res.unlock_at}); the relay can still claim until then; run `withdraw --relay` "
                           "again after it")
    r = chain.transact(account, chain.token.functions.withdrawReserve(relay))
    ev = chain.token.events.ReserveWithdrawn().process_receipt(r, errors=DISCARD)[0]["args"]
    return {"action": "withdrawn", "relay": relay, "amount": format_smt(ev["amount"]), "amount_base": ev["amount"],
            "reserve_left": format_smt(ev["balance"]), "tx_hash": _tx(r)}


def duration(seconds: int) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return (f"{h} h " if h else "") + (f"{m} min " if h or m else "") + f"{s} s"


# ------------------------------------------------------------------ claims


@dataclass
class ClaimLine:
    payer: str
    device_id: str
    bytes: int            # bytes this claim pays for (expected on dry run, paid otherwise)
    amount: int           # base units
    tx_hash: str | None
    status: str           # "claimed", "would claim", "skipped: ..."

    def to_dict(self) -> dict:
        return {"payer": self.payer, "device_id": self.device_id, "bytes": self.bytes,
                "amount": format_smt(self.amount), "amount_base": self.amount, "tx_hash": self.tx_hash,
                "status": self.status}


@dataclass
class ClaimReport:
    lines: list[ClaimLine] = field(default_factory=list)
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(x.amount for x in self.lines if x.status in ("claimed", "would claim"))

    @property
    def skipped_on_chain(self) -> list[ClaimLine]:
        """Entries the contract skipped (ClaimSkipped events) in a batch that paid the others."""
        return [x for x in self.lines if x.status.startswith("skipped on chain")]

    def to_dict(self) -> dict:
        return {"dry_run": self.dry_run, "claims": [x.to_dict() for x in self.lines],
                "total": format_smt(self.total), "total_base": self.total}


def _plan(chain: TokenChain, relay: str, ledger: ReceiptLedger, min_amount: int,
          payers: set[str] | None = None) -> tuple[list, list[ClaimLine]]:
    """Which stored receipts to submit and what each should pay: the unpaid bytes at the receipt's price,
    modelling the drawdown of each payer's reserve for this relay and of each hot signer's allowance within
    the batch. (claimBatch skips what cannot pay anyway; planning keeps the figures right.)"""
    reserves: dict[str, int] = {}
    allowances: dict[tuple[str, str, bytes], int] = {}
    todo, skipped = [], []
    for rec in ledger.channels():
        s = rec.latest
        if s is None or (payers is not None and rec.payer not in payers):
            continue
        rc = s.receipt
        did = "0x" + rc.device_id.hex()
        paid = chain.call(chain.token.functions.paidBytes(rc.payer, rc.device_id, relay))
        ledger.set_paid(rc.payer, rc.device_id, paid)
        due = rc.cumulative_bytes - paid
        if due <= 0:
            skipped.append(ClaimLine(rc.payer, did, 0, 0, None, "skipped: already paid"))
            continue
        p = rc.price_per_byte
        if p == 0:
            skipped.append(ClaimLine(rc.payer, did, 0, 0, None, "skipped: zero price"))
            continue
        if rc.payer not in reserves:
            reserves[rc.payer] = int(chain.call(chain.token.functions.reserveOf(rc.payer, relay))[0])
        affordable = reserves[rc.payer] // p
        signer = s.recover(chain.domain)
        if signer != rc.payer:
            k = (rc.payer, signer, rc.device_id)
            if k not in allowances:
                allowances[k] = int(chain.call(chain.token.functions.signerAllowance(*k)))
            if allowances[k] == 0:
                skipped.append(ClaimLine(rc.payer, did, 0, 0, None,
                                         "skipped: signer not bound, revoked or at its cap for this period"))
                continue
            affordable = min(affordable, allowances[k] // p)
        if affordable == 0:
            skipped.append(ClaimLine(rc.payer, did, 0, 0, None, "skipped: payer's reserve for this relay is empty"))
            continue
        nbytes = min(due, affordable)
        if nbytes * p < min_amount:
            skipped.append(ClaimLine(rc.payer, did, nbytes, nbytes * p, None, "skipped: below --min-amount"))
            continue
        reserves[rc.payer] -= nbytes * p
        if signer != rc.payer:
            allowances[(rc.payer, signer, rc.device_id)] -= nbytes * p
        todo.append((s, ClaimLine(rc.payer, did, nbytes, nbytes * p, None, "would claim")))
    return todo, skipped


def claim(chain: TokenChain, account, ledger: ReceiptLedger, *, min_amount: int = 0, dry_run: bool = False,
          batch_size: int = BATCH_SIZE, progress=None, payers: set[str] | None = None) -> ClaimReport:
    """Submit the ledger's latest receipts (``payers``: only theirs) with claimBatch, ``batch_size`` per
    transaction, skipping those already paid, unpayable or worth less than ``min_amount`` base units. Figures
    come from the Claimed events; entries the contract skipped (ClaimSkipped: e.g. a signer revoked or a
    reserve drained by a transaction that landed first) are reported with the reason, and the batch's other
    entries are paid."""
    relay = account.address
    if ledger.relay != relay:
        raise PaymentError(f"the receipt ledger is for relay {ledger.relay} but the account is {relay}")
    todo, skipped = _plan(chain, relay, ledger, min_amount, payers)
    report = ClaimReport(list(skipped), dry_run)
    if dry_run:
        report.lines[:0] = [line for _, line in todo]
        return report
    done = []
    for i in range(0, len(todo), batch_size):
        done += submit_batch(chain, account, todo[i:i + batch_size], ledger)
        if progress:
            progress(min(i + batch_size, len(todo)), len(todo))
    report.lines[:0] = done
    return report


def submit_batch(chain: TokenChain, account, todo: list, ledger: ReceiptLedger | None = None) -> list[ClaimLine]:
    """One ``claimBatch`` of ``todo`` ((SignedReceipt, ClaimLine) pairs, one per channel); each line becomes
    "claimed" with the Claimed event's figures, or "skipped on chain: <reason>" from ClaimSkipped (the contract
    skips an entry that cannot pay and pays the others). ``ledger``: record the new paidBytes."""
    batch = {(s.receipt.payer, s.receipt.device_id): (s, line) for s, line in todo}
    r = chain.transact(account, chain.token.functions.claimBatch([s.as_contract_tuple() for s, _ in todo]))
    tx, out = _tx(r), []
    for ev in chain.token.events.Claimed().process_receipt(r, errors=DISCARD):
        a = ev["args"]
        s, line = batch[(a["payer"], bytes(a["deviceId"]))]
        if ledger is not None:
            ledger.set_paid(a["payer"], bytes(a["deviceId"]), a["cumulativeBytes"])
        line.bytes = a["amount"] // s.receipt.price_per_byte
        line.amount, line.tx_hash, line.status = a["amount"], tx, "claimed"
        out.append(line)
    for ev in chain.token.events.ClaimSkipped().process_receipt(r, errors=DISCARD):
        a = ev["args"]
        _s, line = batch[(a["payer"], bytes(a["deviceId"]))]
        line.bytes, line.amount, line.tx_hash = 0, 0, tx
        line.status = f"skipped on chain: {SKIP_REASONS.get(a['reason'], str(a['reason']))}"
        out.append(line)
    return out


def set_price(chain: TokenChain, account, price_per_byte: int) -> dict:
    r = chain.transact(account, chain.token.functions.setRelayPrice(price_per_byte))
    return {"price_per_byte": price_per_byte, "tx_hash": _tx(r)}


def earnings(chain: TokenChain, relay: str, ledger: ReceiptLedger | None) -> dict:
    """Claimed: the sum of Claimed events for ``relay`` since the deploy block. Unclaimed: what the stored
    receipts would pay now (their price x unpaid receipted bytes, capped by each payer's reserve for this
    relay and each hot signer's allowance)."""
    relay = to_checksum_address(relay)
    try:
        logs = chain.token.events.Claimed().get_logs(from_block=chain.deployment.deploy_block,
                                                    argument_filters={"relay": relay})
    except Exception as exc:  # noqa: BLE001 - RPC failures
        raise ChainError(f"cannot read Claimed events: {chain.explain(exc)}") from None
    claimed = sum(int(e["args"]["amount"]) for e in logs)
    unclaimed, receipts = 0, 0
    if ledger is not None:
        todo, _ = _plan(chain, relay, ledger, 0)
        unclaimed, receipts = sum(line.amount for _, line in todo), len(todo)
    return {"relay": relay, "claimed": format_smt(claimed), "claimed_base": claimed, "claims": len(logs),
            "unclaimed": format_smt(unclaimed), "unclaimed_base": unclaimed, "receipts_unclaimed": receipts,
            "wallet": format_smt(chain.call(chain.token.functions.balanceOf(relay)))}


# ------------------------------------------------------------------ receipt signers


def authorize_signer(chain: TokenChain, account, signer: str, device_id: bytes, cap_per_period: int,
                     period: int) -> dict:
    """Let ``signer`` (a device's hot key) sign receipts for ``device_id`` paid from ``account``'s reserves,
    at most ``cap_per_period`` base units per ``period`` seconds, all relays together."""
    signer = to_checksum_address(signer)
    if not 0 < cap_per_period <= CAP_MAX:
        raise PaymentError(f"the cap per period must be above 0 and at most {format_smt(CAP_MAX)} SMT")
    if not 0 < period < 2**32:
        raise PaymentError("the period must be a positive number of seconds below 2**32")
    r = chain.transact(account, chain.token.functions.authorizeSigner(signer, device_id, cap_per_period, period))
    return {"signer": signer, "device_id": "0x" + device_id.hex(), "authorized": True,
            "cap_per_period": format_smt(cap_per_period), "cap_per_period_base": cap_per_period, "period": period,
            "tx_hash": _tx(r)}


def revoke_signer(chain: TokenChain, account, signer: str, device_id: bytes) -> dict:
    """Revoke ``signer`` for ``device_id``: receipts it signed keep paying until ``valid_until`` (now + the
    contract's withdrawalDelay), so relays can claim what they acknowledged."""
    signer = to_checksum_address(signer)
    r = chain.transact(account, chain.token.functions.revokeSigner(signer, device_id))
    ev = chain.token.events.SignerRevoked().process_receipt(r, errors=DISCARD)[0]["args"]
    return {"signer": signer, "device_id": "0x" + device_id.hex(), "authorized": False,
            "valid_until": int(ev["validUntil"]), "tx_hash": _tx(r)}


def signer_binding(chain: TokenChain, payer: str, signer: str, device_id: bytes, block="latest") -> dict:
    """``signerBinding`` + ``signerAllowance``: cap, spent, period, validUntil (0 = no end), left now."""
    cap, spent, period, epoch, valid_until = chain.token.functions.signerBinding(payer, signer, device_id).call(
        block_identifier=block)
    left = chain.token.functions.signerAllowance(payer, signer, device_id).call(block_identifier=block)
    return {"cap_per_period": int(cap), "spent": int(spent), "period": int(period), "epoch": int(epoch),
            "valid_until": int(valid_until), "allowance": int(left)}
