"""Helpers for on-chain tests: anvil + real deployment, registrations from anvil's unlocked accounts."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from web3 import HTTPProvider, Web3

from lab.chain import anvil, deploy_contracts, rpc_call
from shadowmesh_client.chain import Deployment, load_deployment
from shadowmesh_client.crypto import Identity
from shadowmesh_client.directory.proof import proof_message


@dataclass
class Deployed:
    url: str
    record_path: Path
    deployment: Deployment
    w3: Web3
    registry: object

    def rpc(self, method, params=None):
        return rpc_call(self.url, method, params or [])

    @property
    def accounts(self) -> list[str]:
        return self.w3.eth.accounts

    def send(self, fn, sender: str):
        tx_hash = fn.transact({"from": sender})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt

    def new_network(self, admin: str | None = None, policy: int = 0, period: int = 86_400) -> int:
        admin = admin or self.accounts[0]
        receipt = self.send(self.registry.functions.createNetwork("test", policy, period), admin)
        return self.registry.events.NetworkCreated().process_receipt(receipt)[0]["args"]["networkId"]

    def register(self, network_id: int, owner: str, identity: Identity | None = None, *, proof: bytes | None = None,
                 endpoint: str = "", relay: bool = False) -> tuple[Identity, bytes]:
        identity = identity or Identity.generate()
        pk = identity.public_key
        if proof is None:
            message = proof_message(self.deployment.chain_id, self.deployment.registry, network_id, owner, pk)
            proof = identity.sign(message)
        receipt = self.send(self.registry.functions.registerDevice(network_id, pk, relay, endpoint, proof), owner)
        args = self.registry.events.DeviceRegistered().process_receipt(receipt)[0]["args"]
        return identity, bytes(args["deviceId"])


@contextlib.contextmanager
def start_deployed(folder: Path, **anvil_options):
    folder.mkdir(parents=True, exist_ok=True)
    with anvil(**anvil_options) as url:
        path = folder / "deployment.json"
        deploy_contracts(url, output=path)
        dep = load_deployment(path)
        w3 = Web3(HTTPProvider(url))
        yield Deployed(url, path, dep, w3, w3.eth.contract(address=dep.registry, abi=dep.registry_abi))
