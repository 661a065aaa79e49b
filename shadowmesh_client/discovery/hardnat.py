"""Direct paths through one symmetric NAT: the birthday technique over TCP, its pure parts (issue 15).

A NAT with address-and-port-dependent mapping ("hard", lab/nat.py SYM) gives every flow a random public
port, so the address a relay observes is useless to the peer; if the peer's NAT also filters by (address,
port) (PDF), no SYN from an unpredicted port gets in and plain simultaneous open fails. The way through
(tailscale's "hard NAT" note does it over UDP; this is the TCP form, written from the idea):

* the HARD side opens ``HARD_SOCKETS`` flows, each from its own ephemeral port, to the EASY side's one
  mapped address (endpoint-independent mapping: the address every relay sees); each flow gets a random
  public port and a NAT entry that admits the one (address, port) it went to;
* the EASY side sends ``GUESSES`` SYNs from its single punch port to distinct random ports of the hard
  side's public IP (distinct 4-tuples on one bound port: SO_REUSEADDR/SO_REUSEPORT); each opens a filter
  entry in its own NAT for that (address, port);
* a guess equal to one of the hard side's public ports is a collision: the SYNs of that 4-tuple pass both
  NATs (TCP simultaneous open, or the easy side's listener takes the hard side's SYN retransmission). With
  n flows and m guesses over the ``PORT_SPACE`` ports of a Linux ``masquerade random``, one round succeeds
  with probability 1 - ((S - m)/S)^n ~ 1 - exp(-n m / S): 256 x 1024 over 64,512 ports: 98.3 %; the
  caller retries a failed round (independent ports) with its backoff.

Roles: a device calls itself hard when a relay saw its punch port mapped to another port (``is_hard``: a
symmetric NAT, or an endpoint-independent NAT that does not preserve ports, for which the technique costs
sockets but is harmless). Both sides say so in CANDIDATES (discovery/messages.py flags ``hard`` and
``birthday``: "I can do this"); the round runs only if both can and exactly one is hard (``role``). A node
or relay that does not know the flags sends or forwards none: plain simultaneous open and the relay path,
as before. Two hard sides stay relayed (n flows and m guesses would be needed on both ends).

Cost and abuse. Only a trusted device of the same network reaches this (CANDIDATES arrive sealed in a
session, and the service drops those of keys that are not PEERs of the network), but that device chooses
the addresses it offers: a malicious member could point our SYNs at a third party. Bounds: at most one
round at a time per node, at most ``BUDGET_ROUNDS`` rounds per ``BUDGET_SECONDS`` (``Budget``), at most
``GUESSES`` SYNs per easy round at ``SYN_RATE`` per second, at most ``HARD_SOCKETS`` x 3 SYNs per hard
round (TCP_SYNCNT 2), at most ``MAX_OPEN`` sockets open at once, and a round only after plain simultaneous
open failed for ``HARD_DELAY`` seconds. So one member can make a node send at most 6 x 1,024 SYNs a minute
(~100/s on average, 512/s peak) to an address of its choosing.

Pure: no sockets, no clock of its own (``now`` is passed in). The I/O lives in discovery/punch.py.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from enum import Enum

PORT_LO = 1024
PORT_HI = 65535
PORT_SPACE = PORT_HI - PORT_LO + 1
"""Ports a Linux ``masquerade random`` picks from for a source port >= 1024 (nf_nat_l4proto_unique_tuple)."""

HARD_SOCKETS = 256
"""Flows the hard side opens per round (sockets, each its own ephemeral local port)."""
GUESSES = 1024
"""SYNs the easy side sends per round, each to a distinct guessed port of the hard side's public IP."""
SYN_RATE = 512.0
"""Initial SYNs per second, either side (kernel retransmissions of the hard flows come on top: 2 each)."""
HOLD_SECONDS = 0.5
"""Seconds the easy side keeps each guess socket open (its NAT entry outlives it; the listener takes late SYNs)."""
MAX_OPEN = 320
"""Sockets a round keeps open at once, at most."""
HARD_DELAY = 1.0
"""Seconds plain simultaneous open gets before a round starts (it suffices when the easy side's filter
does not depend on the port: EIF, ADF)."""
HARD_SYNCNT = 2
"""TCP_SYNCNT of the hard side's flows: SYN at 0, 1 s and 3 s (the retransmissions meet late guesses)."""
BUDGET_ROUNDS = 6
BUDGET_SECONDS = 60.0


class Role(Enum):
    HARD = "hard"      # we open many flows to the peer's one mapped address
    EASY = "easy"      # we guess many ports of the peer's public address from our one mapped port


def is_hard(local_port: int, observed: Iterable[tuple[str, int]]) -> bool:
    """Whether our NAT maps the punch port to another port (per destination, or at least not preserved)."""
    return any(port != local_port for _, port in observed)


def role(me_hard: bool, me_capable: bool, peer_hard: bool, peer_capable: bool) -> Role | None:
    """Our part in a birthday round, or None (no round: plain simultaneous open and the relay only)."""
    if not (me_capable and peer_capable) or me_hard == peer_hard:
        return None
    return Role.HARD if me_hard else Role.EASY


def guess_ports(rng: random.Random, count: int, exclude: Iterable[int] = ()) -> list[int]:
    """``count`` distinct ports of [PORT_LO, PORT_HI], uniformly drawn, none in ``exclude`` (ports the peer's
    candidates already name: plain simultaneous open tries those)."""
    skip = {p for p in exclude if PORT_LO <= p <= PORT_HI}
    count = max(0, min(count, PORT_SPACE - len(skip)))
    out: list[int] = []
    seen = set(skip)
    while len(out) < count:
        p = rng.randint(PORT_LO, PORT_HI)
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def success_probability(flows: int = HARD_SOCKETS, guesses: int = GUESSES, space: int = PORT_SPACE) -> float:
    """Chance that one round collides: some guess equals some flow's random port (ports drawn uniformly)."""
    if guesses >= space:
        return 1.0
    return 1.0 - math.exp(flows * math.log1p(-guesses / space))


def schedule(count: int, rate: float = SYN_RATE, batch: int = 4) -> list[tuple[float, int, int]]:
    """Pacing: (seconds after the round's start, first index, end index) for each batch of ``count`` SYNs.
    Small batches: when the easy side's filter admits any port of the hard side's IP (ADF), every flow of a
    batch connects at once, and the round stops adding flows only after the first connection."""
    out = []
    for i in range(0, count, batch):
        out.append((i / rate, i, min(i + batch, count)))
    return out


class Budget:
    """At most ``rounds`` rounds per ``seconds`` (a sliding window), and one at a time. Pure: takes ``now``."""

    def __init__(self, rounds: int = BUDGET_ROUNDS, seconds: float = BUDGET_SECONDS) -> None:
        self.rounds = rounds
        self.seconds = seconds
        self._started: list[float] = []
        self.active = False
        self.refused = 0

    def begin(self, now: float) -> bool:
        self._started = [t for t in self._started if now - t < self.seconds]
        if self.active or len(self._started) >= self.rounds:
            self.refused += 1
            return False
        self._started.append(now)
        self.active = True
        return True

    def end(self) -> None:
        self.active = False
