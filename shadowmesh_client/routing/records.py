"""Signed device records: a device's name, exit-node advert and subnet-route advert (issue 14).

The contracts are not changed for this (docs/routing.md "Why records, not contract fields"): a device
publishes a small JSON record signed by its Ed25519 device key (the key the chain registered), and the
network admin approves what needs approving by signing the same message with the network admin's owner
key (EIP-191 ``personal_sign``, eth-account). A node honours a record only while:

* its device signature verifies against a public key that the directory trusts right now (so revoking
  or expiring the device on chain withdraws its name, exit and routes within the directory's revocation
  deadline: the record cannot outlive the registration);
* it is for this chain, registry and network (all three are inside the signed message: no replay
  across networks);
* it has the highest ``seq`` of that device's valid records (a newer record replaces an older one).

What needs the admin's approval (``approval`` recovers to ``directory.network.admin``):

* subnet routes: always (a device must not capture someone else's LAN prefixes by itself);
* the exit advert: in approval networks (JoinPolicy.APPROVAL); in open networks the device's own
  signature is enough, as with joining;
* the name: never (uniqueness is decided by registration order, routing/names.py).

Wire form (a file ``<public key hex>.json`` in the records folder, docs/routing.md)::

    {"record": {"chain_id": 31337, "registry": "0x..", "network_id": 1, "public_key": "..", "seq": 3,
                "name": "laptop", "exit": true, "routes": ["192.168.7.0/24"]},
     "signature": "<ed25519 hex>", "approval": "<65-byte eth signature hex>" | null}

Pure except ``load_folder``/``save`` (file reads/writes). May import: crypto, errors, eth_account, json.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_defunct

from shadowmesh_client.crypto import Identity, verify_signature
from shadowmesh_client.errors import ConfigError

log = logging.getLogger(__name__)

_DOMAIN = b"shadowmesh-record-v1\x00"
MAX_RECORD_BYTES = 16_384
"""Bytes. A record file larger than this is ignored (a record holds a name and a few prefixes)."""
MAX_ROUTES = 64
"""Prefixes one record may advertise."""

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
"""A device name is one DNS label (RFC 1035 section 2.3.1, lower case; RFC 1123 allows a leading digit)."""


def check_name(name: str) -> str:
    n = name.lower()
    if not NAME_RE.match(n):
        raise ConfigError(f"device name {name!r} must be one DNS label: a-z, 0-9 and '-', 1-63 characters, "
                          "not starting or ending with '-'")
    return n


def check_prefix(prefix: str) -> str:
    """``prefix`` in canonical form (``ConfigError`` if it is not a network, e.g. host bits set)."""
    try:
        return str(ipaddress.ip_network(prefix, strict=True))
    except ValueError:
        raise ConfigError(f"route {prefix!r} must be a network like 192.168.7.0/24 or fd00:7::/64 "
                          "(no host bits set)") from None


@dataclass(frozen=True)
class DeviceRecord:
    """What a device says about itself. ``routes``: canonical prefix strings (``check_prefix``)."""

    chain_id: int
    registry: str            # 0x-prefixed lower-case hex
    network_id: int
    public_key: bytes        # 32-byte Ed25519 device key
    seq: int                 # higher replaces lower; e.g. unix seconds at signing
    name: str | None = None
    exit: bool = False
    routes: tuple[str, ...] = ()

    def fields(self) -> dict:
        return {"chain_id": self.chain_id, "registry": self.registry.lower(), "network_id": self.network_id,
                "public_key": self.public_key.hex(), "seq": self.seq, "name": self.name, "exit": self.exit,
                "routes": list(self.routes)}

    def message(self) -> bytes:
        """The signed bytes: a domain tag, then canonical JSON (sorted keys, no spaces)."""
        return _DOMAIN + json.dumps(self.fields(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_fields(cls, f: dict) -> DeviceRecord:
        try:
            routes = tuple(check_prefix(r) for r in f.get("routes", ()))
            name = f.get("name")
            rec = cls(chain_id=int(f["chain_id"]), registry=str(f["registry"]).lower(),
                      network_id=int(f["network_id"]), public_key=bytes.fromhex(f["public_key"]),
                      seq=int(f["seq"]), name=check_name(name) if name else None, exit=bool(f.get("exit", False)),
                      routes=routes)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed device record: {exc}") from None
        if len(rec.public_key) != 32 or len(rec.routes) > MAX_ROUTES:
            raise ConfigError("malformed device record: bad key length or too many routes")
        return rec


@dataclass(frozen=True)
class SignedRecord:
    record: DeviceRecord
    signature: bytes                       # Ed25519 by record.public_key over record.message()
    approval: bytes | None = field(default=None)   # EIP-191 signature by the network admin over the same

    @classmethod
    def sign(cls, identity: Identity, record: DeviceRecord) -> SignedRecord:
        if identity.public_key != record.public_key:
            raise ConfigError("a device record must be signed by the device's own key")
        return cls(record, identity.sign(record.message()))

    def approve(self, admin_private_key: bytes | str) -> SignedRecord:
        """This record approved by the admin (the owner key of the network admin account)."""
        signed = Account.sign_message(encode_defunct(primitive=self.record.message()), admin_private_key)
        return replace(self, approval=bytes(signed.signature))

    def device_signature_ok(self) -> bool:
        return verify_signature(self.record.public_key, self.record.message(), self.signature)

    def approver(self) -> str | None:
        """The 0x address (lower case) that signed the approval, or None (none, or unreadable)."""
        if not self.approval:
            return None
        try:
            return str(Account.recover_message(encode_defunct(primitive=self.record.message()),
                                               signature=self.approval)).lower()
        except Exception:  # eth-account raises several types for a malformed signature
            return None

    def to_json(self) -> str:
        return json.dumps({"record": self.record.fields(), "signature": self.signature.hex(),
                           "approval": self.approval.hex() if self.approval else None}, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedRecord:
        try:
            d = json.loads(text)
            approval = d.get("approval")
            return cls(DeviceRecord.from_fields(d["record"]), bytes.fromhex(d["signature"]),
                       bytes.fromhex(approval.removeprefix("0x")) if approval else None)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"malformed device record file: {exc}") from None


def record_path(folder: str | os.PathLike, public_key: bytes) -> Path:
    return Path(folder) / f"{public_key.hex()}.json"


def save(folder: str | os.PathLike, signed: SignedRecord) -> Path:
    """Write ``signed`` to its file in ``folder`` atomically (write a temporary file, rename)."""
    path = record_path(folder, signed.record.public_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(signed.to_json())
    os.replace(tmp, path)
    return path


def load_folder(folder: str | os.PathLike) -> list[SignedRecord]:
    """Every well-formed record file in ``folder`` (device signatures NOT checked here: ``RecordSet`` does).
    A missing folder is empty; a malformed file is skipped with a warning."""
    out: list[SignedRecord] = []
    try:
        entries = sorted(Path(folder).glob("*.json"))
    except OSError:
        return out
    for p in entries:
        try:
            if p.stat().st_size > MAX_RECORD_BYTES:
                log.warning("ignoring %s: larger than %d bytes", p, MAX_RECORD_BYTES)
                continue
            out.append(SignedRecord.from_json(p.read_bytes()))
        except (OSError, ConfigError) as exc:
            log.warning("ignoring device record %s: %s", p, exc)
    return out


@dataclass(frozen=True)
class Accepted:
    """A device's record as a node honours it right now (``RecordSet.accepted``)."""

    public_key: bytes
    name: str | None
    exit: bool                 # the exit advert is honoured (signed, and approved where required)
    routes: tuple[str, ...]    # approved prefixes only
    pending_routes: tuple[str, ...]   # advertised, waiting for the admin's approval


class RecordSet:
    """The newest valid record per device key, for one (chain, registry, network)."""

    def __init__(self, chain_id: int, registry: str, network_id: int) -> None:
        self.chain_id, self.registry, self.network_id = chain_id, registry.lower(), network_id
        self._best: dict[bytes, SignedRecord] = {}
        self.rejected = 0   # records ignored: bad signature or another network's

    def add(self, signed: SignedRecord) -> bool:
        """Keep ``signed`` if it is valid for this network and newer than the device's current one."""
        r = signed.record
        if (r.chain_id, r.registry, r.network_id) != (self.chain_id, self.registry, self.network_id) \
                or not signed.device_signature_ok():
            self.rejected += 1
            return False
        old = self._best.get(r.public_key)
        if old is not None and (old.record.seq > r.seq or old.record.seq == r.seq and (
                old.record != r or not signed.approval or signed.approval == old.approval)):
            return False   # older, or the same record without a new approval (the file holds one per device)
        self._best[r.public_key] = signed
        return True

    def replace_all(self, records: list[SignedRecord]) -> None:
        self._best.clear()
        for s in records:
            self.add(s)

    def accepted(self, public_key: bytes, admin: str | None, approval_network: bool) -> Accepted | None:
        """What the node honours of ``public_key``'s record (the caller checks that the key is trusted).
        ``admin``: the network admin's 0x address (None: unknown yet, nothing approved)."""
        s = self._best.get(public_key)
        if s is None:
            return None
        approved = admin is not None and s.approver() == admin.lower()
        r = s.record
        return Accepted(r.public_key, r.name, r.exit and (approved or not approval_network),
                        r.routes if approved else (), () if approved else r.routes)
