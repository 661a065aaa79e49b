"""Sessions end to end in memory: handshake, trust, rejection of forged/replayed/misdirected frames,
close, keepalive and handshake timers (spec "Network Protocol Design", "Threat Model")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowmesh_client import crypto
from shadowmesh_client.errors import ProtocolError
from shadowmesh_client.protocol import (
    AuthenticationError,
    FrameFormatError,
    HandshakeError,
    Identity,
    NetworkBinding,
    NotEstablishedError,
    ProtocolConfig,
    ReplayError,
    Session,
    SessionClosedError,
    SessionEvent,
    SessionState,
    UntrustedPeerError,
    peek_header,
)

from .conftest import T0, handshake, make_pair

IP = b"\x45\x00\x00\x1c" + bytes(24)


def test_handshake_establishes_both_sides_and_carries_packets(pair):
    sa, sb = pair
    assert sa.is_established and sb.is_established
    r = sb.open(sa.seal_packets([IP, IP + b"!"], T0), T0)
    assert r.packets == [IP, IP + b"!"]
    assert sa.open(sb.seal_packets([b"pong"], T0), T0).packets == [b"pong"]
    assert sb.counters.delivered_packets == 2 and sb.counters.delivered_frames == 1
    assert sa.counters.handshakes == sb.counters.handshakes == 1


def test_handshake_events_and_one_round_trip(alice, bob, config):
    sa, sb = make_pair(alice, bob, config)
    init = sa.initiate(T0)
    assert sa.state is SessionState.INITIATING
    r = sb.open(init, T0)
    assert r.events == [SessionEvent.ESTABLISHED] and len(r.outgoing) == 1
    r2 = sa.open(r.outgoing[0], T0 + 0.05)
    assert r2.events == [SessionEvent.ESTABLISHED]
    # the initiator confirms at once, so the responder knows the initiator holds the key
    assert peek_header(r2.outgoing[0]).type.name == "KEEPALIVE"
    assert sb.open(r2.outgoing[0], T0 + 0.1).events == [SessionEvent.KEEPALIVE]


def test_frame_header_carries_the_sender_identity(pair, alice):
    sa, _ = pair
    assert peek_header(sa.seal_packets([IP], T0)).sender == alice.public_key


def test_packets_sent_before_the_handshake_are_queued_and_delivered(alice, bob, config):
    sa, sb = make_pair(alice, bob, config)
    frames = sa.send_packets([b"early-1"], T0) + sa.send_packets([b"early-2"], T0)
    assert len(frames) == 1 and peek_header(frames[0]).type.name == "HANDSHAKE_INIT"
    r = sb.open(frames[0], T0)
    flushed = sa.open(r.outgoing[0], T0).outgoing
    delivered = [p for f in flushed for p in sb.open(f, T0).packets]
    assert delivered == [b"early-1", b"early-2"]


def test_seal_before_handshake_raises_not_established(alice, bob, config):
    sa, _ = make_pair(alice, bob, config)
    with pytest.raises(NotEstablishedError):
        sa.seal_packets([IP], T0)


def test_responder_asks_the_directory_and_refuses_untrusted_peers(alice, bob, config):
    asked = []
    sa = Session(alice, bob.public_key, config, lambda k: True)
    sb = Session(bob, alice.public_key, config, lambda k: asked.append(k) or False)
    with pytest.raises(UntrustedPeerError):
        sb.open(sa.initiate(T0), T0)
    assert asked == [alice.public_key]
    assert not sb.is_established and sb.counters.dropped == 1


def test_initiator_refuses_a_response_from_an_untrusted_peer(alice, bob, config):
    trusted = {bob.public_key}
    sa = Session(alice, bob.public_key, config, lambda k: k in trusted)
    sb = Session(bob, alice.public_key, config, lambda k: True)
    r = sb.open(sa.initiate(T0), T0)
    trusted.clear()  # revoked between initiation and response
    with pytest.raises(UntrustedPeerError):
        sa.open(r.outgoing[0], T0)
    assert not sa.is_established


@pytest.mark.parametrize("other", [
    NetworkBinding(31337, "0x" + "42" * 20, "work"),  # other network id
    NetworkBinding(1, "0x" + "42" * 20, "home"),  # other chain
    NetworkBinding(31337, "0x" + "43" * 20, "home"),  # other registry
])
def test_a_handshake_for_another_directory_is_rejected(alice, bob, config, other):
    sa = Session(alice, bob.public_key, ProtocolConfig(other), lambda k: True)
    sb = Session(bob, alice.public_key, config, lambda k: True)
    with pytest.raises(AuthenticationError):
        sb.open(sa.initiate(T0), T0)


def test_signatures_are_bound_to_the_directory(alice, bob, binding):
    # Even with the handshake frame key out of the way, the signature itself fails under another binding.
    from shadowmesh_client.protocol import handshake as H

    header = H.build_header(1, 0, 0, alice.public_key, b"\0" * 24, H.INIT_SIZE)
    pending = H.create_initiation(alice, bob.public_key, binding.digest(), header, 1, crypto.deterministic_rng(b"x"))
    H.parse_initiation(bob, binding.digest(), header, pending.plaintext)  # verifies
    other = NetworkBinding(31337, "0x" + "42" * 20, "work").digest()
    with pytest.raises(AuthenticationError):
        H.parse_initiation(bob, other, header, pending.plaintext)


def test_an_initiation_for_another_device_is_rejected(alice, bob, config):
    carol = Identity.from_seed(b"\xc0" * 32)
    sa = Session(alice, bob.public_key, config, lambda k: True)
    sc = Session(carol, alice.public_key, config, lambda k: True)
    with pytest.raises(HandshakeError, match="addressed to another device"):
        sc.open(sa.initiate(T0), T0)


def test_a_replayed_initiation_is_rejected(alice, bob, config):
    sa, sb = make_pair(alice, bob, config)
    init = bytes(sa.initiate(T0))
    sb.open(init, T0)
    with pytest.raises(HandshakeError, match="replayed"):
        sb.open(init, T0 + 1)


def test_replayed_data_is_dropped_and_counted(pair):
    sa, sb = pair
    frame = bytes(sa.seal_packets([IP], T0))
    assert sb.open(frame, T0).packets == [IP]
    with pytest.raises(ReplayError):
        sb.open(frame, T0)
    assert sb.counters.replayed == 1 and sb.counters.dropped == 1 and sb.counters.delivered_packets == 1


def test_frames_from_another_peer_are_rejected(pair, bob, config):
    sa, sb = pair
    carol = Identity.from_seed(b"\xc0" * 32)
    sc = Session(bob, carol.public_key, config, lambda k: True)  # bob's session with carol gets alice's frame
    with pytest.raises(FrameFormatError, match="another device"):
        sc.open(sa.seal_packets([IP], T0), T0)


def test_frames_under_the_wrong_key_are_rejected(alice, bob, config):
    sa1, sb1 = make_pair(alice, bob, config)
    handshake(sa1, sb1)
    sa2 = Session(alice, bob.public_key, config, lambda k: True, rng=crypto.deterministic_rng(b"other"))
    sb2 = Session(bob, alice.public_key, config, lambda k: True, rng=crypto.deterministic_rng(b"other2"))
    handshake(sa2, sb2)
    with pytest.raises(AuthenticationError):
        sb1.open(sa2.seal_packets([IP], T0), T0)


def test_truncated_and_extended_frames_are_rejected(pair):
    sa, sb = pair
    frame = bytes(sa.seal_packets([IP], T0))
    for bad in (frame[:-1], frame[:79], frame + b"\0", b"", frame + b"\0" * (1 << 20)):
        with pytest.raises(ProtocolError):
            sb.open(bad, T0)
    assert sb.open(frame, T0).packets == [IP]  # the genuine frame still opens afterwards


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_bit_flip_is_rejected(data):
    a, b = Identity.from_seed(b"\xa1" * 32), Identity.from_seed(b"\xb0" * 32)
    config = ProtocolConfig(NetworkBinding(31337, "0x" + "42" * 20, "home"))
    sa, sb = make_pair(a, b, config)
    init = bytes(sa.initiate(T0))
    kind = data.draw(st.sampled_from(["init", "response", "data"]))
    if kind == "init":
        target, receiver = init, sb
    else:
        r = sb.open(init, T0)
        if kind == "response":
            target, receiver = bytes(r.outgoing[0]), sa
        else:
            for f in sa.open(r.outgoing[0], T0).outgoing:
                sb.open(f, T0)
            target, receiver = bytes(sa.seal_packets([IP, b"second"], T0)), sb
    bit = data.draw(st.integers(min_value=0, max_value=len(target) * 8 - 1))
    flipped = bytearray(target)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ProtocolError):
        receiver.open(bytes(flipped), T0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_open_on_arbitrary_bytes_only_raises_protocol_errors(junk):
    a, b = Identity.from_seed(b"\xa1" * 32), Identity.from_seed(b"\xb0" * 32)
    sa, sb = make_pair(a, b, ProtocolConfig(NetworkBinding(31337, "0x" + "42" * 20, "home")))
    for prefix in (b"", b"\x13\x00", b"\x11\x00\x00\x88"):
        with pytest.raises(ProtocolError):
            sb.open(prefix + junk, T0)


def test_close_frame_ends_the_session_on_both_sides(pair):
    sa, sb = pair
    frame = sa.close(T0)
    assert sa.state is SessionState.CLOSED
    r = sb.open(frame, T0)
    assert r.events == [SessionEvent.CLOSED] and sb.state is SessionState.CLOSED
    with pytest.raises(SessionClosedError):
        sb.open(sa.close(T0) or b"\0" * 80, T0)
    with pytest.raises(SessionClosedError):
        sb.seal_packets([IP], T0)
    assert sb.next_timer_at() is None


def test_close_before_handshake_returns_none(alice, bob, config):
    sa, _ = make_pair(alice, bob, config)
    assert sa.close(T0) is None and sa.state is SessionState.CLOSED


def test_passive_keepalive_after_receiving_without_sending(pair, config):
    sa, sb = pair
    sb.open(sa.seal_packets([IP], T0 + 1), T0 + 1)
    due = sb.next_timer_at()
    assert due == pytest.approx(T0 + 1 + config.keepalive_seconds)
    assert sb.on_timer(due - 0.5) == []
    (keepalive,) = sb.on_timer(due)
    assert sa.open(keepalive, due).events == [SessionEvent.KEEPALIVE]
    assert sb.on_timer(due + 1) == []  # only one keepalive per received burst


def test_persistent_keepalive(alice, bob, binding):
    cfg = ProtocolConfig(binding, persistent_keepalive_seconds=25.0)
    sa, sb = make_pair(alice, bob, cfg)
    handshake(sa, sb)
    assert sa.next_timer_at() <= T0 + 25.0
    frames = sa.on_timer(T0 + 25.0)
    assert len(frames) == 1 and sb.open(frames[0], T0 + 25.0).events == [SessionEvent.KEEPALIVE]


def test_handshake_is_retried_then_given_up(alice, bob, config):
    sa, sb = make_pair(alice, bob, config)
    sa.initiate(T0)
    assert sa.next_timer_at() == pytest.approx(T0 + config.handshake_retry_seconds)
    retry = sa.on_timer(T0 + config.handshake_retry_seconds)
    assert len(retry) == 1 and peek_header(retry[0]).type.name == "HANDSHAKE_INIT"
    # the retry (fresh ephemeral key) completes normally
    r = sb.open(retry[0], T0 + 6)
    assert sa.open(r.outgoing[0], T0 + 6).events == [SessionEvent.ESTABLISHED]
    lonely, _ = make_pair(alice, bob, config)
    lonely.initiate(T0)
    t = T0
    while lonely.next_timer_at() is not None:
        t = lonely.next_timer_at()
        lonely.on_timer(t)
    assert lonely.state is SessionState.FAILED and t == pytest.approx(T0 + config.handshake_give_up_seconds)
    # a failed session tries again when there is something to send, and then works
    (init,) = lonely.send_packets([b"again"], t + 1)
    assert lonely.state is SessionState.INITIATING and lonely.next_timer_at() is not None
    fresh = Session(bob, alice.public_key, config, lambda k: True)
    flushed = lonely.open(fresh.open(init, t + 1).outgoing[0], t + 1).outgoing
    assert fresh.open(flushed[0], t + 1).packets == [b"again"]


def test_dead_peer_triggers_a_new_handshake(pair, config):
    sa, sb = pair
    sa.seal_packets([IP], T0 + 1)  # lost: sb never answers, not even with a keepalive
    due = sa.next_timer_at()
    assert due == pytest.approx(T0 + 1 + config.keepalive_seconds + config.handshake_retry_seconds)
    (init,) = sa.on_timer(due)
    assert peek_header(init).type.name == "HANDSHAKE_INIT"


def test_simultaneous_initiation_settles_on_one_key(alice, bob, config):
    sa, sb = make_pair(alice, bob, config)
    ia, ib = sa.initiate(T0), sb.initiate(T0)
    out = sa.open(ib, T0).outgoing + sb.open(ia, T0).outgoing  # one side ignores, the other answers
    assert len(out) == 1
    receiver = sa if peek_header(out[0]).sender == bob.public_key else sb
    for f in receiver.open(out[0], T0).outgoing:
        (sb if receiver is sa else sa).open(f, T0)
    assert sa.is_established and sb.is_established
    assert sb.open(sa.seal_packets([IP], T0), T0).packets == [IP]
    assert sa.open(sb.seal_packets([IP], T0), T0).packets == [IP]


def test_peer_restart_recovers_with_a_new_handshake(pair, alice, bob, config):
    sa, sb = pair
    restarted = Session(alice, bob.public_key, config, lambda k: True, rng=crypto.deterministic_rng(b"reboot"))
    r = sb.open(restarted.initiate(T0 + 30), T0 + 30)
    confirm = restarted.open(r.outgoing[0], T0 + 30).outgoing
    assert SessionEvent.REKEYED in sb.open(confirm[0], T0 + 30).events
    assert restarted.open(sb.seal_packets([IP], T0 + 31), T0 + 31).packets == [IP]
    assert sb.open(restarted.seal_packets([b"back"], T0 + 31), T0 + 31).packets == [b"back"]


def test_identity_never_shows_its_seed(alice):
    seed = alice.seed_bytes()
    assert seed.hex() not in repr(alice) and seed.hex() not in str(alice)
    assert alice.public_key.hex() in repr(alice)
    assert Identity.from_seed(seed) == alice
    sig = alice.sign(b"msg")
    assert crypto.verify_signature(alice.public_key, b"msg", sig)
    assert not crypto.verify_signature(alice.public_key, b"msG", sig)
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(alice)
    with pytest.raises(ValueError):
        Identity.from_seed(b"short")


@pytest.mark.parametrize("point", [bytes(32), b"\x01" + bytes(31), bytes.fromhex(
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")])
def test_low_order_ephemeral_keys_are_refused(point):
    # a (signed, trusted) peer sending a small-order X25519 point must not yield a guessable key
    with pytest.raises(ProtocolError):
        crypto.x25519(b"\x11" * 32, point)
