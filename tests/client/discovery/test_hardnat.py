"""The birthday round's pure parts (discovery/hardnat.py): role choice, port guesses, pacing, budget, and the
CANDIDATES flags that carry a side's NAT (discovery/messages.py)."""

from __future__ import annotations

import random

import pytest

from shadowmesh_client.discovery import hardnat as h
from shadowmesh_client.discovery import messages as m
from shadowmesh_client.discovery.hardnat import Role

PEER = bytes([9]) * 32


@pytest.mark.parametrize("observed, hard", [
    ([], False),                                              # nothing observed yet: no claim
    ([("203.0.113.5", 4000)], False),                         # port preserved (EIM, Linux masquerade)
    ([("203.0.113.5", 51234)], True),                         # one relay saw another port
    ([("203.0.113.5", 4000), ("203.0.113.5", 4000)], False),
    ([("203.0.113.5", 4000), ("203.0.113.5", 40999)], True),  # two relays, two ports: maps per destination
])
def test_is_hard(observed, hard):
    assert h.is_hard(4000, observed) is hard


@pytest.mark.parametrize("me_hard, me_can, peer_hard, peer_can, expected", [
    (True, True, False, True, Role.HARD),
    (False, True, True, True, Role.EASY),
    (False, True, False, True, None),        # both easy: plain simultaneous open suffices
    (True, True, True, True, None),          # both symmetric: stays relayed
    (True, True, False, False, None),        # the peer does not know the technique (old node or old relay)
    (False, False, True, True, None),        # we do not (the in-memory puncher)
])
def test_role(me_hard, me_can, peer_hard, peer_can, expected):
    assert h.role(me_hard, me_can, peer_hard, peer_can) is expected
    if expected is not None:                 # the two sides always take opposite parts
        assert h.role(peer_hard, peer_can, me_hard, me_can) is not expected


def test_guess_ports_distinct_in_range_and_skip_known():
    rng = random.Random(7)
    known = {5000, 40001, 80}
    ports = h.guess_ports(rng, h.GUESSES, known)
    assert len(ports) == h.GUESSES == len(set(ports))
    assert all(h.PORT_LO <= p <= h.PORT_HI for p in ports)
    assert not known & set(ports)
    assert h.guess_ports(random.Random(7), 10) == h.guess_ports(random.Random(7), 10)   # the rng decides


def test_guess_ports_cannot_exceed_the_space():
    ports = h.guess_ports(random.Random(1), h.PORT_SPACE + 10, {h.PORT_LO})
    assert len(ports) == h.PORT_SPACE - 1 and h.PORT_LO not in ports


def test_guesses_look_uniform():
    ports = h.guess_ports(random.Random(3), 4000)
    halves = sum(p < h.PORT_LO + h.PORT_SPACE // 2 for p in ports)
    assert 1800 < halves < 2200


def test_success_probability_matches_a_simulation():
    p = h.success_probability()
    assert 0.98 < p < 0.99                                   # 256 flows x 1,024 guesses over 64,512 ports
    assert h.success_probability(1, 1) == pytest.approx(1 / h.PORT_SPACE)
    assert h.success_probability(guesses=h.PORT_SPACE) == 1.0
    rng = random.Random(11)                                  # the round as the NATs play it, scaled down
    space, flows, guesses, trials = 2000, 40, 100, 2000
    hits = 0
    for _ in range(trials):
        nat_ports = {rng.randrange(space) for _ in range(flows)}
        hits += bool(nat_ports & set(rng.sample(range(space), guesses)))
    assert abs(hits / trials - h.success_probability(flows, guesses, space)) < 0.04


def test_schedule_paces_every_syn_once():
    plan = h.schedule(1000, rate=500.0, batch=16)
    covered = [i for _, a, b in plan for i in range(a, b)]
    assert covered == list(range(1000))
    assert plan[0][0] == 0.0 and plan[-1][0] == pytest.approx(992 / 500.0)
    assert all(b - a <= 16 for _, a, b in plan)


def test_budget_one_at_a_time_and_per_window():
    b = h.Budget(rounds=2, seconds=60.0)
    assert b.begin(0.0)
    assert not b.begin(1.0)                                  # one at a time
    b.end()
    assert b.begin(2.0)
    b.end()
    assert not b.begin(3.0) and b.refused == 2               # two per minute
    assert b.begin(61.0)


def test_candidates_flags_round_trip_and_old_decoders_ignore_them():
    msg = m.Candidates(PEER, (("203.0.113.9", 40001),), answer=True, hard=True, birthday=True)
    raw = m.encode(msg)
    assert m.decode(raw) == msg
    flags = raw[6 + 32]
    assert flags == 0b111
    old_view = bool(flags & 1)                               # what a decoder before the flags read
    assert old_view is True
    plain = m.Candidates(PEER, (("203.0.113.9", 40001),))
    assert m.encode(plain)[6 + 32] == 0 and m.decode(m.encode(plain)) == plain


def test_puncher_builds_and_learns_flags():
    from shadowmesh_client.discovery.punch import TcpPuncher
    from shadowmesh_client.transport import LinkLimits

    p = TcpPuncher(4000, LinkLimits())
    offer = p.candidates(PEER, [("203.0.113.5", 51234)], False)
    assert offer.hard and offer.birthday and p.me_hard
    p.learn(m.Candidates(PEER, (("198.51.100.7", 4100),), True, hard=False, birthday=True))
    assert p._role(PEER) is Role.HARD
    assert p._role(PEER) is None                             # a hint serves one punch
    p.candidates(PEER, [("203.0.113.5", 4000)], False)
    p.learn(m.Candidates(PEER, (), True, hard=True, birthday=True))
    assert p._role(PEER) is Role.EASY
