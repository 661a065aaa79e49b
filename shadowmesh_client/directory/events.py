"""DeviceRegistry events as small dataclasses, and their decoding from raw ``eth_getLogs`` entries.

Pure: no I/O. The ABI is contracts/interfaces/IDeviceRegistry.sol ("events (past tense)"); the topic
hashes below are keccak256 of the canonical signatures and a unit test checks them against the compiled
ABI. Decoding is hand-written (the layouts are fixed and small) because it runs once per log during a
cold sync of up to 100,000 registrations: ~5 us per log here against ~40 us through eth_abi.

``decode_log(log)`` takes the JSON-RPC dict of one log (hex strings) and returns one of the event
classes, or None for registry events the directory does not use (fees, treasury). A malformed log
raises :class:`MalformedLog` (the reader logs it and skips it; it cannot come from the real contract).
Registry v2 layouts (issue 10): every network event has the network id as topic 1; ``DeviceApproved``
carries the overlay address an Approval network's device gets at its first approval.

Every event carries its chain position ``pos = (block_number, log_index)`` and ``block_hash``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_utils import keccak

from shadowmesh_client.errors import ChainError


class MalformedLog(ChainError, ValueError):
    """A log that claims to be a DeviceRegistry event but does not decode as one."""


class DeviceStatus(IntEnum):
    """IDeviceRegistry.DeviceStatus (same numbering)."""

    NONE = 0
    PENDING = 1
    ACTIVE = 2
    SUSPENDED = 3
    REVOKED = 4


class JoinPolicy(IntEnum):
    """IDeviceRegistry.JoinPolicy."""

    OPEN = 0
    APPROVAL = 1


SIGNATURES = {
    "NetworkCreated": "NetworkCreated(uint64,address,uint8,uint32,string)",
    "NetworkAdminTransferred": "NetworkAdminTransferred(uint64,address,address)",
    "DeviceRegistered": "DeviceRegistered(uint64,bytes32,address,bytes32,uint32,uint64,uint8,bool,string,bytes)",
    "DeviceRevoked": "DeviceRevoked(uint64,bytes32,address)",
    "DeviceRenewed": "DeviceRenewed(uint64,bytes32,uint64)",
    "DeviceApproved": "DeviceApproved(uint64,bytes32,address,uint32)",
    "DeviceSuspended": "DeviceSuspended(uint64,bytes32,address)",
    "DeviceEndpointUpdated": "DeviceEndpointUpdated(uint64,bytes32,string,bool)",
}
"""Registry v2 (issue 10): the network id is topic 1 of every network event, so ``network_filter`` selects
one network's history with one ``eth_getLogs`` filter."""
TOPICS = {name: "0x" + keccak(text=sig).hex() for name, sig in SIGNATURES.items()}
"""event name -> topic0 as a 0x-prefixed lower-case hex string (what eth_getLogs returns)."""


def network_topic(network_id: int) -> str:
    """uint256(network_id) as a topic (32 bytes, 0x hex)."""
    return "0x" + network_id.to_bytes(32, "big").hex()


def network_filter(network_id: int) -> list[Any]:
    """The ``topics`` of an eth_getLogs filter for one network: the directory's events, network id at topic 1."""
    return [sorted(TOPICS.values()), network_topic(network_id)]


@dataclass(frozen=True, slots=True)
class Event:
    """Common part: where the event is on chain."""

    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes

    @property
    def pos(self) -> tuple[int, int]:
        return (self.block_number, self.log_index)


@dataclass(frozen=True, slots=True)
class NetworkCreated(Event):
    network_id: int
    admin: bytes  # 20-byte address
    policy: int
    registration_period: int  # seconds
    name: str


@dataclass(frozen=True, slots=True)
class NetworkAdminTransferred(Event):
    network_id: int
    previous_admin: bytes
    new_admin: bytes


@dataclass(frozen=True, slots=True)
class DeviceRegistered(Event):
    device_id: bytes  # 32 bytes
    owner: bytes  # 20-byte address
    network_id: int
    public_key: bytes  # 32-byte Ed25519 public key
    overlay_address: int  # IPv4, big-endian numeric
    expires_at: int  # unix seconds
    status: int  # DeviceStatus
    relay: bool
    endpoint: str
    proof: bytes  # 64-byte Ed25519 signature over proofMessage(networkId, owner, publicKey)


@dataclass(frozen=True, slots=True)
class DeviceRevoked(Event):
    device_id: bytes
    network_id: int
    by: bytes


@dataclass(frozen=True, slots=True)
class DeviceRenewed(Event):
    device_id: bytes
    network_id: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class DeviceApproved(Event):
    device_id: bytes
    network_id: int
    by: bytes
    overlay_address: int = 0  # registry v2: the address given at the first approval (0: the device had one)


@dataclass(frozen=True, slots=True)
class DeviceSuspended(Event):
    device_id: bytes
    network_id: int
    by: bytes


@dataclass(frozen=True, slots=True)
class DeviceEndpointUpdated(Event):
    device_id: bytes
    network_id: int
    endpoint: str
    relay: bool


DEVICE_EVENTS = (DeviceRegistered, DeviceRevoked, DeviceRenewed, DeviceApproved, DeviceSuspended,
                 DeviceEndpointUpdated)
"""The events about one device (each has ``device_id`` and ``network_id``): for isinstance checks."""

NETWORK_EVENTS = (NetworkCreated, NetworkAdminTransferred)
"""The events about a network itself (each has ``network_id``)."""


# ---------------------------------------------------------------- decoding helpers


def _hex(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith(("0x", "0X")) else value)


def _uint(word: bytes, bits: int) -> int:
    value = int.from_bytes(word, "big")
    if value >> bits:
        raise MalformedLog(f"value does not fit in uint{bits}")
    return value


def _addr(word: bytes) -> bytes:
    if len(word) != 32 or any(word[:12]):
        raise MalformedLog("not an ABI-encoded address")
    return word[12:]


def _bool(word: bytes) -> bool:
    return bool(_uint(word, 1))


def _dyn(data: bytes, head_word: int) -> bytes:
    """The dynamic `bytes`/`string` whose offset is in head word number ``head_word``."""
    offset = int.from_bytes(data[head_word * 32 : head_word * 32 + 32], "big")
    if offset + 32 > len(data):
        raise MalformedLog("dynamic field offset out of range")
    length = int.from_bytes(data[offset : offset + 32], "big")
    end = offset + 32 + length
    if end > len(data):
        raise MalformedLog("dynamic field length out of range")
    return data[offset + 32 : end]


def _words(data: bytes, n: int) -> list[bytes]:
    if len(data) < 32 * n:
        raise MalformedLog(f"log data shorter than {n} words")
    return [data[i * 32 : i * 32 + 32] for i in range(n)]


def _topics(log: dict[str, Any], n: int) -> list[bytes]:
    topics = log.get("topics") or []
    if len(topics) != n:
        raise MalformedLog(f"expected {n} topics, got {len(topics)}")
    out = [_hex(t) for t in topics]
    if any(len(t) != 32 for t in out):
        raise MalformedLog("topic is not 32 bytes")
    return out


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")


_T = {v: k for k, v in TOPICS.items()}


def decode_log(log: dict[str, Any]) -> Event | None:
    """Decode one raw JSON-RPC log of the DeviceRegistry (see module docstring)."""
    topics = log.get("topics") or []
    if not topics:
        return None
    name = _T.get(topics[0].lower())
    if name is None:
        return None
    try:
        base = (
            int(log["blockNumber"], 16),
            int(log["logIndex"], 16),
            _hex(log["blockHash"]),
            _hex(log.get("transactionHash") or "0x"),
        )
        data = _hex(log.get("data") or "0x")
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedLog(f"log is missing its position fields: {exc}") from exc
    if name == "DeviceRegistered":
        _, net, dev, owner = _topics(log, 4)
        w = _words(data, 7)
        return DeviceRegistered(
            *base,
            device_id=dev,
            owner=_addr(owner),
            network_id=_uint(net, 64),
            public_key=w[0],
            overlay_address=_uint(w[1], 32),
            expires_at=_uint(w[2], 64),
            status=_uint(w[3], 8),
            relay=_bool(w[4]),
            endpoint=_text(_dyn(data, 5)),
            proof=_dyn(data, 6),
        )
    if name == "DeviceApproved":
        _, net, dev, by = _topics(log, 4)
        (w0,) = _words(data, 1)
        return DeviceApproved(*base, device_id=dev, network_id=_uint(net, 64), by=_addr(by),
                              overlay_address=_uint(w0, 32))
    if name in ("DeviceRevoked", "DeviceSuspended"):
        _, net, dev, by = _topics(log, 4)
        cls = DeviceRevoked if name == "DeviceRevoked" else DeviceSuspended
        return cls(*base, device_id=dev, network_id=_uint(net, 64), by=_addr(by))
    if name == "DeviceRenewed":
        _, net, dev = _topics(log, 3)
        (w0,) = _words(data, 1)
        return DeviceRenewed(*base, device_id=dev, network_id=_uint(net, 64), expires_at=_uint(w0, 64))
    if name == "DeviceEndpointUpdated":
        _, net, dev = _topics(log, 3)
        w = _words(data, 2)
        return DeviceEndpointUpdated(
            *base, device_id=dev, network_id=_uint(net, 64), endpoint=_text(_dyn(data, 0)), relay=_bool(w[1])
        )
    if name == "NetworkCreated":
        _, net, admin = _topics(log, 3)
        w = _words(data, 3)
        return NetworkCreated(
            *base,
            network_id=_uint(net, 64),
            admin=_addr(admin),
            policy=_uint(w[0], 8),
            registration_period=_uint(w[1], 32),
            name=_text(_dyn(data, 2)),
        )
    # NetworkAdminTransferred
    _, net, prev, new = _topics(log, 4)
    return NetworkAdminTransferred(*base, network_id=_uint(net, 64), previous_admin=_addr(prev), new_admin=_addr(new))


def network_of(event: Event) -> int:
    """The network id an event belongs to (every registry event carries one)."""
    assert isinstance(event, DEVICE_EVENTS + NETWORK_EVENTS), f"not a registry event: {event!r}"
    return event.network_id
