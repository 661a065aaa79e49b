"""`shadowmesh-client network ...` (network admins) and `shadowmesh-client account ...` (the owner keystore).

Thin like cli.py: parse, call devices.* or eth-account, print.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from shadowmesh_client.chain import registry as devices
from shadowmesh_client.cli.common import State, emit, json_option, owner_password, tx_lines
from shadowmesh_client.errors import KeystoreError


@click.group()
def network() -> None:
    """Network (tailnet) administration: create, approve, suspend."""


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
