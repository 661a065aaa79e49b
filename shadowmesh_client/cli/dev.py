"""`shadowmesh-client dev faucet`: ETH (for gas) and test SMT for an account, on a LOCAL chain only.

For the local quickstart (docs/quickstart.md, `make chain`): a new owner account has nothing, and on a
local anvil the deployer (anvil's first well-known account, the token's minter) can give it both. The
command refuses to run unless the chain id is a local one (31337 anvil/hardhat, 1337 ganache/geth --dev):
the funder key is public knowledge and means nothing anywhere else.

Thin: parse, check the chain id, send (chain.Chain.transact), print. May import: chain, rewards.onchain.
"""

from __future__ import annotations

import click

from shadowmesh_client.cli.common import ETH_ADDRESS, SMT_AMOUNT, State, emit, json_option
from shadowmesh_client.errors import ChainError, ConfigError

# anvil's account 0 (mnemonic "test test ... junk"): the deployer of `make chain`, holder of MINTER_ROLE.
DEV_FUNDER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
WEI_PER_ETH = 10**18


@click.group()
def dev() -> None:
    """Helpers for a local development chain (`make chain`); they refuse to run on any other chain."""


@dev.command("faucet")
@click.option("--to", "to", type=ETH_ADDRESS, help="Account to fund (default: the owner account of the config).")
@click.option("--eth", type=SMT_AMOUNT, default="10", show_default=True,
              help="Native coin for gas, in ETH (18 decimals).")
@click.option("--smt", type=SMT_AMOUNT, default="1000", show_default=True, help="Test SMT to mint.")
@click.option("--rpc-url", help="JSON-RPC URL (default: config `rpc_url`).")
@click.option("--deployments", type=click.Path(dir_okay=False), help="Deployment record (default: config).")
@json_option
@click.pass_obj
def faucet(state: State, to, eth, smt, rpc_url, deployments, as_json):
    """Send ETH and mint test SMT to an account, from anvil's first account (local chains only)."""
    from eth_account import Account
    from eth_utils import to_checksum_address

    from shadowmesh_client.chain import Chain, load_deployment
    from shadowmesh_client.chain.client import LOCAL_CHAIN_IDS
    from shadowmesh_client.chain.client import smt as smt_text

    if rpc_url is None or deployments is None:
        cfg = state.config
        rpc_url = rpc_url or cfg.rpc_url
        if deployments is None and cfg.deployments is None:
            raise ConfigError("pass --deployments (the record `make chain` wrote) or set `deployments:` in the config")
        deployments = deployments or cfg.deployments
    if to is None:
        to = state.owner_address()
    deadline = state.deadline
    chain = Chain(rpc_url, load_deployment(deployments), timeout=deadline.seconds + 5, watch=deadline.watch)
    if chain.chain_id not in LOCAL_CHAIN_IDS:
        raise ChainError(f"refusing: {rpc_url} is chain {chain.chain_id}, not a local development chain "
                         f"({' or '.join(map(str, sorted(LOCAL_CHAIN_IDS)))}); get ETH and SMT the real way there")
    funder = Account.from_key(DEV_FUNDER_KEY)
    out: dict = {"to": to, "chain_id": chain.chain_id}
    if eth:
        out["eth_tx"] = _send_eth(chain, funder, to, eth)
    if smt:
        dep = chain.deployment
        if not dep.token or not dep.token_abi:
            raise ConfigError(f"{dep.path} has no ShadowMeshToken: cannot mint SMT")
        token = chain.w3.eth.contract(address=to_checksum_address(dep.token), abi=dep.token_abi)
        r = chain.transact(funder, token.functions.mint(to, smt))
        out["smt_tx"] = "0x" + bytes(r["transactionHash"]).hex()
        out["smt_balance"] = smt_text(chain.call(token.functions.balanceOf(to)))
    out["eth_balance"] = f"{chain.w3.eth.get_balance(to) / WEI_PER_ETH:g} ETH"
    lines = [f"funded {to} on local chain {chain.chain_id}:",
             f"  +{eth / WEI_PER_ETH:g} ETH (now {out['eth_balance']})"]
    if smt:
        lines.append(f"  +{smt_text(smt)} (now {out['smt_balance']})")
    emit(as_json, out, "\n".join(lines))


def _send_eth(chain, funder, to: str, wei: int) -> str:
    w3 = chain.w3
    have = w3.eth.get_balance(funder.address)
    if have < wei + 21_000 * 10**11:
        raise ChainError(f"the dev funder {funder.address} has only {have / WEI_PER_ETH:g} ETH on this chain: "
                         "is it an anvil started by `make chain`?")
    tx = {"to": to, "value": wei, "gas": 21_000, "gasPrice": int(w3.eth.gas_price),
          "nonce": w3.eth.get_transaction_count(funder.address, "pending"), "chainId": chain.chain_id}
    tx_hash = w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=max(1.0, chain.timeout))
    if receipt["status"] != 1:
        raise ChainError(f"sending ETH to {to} failed (tx 0x{bytes(tx_hash).hex()})")
    return "0x" + bytes(tx_hash).hex()


COMMANDS = (dev,)
