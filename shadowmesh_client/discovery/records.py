"""Signed endpoint records (issue 15 "Signed endpoint records in a DHT"): where a device can be reached now.

A record is published by a device under its REGISTERED Ed25519 key, so the chain stays the only trust
source: whoever stores or uses a record checks the signature AND that the key is trusted in that network's
directory (store.py; the caller passes the trust callback). Wire format (big-endian, exact lengths)::

    version u8 (=1) | kind u8 (0 device, 1 relay) | network 32 (NetworkBinding.digest(): chain, registry,
    network id) | public key 32 | seq u64 | expires u32 (Unix s) | load u16 (per mille, relays) |
    price u32 (token base units per MiB, relays) | n_endpoints u8 | (len u8, ASCII)* | n_relays u8 |
    (relay key 32)* | signature 64 (Ed25519 over SIGN_DOMAIN || everything before it)

Endpoints are strings: ``ws://``/``wss://`` URLs a peer may dial, or ``tcp:IP:PORT`` NAT-mapped candidates
(what a relay observed; punch.py). ``seq`` orders a key's records (a newer one replaces an older one; the
publisher uses milliseconds of wall-clock, so it grows across restarts). At most MAX_RECORD_BYTES.

Pure: no I/O; time is an argument. May import: crypto, errors.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from shadowmesh_client import crypto
from shadowmesh_client.errors import ShadowMeshError

VERSION = 1
SIGN_DOMAIN = b"shadowmesh endpoint record v1\x00"
MAX_RECORD_BYTES = 1_024
"""Bytes: the largest record accepted (8 endpoints of 64 bytes and 8 relays fit)."""
MAX_ENDPOINTS = 8
MAX_RELAYS = 8
MAX_ENDPOINT_BYTES = 200
MAX_LIFETIME = 3_600
"""Seconds: a record may claim to live at most this long from ``now`` (longer is refused: no immortal records)."""
_HEAD = struct.Struct(">BB32s32sQIHI")
SIGNATURE_BYTES = 64


class DiscoveryError(ShadowMeshError, ValueError):
    """A record or discovery message is malformed, forged, stale or from outside the network."""


class RecordKind(enum.IntEnum):
    DEVICE = 0
    RELAY = 1


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    kind: RecordKind
    network: bytes            # NetworkBinding.digest() (32 bytes)
    public_key: bytes         # the registered Ed25519 key that signs it
    seq: int
    expires: int              # Unix seconds
    endpoints: tuple[str, ...] = ()
    relays: tuple[bytes, ...] = ()
    load: int = 0             # per mille of capacity in use (relays)
    price: int = 0            # token base units per MiB (relays; 0: free or unknown)
    signature: bytes = b""

    def body(self) -> bytes:
        """Everything the signature covers (without the domain)."""
        if len(self.endpoints) > MAX_ENDPOINTS or len(self.relays) > MAX_RELAYS:
            raise DiscoveryError(f"a record holds at most {MAX_ENDPOINTS} endpoints and {MAX_RELAYS} relays")
        parts = [_HEAD.pack(VERSION, int(self.kind), self.network, self.public_key, self.seq, self.expires,
                            self.load, self.price), bytes([len(self.endpoints)])]
        for e in self.endpoints:
            raw = e.encode("ascii")
            if not 0 < len(raw) <= MAX_ENDPOINT_BYTES:
                raise DiscoveryError(f"endpoint of {len(raw)} bytes (1..{MAX_ENDPOINT_BYTES})")
            parts += [bytes([len(raw)]), raw]
        parts.append(bytes([len(self.relays)]))
        for r in self.relays:
            if len(r) != 32:
                raise DiscoveryError("a relay is named by its 32-byte key")
            parts.append(r)
        return b"".join(parts)

    def encode(self) -> bytes:
        if len(self.signature) != SIGNATURE_BYTES:
            raise DiscoveryError("record is not signed")
        out = self.body() + self.signature
        if len(out) > MAX_RECORD_BYTES:
            raise DiscoveryError(f"record of {len(out)} bytes (max {MAX_RECORD_BYTES})")
        return out

    def verify(self) -> bool:
        """True iff the signature is the record key's over the body (the caller also checks trust)."""
        return crypto.verify_signature(self.public_key, SIGN_DOMAIN + self.body(), self.signature)

    def check(self, network: bytes, now: float) -> None:
        """Raise DiscoveryError unless this record belongs to ``network``, is live at ``now`` and verifies."""
        if self.network != network:
            raise DiscoveryError("record of another network")
        if self.expires <= now:
            raise DiscoveryError("record expired")
        if self.expires > now + MAX_LIFETIME + 60:
            raise DiscoveryError("record claims a lifetime over MAX_LIFETIME")
        if not self.verify():
            raise DiscoveryError("record signature does not verify")

    def candidates(self) -> list[tuple[str, int]]:
        """The ``tcp:IP:PORT`` endpoints as (ip, port)."""
        out = []
        for e in self.endpoints:
            if e.startswith("tcp:"):
                host, _, port = e[4:].rpartition(":")
                if host and port.isdigit():
                    out.append((host, int(port)))
        return out


def sign(identity, kind: RecordKind, network: bytes, seq: int, expires: int, *, endpoints=(), relays=(),
         load: int = 0, price: int = 0) -> EndpointRecord:
    """A record signed by ``identity`` (crypto.Identity)."""
    rec = EndpointRecord(RecordKind(kind), network, identity.public_key, seq, expires, tuple(endpoints),
                         tuple(relays), max(0, min(load, 0xFFFF)), max(0, min(price, 0xFFFFFFFF)))
    return EndpointRecord(rec.kind, rec.network, rec.public_key, rec.seq, rec.expires, rec.endpoints, rec.relays,
                          rec.load, rec.price, identity.sign(SIGN_DOMAIN + rec.body()))


def decode(data: bytes | bytearray | memoryview) -> EndpointRecord:
    """Parse a record (exact lengths); raises DiscoveryError. Does NOT verify: use ``check``."""
    data = bytes(data)
    if not _HEAD.size + 2 + SIGNATURE_BYTES <= len(data) <= MAX_RECORD_BYTES:
        raise DiscoveryError(f"record of {len(data)} bytes")
    version, kind, network, key, seq, expires, load, price = _HEAD.unpack_from(data)
    if version != VERSION or kind not in (0, 1):
        raise DiscoveryError(f"record version {version} kind {kind} not understood")
    i = _HEAD.size
    end = len(data) - SIGNATURE_BYTES
    try:
        n = data[i]
        i += 1
        if n > MAX_ENDPOINTS:
            raise DiscoveryError("too many endpoints")
        endpoints = []
        for _ in range(n):
            size = data[i]
            raw = data[i + 1:i + 1 + size]
            if size == 0 or len(raw) != size:
                raise DiscoveryError("truncated endpoint")
            endpoints.append(raw.decode("ascii"))
            i += 1 + size
        n = data[i]
        i += 1
        if n > MAX_RELAYS:
            raise DiscoveryError("too many relays")
        relays = []
        for _ in range(n):
            relays.append(data[i:i + 32])
            i += 32
    except (IndexError, UnicodeDecodeError) as exc:
        raise DiscoveryError(f"malformed record: {exc}") from None
    if i != end or any(len(r) != 32 for r in relays):
        raise DiscoveryError("record length does not match its contents")
    return EndpointRecord(RecordKind(kind), network, key, seq, expires, tuple(endpoints), tuple(relays), load,
                          price, data[end:])
