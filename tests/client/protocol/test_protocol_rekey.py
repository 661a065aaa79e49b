"""Rekey (spec "Ed25519 Key Management": every 24 h or 1 GB; and before the 32-bit sequence wraps):
the old key keeps opening frames for the grace period, both sides agree, and no packet is lost."""

from __future__ import annotations

import pytest

from shadowmesh_client.protocol import (
    AuthenticationError,
    NotEstablishedError,
    ProtocolConfig,
    SessionEvent,
    peek_header,
)

from .conftest import T0, handshake, make_pair


class Wire:
    """Delivers frames between two sessions in order, feeding every reply back (a lossless link)."""

    def __init__(self, sa, sb):
        self.sessions = (sa, sb)
        self.delivered = ([], [])  # packets received by sa, by sb
        self.events = ([], [])

    def send(self, index: int, frames: list, now: float) -> None:
        queue = [(1 - index, f) for f in frames]
        while queue:
            to, frame = queue.pop(0)
            r = self.sessions[to].open(frame, now)
            self.delivered[to].extend(r.packets)
            self.events[to].extend(r.events)
            queue.extend((1 - to, f) for f in r.outgoing)

    def tick(self, now: float) -> None:
        for i, s in enumerate(self.sessions):
            due = s.next_timer_at()
            if due is not None and due <= now:
                self.send(i, s.on_timer(now), now)


def test_rekey_before_the_sequence_number_runs_out_loses_nothing(alice, bob, binding):
    cfg = ProtocolConfig(binding, rekey_after_messages=20, reject_after_messages=40)
    sa, sb = make_pair(alice, bob, cfg)
    handshake(sa, sb)
    wire = Wire(sa, sb)
    sent_a, sent_b = [], []
    now = T0
    for i in range(300):
        now += 0.01
        pa, pb = f"a{i}".encode(), f"b{i}".encode()
        sent_a.append(pa)
        sent_b.append(pb)
        wire.send(0, sa.send_packets([pa], now), now)
        wire.send(1, sb.send_packets([pb], now), now)
        wire.tick(now)
    assert wire.delivered[1] == sent_a and wire.delivered[0] == sent_b
    assert sa.counters.rekeys + sb.counters.rekeys >= 10
    assert SessionEvent.REKEYED in wire.events[0] and SessionEvent.REKEYED in wire.events[1]


def test_rekey_after_24_hours_with_grace_for_the_old_key(pair, config):
    sa, sb = pair
    rekey_at = T0 + config.rekey_after_seconds
    assert sa.next_timer_at() == pytest.approx(rekey_at)  # the initiator of the key rekeys on age
    assert sb.next_timer_at() > rekey_at  # the responder only as a fallback
    old_from_b = bytes(sb.seal_packets([b"in flight under the old key"], rekey_at))
    late_from_b = bytes(sb.seal_packets([b"too late"], rekey_at))
    (rekey,) = sa.on_timer(rekey_at)
    assert peek_header(rekey).type.name == "REKEY"
    (response,) = sb.open(rekey, rekey_at).outgoing
    r = sa.open(response, rekey_at)
    assert r.events == [SessionEvent.REKEYED]
    # sa sends under the new key at once; the old key still opens frames during the grace period
    assert sa.open(old_from_b, rekey_at + 1).packets == [b"in flight under the old key"]
    with pytest.raises(AuthenticationError):  # ...but not after it
        sa.open(late_from_b, rekey_at + config.grace_seconds + 1)
    # sb switches when the initiator's confirmation arrives
    assert SessionEvent.REKEYED in sb.open(r.outgoing[0], rekey_at).events
    new = sb.seal_packets([b"new key"], rekey_at + 2)
    assert peek_header(new).flags & 0x02 != peek_header(old_from_b).flags & 0x02  # KEY_PHASE flipped
    assert sa.open(new, rekey_at + 2).packets == [b"new key"]


def test_rekey_after_a_gigabyte_is_configurable(alice, bob, binding):
    cfg = ProtocolConfig(binding, rekey_after_bytes=100_000)
    sa, sb = make_pair(alice, bob, cfg)
    handshake(sa, sb)
    packet = b"\x45" * 1400
    for _ in range(70):
        sb.open(sa.seal_packets([packet], T0), T0)
    assert sa.next_timer_at() <= T0  # due now
    wire = Wire(sa, sb)
    wire.tick(T0)
    assert sa.counters.rekeys == 1 and sb.counters.rekeys == 1


def test_exhausted_key_queues_until_the_rekey_completes(alice, bob, binding):
    cfg = ProtocolConfig(binding, rekey_after_messages=5, reject_after_messages=8)
    sa, sb = make_pair(alice, bob, cfg)
    handshake(sa, sb)  # the confirmation keepalive used seq 0
    frames = []
    for i in range(7):
        frames += sa.send_packets([bytes([i + 1])], T0)  # the rekey initiation rides along at seq 5
    with pytest.raises(NotEstablishedError, match="used up"):
        sa.seal_packets([b"x"], T0)
    queued = sa.send_packets([b"queued"], T0)
    assert queued == []  # held back, not lost
    wire = Wire(sa, sb)
    wire.send(0, frames, T0)  # delivers data, the REKEY request, and the response comes back
    assert wire.delivered[1] == [bytes([i + 1]) for i in range(7)] + [b"queued"]


def test_simultaneous_rekeys_settle_on_one_key(pair, config):
    sa, sb = pair
    t = T0 + config.rekey_after_seconds + 3 * config.handshake_retry_seconds
    ra, rb = sa.on_timer(t), sb.on_timer(t)
    assert len(ra) == len(rb) == 1
    wire = Wire(sa, sb)
    wire.send(0, ra, t)
    wire.send(1, rb, t)
    assert sa.counters.rekeys == 1 and sb.counters.rekeys == 1
    assert sb.open(sa.seal_packets([b"x"], t), t).packets == [b"x"]
    assert sa.open(sb.seal_packets([b"y"], t), t).packets == [b"y"]


def test_a_rekey_crossing_a_fresh_handshake_settles_on_the_fresh_one(pair, config):
    """A's REKEY and B's fresh HANDSHAKE_INIT (B re-handshakes, e.g. after 15 s of silence) cross on the
    wire. The fresh handshake wins on both sides: B ignores the REKEY, A answers the INIT, and neither
    side is left holding an answer to a handshake it forgot (which cost a retry round trip before)."""
    sa, sb = pair
    t = T0 + config.rekey_after_seconds + 3 * config.handshake_retry_seconds
    (rekey,) = sa.on_timer(t)
    init = sb.initiate(t)
    from_b = sb.open(rekey, t).outgoing      # B: its own fresh handshake is pending, the REKEY is ignored
    from_a = sa.open(init, t).outgoing       # A: answers the fresh INIT, dropping its own REKEY
    assert from_b == [] and len(from_a) == 1
    wire = Wire(sa, sb)
    wire.send(0, from_a, t)                  # the response completes B's handshake; B confirms at once
    assert sb.open(sa.seal_packets([b"x"], t + 0.1), t + 0.1).packets == [b"x"]
    assert sa.open(sb.seal_packets([b"y"], t + 0.1), t + 0.1).packets == [b"y"]
    assert sa.counters.rekeys == sb.counters.rekeys == 1   # one new key, in use on both sides
