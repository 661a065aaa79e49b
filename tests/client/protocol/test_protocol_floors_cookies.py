"""Replay floors that outlive a Session (protocol/floors.py) and handshake cookies (protocol/cookie.py),
issue 12. Pure: a fake clock, seeded identities."""

from __future__ import annotations

import pytest

from shadowmesh_client.protocol import HandshakeError, Session
from shadowmesh_client.protocol.cookie import (
    COOKIE_SECONDS,
    CookieJar,
    encode_reply,
    parse_reply,
    split_hello,
    with_cookie,
)
from shadowmesh_client.protocol.floors import HandshakeFloors
from tests.client.protocol.conftest import T0


def _trusted(key: bytes) -> bool:
    return True


def test_a_replayed_initiation_is_refused_by_a_new_session_sharing_the_floors(alice, bob, config):
    floors = HandshakeFloors(600.0)
    a = Session(alice, bob.public_key, config, _trusted)
    hello = bytes(a.initiate(T0))
    b1 = Session(bob, alice.public_key, config, _trusted, floors=floors)
    assert b1.open(hello, T0).outgoing            # answered once
    b1.close(T0 + 1)
    b2 = Session(bob, alice.public_key, config, _trusted, floors=floors)   # "after the session closed"
    with pytest.raises(HandshakeError):
        b2.open(hello, T0 + 2)
    # Without shared floors (the old behaviour) a new Session answered the replay: what the floors fix.
    assert Session(bob, alice.public_key, config, _trusted).open(hello, T0 + 2).outgoing
    # A fresh initiation from the same peer still works.
    a2 = Session(alice, bob.public_key, config, _trusted)
    assert b2.open(bytes(a2.initiate(T0 + 3)), T0 + 3).outgoing


def test_floors_are_stored_before_the_response_and_reload(alice, bob, config):
    stored: list[tuple[bytes, int]] = []

    class Spy(HandshakeFloors):
        def raise_to(self, key, ts):
            super().raise_to(key, ts)
            stored.append((key, ts))

    floors = Spy(600.0, on_raise=lambda k, ts: None)
    a = Session(alice, bob.public_key, config, _trusted)
    hello = bytes(a.initiate(T0))
    Session(bob, alice.public_key, config, _trusted, floors=floors).open(hello, T0)
    assert stored == [(alice.public_key, int(T0 * 1e9))]
    restarted = HandshakeFloors(600.0)
    restarted.load(floors.items())           # what relay/floors.py does at start-up
    with pytest.raises(HandshakeError):
        Session(bob, alice.public_key, config, _trusted, floors=restarted).open(hello, T0 + 30)


def test_freshness_window_refuses_old_initiations_and_prunes(alice, bob, config):
    floors = HandshakeFloors(60.0)
    hello = bytes(Session(alice, bob.public_key, config, _trusted).initiate(T0))
    with pytest.raises(HandshakeError):       # 61 s later, nothing stored: refused by the window alone
        Session(bob, alice.public_key, config, _trusted, floors=floors).open(hello, T0 + 61)
    assert Session(bob, alice.public_key, config, _trusted, floors=floors).open(hello, T0 + 59).outgoing
    assert len(floors) == 1 and floors.prune(T0 + 30) == 0 and floors.prune(T0 + 61) == 1 and len(floors) == 0


def test_cookie_trailer_and_reply_round_trip_and_rotation():
    frame = bytes(range(216))
    assert split_hello(frame) == (frame, None)
    cookie = bytes(16)
    assert split_hello(with_cookie(frame, cookie)) == (frame, cookie)
    assert parse_reply(encode_reply(cookie)) == cookie and parse_reply(frame[:18]) is None
    seeds = iter(range(1, 100))
    jar = CookieJar(lambda n: bytes([next(seeds)]) * n, T0)
    c = jar.cookie_for(b"10.0.0.1", T0)
    assert jar.check(b"10.0.0.1", c, T0) and not jar.check(b"10.0.0.2", c, T0)
    assert jar.check(b"10.0.0.1", c, T0 + COOKIE_SECONDS)          # previous secret still valid
    assert not jar.check(b"10.0.0.1", c, T0 + 2 * COOKIE_SECONDS)  # two rotations later: expired


def test_packets_queued_during_the_handshake_leave_in_spec_sized_frames(alice, bob, config):
    a, b = Session(alice, bob.public_key, config, _trusted), Session(bob, alice.public_key, config, _trusted)
    packets = [bytes([i]) * 1_400 for i in range(100)]
    out = a.send_packets(packets, T0)              # queued; out = [HANDSHAKE_INIT]
    response = b.open(out[0], T0).outgoing[0]
    flushed = a.open(response, T0).outgoing
    assert len(flushed) >= 3 and all(len(f) - 80 <= 0xFFFF and not f[1] & 0x80 for f in flushed)
    assert [p for f in flushed for p in b.open(f, T0).packets] == packets
