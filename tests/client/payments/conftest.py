"""Fixtures for payment tests against a real anvil with the contracts deployed by the real deploy script.

``chain_env`` (module scope): one anvil + deployment (withdrawal notice WITHDRAWAL_DELAY s). Tests isolate
themselves with fresh device ids and, where balances matter, fresh payer/relay accounts funded by the admin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account

from lab.chain import ANVIL_KEYS, anvil, deploy_contracts, rpc_call
from shadowmesh_client.chain import load_deployment
from shadowmesh_client.rewards.onchain import TokenChain

WITHDRAWAL_DELAY = 3600  # seconds
SMT = 10**18


@dataclass
class ChainEnv:
    url: str
    record_path: Path
    chain: TokenChain
    admin: object

    @property
    def token(self):
        return self.chain.token

    def rpc(self, method, params=None):
        return rpc_call(self.url, method, params or [])

    def new_account(self, eth: int = 10**18, smt: int = 0):
        """A fresh account funded with ``eth`` wei (anvil_setBalance) and ``smt`` base units (minted)."""
        acct = Account.create()
        self.rpc("anvil_setBalance", [acct.address, hex(eth)])
        if smt:
            self.chain.transact(self.admin, self.token.functions.mint(acct.address, smt))
        return acct

    def increase_time(self, seconds: int) -> None:
        self.rpc("evm_increaseTime", [seconds])
        self.rpc("evm_mine")


@pytest.fixture(scope="module")
def chain_env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chain")
    with anvil() as url:
        path = folder / "deployment.json"
        deploy_contracts(url, output=path, withdrawal_delay=WITHDRAWAL_DELAY)
        chain = TokenChain(url, load_deployment(path))
        yield ChainEnv(url, path, chain, Account.from_key(ANVIL_KEYS[0]))


@pytest.fixture
def device_id():
    return os.urandom(32)
