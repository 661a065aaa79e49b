"""Payments on chain: escrow (deposit, withdrawal with notice), balances, claims and earnings
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
BATCH_SIZE = 50         # receipts per claimBatch transaction (gas: ~45k each, see README)


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


# ------------------------------------------------------------------ escrow


@dataclass(frozen=True)
class Balance:
    address: str
    wallet: int            # SMT in the account (base units)
    escrow: int            # SMT in escrow
    pending_withdrawal: int
    unlock_at: int         # 0 = no request
    chain_time: int        # latest block timestamp

    def to_dict(self) -> dict:
        return {"address": self.address, "wallet": format_smt(self.wallet), "escrow": format_smt(self.escrow),
                "pending_withdrawal": format_smt(self.pending_withdrawal), "unlock_at": self.unlock_at,
                "seconds_left": max(0, self.unlock_at - self.chain_time) if self.unlock_at else None}


def balance(chain: TokenChain, address: str) -> Balance:
    address = to_checksum_address(address)
    wallet = chain.call(chain.token.functions.balanceOf(address))
    esc = chain.call(chain.token.functions.escrowOf(address))
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    return Balance(address, wallet, int(esc[0]), int(esc[1]), int(esc[2]), now)


def deposit(chain: TokenChain, account, amount: int) -> dict:
    if amount <= 0:
        raise PaymentError("deposit amount must be positive")
    r = chain.transact(account, chain.token.functions.deposit(amount))
    return {"amount": format_smt(amount), "tx_hash": r["transactionHash"].to_0x_hex(), "gas_used": r["gasUsed"]}


def withdraw(chain: TokenChain, account, amount: int | None = None) -> dict:
    """With ``amount``: request a withdrawal (starts the notice). Without: complete a pending one once its
    notice has passed, else PaymentError saying how long is left. Returns what happened."""
    b = balance(chain, account.address)
    if amount is not None:
        if amount <= 0:
            raise PaymentError("withdrawal amount must be positive")
        if amount > b.escrow:
            raise PaymentError(f"the escrow holds {format_smt(b.escrow)} SMT; cannot withdraw {format_smt(amount)}")
        r = chain.transact(account, chain.token.functions.requestWithdrawal(amount))
        ev = chain.token.events.WithdrawalRequested().process_receipt(r, errors=DISCARD)[0]["args"]
        return {"action": "requested", "amount": format_smt(amount), "unlock_at": ev["unlockAt"],
                "seconds_left": max(0, ev["unlockAt"] - int(chain.w3.eth.get_block(r["blockNumber"])["timestamp"])),
                "tx_hash": r["transactionHash"].to_0x_hex()}
    if not b.unlock_at:
        raise PaymentError("no withdrawal is pending: request one with `withdraw --amount X` first")
    if b.chain_time < b.unlock_at:
        left = b.unlock_at - b.chain_time
        raise PaymentError(f"the notice period ends in {duration(left)} (at block time {b.unlock_at}); "
                           "relays can still claim until then; run `withdraw` again after it")
    r = chain.transact(account, chain.token.functions.withdraw())
    ev = chain.token.events.Withdrawn().process_receipt(r, errors=DISCARD)[0]["args"]
    return {"action": "withdrawn", "amount": format_smt(ev["amount"]), "amount_base": ev["amount"],
            "escrow_left": format_smt(ev["balance"]), "tx_hash": r["transactionHash"].to_0x_hex()}


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

    def to_dict(self) -> dict:
        return {"dry_run": self.dry_run, "claims": [x.to_dict() for x in self.lines],
                "total": format_smt(self.total), "total_base": self.total}


def _plan(chain: TokenChain, relay: str, ledger: ReceiptLedger, min_amount: int) -> tuple[list, list[ClaimLine]]:
    """Which stored receipts to submit and what each should pay, modelling escrow drawdown within a batch
    so that no receipt in it reverts (claimBatch reverts as a whole on any bad receipt)."""
    price = chain.call(chain.token.functions.relayPrice(relay))
    if price == 0:
        raise PaymentError(f"relay {relay} has no price on chain: "
                           "set one with `shadowmesh-client set-price PRICE` first")
    escrow: dict[str, int] = {}
    todo, skipped = [], []
    for rec in ledger.channels():
        s = rec.latest
        if s is None:
            continue
        rc = s.receipt
        did = "0x" + rc.device_id.hex()
        paid = chain.call(chain.token.functions.paidBytes(rc.payer, rc.device_id, relay))
        ledger.set_paid(rc.payer, rc.device_id, paid)
        due = rc.cumulative_bytes - paid
        if due <= 0:
            skipped.append(ClaimLine(rc.payer, did, 0, 0, None, "skipped: already paid"))
            continue
        p = min(price, rc.max_price_per_byte)
        if rc.payer not in escrow:
            escrow[rc.payer] = int(chain.call(chain.token.functions.escrowOf(rc.payer))[0])
        affordable = escrow[rc.payer] // p
        if affordable == 0:
            skipped.append(ClaimLine(rc.payer, did, 0, 0, None, "skipped: payer's deposit is empty"))
            continue
        nbytes = min(due, affordable)
        if nbytes * p < min_amount:
            skipped.append(ClaimLine(rc.payer, did, nbytes, nbytes * p, None, "skipped: below --min-amount"))
            continue
        signer = s.recover(chain.domain)
        if not chain.call(chain.token.functions.isReceiptSigner(rc.payer, signer)):
            skipped.append(ClaimLine(rc.payer, did, 0, 0, None, "skipped: signer no longer authorised"))
            continue
        escrow[rc.payer] -= nbytes * p
        todo.append((s, ClaimLine(rc.payer, did, nbytes, nbytes * p, None, "would claim")))
    return todo, skipped


def claim(chain: TokenChain, account, ledger: ReceiptLedger, *, min_amount: int = 0, dry_run: bool = False,
          batch_size: int = BATCH_SIZE, progress=None) -> ClaimReport:
    """Submit the ledger's latest receipts with claimBatch, ``batch_size`` per transaction, skipping those
    already paid, unpayable or worth less than ``min_amount`` base units. Figures come from the Claimed events."""
    relay = account.address
    if ledger.relay != relay:
        raise PaymentError(f"the receipt ledger is for relay {ledger.relay} but the account is {relay}")
    todo, skipped = _plan(chain, relay, ledger, min_amount)
    report = ClaimReport(list(skipped), dry_run)
    if dry_run:
        report.lines[:0] = [line for _, line in todo]
        return report
    price = chain.call(chain.token.functions.relayPrice(relay))
    done = []
    for i in range(0, len(todo), batch_size):
        batch = {(s.receipt.payer, s.receipt.device_id): (s, line) for s, line in todo[i:i + batch_size]}
        entries = [s.as_contract_tuple() for s, _ in batch.values()]
        r = chain.transact(account, chain.token.functions.claimBatch(entries))
        tx = r["transactionHash"].to_0x_hex()
        for ev in chain.token.events.Claimed().process_receipt(r, errors=DISCARD):
            a = ev["args"]
            s, line = batch[(a["payer"], bytes(a["deviceId"]))]
            ledger.set_paid(a["payer"], bytes(a["deviceId"]), a["cumulativeBytes"])
            line.bytes = a["amount"] // min(price, s.receipt.max_price_per_byte)
            line.amount, line.tx_hash, line.status = a["amount"], tx, "claimed"
            done.append(line)
        if progress:
            progress(min(i + batch_size, len(todo)), len(todo))
    report.lines[:0] = done
    return report


def set_price(chain: TokenChain, account, price_per_byte: int) -> dict:
    r = chain.transact(account, chain.token.functions.setRelayPrice(price_per_byte))
    return {"price_per_byte": price_per_byte, "tx_hash": r["transactionHash"].to_0x_hex()}


def earnings(chain: TokenChain, relay: str, ledger: ReceiptLedger | None) -> dict:
    """Claimed: the sum of Claimed events for ``relay`` since the deploy block. Unclaimed: what the stored
    receipts would pay now (price × unpaid receipted bytes, capped by each payer's escrow)."""
    relay = to_checksum_address(relay)
    try:
        logs = chain.token.events.Claimed().get_logs(from_block=chain.deployment.deploy_block,
                                                    argument_filters={"relay": relay})
    except Exception as exc:  # noqa: BLE001 - RPC failures
        raise ChainError(f"cannot read Claimed events: {chain.explain(exc)}") from None
    claimed = sum(int(e["args"]["amount"]) for e in logs)
    unclaimed, receipts = 0, 0
    if ledger is not None:
        price = chain.call(chain.token.functions.relayPrice(relay))
        if price:
            todo, _ = _plan(chain, relay, ledger, 0)
            unclaimed, receipts = sum(line.amount for _, line in todo), len(todo)
    return {"relay": relay, "claimed": format_smt(claimed), "claimed_base": claimed, "claims": len(logs),
            "unclaimed": format_smt(unclaimed), "unclaimed_base": unclaimed, "receipts_unclaimed": receipts,
            "wallet": format_smt(chain.call(chain.token.functions.balanceOf(relay)))}


def set_receipt_signer(chain: TokenChain, account, signer: str, authorized: bool = True) -> dict:
    """Let ``signer`` (e.g. a device's hot key) sign receipts paid from ``account``'s escrow (or stop it)."""
    signer = to_checksum_address(signer)
    r = chain.transact(account, chain.token.functions.setReceiptSigner(signer, authorized))
    return {"signer": signer, "authorized": authorized, "tx_hash": r["transactionHash"].to_0x_hex()}
