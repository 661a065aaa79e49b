"""Acceptance: `ape run deploy --network polygon:local:foundry` against a real anvil writes a record that a
second process loads with web3.py alone and uses: verifyDevice on a registered device returns true."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from eth_account import Account
from nacl.signing import SigningKey
from web3 import Web3

from lab.chain import ANVIL_KEYS, anvil, deploy_contracts

READER = """
import json, sys
from web3 import Web3
record = json.load(open(sys.argv[1]))
w3 = Web3(Web3.HTTPProvider(sys.argv[2]))
assert w3.eth.chain_id == record["chainId"]
entry = record["contracts"]["DeviceRegistry"]
registry = w3.eth.contract(address=entry["address"], abi=entry["abi"])
print(json.dumps({"verified": registry.functions.verifyDevice(bytes.fromhex(sys.argv[3])).call(),
                  "networks": registry.functions.networkCount().call()}))
"""


@pytest.mark.slow
def test_deploy_record_usable_from_another_process(tmp_path):
    record_path = tmp_path / "polygon-local.json"
    with anvil() as url:
        record = deploy_contracts(url, output=record_path)
        assert json.loads(record_path.read_text()) == record
        assert record["chainId"] == 31337 and (record["ecosystem"], record["network"]) == ("polygon", "local")
        assert record["deployBlock"] >= 1
        for name in ("DeviceRegistry", "ShadowMeshToken"):
            assert Web3.is_checksum_address(record["contracts"][name]["address"])
            assert record["contracts"][name]["txHash"].startswith("0x")

        # Register a device with plain web3 + the documented proof message (as the client will).
        w3 = Web3(Web3.HTTPProvider(url))
        owner = Account.from_key(ANVIL_KEYS[1])
        entry = record["contracts"]["DeviceRegistry"]
        registry = w3.eth.contract(address=entry["address"], abi=entry["abi"])

        def send(call):
            tx = call.build_transaction({"from": owner.address, "nonce": w3.eth.get_transaction_count(owner.address)})
            signed = owner.sign_transaction(tx)
            receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
            assert receipt.status == 1
            return receipt

        created = send(registry.functions.createNetwork("acceptance", 0, 86_400))
        network_id = registry.events.NetworkCreated().process_receipt(created)[0].args.networkId
        key = SigningKey.generate()
        public_key = bytes(key.verify_key)
        proof = key.sign(registry.functions.proofMessage(network_id, owner.address, public_key).call()).signature
        registered = send(registry.functions.registerDevice(network_id, public_key, False, "", proof))
        device_id = registry.events.DeviceRegistered().process_receipt(registered)[0].args.deviceId

        reader = subprocess.run(
            [sys.executable, "-c", READER, str(record_path), url, device_id.hex()],
            capture_output=True, text=True, timeout=120,
        )
        assert reader.returncode == 0, reader.stderr
        assert json.loads(reader.stdout) == {"verified": True, "networks": 1}
