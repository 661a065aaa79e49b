"""The route table for destinations that are not a peer's overlay address: subnet routes and exit routes.

Issue 14 "Subnet routes" / "Exit nodes". Overlay destinations never come here: the pump finds them with
one dict lookup (node/pump.py); only a miss (or an IPv6 packet) asks ``RouteTable.lookup``.

Overlap resolution (deterministic, every node computes the same from the same inputs):

1. longest prefix wins per destination (a /24 inside another device's /16 takes its addresses);
2. the same prefix advertised by several devices goes to the earliest registration (lowest
   (block, log index) on chain, then the lower key): the others are *shadowed* and reported;
3. a subnet prefix overlapping the overlay itself (100.64.0.0/10, the network's ULA /48) is refused and
   reported: overlay addresses always go straight to their device, and an overlay address nobody holds
   goes nowhere (not to the exit: ``lookup`` returns None for it).

``conflicts`` lists every overlap as a human-readable line (``up`` logs them, ``status`` shows them).

Pure: no I/O. Lookup cost: one dict probe per distinct prefix length of the family (a handful), with a
bounded cache of recent destinations in front. Not task-safe: rebuilt by its owner on the event loop.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

OVERLAY_V4 = ipaddress.IPv4Network("100.64.0.0/10")
_OVERLAY_NET, _OVERLAY_MASK = int(OVERLAY_V4.network_address), int(OVERLAY_V4.netmask)
CACHE_ENTRIES = 4096
"""Destinations remembered by ``lookup`` (cleared when full: a bound, not an LRU)."""


@dataclass(frozen=True)
class Route:
    prefix: Network
    key: bytes                  # the device (public key) that carries it
    kind: str                   # "subnet" or "exit"
    rank: tuple[int, int]       # the device's registration position (block, log index): lower wins ties


class RouteTable:
    def __init__(self, routes: Iterable[Route] = (), overlay_v6: ipaddress.IPv6Network | None = None) -> None:
        self.conflicts: list[str] = []
        chosen: dict[Network, Route] = {}
        for r in sorted(routes, key=lambda r: (r.rank, r.key, r.kind)):
            if r.kind != "exit" and (r.prefix.overlaps(OVERLAY_V4) if r.prefix.version == 4
                                     else (overlay_v6 is not None and r.prefix.overlaps(overlay_v6))):
                self.conflicts.append(f"{r.kind} route {r.prefix} of {r.key.hex()[:8]} overlaps the overlay: refused")
                continue
            old = chosen.get(r.prefix)
            if old is not None:
                if old.key != r.key:
                    self.conflicts.append(f"{r.kind} route {r.prefix} of {r.key.hex()[:8]} is shadowed by "
                                          f"{old.key.hex()[:8]} (registered earlier)")
                continue
            chosen[r.prefix] = r
        by_len: dict[tuple[int, int], dict[int, Route]] = {}
        for r in chosen.values():
            by_len.setdefault((r.prefix.version, r.prefix.prefixlen), {})[int(r.prefix.network_address)] = r
        ordered = sorted(chosen.values(), key=lambda r: (r.prefix.version, r.prefix.prefixlen))
        for i, a in enumerate(ordered):   # report nested prefixes of different devices (resolved by rule 1)
            for b in ordered[i + 1:]:
                if a.prefix.version == b.prefix.version and a.key != b.key and a.kind == b.kind == "subnet" \
                        and b.prefix.subnet_of(a.prefix):  # type: ignore[arg-type]
                    self.conflicts.append(f"subnet route {b.prefix} of {b.key.hex()[:8]} is inside {a.prefix} of "
                                          f"{a.key.hex()[:8]}: the longer prefix wins for its addresses")
        self.routes = sorted(chosen.values(), key=lambda r: (r.prefix.version, -r.prefix.prefixlen,
                                                             int(r.prefix.network_address)))
        self._levels: dict[int, list[tuple[int, dict[int, Route]]]] = {4: [], 6: []}
        for (version, length), entries in sorted(by_len.items(), key=lambda kv: -kv[0][1]):
            bits = 32 if version == 4 else 128
            mask = ((1 << length) - 1) << (bits - length) if length else 0
            self._levels[version].append((mask, entries))
        self._cache: dict[bytes, bytes | None] = {}
        self._ov6 = (int(overlay_v6.network_address), int(overlay_v6.netmask)) if overlay_v6 is not None else (1, 0)

    def lookup(self, dst: bytes) -> bytes | None:
        """The key of the device carrying destination ``dst`` (4 or 16 raw address bytes), or None."""
        cache = self._cache
        if dst in cache:
            return cache[dst]
        addr = int.from_bytes(dst, "big")
        found = None
        v4 = len(dst) == 4
        if (addr & _OVERLAY_MASK == _OVERLAY_NET) if v4 else (addr & self._ov6[1] == self._ov6[0]):
            levels = []   # an overlay address nobody holds: never to an exit or a subnet router
        else:
            levels = self._levels[4 if v4 else 6]
        for mask, entries in levels:
            r = entries.get(addr & mask)
            if r is not None:
                found = r.key
                break
        if len(cache) >= CACHE_ENTRIES:
            cache.clear()
        cache[dst] = found
        return found

    def route_for(self, address: str) -> Route | None:
        """The route ``address`` takes (tests, `status`)."""
        ip = ipaddress.ip_address(address)
        key = self.lookup(ip.packed)
        if key is None:
            return None
        return next(r for r in self.routes if r.key == key and ip in r.prefix)

    def prefixes_of(self, key: bytes) -> list[Network]:
        return [r.prefix for r in self.routes if r.key == key]
