"""Regression tests from the protocol review (docs/protocol.md "Review notes"): each failed before its fix."""

from __future__ import annotations

import pytest

from shadowmesh_client import crypto
from shadowmesh_client.errors import ConfigError
from shadowmesh_client.protocol import (
    FrameFormatError,
    HandshakeError,
    Identity,
    NetworkBinding,
    ProtocolConfig,
    SessionEvent,
    peek_header,
)
from shadowmesh_client.protocol import handshake as H

from .conftest import T0, handshake, make_pair


def test_responder_flushes_its_queue_when_the_initiator_confirms_the_new_key(alice, bob, binding):
    # alice's key is used up (she queues) and her REKEY is lost; bob starts a fresh handshake, alice
    # answers it as responder and switches key on bob's confirmation: her queued packets must go out then.
    tight = ProtocolConfig(binding, rekey_after_messages=3, reject_after_messages=4)
    sa, sb = make_pair(alice, bob, tight, ProtocolConfig(binding))
    handshake(sa, sb)  # alice's confirmation keepalive used seq 0
    for i in (1, 2):
        for frame in sa.send_packets([bytes([i])], T0):
            if peek_header(frame).type.name == "DATA":
                assert sb.open(frame, T0).packets == [bytes([i])]
            # the REKEY initiation riding along is lost
    assert sa.send_packets([b"queued"], T0) == []  # key used up, rekey pending: held back
    response = sa.open(sb.initiate(T0 + 1), T0 + 1).outgoing  # bob's fresh handshake reaches alice
    (confirmation,) = sb.open(response[0], T0 + 1).outgoing
    r = sa.open(confirmation, T0 + 1)
    assert SessionEvent.REKEYED in r.events
    delivered = [p for f in r.outgoing for p in sb.open(f, T0 + 1).packets]
    assert delivered == [b"queued"]
    later = sa.send_packets([b"later"], T0 + 2)
    assert [p for f in later for p in sb.open(f, T0 + 2).packets] == [b"later"]


@pytest.mark.parametrize("bad", [[b""], [b"x" * 65537], [b"ok", b""]])
def test_invalid_packets_are_refused_at_once_even_before_the_handshake(alice, bob, config, bad):
    # queued packets are sealed when the handshake completes; a bad one must not blow up in open()
    sa, sb = make_pair(alice, bob, config)
    (init,) = sa.send_packets([b"first"], T0)
    with pytest.raises(FrameFormatError):
        sa.send_packets(bad, T0)
    r = sb.open(init, T0)
    flushed = sa.open(r.outgoing[0], T0).outgoing
    assert [p for f in flushed for p in sb.open(f, T0).packets] == [b"first"]


def test_a_response_from_another_device_than_the_addressee_is_refused(alice, bob, binding):
    # finish_initiation on its own (not only Session's sender check) binds the response to the device
    # the initiation named: carol, answering alice's initiation to bob with a valid signature, is refused
    carol = Identity.from_seed(b"\xc0" * 32)
    digest = binding.digest()
    rng = crypto.deterministic_rng(b"misbinding")
    header = H.build_header(1, 0, 0, alice.public_key, rng(24), H.INIT_SIZE)
    pending = H.create_initiation(alice, bob.public_key, digest, header, 1, rng)
    rheader = H.build_header(2, 0, 0, carol.public_key, rng(24), H.RESPONSE_SIZE)
    body, _ = H.create_response(carol, digest, header, pending.plaintext, pending.plaintext[32:64], rheader, rng)
    with pytest.raises(HandshakeError, match="another device"):
        H.finish_initiation(pending, digest, rheader, body)


def test_a_replayed_initiation_is_refused_before_any_signature_check(alice, bob, config, monkeypatch):
    # a replay costs the responder one AEAD open, not an Ed25519 verification (DoS cost)
    sa, sb = make_pair(alice, bob, config)
    init = bytes(sa.initiate(T0))
    sb.open(init, T0)
    calls = []
    real = crypto.verify_signature
    monkeypatch.setattr(crypto, "verify_signature", lambda *a: calls.append(1) or real(*a))
    with pytest.raises(HandshakeError, match="replayed"):
        sb.open(init, T0 + 1)
    assert calls == []


def test_a_network_id_that_looks_like_hex_but_is_not_is_a_config_error():
    with pytest.raises(ConfigError, match="network id"):
        NetworkBinding(1, "0x" + "42" * 20, "0x" + "zz" * 32)


# ---- an outsider who knows the (public) network binding: the handshake frame key is no secret ----------

def _mallory():
    return Identity.from_seed(b"\x66" * 32)


def test_a_forged_response_signed_by_another_key_is_refused(alice, bob, binding, config):
    # Mallory sits on the path, opens alice's initiation with the public handshake key and answers it as
    # "bob" with her own ephemeral key, signed with her own identity: alice must not establish with her.
    from shadowmesh_client.protocol import AuthenticationError
    from shadowmesh_client.protocol import frames as F

    sa, sb = make_pair(alice, bob, config)
    init = bytes(sa.initiate(T0))
    hs_key, digest = binding.handshake_key(), binding.digest()
    plaintext = F.open_payload(init, hs_key)
    rng = crypto.deterministic_rng(b"mallory")
    nonce = rng(24)
    rheader = H.build_header(2, 0, 0, bob.public_key, nonce, H.RESPONSE_SIZE)
    body, _ = H.create_response(_mallory(), digest, init[:64], plaintext, bytes(plaintext[32:64]), rheader, rng)
    forged = bytes(F.seal(2, 0, 0, bob.public_key, nonce, body, hs_key))
    with pytest.raises(AuthenticationError, match="signature"):
        sa.open(forged, T0)
    assert not sa.is_established
    r = sb.open(init, T0)  # the genuine response still completes the handshake
    assert sa.open(r.outgoing[0], T0).events == [SessionEvent.ESTABLISHED]


def test_a_forged_initiation_neither_establishes_nor_locks_out_the_real_peer(alice, bob, binding, config):
    # a forged initiation "from alice" with the largest timestamp must fail on its signature and must not
    # raise the replay floor, or one forged frame would lock alice out for good
    from shadowmesh_client.protocol import AuthenticationError
    from shadowmesh_client.protocol import frames as F

    sa, sb = make_pair(alice, bob, config)
    rng = crypto.deterministic_rng(b"mallory")
    nonce = rng(24)
    header = H.build_header(1, 0, 0, alice.public_key, nonce, H.INIT_SIZE)
    pending = H.create_initiation(_mallory(), bob.public_key, binding.digest(), header, 2**64 - 1, rng)
    forged = bytes(F.seal(1, 0, 0, alice.public_key, nonce, pending.plaintext, binding.handshake_key()))
    with pytest.raises(AuthenticationError, match="signature"):
        sb.open(forged, T0)
    assert not sb.is_established
    r = sb.open(sa.initiate(T0), T0)
    assert r.events == [SessionEvent.ESTABLISHED]


def test_the_directory_is_asked_again_at_rekey(alice, bob, config):
    from shadowmesh_client.protocol import UntrustedPeerError

    trusted = {alice.public_key, bob.public_key}
    sa, sb = make_pair(alice, bob, config, trusted=lambda k: k in trusted)
    handshake(sa, sb)
    trusted.discard(alice.public_key)  # the directory revokes alice mid-session
    (rekey,) = sa.on_timer(T0 + config.rekey_after_seconds)
    assert peek_header(rekey).type.name == "REKEY"
    with pytest.raises(UntrustedPeerError):
        sb.open(rekey, T0 + config.rekey_after_seconds)
    assert sb.counters.rekeys == 0


def test_nonces_never_repeat_and_keys_differ_per_direction_and_generation(alice, bob, binding):
    # every frame of both directions across many rekeys, keepalives (seq > 0) and a close: all nonces
    # distinct; a key sends in one direction only, and no two generations share a key
    from .test_protocol_rekey import Wire

    cfg = ProtocolConfig(binding, rekey_after_messages=20, reject_after_messages=40)
    sa, sb = make_pair(alice, bob, cfg)
    frames, keypairs = [], []
    wire = Wire(sa, sb)
    original = wire.sessions

    class Tap:  # records every frame a session hands out, whatever produced it
        def __init__(self, s):
            self.s = s

        def __getattr__(self, name):
            attr = getattr(self.s, name)
            if name in ("open", "send_packets", "on_timer", "initiate"):
                def wrapped(*a):
                    result = attr(*a)
                    out = result.outgoing if name == "open" else (
                        [result] if name == "initiate" else result)
                    frames.extend(bytes(f) for f in out)
                    return result
                return wrapped
            return attr

    wire.sessions = tuple(Tap(s) for s in original)
    now = T0
    wire.send(0, [frames.append(bytes(f)) or f for f in [sa.initiate(now)]], now)
    for i in range(240):
        now += 0.01
        wire.send(0, wire.sessions[0].send_packets([b"a%d" % i], now), now)
        if i % 3 == 0:
            wire.send(1, wire.sessions[1].send_packets([b"b%d" % i], now), now)
        if i % 7 == 0:
            now += cfg.keepalive_seconds + 0.5  # passive keepalives come due
            wire.tick(now)
        for s in original:
            keypairs.extend(kp for kp in (s._current, s._next, s._previous) if kp is not None)
    frames.append(bytes(sa.close(now)))
    session_frames = [f for f in frames if f[0] & 0x0F >= 3]
    keepalives_later = [f for f in session_frames if f[0] & 0x0F == 4 and int.from_bytes(f[4:8], "big") > 0]
    assert sa.counters.rekeys + sb.counters.rekeys >= 10 and len(keepalives_later) >= 5
    nonces = [f[40:64] for f in frames]
    assert len(set(nonces)) == len(nonces), "a nonce was used twice"
    for f in session_frames:
        assert f[60:64] == f[4:8], "session nonce must end with the frame's sequence number"
    unique = {id(kp): kp for kp in keypairs}.values()
    sends = [kp.send_key for kp in unique]
    assert len(set(sends)) == len(sends), "two key generations (or both sides) send under one key"
    assert all(kp.send_key != kp.recv_key for kp in unique)
