"""Deploy DeviceRegistry and ShadowMeshToken and write the deployment record.

    ape run deploy --network polygon:local:foundry            # local anvil (APE_FOUNDRY_HOST picks the URL)
    ape run deploy --network polygon:amoy:node --account me   # a live network: asks before sending
    ape run deploy --network polygon --account me --yes --force

The record, ``deployments/<ecosystem>-<network>.json`` unless ``--output`` says otherwise, holds the chain id,
the deploy block, each contract's address, transaction hash, block and ABI, and the constructor parameters
(deployments/README.md describes it). The client reads it with web3.py only.

On a local network the default account is Ape's first test account (anvil's first dev account). On a live
network ``--account`` is required, the script asks before sending (``--yes`` skips the question) and refuses
to overwrite an existing record unless ``--force`` is given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

RECORD_SCHEMA = 1
DEFAULT_WITHDRAWAL_DELAY = 86_400  # seconds: one day of notice before escrow withdrawals
MAX_WITHDRAWAL_DELAY = 365 * 86_400  # seconds: the token constructor refuses more (ShadowMeshTokenInvalidDelay)
LOCAL_NETWORKS = ("local",)


def _is_live(network: Any) -> bool:
    name = network.name
    return not (name in LOCAL_NETWORKS or name.endswith("-fork"))


def _record_path(output: str | None, ecosystem: str, network: str) -> Path:
    if output:
        return Path(output)
    from ape import project

    return Path(project.path) / "deployments" / f"{ecosystem}-{network}.json"


def _load_account(alias: str | None, live: bool):
    from ape import accounts
    from ape.exceptions import AccountsError

    if alias is None:
        if live:
            raise click.UsageError(
                "no account: pass --account ALIAS (an account imported with `ape accounts import ALIAS`)"
            )
        return accounts.test_accounts[0]
    if alias.upper().startswith("TEST::"):
        return accounts.test_accounts[int(alias.split("::", 1)[1])]
    try:
        return accounts.load(alias)
    except (AccountsError, IndexError, KeyError) as err:
        raise click.UsageError(
            f"no account named {alias!r}: import one with `ape accounts import {alias}` "
            f"or list them with `ape accounts list` ({err})"
        ) from None


def _abi(container: Any) -> list[dict]:
    return [entry.model_dump(mode="json", by_alias=True, exclude_none=True) for entry in container.contract_type.abi]


def _entry(container: Any, instance: Any) -> dict:
    from ape import chain

    receipt = chain.get_receipt(instance.txn_hash)
    return {
        "address": str(instance.address),
        "txHash": str(instance.txn_hash if isinstance(instance.txn_hash, str) else instance.txn_hash.hex()),
        "blockNumber": receipt.block_number,
        "abi": _abi(container),
    }


def deploy(account: Any, admin: str, treasury: str, registration_fee: int, withdrawal_delay: int) -> dict:
    """Deploy both contracts from ``account`` on the connected provider; return the record (not written)."""
    from ape import chain, networks, project

    registry = account.deploy(project.DeviceRegistry, admin, treasury, registration_fee)
    token = account.deploy(project.ShadowMeshToken, admin, withdrawal_delay)
    contracts = {
        "DeviceRegistry": _entry(project.DeviceRegistry, registry),
        "ShadowMeshToken": _entry(project.ShadowMeshToken, token),
    }
    network = networks.provider.network
    return {
        "schema": RECORD_SCHEMA,
        "ecosystem": network.ecosystem.name,
        "network": network.name,
        "chainId": chain.chain_id,
        "deployBlock": min(c["blockNumber"] for c in contracts.values()),
        "deployer": str(account.address),
        "parameters": {
            "admin": admin,
            "treasury": treasury,
            "registrationFeeWei": registration_fee,
            "withdrawalDelaySeconds": withdrawal_delay,
        },
        "eip712": {"name": "ShadowMesh", "version": "1", "verifyingContract": contracts["ShadowMeshToken"]["address"]},
        "contracts": contracts,
    }


def write_record(record: dict, path: Path) -> None:
    """Write atomically (temp file + rename) so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


@click.command(help=__doc__.split("\n\n")[0])
@click.option("--network", "network_choice", default="polygon:local:foundry", show_default=True,
              help="Ape network choice, e.g. polygon:local:foundry, polygon:amoy:node, polygon.")
@click.option("--account", "account_alias", default=None,
              help="Ape account alias (or TEST::N). Default on local networks: TEST::0.")
@click.option("--admin", default=None, help="Address receiving every admin role. Default: the deploying account.")
@click.option("--treasury", default=None, help="Address receiving registration fees. Default: the admin.")
@click.option("--registration-fee", default=0, show_default=True, type=click.IntRange(min=0),
              help="Registration/renewal fee in wei.")
@click.option("--withdrawal-delay", default=DEFAULT_WITHDRAWAL_DELAY, show_default=True,
              type=click.IntRange(min=1, max=MAX_WITHDRAWAL_DELAY),
              help="Escrow withdrawal notice, seconds (1 s to 365 days).")
@click.option("--output", default=None, type=click.Path(dir_okay=False),
              help="Where to write the record. Default: deployments/<ecosystem>-<network>.json.")
@click.option("--yes", is_flag=True, help="Do not ask before sending on a live network.")
@click.option("--force", is_flag=True, help="Overwrite an existing record of a live network.")
def cli(network_choice, account_alias, admin, treasury, registration_fee, withdrawal_delay, output, yes, force):
    from ape import networks
    from ape.exceptions import ApeException

    if ":" not in network_choice and not network_choice.startswith("http"):
        # A bare ecosystem name means its main network (Ape alone would pick the ephemeral local chain).
        network_choice = f"{network_choice}:mainnet"
    if network_choice.endswith(":test") or network_choice.endswith(":local"):
        raise click.UsageError(
            f"{network_choice!r} is Ape's in-process test chain, gone when this command exits; deploy to a "
            "running node instead, e.g. --network polygon:local:foundry (APE_FOUNDRY_HOST=http://127.0.0.1:PORT)"
        )
    try:
        context = networks.parse_network_choice(network_choice)
        provider = context.__enter__()
    except ApeException as err:
        raise click.ClickException(
            f"cannot connect to {network_choice!r}: {err}\n"
            "Set an RPC endpoint, e.g. `--network polygon:amoy:https://rpc.example` or in ape-config.yaml "
            "(node: polygon: amoy: uri: ...); for a local anvil start it first and set APE_FOUNDRY_HOST=http://127.0.0.1:PORT."
        ) from None
    try:
        network = provider.network
        live = _is_live(network)
        path = _record_path(output, network.ecosystem.name, network.name)
        if live and path.exists() and not force:
            raise click.ClickException(f"{path} exists for live network {network.choice}; pass --force to overwrite it")
        account = _load_account(account_alias, live)
        admin = admin or str(account.address)
        treasury = treasury or admin
        click.echo(
            f"Deploying to {network.ecosystem.name}:{network.name} (chain {provider.chain_id}) from {account.address}\n"
            f"  admin {admin}, treasury {treasury}, fee {registration_fee} wei, withdrawal delay {withdrawal_delay} s"
        )
        if live and not yes:
            click.confirm("Send the deployment transactions?", abort=True)
        try:
            record = deploy(account, admin, treasury, registration_fee, withdrawal_delay)
        except ApeException as err:
            raise click.ClickException(f"deployment failed: {err}") from None
        write_record(record, path)
        for name, entry in record["contracts"].items():
            click.echo(f"  {name}: {entry['address']} (tx {entry['txHash']}, block {entry['blockNumber']})")
        click.echo(f"Wrote {path}")
    finally:
        context.__exit__(None, None, None)
