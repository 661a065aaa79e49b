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
