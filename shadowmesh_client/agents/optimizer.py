"""Network optimizer (spec "AI Integration Architecture": Network Optimizer agent; issue 16). Three pure
functions over figures the daemons measure; no I/O, no clock.

* ``rank_relays``: the relay for a peer from measured RTT, loss, load and price. The score is an expected
  one-way delivery time in milliseconds plus a price term:

      cost = rtt_ms / (1 - load) * (1 + RETRANSMIT * loss) + price_weight * price_per_gb

  ``rtt_ms`` is the RELAYED path's round trip (device -> relay -> peer), ``1 / (1 - load)`` is the M/M/1
  queueing stretch at utilisation ``load`` (0..1), ``RETRANSMIT * loss`` the extra round trips TCP spends
  on a lost segment inside the tunnel (fast retransmit: about one RTT each, times 2 for the RTO tail).
  Unmeasured relays (rtt None) rank last; a relay that is down is never chosen.
* ``place_relay``: where a new relay cuts the most latency, by greedy k-median over the RTT matrix the
  devices measured: each device pair that cannot talk directly costs the RTT of its best relay path
  ``d(a,r) + d(r,b)``; the candidate site minimising the sum over pairs (with the relays that exist) wins.
* ``tune_buffers``: WebSocket write limit and receive queue from the bandwidth-delay product: one BDP in
  flight keeps the pipe full; 2 x BDP absorbs a burst; clamped to [MIN_BUFFER, MAX_BUFFER].

May import: the standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

RETRANSMIT = 2.0
"""Extra round trips per lost segment (unitless multiplier of the loss fraction)."""

MIN_BUFFER = 256 * 1024
"""Bytes: smallest write limit suggested (the node's 1 MiB default is fine for slow links too)."""

MAX_BUFFER = 64 * 1024 * 1024
"""Bytes: largest write limit suggested (memory per link is bounded by this)."""

DEFAULT_WRITE_LIMIT = 1 << 20
"""Bytes: the node's current write limit (daemon_common.LINK_WRITE_LIMIT), for the 'change' column."""


@dataclass(frozen=True)
class RelayMetrics:
    name: str
    rtt_ms: float | None       # relayed round trip device -> relay -> peer (ms), None if not measured
    loss: float = 0.0          # fraction of frames lost (0..1)
    load: float = 0.0          # relay utilisation (0..1): devices connected / capacity, or CPU
    price_per_gb: float = 0.0  # SMT per GB
    up: bool = True


def relay_cost(m: RelayMetrics, price_weight: float = 1.0) -> float:
    """Milliseconds-equivalent cost of ``m`` (lower is better); inf when it cannot be used."""
    if not m.up:
        return math.inf
    if m.rtt_ms is None:
        return 1e9   # unmeasured: after every measured relay, before the ones that are down
    load = min(max(m.load, 0.0), 0.95)
    return m.rtt_ms / (1.0 - load) * (1.0 + RETRANSMIT * min(max(m.loss, 0.0), 1.0)) + price_weight * m.price_per_gb


def rank_relays(relays: Sequence[RelayMetrics], price_weight: float = 1.0) -> list[tuple[RelayMetrics, float]]:
    """Relays best first, each with its cost (ms-equivalent)."""
    return sorted(((m, relay_cost(m, price_weight)) for m in relays), key=lambda mc: mc[1])


def place_relay(rtt: Mapping[str, Mapping[str, float]], candidates: Sequence[str], *, existing: Sequence[str] = (),
                pairs: Sequence[tuple[str, str]] | None = None, k: int = 1) -> dict:
    """Greedy k-median: choose ``k`` sites from ``candidates`` for new relays.

    ``rtt[x][y]``: measured round trip in ms between hosts x and y (symmetric; missing = unreachable).
    ``pairs``: device pairs that need a relay (default: every pair of non-candidate hosts with no direct RTT).
    Returns {"chosen": [...], "cost_before_ms": mean relayed RTT over pairs, "cost_after_ms": ..., "pairs": n}."""

    def d(x: str, y: str) -> float:
        if x == y:
            return 0.0
        v = rtt.get(x, {}).get(y)
        if v is None:
            v = rtt.get(y, {}).get(x)
        return math.inf if v is None else v

    if pairs is None:
        hosts = sorted(h for h in rtt if h not in candidates and h not in existing)
        pairs = [(a, b) for i, a in enumerate(hosts) for b in hosts[i + 1:] if math.isinf(d(a, b))]

    def cost(relays: Sequence[str]) -> float:
        if not pairs:
            return 0.0
        total = 0.0
        for a, b in pairs:
            best = min((d(a, r) + d(r, b) for r in relays), default=math.inf)
            total += min(best, 10_000.0)   # an unserved pair counts as 10 s (so any relay helps)
        return total / len(pairs)

    chosen: list[str] = []
    before = cost(list(existing))
    for _ in range(k):
        pool = [c for c in candidates if c not in chosen]
        if not pool:
            break
        best = min(pool, key=lambda c: cost([*existing, *chosen, c]))
        chosen.append(best)
    return {"chosen": chosen, "cost_before_ms": round(before, 3),
            "cost_after_ms": round(cost([*existing, *chosen]), 3), "pairs": len(pairs)}


def tune_buffers(bandwidth_bytes_per_s: float, rtt_s: float) -> dict:
    """Write limit and receive queue for a link with this throughput and RTT (bandwidth-delay product)."""
    bdp = max(bandwidth_bytes_per_s, 0.0) * max(rtt_s, 0.0)
    write_limit = int(min(max(2 * bdp, MIN_BUFFER), MAX_BUFFER))
    write_limit = 1 << max(0, (write_limit - 1).bit_length())   # a power of two: easy to read, to compare
    return {"bdp_bytes": int(bdp), "write_limit": min(write_limit, MAX_BUFFER),
            "current_write_limit": DEFAULT_WRITE_LIMIT,
            "change": "raise" if write_limit > DEFAULT_WRITE_LIMIT else "keep"}


def suggest(metrics: Mapping) -> list[dict]:
    """Optimisations for a metrics snapshot (the local API's /peers + /traffic view; the VS Code extension's
    ``suggestOptimizations(metrics)``). ``metrics``: {"peers": [{public_key, path, relay_paths: [{name, up,
    rtt_ms, loss?, load?, price_per_gb?}], direct_rtt_ms, rate_bps?}], "relays": [...]} (extra keys ignored).
    Each optimisation: {kind, subject, summary, action, gain_ms?}."""
    out: list[dict] = []
    for p in metrics.get("peers", []):
        subject = str(p.get("public_key", "?"))[:16]
        options = [RelayMetrics(r["name"], r.get("rtt_ms") or None, r.get("loss", 0.0), r.get("load", 0.0),
                                r.get("price_per_gb", 0.0), bool(r.get("up", True)))
                   for r in p.get("relay_paths", [])]
        current = p.get("path")
        if options and current and str(current).startswith("relay:"):
            ranked = rank_relays(options)
            best, best_cost = ranked[0]
            now_cost = next((c for m, c in ranked if m.name == current), math.inf)
            if best.name != current and best_cost < now_cost and not math.isinf(best_cost):
                out.append({"kind": "relay_choice", "subject": subject, "gain_ms": round(now_cost - best_cost, 3),
                            "summary": f"peer {subject}: {best.name} is cheaper than {current} "
                                       f"({best_cost:.1f} vs {now_cost:.1f} ms-equivalent)",
                            "action": f"prefer {best.name} for this peer (list it first in `relays:`)"})
        rate = float(p.get("rate_bps") or 0.0) / 8.0
        rtt_ms = p.get("direct_rtt_ms") if p.get("direct") else min(
            (r.get("rtt_ms") or math.inf for r in p.get("relay_paths", [])), default=math.inf)
        if rate > 0 and rtt_ms and not math.isinf(rtt_ms):
            tuned = tune_buffers(rate, rtt_ms / 1000.0)
            if tuned["change"] == "raise":
                out.append({"kind": "buffers", "subject": subject,
                            "summary": f"peer {subject}: bandwidth-delay product {tuned['bdp_bytes']} B exceeds "
                                       f"half the write limit", "action": f"raise the link write limit to "
                                                                          f"{tuned['write_limit']} B"})
    return out
