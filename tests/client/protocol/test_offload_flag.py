"""The OFFLOAD capability (issue 17, frames.Flags.OFFLOAD): offered in the signed handshake flags, learned
from the peer's fresh handshake, kept across rekeys, and required before an offload-form DATA frame is
sent or accepted."""

from __future__ import annotations

import dataclasses

import pytest

from shadowmesh_client import crypto
from shadowmesh_client.protocol import (
    AuthenticationError,
    FrameFormatError,
    Session,
    SessionEvent,
    peek_header,
)

from .conftest import T0, make_pair

OFFLOAD, PHASE = 0x08, 0x02
PACKETS = [b"\x45" + bytes(range(60)), b"\x45\x00" + b"super" * 3000]


def _cfgs(config, a: bool, b: bool):
    return dataclasses.replace(config, offload=a), dataclasses.replace(config, offload=b)


def _handshake(sa, sb, now=T0):
    """The full handshake; returns the initiation, response and confirmation frames."""
    init = sa.initiate(now)
    (resp,) = sb.open(init, now).outgoing
    (confirm,) = sa.open(resp, now).outgoing
    sb.open(confirm, now)
    return init, resp, confirm


def _run_until(sa, sb, until):
    """Call every due timer, in time order, up to ``until``, delivering every frame (a lossless link);
    returns the (type name, flags) of the frames sent."""
    kinds = []
    while True:
        due = [(t, i) for i, s in enumerate((sa, sb)) if (t := s.next_timer_at()) is not None and t <= until]
        if not due:
            return kinds
        now, i = min(due)
        queue = [(1 - i, f) for f in (sa, sb)[i].on_timer(now)]
        while queue:
            to, frame = queue.pop(0)
            kinds.append((peek_header(frame).type.name, peek_header(frame).flags))
            queue.extend((1 - to, f) for f in (sa, sb)[to].open(frame, now).outgoing)


def test_both_offer_offload_and_carry_offload_form_frames(alice, bob, config):
    sa, sb = make_pair(alice, bob, *_cfgs(config, True, True))
    assert not sa.peer_offload and not sb.peer_offload  # nothing learned before a handshake
    init, resp, confirm = _handshake(sa, sb)
    assert init[1] & OFFLOAD and resp[1] & OFFLOAD
    assert peek_header(init).type.name == "HANDSHAKE_INIT" and peek_header(resp).type.name == "HANDSHAKE_RESPONSE"
    assert not confirm[1] & OFFLOAD  # the capability lives in the handshake only
    assert sa.peer_offload and sb.peer_offload
    frame = sa.seal_packets(PACKETS, T0, offload=True)
    assert frame[1] & OFFLOAD and peek_header(frame).type.name == "DATA"
    r = sb.open(frame, T0)
    assert r.offload is True and r.packets == PACKETS
    plain = sb.seal_packets([b"ordinary"], T0)
    assert not plain[1] & OFFLOAD
    r = sa.open(plain, T0)
    assert r.offload is False and r.packets == [b"ordinary"]
    back = sa.open(sb.seal_packets(PACKETS[:1], T0, offload=True), T0)
    assert back.offload is True and back.packets == PACKETS[:1]


def test_no_offer_no_flag(alice, bob, config):
    sa, sb = make_pair(alice, bob, *_cfgs(config, False, False))
    init, resp, _ = _handshake(sa, sb)
    assert not init[1] & OFFLOAD and not resp[1] & OFFLOAD
    assert not sa.peer_offload and not sb.peer_offload
    for s in (sa, sb):
        with pytest.raises(ValueError):
            s.seal_packets([b"x"], T0, offload=True)


@pytest.mark.parametrize("initiator_offers", [True, False])
def test_one_side_offers(alice, bob, config, initiator_offers):
    sa, sb = make_pair(alice, bob, *_cfgs(config, initiator_offers, not initiator_offers))
    init, resp, _ = _handshake(sa, sb)
    assert bool(init[1] & OFFLOAD) is initiator_offers and bool(resp[1] & OFFLOAD) is not initiator_offers
    offering, plain = (sa, sb) if initiator_offers else (sb, sa)
    assert offering.peer_offload is False and plain.peer_offload is True
    sent = offering.counters.sent_frames
    with pytest.raises(ValueError):
        offering.seal_packets([b"x"], T0, offload=True)
    assert offering.counters.sent_frames == sent  # nothing was sealed, no sequence number spent
    # the non-offering side may send offload form to the side that offered
    r = offering.open(plain.seal_packets(PACKETS, T0, offload=True), T0)
    assert r.offload and r.packets == PACKETS
    # a (buggy or hostile) peer that sends offload form anyway: the frame authenticates but is refused
    offering.peer_offload = True
    forced = offering.seal_packets([b"forced"], T0, offload=True)
    dropped, delivered = plain.counters.dropped, plain.counters.delivered_packets
    with pytest.raises(FrameFormatError, match="offload"):
        plain.open(forced, T0)
    assert plain.counters.dropped == dropped + 1 and plain.counters.delivered_packets == delivered
    # the session itself is unharmed: ordinary frames still flow
    assert plain.open(offering.seal_packets([b"after"], T0), T0).packets == [b"after"]


def test_offload_flag_on_a_data_frame_is_authenticated(alice, bob, config):
    sa, sb = make_pair(alice, bob, *_cfgs(config, True, True))
    _handshake(sa, sb)
    for offload in (False, True):
        frame = sa.seal_packets([b"p"], T0, offload=offload)
        frame[1] ^= OFFLOAD
        with pytest.raises(AuthenticationError):
            sb.open(frame, T0)
    assert sb.counters.delivered_packets == 0


@pytest.mark.parametrize("which", ["init", "response"])
def test_flipping_offload_on_a_handshake_frame_breaks_it(alice, bob, config, which):
    for offers in ((True, True), (False, False), (True, False)):
        sa, sb = make_pair(alice, bob, *_cfgs(config, *offers))
        init = sa.initiate(T0)
        if which == "init":
            init[1] ^= OFFLOAD
            with pytest.raises(AuthenticationError):
                sb.open(init, T0)
            assert not sb.is_established and sb.peer_offload is False
            continue
        (resp,) = sb.open(init, T0).outgoing
        resp[1] ^= OFFLOAD
        with pytest.raises(AuthenticationError):
            sa.open(resp, T0)
        assert not sa.is_established and sa.peer_offload is False


def test_peer_offload_survives_rekeys(alice, bob, config):
    cfg_a, cfg_b = _cfgs(config, True, False)
    sa, sb = make_pair(alice, bob, cfg_a, cfg_b)
    _handshake(sa, sb)
    assert sa.peer_offload is False and sb.peer_offload is True
    now = T0
    for n in range(1, 4):
        now += config.rekey_after_seconds + 1  # past the age threshold of the current key
        kinds = _run_until(sa, sb, now)
        assert [k for k, _ in kinds if k == "REKEY"] == ["REKEY", "REKEY"]
        assert "HANDSHAKE_INIT" not in [k for k, _ in kinds]
        assert not any(flags & OFFLOAD for _, flags in kinds)  # REKEY frames do not restate it
        assert sa.counters.rekeys == n and sb.counters.rekeys == n
        assert sa.peer_offload is False and sb.peer_offload is True
        r = sa.open(sb.seal_packets(PACKETS, now, offload=True), now)  # under the new key
        assert r.offload and r.packets == PACKETS
        assert sb.open(sa.seal_packets([b"reply"], now), now).packets == [b"reply"]  # bob hears back
        with pytest.raises(ValueError):
            sa.seal_packets([b"x"], now, offload=True)


def test_rekey_on_message_count_keeps_it_too(alice, bob, config):
    cfg_a, cfg_b = _cfgs(dataclasses.replace(config, rekey_after_messages=5, reject_after_messages=50), True, True)
    sa, sb = make_pair(alice, bob, cfg_a, cfg_b)
    _handshake(sa, sb)
    delivered = []
    for i in range(30):
        queue = [(1, f) for f in sa.send_packets([bytes([i + 1])], T0)]
        while queue:
            to, frame = queue.pop(0)
            r = (sa, sb)[to].open(frame, T0)
            delivered += r.packets if to == 1 else []
            queue.extend((1 - to, f) for f in r.outgoing)
        assert sa.peer_offload and sb.peer_offload
        assert sb.open(sa.seal_packets([b"o"], T0, offload=True), T0).offload
    assert sa.counters.rekeys >= 3
    assert delivered == [bytes([i + 1]) for i in range(30)]


def _restart(identity, peer, cfg, seed: bytes) -> Session:
    return Session(identity, peer.public_key, cfg, lambda k: True, rng=crypto.deterministic_rng(seed))


def test_a_restarted_peer_that_no_longer_offers_is_relearned(alice, bob, config):
    cfg_on, cfg_off = _cfgs(config, True, False)
    sa, sb = make_pair(alice, bob, cfg_on, cfg_on)
    _handshake(sa, sb)
    assert sa.peer_offload and sb.peer_offload
    now = T0 + config.rekey_after_seconds + 1
    _run_until(sa, sb, now)
    assert sa.counters.rekeys == 1 and sa.peer_offload
    # bob restarts without offload and handshakes afresh: alice, as responder, learns it at once
    now += 10
    sb2 = _restart(bob, alice, cfg_off, b"rng-b-restarted")
    init, resp, _ = _handshake(sb2, sa, now)
    assert not init[1] & OFFLOAD and resp[1] & OFFLOAD
    assert sa.peer_offload is False and sb2.peer_offload is True
    with pytest.raises(ValueError):
        sa.seal_packets([b"x"], now, offload=True)
    assert sb2.open(sa.seal_packets([b"plain"], now), now).packets == [b"plain"]
    # bob restarts once more, offering again; this time alice initiates: she learns it from the response
    now += 10
    sb3 = _restart(bob, alice, cfg_on, b"rng-b-again")
    init, resp, _ = _handshake(sa, sb3, now)
    assert init[1] & OFFLOAD and resp[1] & OFFLOAD
    assert sa.peer_offload is True and sb3.peer_offload is True
    r = sb3.open(sa.seal_packets(PACKETS, now, offload=True), now)
    assert r.offload and r.packets == PACKETS


def test_a_fresh_handshake_between_established_sessions_relearns(alice, bob, config):
    sa, sb = make_pair(alice, bob, *_cfgs(config, True, True))
    _handshake(sa, sb)
    # alice's side restarts without offload; bob's session is still established and answers her
    now = T0 + 5
    sa2 = _restart(alice, bob, dataclasses.replace(config, offload=False), b"rng-a-restarted")
    init = sa2.initiate(now)
    r = sb.open(init, now)
    assert sb.peer_offload is False  # learned from the verified initiation, before the key is confirmed
    (resp,) = r.outgoing
    (confirm,) = sa2.open(resp, now).outgoing
    assert SessionEvent.REKEYED in sb.open(confirm, now).events
    assert sa2.peer_offload is True
    r = sb.open(sa2.seal_packets(PACKETS, now, offload=True), now)  # bob still offers: accepted
    assert r.offload and r.packets == PACKETS
    with pytest.raises(ValueError):
        sb.seal_packets([b"y"], now, offload=True)
    sb.peer_offload = True  # forced: refused by alice's new session, which never offered
    with pytest.raises(FrameFormatError):
        sa2.open(sb.seal_packets([b"y"], now, offload=True), now)
    assert sa2.open(sb.seal_packets([b"z"], now), now).packets == [b"z"]
