"""Configuration of the protocol core: the trusted directory (NetworkBinding) and timer/rekey limits."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from shadowmesh_client.crypto import blake2b
from shadowmesh_client.errors import ConfigError
from shadowmesh_client.protocol import constants as C

TrustCallback = Callable[[bytes], bool]
"""``is_trusted(peer_ed25519_public_key) -> bool``: asked on every handshake and rekey (the directory)."""


def _address_bytes(registry: bytes | str) -> bytes:
    if isinstance(registry, str):
        text = registry[2:] if registry.lower().startswith("0x") else registry
        try:
            registry = bytes.fromhex(text)
        except ValueError:
            raise ConfigError(f"registry address {registry!r} is not hex; give the 0x... contract address") from None
    if len(registry) != 20:
        raise ConfigError("registry address must be 20 bytes (0x followed by 40 hex digits)")
    return bytes(registry)


def _network_bytes(network_id: bytes | int | str) -> bytes:
    if isinstance(network_id, int):
        if not 0 <= network_id < 1 << 256:
            raise ConfigError("network id must fit in uint256")
        return network_id.to_bytes(32, "big")
    if isinstance(network_id, str):
        if network_id.lower().startswith("0x") and len(network_id) == 66:
            try:
                return bytes.fromhex(network_id[2:])
            except ValueError:
                raise ConfigError(f"network id {network_id!r} is not hex; give 0x + 64 hex digits or a name") from None
        raw = network_id.encode()
        if len(raw) > 32:
            raise ConfigError("network id name is longer than 32 bytes")
        return raw.ljust(32, b"\0")  # like Solidity's bytes32("name")
    if len(network_id) != 32:
        raise ConfigError("network id given as bytes must be 32 bytes (bytes32)")
    return bytes(network_id)


@dataclass(frozen=True)
class NetworkBinding:
    """The directory a handshake is bound to: (chain id, registry contract address, network id).

    ``registry`` accepts 20 bytes or a 0x hex string; ``network_id`` accepts 32 bytes (bytes32), an int
    (uint256, big-endian) or a short name (UTF-8, right-padded with zeros like Solidity ``bytes32("x")``).
    """

    chain_id: int
    registry: bytes | str
    network_id: bytes | int | str

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, int) or not 0 <= self.chain_id < 1 << 64:
            raise ConfigError("chain id must be an integer in [0, 2**64)")
        object.__setattr__(self, "registry", _address_bytes(self.registry))
        object.__setattr__(self, "network_id", _network_bytes(self.network_id))

    def encode(self) -> bytes:
        """60 bytes: chain id (uint64 big-endian) || registry (20) || network id (32)."""
        # __post_init__ stored both in canonical bytes form; the helpers return bytes as they are and tell
        # the type checker so (the fields' declared types are the accepted inputs).
        return struct.pack(">Q", self.chain_id) + _address_bytes(self.registry) + _network_bytes(self.network_id)

    def digest(self) -> bytes:
        """BLAKE2b-256 of ``encode()``, personalised; mixed into every handshake signature and key."""
        return blake2b(self.encode(), person=b"sm1-binding")

    def handshake_key(self) -> bytes:
        """The AEAD key of HANDSHAKE_INIT/RESPONSE frames. NOT a secret: the binding is public on chain,
        so anyone can open and forge these frames. It only rejects other networks' handshakes early (one
        AEAD call) and keeps the addressee and ephemeral keys out of naive DPI; the cleartext header still
        shows the frame type, the initiator's key and the fixed sizes (216 / 176 bytes). Authenticity
        comes from the Ed25519 signatures inside, never from this key."""
        return blake2b(self.digest(), person=b"sm1-hs-key")


@dataclass(frozen=True)
class ProtocolConfig:
    """Limits and timers of a Session (seconds, bytes, messages). Defaults follow the spec."""

    binding: NetworkBinding
    rekey_after_seconds: float = C.REKEY_AFTER_SECONDS
    rekey_after_bytes: int = C.REKEY_AFTER_BYTES
    rekey_after_messages: int = C.REKEY_AFTER_MESSAGES
    reject_after_messages: int = C.MAX_SEQUENCE
    grace_seconds: float = C.GRACE_SECONDS
    keepalive_seconds: float = C.KEEPALIVE_SECONDS
    persistent_keepalive_seconds: float | None = None
    handshake_retry_seconds: float = C.HANDSHAKE_RETRY_SECONDS
    handshake_give_up_seconds: float = C.HANDSHAKE_GIVE_UP_SECONDS
    padding: bool = False
    offload: bool = False  # our handshakes offer offload-form DATA frames (Flags.OFFLOAD; a TUN with offload)
    max_queued_packets: int = C.MAX_QUEUED_PACKETS

    @property
    def reject_after_seconds(self) -> float:
        """Age (seconds) after which a key is never used again: rekey_after_seconds + 10 minutes."""
        return self.rekey_after_seconds + C.REJECT_MARGIN_SECONDS

    def __post_init__(self) -> None:
        if not isinstance(self.binding, NetworkBinding):
            raise ConfigError("ProtocolConfig.binding must be a NetworkBinding")
        if not 0 < self.rekey_after_messages <= self.reject_after_messages <= C.MAX_SEQUENCE:
            raise ConfigError("need 0 < rekey_after_messages <= reject_after_messages <= 2**32-1")
        for name in ("rekey_after_seconds", "grace_seconds", "keepalive_seconds",
                     "handshake_retry_seconds", "handshake_give_up_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive (seconds)")
        if self.rekey_after_bytes <= 0:
            raise ConfigError("rekey_after_bytes must be positive")
