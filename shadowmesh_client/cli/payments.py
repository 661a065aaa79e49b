"""`shadowmesh-client deposit | withdraw | balance | claim | earnings | set-price | authorize-signer`: relay payments
(docs/payments.md; payments v2: per-relay reserves, signers bound to a device with a cap per period).
Thin: parse, call one function of rewards.onchain, print (text, or JSON with --json).
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


ESCROW_MAX = 2**96 - 1  # base units: ShadowMeshToken keeps each reserve in a uint96 (EscrowOverflow above)


@click.command(context_settings=NUMBERS_AS_ARGUMENTS)
@click.argument("amount", type=SMT_AMOUNT)
@click.option("--relay", type=ETH_ADDRESS, help="Put it in the reserve for this relay (its owner address): only "
              "that relay can claim from it. Taken from the unallocated deposit when it holds enough, else from "
              "the wallet.")
@json_option
@click.pass_obj
def deposit(state: State, amount, relay, as_json):
    """Move AMOUNT SMT from the owner account into the payments contract: unallocated (withdrawable at once,
    nobody's collateral), or with --relay into the reserve that pays that relay."""
    from shadowmesh_client.errors import ConfigError
    from shadowmesh_client.rewards import onchain

    if amount == 0:
        raise ConfigError("deposit 0 SMT does nothing: give an amount above 0")
    chain = _chain(state)
    before = onchain.balance(chain, state.owner_address(), [relay] if relay else [])
    if amount > before.wallet + (before.unallocated if relay else 0):
        faucet = " (on a local chain: `shadowmesh-client dev faucet`)" if chain.chain_id in (31337, 1337) else ""
        raise ConfigError(f"{before.address} holds {onchain.format_smt(before.wallet)} SMT; cannot deposit "
                          f"{onchain.format_smt(amount)} SMT{faucet}")
    if relay and before.reserves[0].balance + amount > ESCROW_MAX:
        raise ConfigError(f"the reserve holds {onchain.format_smt(before.reserves[0].balance)} SMT and can hold at "
                          f"most {onchain.format_smt(ESCROW_MAX)} SMT: deposit less")
    r = onchain.deposit(chain, state.owner_account(), amount, relay)
    if relay:
        text = f"reserve for {relay}: +{r['amount']} SMT from the {r['from']} (now {r['reserve']} SMT)"
    else:
        b = onchain.balance(chain, state.owner_address(), [])
        r["unallocated"] = b.to_dict()["unallocated"]
        text = (f"deposited {r['amount']} SMT (unallocated now {r['unallocated']} SMT; fund a relay's reserve with "
                "`deposit --relay RELAY AMOUNT`)")
    emit(as_json, r, f"{text}\ntx: {r['tx_hash']}")


@click.command()
@click.option("--relay", type=ETH_ADDRESS, help="Withdraw from the reserve for this relay (takes the notice "
              "period); without it, from the unallocated deposit (at once).")
@click.option("--amount", type=SMT_AMOUNT, help="How many SMT (a reserve: starts the notice period).")
@click.option("--all", "all_", is_flag=True, help="All of it.")
@json_option
@click.pass_obj
def withdraw(state: State, relay, amount, all_, as_json):
    """Withdraw from the unallocated deposit (--amount X or --all), or from a relay's reserve: --relay R with
    --amount/--all requests it (the relay can claim until it is made), --relay R alone makes it once the
    notice period has passed."""
    from shadowmesh_client.errors import ConfigError
    from shadowmesh_client.rewards import onchain

    if amount is not None and all_:
        raise ConfigError("pass either --amount or --all, not both")
    if amount == 0:
        raise ConfigError("withdraw --amount 0 does nothing: give an amount above 0")
    chain = _chain(state)
    account = state.owner_account()
    if all_:
        b = onchain.balance(chain, account.address, [relay] if relay else [])
        amount = b.reserves[0].balance if relay else b.unallocated
    if relay is None and amount is None:
        raise ConfigError("give --amount X or --all (and --relay R for a relay's reserve)")
    r = onchain.withdraw(chain, account, amount, relay)
    if r["action"] == "requested":
        wait = onchain.duration(r["seconds_left"])
        text = (f"withdrawal of {r['amount']} SMT from the reserve for {r['relay']} requested; the relay can claim "
                f"until it is made: run `withdraw --relay {r['relay']}` in {wait}\ntx: {r['tx_hash']}")
    elif relay:
        text = f"withdrew {r['amount']} SMT (reserve left {r['reserve_left']} SMT)\ntx: {r['tx_hash']}"
    else:
        text = f"withdrew {r['amount']} SMT (unallocated left {r['unallocated_left']} SMT)\ntx: {r['tx_hash']}"
    emit(as_json, r, text)


@click.command()
@click.option("--address", type=ETH_ADDRESS, help="Another account (default: the owner account).")
@json_option
@click.pass_obj
def balance(state: State, address, as_json):
    """SMT in the owner account, its unallocated deposit, and each relay reserve: what it guarantees the relay
    and any pending withdrawal."""
    from shadowmesh_client.rewards import onchain

    d = onchain.balance(_chain(state), address or state.owner_address()).to_dict()
    lines = [f"account: {d['address']}", f"wallet: {d['wallet']} SMT", f"unallocated deposit: {d['unallocated']} SMT"]
    for r in d["reserves"]:
        line = f"reserve for {r['relay']}: {r['balance']} SMT, guarantees {r['guaranteed']} SMT"
        if r["unlock_at"]:
            left = r["seconds_left"]
            line += (f"; withdrawal of {r['pending_withdrawal']} SMT pending, "
                     + (f"unlocks in {onchain.duration(left)}" if left else "ready: run `withdraw --relay`"))
        lines.append(line)
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
    """Advertise this relay's PRICE in SMT base units (10**-18 SMT) per byte. Devices accept it when their
    session starts and sign receipts at that price; connected devices keep their price until they reconnect."""
    from shadowmesh_client.rewards import onchain
    from shadowmesh_client.rewards.onchain import format_smt

    r = onchain.set_price(_chain(state), state.owner_account(), price)
    per_gb = format_smt(price * 10**9)
    emit(as_json, r, f"price: {price} base units per byte ({per_gb} SMT per GB)\ntx: {r['tx_hash']}")


@click.command("authorize-signer", context_settings=NUMBERS_AS_ARGUMENTS)
@click.argument("address", type=ETH_ADDRESS)
@click.option("--device-id", help="The device whose receipts it signs (0x + 64 hex; default: this device in "
              "the config's network).")
@click.option("--cap", type=SMT_AMOUNT, help="SMT its receipts may pay per period, all relays together.")
@click.option("--period", type=click.IntRange(1, 2**32 - 1), default=86_400, show_default=True,
              help="Seconds per period.")
@click.option("--revoke", is_flag=True, help="Withdraw the authorisation (effective after the contract's "
              "notice: receipts it signed stay claimable until then).")
@json_option
@click.pass_obj
def authorize_signer(state: State, address, device_id, cap, period, revoke, as_json):
    """Let ADDRESS (a device's receipt-signing key) sign receipts for ONE device, paid from the owner's
    reserves, at most --cap SMT per --period seconds (a stolen key can take no more)."""
    from shadowmesh_client.chain.registry import device_id_hex
    from shadowmesh_client.errors import ConfigError
    from shadowmesh_client.rewards import onchain

    if device_id is None:
        nid = state.config.network_id
        if nid is None:
            raise ConfigError("give --device-id, or set `network_id:` so this device's id can be computed")
        device_id = device_id_hex(nid, state.owner_address(), state.keystore().public_key())
    try:
        did = bytes.fromhex(device_id.removeprefix("0x"))
    except ValueError:
        did = b""
    if len(did) != 32:
        raise ConfigError(f"--device-id {device_id!r} is not a device id (0x + 64 hex digits)")
    if revoke:
        r = onchain.revoke_signer(_chain(state), state.owner_account(), address, did)
        emit(as_json, r, f"{r['signer']} may no longer sign receipts for {r['device_id'][:18]}.. once the notice "
                         f"ends (block time {r['valid_until']}); receipts it signed pay until then\ntx: {r['tx_hash']}")
        return
    if not cap:
        raise ConfigError("give --cap SMT: the most its receipts may pay per period (e.g. --cap 5)")
    r = onchain.authorize_signer(_chain(state), state.owner_account(), address, did, cap, period)
    emit(as_json, r, f"{r['signer']} may sign receipts for {r['device_id'][:18]}.., at most {r['cap_per_period']} "
                     f"SMT per {period} s\ntx: {r['tx_hash']}")


COMMANDS = (deposit, withdraw, balance, claim, earnings, set_price, authorize_signer)
