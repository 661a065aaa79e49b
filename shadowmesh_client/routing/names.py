"""Device names: ``NAME.NETWORK.SUFFIX`` -> the device's overlay IPv4 and IPv6 addresses (issue 14 "Names").

A device's name comes from its signed record (routing/records.py); a device without one is still
resolvable as ``d-<first 8 hex digits of its key>``. ``NETWORK`` is the network's on-chain name reduced
to one DNS label (``net<id>`` if nothing is left of it). Names are unique per network: when two trusted
devices claim the same name, the earlier registration (block, log index) keeps it and the later one is
reported in ``conflicts`` and answers only to its default name.

Only trusted devices (the directory's live peers, this device included) are in the table, so revoking
a device removes its name at the next directory change, within the revocation deadline.

Pure: no I/O. May import: routing.overlay6, routing.records.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SUFFIX = "shadowmesh.internal"
"""DNS suffix of device names (``.internal`` is reserved for private use by ICANN, 2024)."""


def network_label(name: str, network_id: int) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return label or f"net{network_id}"


def default_name(public_key: bytes) -> str:
    return f"d-{public_key[:4].hex()}"


@dataclass(frozen=True)
class NameEntry:
    name: str                      # the label (without network and suffix)
    public_key: bytes
    v4: ipaddress.IPv4Address
    v6: ipaddress.IPv6Address | None


class NameTable:
    """``entries``: {fully-qualified lower-case name without trailing dot: NameEntry}."""

    def __init__(self, zone: str) -> None:
        self.zone = zone.lower().strip(".")            # "NETWORK.SUFFIX"
        self.entries: dict[str, NameEntry] = {}
        self.by_key: dict[bytes, NameEntry] = {}
        self.conflicts: list[str] = []

    @classmethod
    def build(cls, zone: str, devices: Sequence[tuple[bytes, tuple[int, int], ipaddress.IPv4Address,
                                                      ipaddress.IPv6Address | None, str | None]]) -> NameTable:
        """``devices``: (key, registration position, v4, v6, claimed name or None) of every trusted device."""
        table = cls(zone)
        for key, _pos, v4, v6, claimed in sorted(devices, key=lambda d: (d[1], d[0])):
            name = claimed or default_name(key)
            if f"{name}.{table.zone}" in table.entries:
                table.conflicts.append(f"name {name!r} of {key.hex()[:8]} is taken by an earlier registration; "
                                       f"it answers to {default_name(key)!r}")
                name = default_name(key)
            entry = NameEntry(name, key, v4, v6)
            table.entries[f"{name}.{table.zone}"] = entry
            table.by_key[key] = entry
        return table

    def lookup(self, qname: str) -> NameEntry | None:
        return self.entries.get(qname.lower().rstrip("."))

    def in_zone(self, qname: str) -> bool:
        q = qname.lower().rstrip(".")
        return q == self.zone or q.endswith("." + self.zone)

    def resolve_target(self, target: str) -> NameEntry | None:
        """An entry by bare name, fully-qualified name, overlay address (v4 or v6) or key hex prefix."""
        t = target.lower().rstrip(".")
        found = self.entries.get(t) or self.entries.get(f"{t}.{self.zone}")
        if found is not None:
            return found
        try:
            ip = ipaddress.ip_address(t)
        except ValueError:
            matches = [e for k, e in self.by_key.items() if k.hex().startswith(t)] if len(t) >= 8 else []
            return matches[0] if len(matches) == 1 else None
        return next((e for e in self.by_key.values() if ip in (e.v4, e.v6)), None)
