"""`shadowmesh-client deposit | withdraw | balance | claim | earnings | set-price | authorize-signer`: relay payments
(docs/payments.md). Thin: parse, call one function of rewards.onchain, print (text, or JSON with --json).
Amounts are SMT with up to 18 decimals ("12.5"); prices are SMT base units (10**-18 SMT) per byte. Both are
checked by their click types (cli/common.py: not negative, at most 2**256-1 base units) before any RPC, and
amounts against the account's balance or escrow before any transaction.

The lead attaches these to the main group with ``register(main)``. Relays keep their receipts in
``<state_dir>/receipts.sqlite`` (the relay daemon writes it; ``claim`` and ``earnings`` read it).
"""

from __future__ import annotations

from pathlib import Path

import click

from shadowmesh_client.cli.common import (
    ETH_ADDRESS,
    NUMBERS_AS_ARGUMENTS,
    SMT_AMOUNT,
    UINT256,
    State,
    emit,
    json_option,
)
from shadowmesh_client.rewards.ledger import LEDGER_FILE


def _chain(state: State):
    from shadowmesh_client.rewards.onchain import TokenChain

    return state.chain(TokenChain)


def ledger_path(state: State) -> Path:
    return Path(state.config.state_dir) / LEDGER_FILE


def _ledger(state: State, chain, relay: str, must_exist: bool):
    from shadowmesh_client.rewards.errors import PaymentError
    from shadowmesh_client.rewards.ledger import ReceiptLedger

    path = ledger_path(state)
    if not path.exists():
        if must_exist:
            raise PaymentError(f"no receipts yet: {path} does not exist (the relay daemon creates it)")
        return None
    return ReceiptLedger(path, chain.domain, relay)


ESCROW_MAX = 2**96 - 1  # base units: ShadowMeshToken keeps each escrow in a uint96 (EscrowOverflow above)


@click.command(context_settings=NUMBERS_AS_ARGUMENTS)
@click.argument("amount", type=SMT_AMOUNT)
@json_option
@click.pass_obj
def deposit(state: State, amount, as_json):
    """Move AMOUNT SMT from the owner account into its escrow, from which relays are paid."""
    from shadowmesh_client.errors import ConfigError
    from shadowmesh_client.rewards import onchain

    if amount == 0:
        raise ConfigError("deposit 0 SMT does nothing: give an amount above 0")
    chain = _chain(state)
    before = onchain.balance(chain, state.owner_address())
    if amount > before.wallet:
        faucet = " (on a local chain: `shadowmesh-client dev faucet`)" if chain.chain_id in (31337, 1337) else ""
        raise ConfigError(f"{before.address} holds {onchain.format_smt(before.wallet)} SMT; cannot deposit "
                          f"{onchain.format_smt(amount)} SMT{faucet}")
    if before.escrow + amount > ESCROW_MAX:
        raise ConfigError(f"the escrow holds {onchain.format_smt(before.escrow)} SMT and can hold at most "
                          f"{onchain.format_smt(ESCROW_MAX)} SMT: deposit less")
    r = onchain.deposit(chain, state.owner_account(), amount)
    b = onchain.balance(chain, state.owner_address())
    r["escrow"] = b.to_dict()["escrow"]
    emit(as_json, r, f"deposited {r['amount']} SMT (escrow now {r['escrow']} SMT)\ntx: {r['tx_hash']}")


@click.command()
@click.option("--amount", type=SMT_AMOUNT, help="Request a withdrawal of this many SMT (starts the notice period).")
@click.option("--all", "all_", is_flag=True, help="Request a withdrawal of the whole escrow.")
@json_option
@click.pass_obj
def withdraw(state: State, amount, all_, as_json):
    """Request a withdrawal (--amount X or --all), or, with no option, complete the pending one once its
    notice period has passed (relays can claim until then)."""
    from shadowmesh_client.errors import ConfigError
    from shadowmesh_client.rewards import onchain

    if amount is not None and all_:
        raise ConfigError("pass either --amount or --all, not both")
    if amount == 0:
        raise ConfigError("withdraw --amount 0 does nothing: give an amount above 0")
    chain = _chain(state)
    account = state.owner_account()
    value = amount if amount is not None else (onchain.balance(chain, account.address).escrow if all_ else None)
    r = onchain.withdraw(chain, account, value)
    if r["action"] == "requested":
        wait = onchain.duration(r["seconds_left"])
        text = (f"withdrawal of {r['amount']} SMT requested; run `withdraw` again in {wait}"
                f"\ntx: {r['tx_hash']}")
    else:
        text = f"withdrew {r['amount']} SMT (escrow left {r['escrow_left']} SMT)\ntx: {r['tx_hash']}"
    emit(as_json, r, text)


@click.command()
@click.option("--address", type=ETH_ADDRESS, help="Another account (default: the owner account).")
@json_option
@click.pass_obj
def balance(state: State, address, as_json):
    """SMT in the owner account and in its escrow, and any pending withdrawal."""
    from shadowmesh_client.rewards import onchain

    d = onchain.balance(_chain(state), address or state.owner_address()).to_dict()
    lines = [f"account: {d['address']}", f"wallet: {d['wallet']} SMT", f"escrow: {d['escrow']} SMT"]
    if d["unlock_at"]:
        left = d["seconds_left"]
        lines.append(f"pending withdrawal: {d['pending_withdrawal']} SMT, "
                     + (f"unlocks in {onchain.duration(left)}" if left else "ready: run `withdraw`"))
    emit(as_json, d, "\n".join(lines))


@click.command()
@click.option("--min-amount", type=SMT_AMOUNT, default="0", show_default=True,
              help="Skip receipts worth less than this (SMT).")
@click.option("--dry-run", is_flag=True, help="Show what would be claimed; send nothing.")
@click.option("--batch-size", type=click.IntRange(1, 500), default=50, show_default=True,
              help="Receipts per claimBatch transaction.")
@json_option
@click.pass_obj
def claim(state: State, min_amount, dry_run, batch_size, as_json):
    """Claim payment for the latest stored receipts (relay operators), in batches."""
    from shadowmesh_client.rewards import onchain

    chain = _chain(state)
    account = state.owner_account()
    ledger = _ledger(state, chain, account.address, must_exist=True)
    try:
        progress = None if as_json else (lambda done, n: click.echo(f"submitted {done}/{n} receipts", err=True))
        report = onchain.claim(chain, account, ledger, min_amount=min_amount, dry_run=dry_run,
                               batch_size=batch_size, progress=progress)
    finally:
        ledger.close()
    d = report.to_dict()
    lines = [f"{'DEVICE':<20} {'PAYER':<14} {'BYTES':>14} {'AMOUNT (SMT)':>22}  STATUS / TX"]
    for c in d["claims"]:
        lines.append(f"{c['device_id'][:18] + '..':<20} {c['payer'][:12] + '..':<14} {c['bytes']:>14} "
                     f"{c['amount']:>22}  {c['tx_hash'] or c['status']}")
    lines.append(f"total{' (dry run)' if dry_run else ''}: {d['total']} SMT")
    emit(as_json, d, "\n".join(lines))


@click.command()
@json_option
@click.pass_obj
def earnings(state: State, as_json):
    """SMT this relay has been paid (claimed) and what its stored receipts would pay now (unclaimed)."""
    from shadowmesh_client.rewards import onchain

    chain = _chain(state)
    relay = state.owner_address()
    ledger = _ledger(state, chain, relay, must_exist=False)
    try:
        d = onchain.earnings(chain, relay, ledger)
    finally:
        if ledger is not None:
            ledger.close()
    emit(as_json, d, f"relay: {d['relay']}\nclaimed: {d['claimed']} SMT in {d['claims']} claim(s)\n"
                     f"unclaimed: {d['unclaimed']} SMT over {d['receipts_unclaimed']} receipt(s)\n"
                     f"wallet: {d['wallet']} SMT")


@click.command("set-price", context_settings=NUMBERS_AS_ARGUMENTS)
@click.argument("price", type=UINT256)
@json_option
@click.pass_obj
def set_price(state: State, price, as_json):
    """Advertise this relay's PRICE in SMT base units (10**-18 SMT) per byte (0 stops claims)."""
    from shadowmesh_client.rewards import onchain
    from shadowmesh_client.rewards.onchain import format_smt

    r = onchain.set_price(_chain(state), state.owner_account(), price)
    per_gb = format_smt(price * 10**9)
    emit(as_json, r, f"price: {price} base units per byte ({per_gb} SMT per GB)\ntx: {r['tx_hash']}")


@click.command("authorize-signer")
@click.argument("address", type=ETH_ADDRESS)
@click.option("--revoke", is_flag=True, help="Withdraw the authorisation instead.")
@json_option
@click.pass_obj
def authorize_signer(state: State, address, revoke, as_json):
    """Let ADDRESS (a device's receipt-signing key) sign receipts paid from the owner's escrow."""
    from shadowmesh_client.rewards import onchain

    r = onchain.set_receipt_signer(_chain(state), state.owner_account(), address, not revoke)
    emit(as_json, r, f"{r['signer']} {'may' if r['authorized'] else 'may no longer'} sign receipts\ntx: {r['tx_hash']}")


COMMANDS = (deposit, withdraw, balance, claim, earnings, set_price, authorize_signer)

