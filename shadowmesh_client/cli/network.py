"""`shadowmesh-client network ...` (network admins) and `shadowmesh-client account ...` (the owner keystore).

Thin like cli.py: parse, call devices.* or eth-account, print. Network fees are in the chain's native coin
(ETH, or POL/MATIC on Polygon), never SMT: amounts are typed in ETH/POL (18 decimals) or with a `wei` suffix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from shadowmesh_client.chain import registry as devices
from shadowmesh_client.cli.common import (
    ETH_ADDRESS,
    NUMBERS_AS_ARGUMENTS,
    SMT_AMOUNT,
    UINT256,
    State,
    dict_lines,
    emit,
    json_option,
    owner_password,
    tx_lines,
)
from shadowmesh_client.errors import KeystoreError

FEE_MAX_WEI = 2**128 - 1   # the registry refuses a network fee above this (DeviceRegistryFeeTooHigh)


class NativeAmount(click.ParamType):
    """An amount of the chain's native coin -> wei: "0.01" (ETH/POL, 18 decimals) or "10000wei" / "10000 wei"."""

    name = "AMOUNT"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text.endswith("wei"):
            return UINT256.convert(text.removesuffix("wei").strip(), param, ctx)
        return SMT_AMOUNT.convert(text.removesuffix("eth").removesuffix("pol").removesuffix("matic").strip(),
                                  param, ctx)


NATIVE_AMOUNT = NativeAmount()


def native(wei: int) -> str:
    """Wei as the chain's native coin: "0.01 ETH/POL (10000000000000000 wei)"."""
    from decimal import Decimal

    coins = format(Decimal(wei).scaleb(-18).normalize(), "f")
    return f"{coins} ETH/POL ({wei} wei)"


network_id_arg = click.argument("network_id", metavar="ID", type=click.IntRange(min=1))


@click.group()
def network() -> None:
    """Network (tailnet) administration: create, show, approve, suspend, fees, open/close, admin handover."""


@network.command("create")
@click.argument("name")
@click.option("--policy", type=click.Choice(["open", "approval"]), default="open", show_default=True,
              help="open: registrations are active at once; approval: the admin approves each one.")
@click.option("--period", type=click.IntRange(min=1, max=2**32 - 1), default=365 * 86400, show_default=True,
              help="Seconds each registration or renewal is valid for.")
@json_option
@click.pass_obj
def create(state: State, name, policy, period, as_json):
    """Create a network NAME administered by the owner account; prints its id."""
    r = devices.create_network(state.chain(), state.owner_account(), name, policy, period)
    emit(as_json, r.to_dict(), tx_lines(r))


@network.command("approve")
@click.argument("device_id")
@json_option
@click.pass_obj
def approve(state: State, device_id, as_json):
    """Make a Pending or Suspended device DEVICE_ID active (network admin)."""
    r = devices.approve(state.chain(), state.owner_account(), device_id)
    emit(as_json, r.to_dict(), tx_lines(r))


@network.command("suspend")
@click.argument("device_id")
@json_option
@click.pass_obj
def suspend(state: State, device_id, as_json):
    """Suspend device DEVICE_ID (network admin); `network approve` re-activates it."""
    r = devices.suspend(state.chain(), state.owner_account(), device_id)
    emit(as_json, r.to_dict(), tx_lines(r))


@network.command("show")
@network_id_arg
@json_option
@click.pass_obj
def show(state: State, network_id, as_json):
    """Show network ID: admin, pending admin, policy, fees, and whether registration is open (no transaction)."""
    data = devices.network_info(state.chain(), network_id)
    human = dict(data)
    human["pending_admin"] = data["pending_admin"] or "none"
    human["registration_period"] = f"{data['registration_period']} s"
    for key in ("network_fee_wei", "protocol_fee_wei", "collected_fees_wei"):
        human[key.removesuffix("_wei")] = native(human.pop(key))
    emit(as_json, data, dict_lines(human))


@network.command("set-fee", context_settings=NUMBERS_AS_ARGUMENTS)
@network_id_arg
@click.argument("amount", type=NATIVE_AMOUNT)
@json_option
@click.pass_obj
def set_fee(state: State, network_id, amount, as_json):
    """Set network ID's registration fee to AMOUNT of the chain's native coin (ETH, POL/MATIC on Polygon; not
    SMT): "0.01" (18 decimals) or "10000wei". Each registration and renewal pays it on top of the protocol fee;
    0 removes it. Network admin only; `network withdraw-fees` collects it."""
    if amount > FEE_MAX_WEI:
        raise click.BadParameter(f"{native(amount)} is above the registry's maximum fee of 2**128-1 wei",
                                 param_hint="AMOUNT")
    r = devices.set_network_fee(state.chain(), state.owner_account(), network_id, amount)
    data = r.to_dict()
    data["network_fee_wei"] = data.pop("fee_paid")
    emit(as_json, data, f"network fee: {native(amount)}\n" + tx_lines(r))


@network.command("withdraw-fees")
@network_id_arg
@click.option("--to", "to", type=ETH_ADDRESS, help="Account to send the fees to (default: the owner account).")
@json_option
@click.pass_obj
def withdraw_fees(state: State, network_id, to, as_json):
    """Send network ID's collected registration fees (native coin) to --to (network admin)."""
    account = state.owner_account()
    r = devices.withdraw_network_fees(state.chain(), account, network_id, to)
    data = r.to_dict()
    data["withdrawn_wei"] = data.pop("fee_paid", 0)
    data["to"] = to or account.address
    emit(as_json, data, f"withdrawn: {native(data['withdrawn_wei'])} to {data['to']}\n" + tx_lines(r))


def _set_registration(state: State, network_id: int, open_: bool, as_json: bool) -> None:
    r = devices.set_network_registration(state.chain(), state.owner_account(), network_id, open_)
    data = {**r.to_dict(), "registration": "open" if open_ else "closed"}
    emit(as_json, data, f"registration: {data['registration']}\n" + tx_lines(r))


@network.command("close")
@network_id_arg
@json_option
@click.pass_obj
def close(state: State, network_id, as_json):
    """Close network ID to new registrations (network admin); renewals, approvals and revocations go on."""
    _set_registration(state, network_id, False, as_json)


@network.command("open")
@network_id_arg
@json_option
@click.pass_obj
def open_(state: State, network_id, as_json):
    """Re-open network ID to new registrations (network admin)."""
    _set_registration(state, network_id, True, as_json)


@network.command("transfer-admin")
@network_id_arg
@click.argument("new_admin", metavar="ADDR", type=ETH_ADDRESS)
@json_option
@click.pass_obj
def transfer_admin(state: State, network_id, new_admin, as_json):
    """Offer network ID's admin role to ADDR (step 1 of 2). You stay admin until ADDR runs `network
    accept-admin ID`; a new offer replaces this one, and 0x0000000000000000000000000000000000000000 withdraws it."""
    r = devices.offer_network_admin(state.chain(), state.owner_account(), network_id, new_admin)
    data = {**r.to_dict(), "pending_admin": new_admin}
    emit(as_json, data, f"admin role offered to: {new_admin} (they must run `network accept-admin "
                        f"{network_id}`)\n" + tx_lines(r))


@network.command("accept-admin")
@network_id_arg
@json_option
@click.pass_obj
def accept_admin(state: State, network_id, as_json):
    """Take network ID's admin role (and its collected fees) offered to the owner account (step 2 of 2)."""
    account = state.owner_account()
    r = devices.accept_network_admin(state.chain(), account, network_id)
    data = {**r.to_dict(), "admin": account.address}
    emit(as_json, data, f"admin: {account.address}\n" + tx_lines(r))


@click.group()
def account() -> None:
    """The owner's Ethereum account: an encrypted eth-account keystore file (never a raw key argument)."""


def _write_keystore(path: Path, acct, password: str) -> None:
    from eth_account import Account

    if path.exists():
        raise KeystoreError(f"{path} already exists; refusing to overwrite an account keystore")
    if len(password) < 8:
        raise KeystoreError("choose a keystore password of at least 8 characters")
    blob = Account.encrypt(acct.key, password)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(blob, f)


@account.command("new")
@click.option("--keystore", type=click.Path(dir_okay=False), help="Where to write it (default: owner_keystore).")
@json_option
@click.pass_obj
def new(state: State, keystore, as_json):
    """Create a new owner account in an encrypted keystore file."""
    from eth_account import Account

    path = Path(keystore) if keystore else state._owner_path()
    acct = Account.create()
    _write_keystore(path, acct, owner_password(state.owner_password_file, "New keystore password", confirm=True))
    emit(as_json, {"address": acct.address, "keystore": str(path)}, f"address: {acct.address}\nkeystore: {path}")


@account.command("import")
@click.option("--keystore", type=click.Path(dir_okay=False), help="Where to write it (default: owner_keystore).")
@json_option
@click.pass_obj
def import_(state: State, keystore, as_json):
    """Encrypt an existing private key (read from a hidden prompt or stdin) into a keystore file."""
    import sys

    from eth_account import Account

    path = Path(keystore) if keystore else state._owner_path()
    raw = click.prompt("Private key (hex)", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline()
    try:
        acct = Account.from_key(raw.strip())
    except (ValueError, TypeError):
        raise KeystoreError("that is not a private key (64 hex digits, optionally 0x-prefixed)") from None
    _write_keystore(path, acct, owner_password(state.owner_password_file, "New keystore password", confirm=True))
    emit(as_json, {"address": acct.address, "keystore": str(path)}, f"address: {acct.address}\nkeystore: {path}")


COMMANDS = (network, account)
