"""A mesh's security signals at an accelerated clock, for evaluating agents/auditor.py (issue 16).

Normal traffic (the clean baseline every run has):

* ``PEERS`` peers, each with its own typical rate (log-uniform 20 kB/s .. 2 MB/s); per second the rate is
  that times a log-normal factor (sigma 0.6), and 30 % of seconds idle; now and then (1 per peer-hour) a
  legitimate download at 3x for 30 s;
* background refusals: a misconfigured device retrying every ~30 s, internet scanners (0.05 new
  addresses/s, one probe each), an unknown key now and then (1 per 5 min);
* registry: registrations at 1 per 10 min, revocations at 1 per hour (Poisson).

Attacks (``Attack``): handshake flood (one source, N refused/s), address scan (N new sources/s, one probe
each), exfiltration (a peer at 10x its typical rate), registration burst (N registrations in 20 s).

One ``Signals`` per simulated second goes to ``SecurityAuditor.observe`` (the API samples each second too).
Deterministic: a seeded random.Random.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

from shadowmesh_client.agents.auditor import SecurityAuditor, Signals

PEERS = 12


@dataclass
class Attack:
    kind: str            # flood | scan | exfil | registrations
    start: float         # seconds
    duration: float
    intensity: float     # flood: refused/s; scan: new sources/s; exfil: x baseline; registrations: count
    subject: str = ""    # flood: source address; exfil: peer key
    found_at: float | None = None
    found_by: list[str] = field(default_factory=list)


# A scan is refused handshakes too: a handshake_flood raised during one is the same incident, not a false alarm.
MATCH = {"flood": {"handshake_flood", "source_flood"}, "scan": {"address_scan", "handshake_flood"},
         "exfil": {"exfiltration"},
         "registrations": {"registration_burst"}}


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    n, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return n
        n += 1


def simulate(seconds: int, attacks: list[Attack], *, seed: int = 1, auditor: SecurityAuditor | None = None):
    """Run ``seconds`` of simulated time; returns (auditor, attacks with found_at set, false findings)."""
    rng = random.Random(seed)
    auditor = auditor or SecurityAuditor()
    peers = {f"peer{i:02d}": 10 ** rng.uniform(math.log10(20e3), math.log10(2e6)) for i in range(PEERS)}
    downloads: dict[str, float] = {}
    scanner = itertools_count()
    for t in range(seconds):
        s = Signals()
        for key, typical in peers.items():
            if downloads.get(key, -1) < t and rng.random() < 1 / 3600:
                downloads[key] = t + 30
            if rng.random() < 0.3:
                continue
            rate = typical * rng.lognormvariate(0, 0.6) * (3 if downloads.get(key, -1) >= t else 1)
            s.traffic[key] += int(rate)
        if rng.random() < 1 / 30:
            s.refused["198.51.100.7"] += 1                     # a misconfigured device retrying
        for _ in range(_poisson(rng, 0.05)):
            s.refused[f"scan-bg-{next(scanner)}"] += 1         # background internet scanning
        if rng.random() < 1 / 300:
            s.unknown_keys[f"key-{next(scanner)}"] += 1
        s.registrations += _poisson(rng, 1 / 600)
        s.revocations += _poisson(rng, 1 / 3600)
        for a in attacks:
            if not a.start <= t < a.start + a.duration:
                continue
            if a.kind == "flood":
                s.refused[a.subject] += _poisson(rng, a.intensity)
            elif a.kind == "scan":
                for _ in range(_poisson(rng, a.intensity)):
                    s.refused[f"scan-{a.start}-{next(scanner)}"] += 1
            elif a.kind == "exfil":
                s.traffic[a.subject] += int(peers[a.subject] * a.intensity * rng.lognormvariate(0, 0.3))
            elif a.kind == "registrations":
                s.registrations += _poisson(rng, a.intensity / a.duration)
        auditor.observe(float(t), s)
    auditor.observe(float(seconds + 2 * auditor.window), Signals())   # close the last windows
    false = []
    for f in auditor.findings:
        hit = next((a for a in attacks if f.kind in MATCH[a.kind] and a.start <= f.first_seen
                    <= a.start + a.duration + 3 * auditor.window and (a.kind != "exfil" or f.subject == a.subject)),
                   None)
        if hit is None:
            false.append(f)
            continue
        if hit.found_at is None:
            hit.found_at = f.first_seen
        hit.found_by.append(f.kind)
    return auditor, attacks, false


def itertools_count():
    import itertools

    return itertools.count()


def attack_mix(seed: int, hours: float = 2.0) -> list[Attack]:
    """Five of each attack kind at random times (non-overlapping, 10 min apart) in ``hours``, of varied size."""
    rng = random.Random(seed)
    kinds = ["flood", "scan", "exfil", "registrations"] * 5
    rng.shuffle(kinds)
    slot = hours * 3600 / len(kinds)
    out = []
    for i, kind in enumerate(kinds):
        start = float(int(i * slot + rng.uniform(60, slot - 240)))
        if kind == "flood":
            out.append(Attack(kind, start, 60, rng.uniform(5, 50), f"203.0.113.{rng.randrange(1, 250)}"))
        elif kind == "scan":
            out.append(Attack(kind, start, 90, rng.uniform(1.5, 5)))
        elif kind == "exfil":
            out.append(Attack(kind, start, 120, 10.0, f"peer{rng.randrange(PEERS):02d}"))
        else:
            out.append(Attack(kind, start, 20, rng.randrange(10, 30)))
    return out
