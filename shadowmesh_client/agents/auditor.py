"""Security auditor (spec "AI Integration Architecture": Security Auditor agent; issue 16): streaming anomaly
detection over the daemons' own signals, with robust statistics only (median and MAD), so it runs offline,
in constant memory, with no training step and no ML dependency.

Input: ``observe(now, Signals)`` with COUNTS since the previous call (deltas, not totals), at any rate. The
auditor folds them into fixed windows of ``window`` seconds; when a window closes, every detector scores it:

=================  =====================================================  =========  =======================
kind               signal (per window)                                    subject    baseline
=================  =====================================================  =========  =======================
handshake_flood    refused handshakes in total, and per source/key        source     global series
address_scan       distinct sources (addresses or unknown keys) refused   network    global series
unknown_keys       handshakes from keys the directory does not know       network    global series
exfiltration       bytes a peer moved (sent + received)                   peer       that peer's own series
registration_burst registrations, and revocations, seen in the directory  network    global series
=================  =====================================================  =========  =======================

A window value ``x`` is anomalous when ``x >= max(median + K * 1.4826 * MAD, RATIO * median, FLOOR)`` where
median and MAD are over the last ``history`` windows of that series, K, RATIO and FLOOR per detector
(``Thresholds``). ``1.4826 * MAD`` estimates the standard deviation of normal data, but one outlier cannot
move it (breakdown point 50 %); anomalous windows are NOT added to the baseline (no poisoning by a slow
attack). The traffic detector also needs ``persist`` consecutive anomalous windows and ``warmup`` windows
of history for that peer (a download is not an exfiltration). FLOORs are per second, scaled by the window.

Output: ``Finding`` (kind, severity, subject, evidence, suggested action). One finding per (kind, subject)
stays open while the anomaly lasts (``count`` and ``last_seen`` move) and closes after ``quiet`` windows.

Pure: no I/O, no clock (``now`` is passed in), no asyncio. Not thread-safe: one caller (the API sampler).
May import: the standard library only.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

MAD_TO_SIGMA = 1.4826
"""Scale of the median absolute deviation to the standard deviation of a normal distribution."""


@dataclass(frozen=True)
class Thresholds:
    """One detector's rule: anomalous when x >= max(median + k*sigma, ratio*median, floor_per_s*window)."""

    k: float
    ratio: float
    floor_per_s: float


DEFAULT_THRESHOLDS = {
    "handshake_flood": Thresholds(k=8.0, ratio=5.0, floor_per_s=2.0),      # 2 refused handshakes/s
    "source_flood": Thresholds(k=8.0, ratio=5.0, floor_per_s=1.0),         # 1/s from ONE source or key
    "address_scan": Thresholds(k=8.0, ratio=5.0, floor_per_s=0.8),         # 0.8 new sources/s
    "unknown_keys": Thresholds(k=8.0, ratio=5.0, floor_per_s=0.5),
    "exfiltration": Thresholds(k=8.0, ratio=5.0, floor_per_s=256 * 1024),  # 256 KiB/s at least
    "registration_burst": Thresholds(k=8.0, ratio=5.0, floor_per_s=0.4),   # 4 per 10 s window
    "revocation_burst": Thresholds(k=8.0, ratio=5.0, floor_per_s=0.4),
}

SEVERITY = {"handshake_flood": "high", "source_flood": "high", "address_scan": "medium", "unknown_keys": "medium",
            "exfiltration": "high", "registration_burst": "medium", "revocation_burst": "medium"}

ACTIONS = {
    "handshake_flood": "Many handshakes are being refused. If the source is not one of your devices, drop it at the "
                       "firewall (e.g. `nft add rule inet filter input ip saddr <source> drop`); if it is your own "
                       "device, check that it is registered in this network and its clock is right.",
    "source_flood": "One source keeps failing the handshake: block {subject} at the firewall, or if it is your "
                    "device, run `shadowmesh-client doctor` on it.",
    "address_scan": "Many different addresses probe the endpoint: it has been discovered. Rotate the secret path "
                    "(`shadowmesh-client set-endpoint` with a new path) and keep the listener behind TLS.",
    "unknown_keys": "Devices not in the registry try to connect: someone has the endpoint URL. Rotate its path "
                    "with `shadowmesh-client set-endpoint`.",
    "exfiltration": "Peer {subject} moves far more data than its own baseline. Check what runs on that device; "
                    "if it is not expected, revoke it (`shadowmesh-client revoke` by its owner) at once.",
    "registration_burst": "A burst of new device registrations in this network. Review them "
                          "(`shadowmesh-client peers`); a network admin can suspend unknown devices.",
    "revocation_burst": "A burst of revocations in this network: check that the owner keys are not compromised.",
}


@dataclass
class Signals:
    """Counts since the previous ``observe`` call. Keys of the per-subject counters are strings (a source
    address "ip" or "ip:port", or a public key in hex)."""

    refused: Counter[str] = field(default_factory=Counter)      # refused handshakes by source (or "*")
    unknown_keys: Counter[str] = field(default_factory=Counter)  # handshakes by keys not in the directory
    traffic: Counter[str] = field(default_factory=Counter)       # bytes per peer (sent + received)
    registrations: int = 0
    revocations: int = 0

    def add(self, other: Signals) -> None:
        self.refused.update(other.refused)
        self.unknown_keys.update(other.unknown_keys)
        self.traffic.update(other.traffic)
        self.registrations += other.registrations
        self.revocations += other.revocations


@dataclass
class Finding:
    id: int
    kind: str
    severity: str
    subject: str
    summary: str
    evidence: dict
    action: str
    first_seen: float
    last_seen: float
    count: int = 1
    open: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


class Baseline:
    """The last ``size`` normal values of one series; median and sigma (1.4826 x MAD) of them."""

    __slots__ = ("values",)

    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=size)

    def stats(self) -> tuple[float, float]:
        if not self.values:
            return 0.0, 0.0
        med = statistics.median(self.values)
        mad = statistics.median(abs(v - med) for v in self.values)
        return med, MAD_TO_SIGMA * mad

    def threshold(self, rule: Thresholds, window: float) -> tuple[float, float, float]:
        """(threshold, median, sigma) for the next value."""
        med, sigma = self.stats()
        return max(med + rule.k * sigma, rule.ratio * med, rule.floor_per_s * window), med, sigma


class SecurityAuditor:
    """Streaming detector; see the module docstring. ``findings`` holds the last ``max_findings`` (bounded)."""

    def __init__(self, *, window: float = 10.0, history: int = 60, warmup: int = 12, persist: int = 3,
                 quiet: int = 3, thresholds: dict[str, Thresholds] | None = None, max_peers: int = 4096,
                 max_findings: int = 200) -> None:
        self.window = window          # seconds per window
        self.history = history        # windows in a baseline
        self.warmup = warmup          # windows of a peer's own history before its traffic is judged
        self.persist = persist        # consecutive anomalous windows before a traffic finding
        self.quiet = quiet            # normal windows before an open finding closes
        self.rules = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
        self.max_peers = max_peers
        self._global: dict[str, Baseline] = {}
        self._peers: dict[str, Baseline] = {}
        self._streak: Counter[str] = Counter()
        self._open: dict[tuple[str, str], Finding] = {}
        self._calm: Counter[tuple[str, str]] = Counter()
        self.findings: deque[Finding] = deque(maxlen=max_findings)
        self._ids = itertools.count(1)
        self._acc = Signals()
        self._window_start: float | None = None
        self.windows = 0              # windows scored so far
        self.raised: Counter[str] = Counter()   # findings opened, by kind (for metrics)

    # ---- input ------------------------------------------------------------------------------------------
    def observe(self, now: float, signals: Signals) -> list[Finding]:
        """Add counts seen up to ``now`` (seconds); returns findings opened by windows closed now."""
        if self._window_start is None:
            self._window_start = now
        opened: list[Finding] = []
        while now - self._window_start >= self.window:   # close every elapsed window (idle gaps count as 0)
            end = self._window_start + self.window
            opened += self._score(self._acc, end)
            self._acc = Signals()
            self._window_start = end
        self._acc.add(signals)
        return opened

    # ---- scoring ----------------------------------------------------------------------------------------
    def _score(self, s: Signals, t: float) -> list[Finding]:
        self.windows += 1
        hits: list[tuple[str, str, float, dict]] = []
        sources = {k for k in s.refused if k != "*"} | set(s.unknown_keys)
        series = {"handshake_flood": float(sum(s.refused.values())), "address_scan": float(len(sources)),
                  "unknown_keys": float(sum(s.unknown_keys.values())),
                  "registration_burst": float(s.registrations), "revocation_burst": float(s.revocations)}
        for kind, x in series.items():
            hit = self._judge(self._global, kind, kind, x)
            if hit:
                hits.append((kind, "network", x, hit))
        rule = self.rules["source_flood"]
        for source, n in (s.refused + s.unknown_keys).most_common(5):   # one source hammering the door
            if source != "*" and n >= rule.floor_per_s * self.window:
                hits.append(("source_flood", source, float(n), {"threshold": rule.floor_per_s * self.window}))
        for peer, n in s.traffic.items():
            hit = self._judge_peer(peer, float(n))
            if hit:
                hits.append(("exfiltration", peer, float(n), hit))
        for peer in list(self._streak):
            if peer not in s.traffic:
                self._streak.pop(peer)
        return self._update_findings(hits, t)

    def _judge(self, table: dict[str, Baseline], key: str, kind: str, x: float) -> dict | None:
        base = table.get(key)
        if base is None:
            base = table[key] = Baseline(self.history)
        threshold, med, sigma = base.threshold(self.rules[kind], self.window)
        if x >= threshold:
            return {"value": x, "threshold": round(threshold, 3), "median": med, "sigma": round(sigma, 3),
                    "window_s": self.window}
        base.values.append(x)
        return None

    def _judge_peer(self, peer: str, x: float) -> dict | None:
        base = self._peers.get(peer)
        if base is None:
            if len(self._peers) >= self.max_peers:   # bounded: the stalest peer's baseline goes
                self._peers.pop(next(iter(self._peers)))
            base = self._peers[peer] = Baseline(self.history)
        if len(base.values) < self.warmup:
            base.values.append(x)
            return None
        threshold, med, sigma = base.threshold(self.rules["exfiltration"], self.window)
        if x < threshold:
            self._streak.pop(peer, None)
            base.values.append(x)
            return None
        self._streak[peer] += 1
        if self._streak[peer] < self.persist:
            return None
        return {"value": x, "threshold": round(threshold, 1), "median": med, "sigma": round(sigma, 1),
                "ratio": round(x / med, 1) if med else None, "windows": self._streak[peer], "window_s": self.window}

    def _update_findings(self, hits: Iterable[tuple[str, str, float, dict]], t: float) -> list[Finding]:
        opened: list[Finding] = []
        seen: set[tuple[str, str]] = set()
        for kind, subject, x, evidence in hits:
            key = (kind, subject)
            seen.add(key)
            self._calm.pop(key, None)
            f = self._open.get(key)
            if f is not None:
                f.count += 1
                f.last_seen = t
                f.evidence = evidence
                continue
            f = Finding(next(self._ids), kind, SEVERITY[kind], subject, _summary(kind, subject, x, evidence),
                        evidence, ACTIONS[kind].format(subject=subject), first_seen=t, last_seen=t)
            self._open[key] = f
            self.findings.append(f)
            self.raised[kind] += 1
            opened.append(f)
        for key in list(self._open):
            if key in seen:
                continue
            self._calm[key] += 1
            if self._calm[key] >= self.quiet:
                self._open.pop(key).open = False
                self._calm.pop(key)
        return opened

    # ---- output -----------------------------------------------------------------------------------------
    def active(self) -> list[Finding]:
        return list(self._open.values())


def _summary(kind: str, subject: str, x: float, ev: dict) -> str:
    w = ev.get("window_s", 0)
    if kind == "exfiltration":
        return (f"peer {subject[:16]} moved {x / 1e6:.1f} MB in {w:.0f} s, {ev.get('ratio')}x its median "
                f"({ev['median'] / 1e6:.2f} MB)")
    if kind == "source_flood":
        return f"{int(x)} refused handshakes from {subject} in one window"
    what = {"handshake_flood": "refused handshakes", "address_scan": "distinct sources probing",
            "unknown_keys": "handshakes from unknown keys", "registration_burst": "device registrations",
            "revocation_burst": "device revocations"}[kind]
    return f"{int(x)} {what} in {w:.0f} s (normal: {ev['median']:.1f}, threshold {ev['threshold']:.1f})"
