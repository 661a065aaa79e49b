"""IPv6 overlay addresses: one ULA /48 per network, each device's address derived from its IPv4 allocation.

Issue 14 "IPv6 overlay". RFC 4193 section 3.2: a Unique Local Address prefix is ``fd`` followed by a
40-bit Global ID that should be pseudo-random. Ours is the first 40 bits of
``SHA-256("shadowmesh-ula-v1" || chain id (u64 BE) || registry (20 B) || network id (u64 BE))``: every node
of a network derives the same prefix from what it already knows, and two networks (or two registries, or
two chains) get different prefixes with overwhelming probability.

A device's address is ``<prefix>:0000:0000:0000:<its overlay IPv4 as 32 bits>`` (subnet id 0, interface
id = the IPv4 allocation). The contract never reuses an overlay IPv4 address, so the IPv6 address is never
reused either, and the mapping is a bijection a node can invert without a table (``to_v4``).

Pure: no I/O. May import: ipaddress, hashlib.
"""

from __future__ import annotations

import hashlib
import ipaddress

ULA_PREFIX_LEN = 48
"""Bits. The network's prefix length (RFC 4193: 8 bits fd + 40 bits Global ID)."""

_DOMAIN = b"shadowmesh-ula-v1"


def _registry_bytes(registry: bytes | str) -> bytes:
    if isinstance(registry, str):
        registry = bytes.fromhex(registry.removeprefix("0x"))
    if len(registry) != 20:
        raise ValueError(f"registry address must be 20 bytes, got {len(registry)}")
    return registry


def network_prefix(chain_id: int, registry: bytes | str, network_id: int) -> ipaddress.IPv6Network:
    """The network's ULA /48 (see the module docstring)."""
    digest = hashlib.sha256(_DOMAIN + chain_id.to_bytes(8, "big") + _registry_bytes(registry)
                            + network_id.to_bytes(8, "big")).digest()
    raw = b"\xfd" + digest[:5] + bytes(10)
    return ipaddress.IPv6Network((raw, ULA_PREFIX_LEN))


def device_address(prefix: ipaddress.IPv6Network, v4: ipaddress.IPv4Address | str) -> ipaddress.IPv6Address:
    """The IPv6 overlay address of the device holding overlay IPv4 address ``v4``."""
    return ipaddress.IPv6Address(prefix.network_address.packed[:6] + bytes(6) + ipaddress.IPv4Address(v4).packed)


def to_v4(prefix: ipaddress.IPv6Network, v6: ipaddress.IPv6Address | str) -> ipaddress.IPv4Address | None:
    """The overlay IPv4 address behind ``v6``, or None if ``v6`` is not a device address of ``prefix``."""
    raw = ipaddress.IPv6Address(v6).packed
    if raw[:6] != prefix.network_address.packed[:6] or raw[6:12] != bytes(6):
        return None
    return ipaddress.IPv4Address(raw[12:])
