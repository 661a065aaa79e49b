"""Fixtures for the contract tests (Ape's local EVM: py-evm through eth-tester).

Roles: `admin` deploys and holds every role, `treasury` receives fees, `owner`/`other` own devices,
`netadmin` administers networks, `payer` funds reserves, `relay` claims, `hot` is a device's receipt signer,
`attacker` tries what it must not.
Factories: `create_network`, `create_device`, `sign_receipt`.
"""

from __future__ import annotations

import os

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from nacl.signing import SigningKey

WITHDRAWAL_DELAY = 3_600  # seconds
DAY = 86_400
ONE_SMT = 10**18

RECEIPT_TYPES = {
    "Receipt": [
        {"name": "payer", "type": "address"},
        {"name": "deviceId", "type": "bytes32"},
        {"name": "relay", "type": "address"},
        {"name": "cumulativeBytes", "type": "uint256"},
        {"name": "pricePerByte", "type": "uint256"},
    ]
}


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def treasury(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def owner(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def other(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def netadmin(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def payer(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def relay(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def attacker(accounts):
    return accounts[7]


@pytest.fixture(scope="session")
def hot(accounts):
    return accounts[8]


@pytest.fixture(scope="session")
def registry(project, admin, treasury):
    return admin.deploy(project.DeviceRegistry, admin, treasury, 0)


@pytest.fixture(scope="session")
def token(project, admin):
    return admin.deploy(project.ShadowMeshToken, admin, WITHDRAWAL_DELAY)


@pytest.fixture(scope="session")
def open_network(registry, netadmin):
    """Network id of an Open network with a 30-day period, administered by `netadmin`."""
    tx = registry.createNetwork("open-net", 0, 30 * DAY, sender=netadmin)
    return network_id_of(registry, tx)


@pytest.fixture(scope="session")
def approval_network(registry, netadmin):
    tx = registry.createNetwork("approval-net", 1, 30 * DAY, sender=netadmin)
    return network_id_of(registry, tx)


def network_id_of(registry, tx) -> int:
    """The id from NetworkCreated (Ape's `return_value` re-runs the call on the new state: not the id)."""
    return tx.decode_logs(registry.NetworkCreated)[0].networkId


def new_device_key() -> SigningKey:
    return SigningKey(os.urandom(32))


def proof_for(registry, key: SigningKey, network_id: int, owner_address) -> bytes:
    """The Ed25519 proof of possession, signed over the contract's own proofMessage (docs/contracts.md)."""
    message = registry.proofMessage(network_id, owner_address, bytes(key.verify_key))
    return key.sign(bytes(message)).signature


@pytest.fixture
def create_device(registry, open_network, owner):
    """Register a fresh device key; returns (deviceId, key, tx)."""

    def create(network_id=None, sender=None, key=None, relay=False, endpoint="wss://node.example:443/mesh", value=0):
        network_id = open_network if network_id is None else network_id
        sender = sender or owner
        key = key or new_device_key()
        proof = proof_for(registry, key, network_id, sender.address)
        tx = registry.registerDevice(
            network_id, bytes(key.verify_key), relay, endpoint, proof, sender=sender, value=value
        )
        return tx.decode_logs(registry.DeviceRegistered)[0].deviceId, key, tx

    return create


@pytest.fixture
def sign_receipt(token, chain):
    """Sign an EIP-712 Receipt exactly as a client does with eth-account; returns the SignedReceipt tuple."""

    def sign(signer_key, payer, device_id, relay, cumulative, price):
        message = {
            "payer": str(payer),
            "deviceId": bytes(device_id),
            "relay": str(relay),
            "cumulativeBytes": cumulative,
            "pricePerByte": price,
        }
        domain = {"name": "ShadowMesh", "version": "1", "chainId": chain.chain_id,
                  "verifyingContract": str(token.address)}
        signed = Account.sign_typed_data(signer_key, domain, RECEIPT_TYPES, message)
        return (str(payer), bytes(device_id), cumulative, price, *compact(signed.v, signed.r, signed.s))

    return sign


def compact(v: int, r: int, s: int) -> tuple[bytes, bytes]:
    """EIP-2098: (r, vs) with vs = s | ((v - 27) << 255)."""
    return r.to_bytes(32, "big"), (s | ((v - 27) << 255)).to_bytes(32, "big")


def receipt_digest(chain_id, token_address, message) -> bytes:
    """The EIP-712 digest eth-account computes for a Receipt (to compare with the contract's)."""
    domain = {"name": "ShadowMesh", "version": "1", "chainId": chain_id, "verifyingContract": str(token_address)}
    signable = encode_typed_data(domain, RECEIPT_TYPES, message)  # EIP-191 version 0x01
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


@pytest.fixture
def funded_payer(token, admin, payer, relay):
    """`payer` with 100 SMT minted and a 50 SMT reserve for `relay`."""
    token.mint(payer, 100 * ONE_SMT, sender=admin)
    token.depositToReserve(relay, 50 * ONE_SMT, sender=payer)
    return payer
