"""Device id and proof-of-possession message, byte for byte as DeviceRegistry computes them.

Pure. Contract (IDeviceRegistry.sol):
  deviceId     = keccak256(abi.encode(uint64 networkId, address owner, bytes32 publicKey))
  proofMessage = abi.encodePacked(keccak256("ShadowMesh.DeviceRegistry.proof.v1"), uint256 block.chainid,
                                  address registry, uint64 networkId, address owner, bytes32 publicKey)
                 = 32 + 32 + 20 + 8 + 20 + 32 = 144 bytes
The device key signs ``proofMessage`` with Ed25519; the contract only checks the signature's length, so
every client verifies it (``verify_proof``) and ignores registrations whose proof fails. Binding the chain
id, registry address, network and owner means a proof cannot be replayed on another chain, registry,
network or by another owner.
"""

from __future__ import annotations

from eth_utils import keccak

from shadowmesh_client.crypto import verify_signature

PROOF_TAG = keccak(text="ShadowMesh.DeviceRegistry.proof.v1")
PROOF_MESSAGE_SIZE = 144  # bytes


def address_bytes(address: bytes | str) -> bytes:
    """A 20-byte address from bytes or a 0x hex string."""
    if isinstance(address, str):
        raw = bytes.fromhex(address[2:] if address.startswith(("0x", "0X")) else address)
    else:
        raw = bytes(address)
    if len(raw) != 20:
        raise ValueError("an Ethereum address is 20 bytes (0x followed by 40 hex digits)")
    return raw


def device_id(network_id: int, owner: bytes | str, public_key: bytes) -> bytes:
    """keccak256(abi.encode(uint64 networkId, address owner, bytes32 publicKey))."""
    return keccak(network_id.to_bytes(32, "big") + bytes(12) + address_bytes(owner) + bytes(public_key))


def proof_prefix(chain_id: int, registry: bytes | str) -> bytes:
    """The part of every proof message that is fixed for one registry on one chain (84 bytes)."""
    return PROOF_TAG + chain_id.to_bytes(32, "big") + address_bytes(registry)


def proof_message(chain_id: int, registry: bytes | str, network_id: int, owner: bytes | str,
                  public_key: bytes) -> bytes:
    """The 144 bytes the device key signs (see module docstring)."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return proof_prefix(chain_id, registry) + network_id.to_bytes(8, "big") + address_bytes(owner) + bytes(public_key)


def verify_proof(prefix: bytes, network_id: int, owner: bytes, public_key: bytes, proof: bytes) -> bool:
    """True if ``proof`` is the device key's Ed25519 signature of its proof message (``prefix`` from
    :func:`proof_prefix`)."""
    if len(proof) != 64 or len(public_key) != 32:
        return False
    return verify_signature(public_key, prefix + network_id.to_bytes(8, "big") + owner + public_key, proof)
