"""Signed endpoint records and the bounded store: forged records are ignored, floods evict no one."""

from __future__ import annotations

import dataclasses

import pytest

from shadowmesh_client.crypto import Identity
from shadowmesh_client.discovery import messages as m
from shadowmesh_client.discovery.kademlia import DhtNode
from shadowmesh_client.discovery.records import DiscoveryError, RecordKind, decode, sign
from shadowmesh_client.discovery.store import RecordStore, Verdict

NET = bytes(32)
OTHER_NET = bytes([1]) * 32
NOW = 1_700_000_000.0


def rec(ident, seq=1, *, network=NET, expires=NOW + 600, **kw):
    return sign(ident, RecordKind.DEVICE, network, seq, int(expires), **kw)


@pytest.fixture
def members():
    return [Identity.generate() for _ in range(5)]


@pytest.fixture
def store(members):
    trusted = {i.public_key for i in members}
    return RecordStore(trusted.__contains__, NET, capacity=50, per_source=10)


def test_record_round_trips_and_checks():
    a = Identity.generate()
    r = rec(a, 7, endpoints=("ws://a:7000/x", "tcp:198.51.100.7:40000"), relays=(bytes(32),), load=12, price=3)
    raw = r.encode()
    back = decode(raw)
    assert back == r and back.candidates() == [("198.51.100.7", 40000)]
    back.check(NET, NOW)
    with pytest.raises(DiscoveryError):
        decode(raw[:-1])
    with pytest.raises(DiscoveryError):
        decode(raw + b"\0")


def test_forged_records_are_ignored(members, store):
    a, b = members[0], members[1]
    assert store.put(rec(a, 5).encode(), a.public_key, NOW) is Verdict.STORED
    outsider = Identity.generate()
    assert store.put(rec(outsider).encode(), outsider.public_key, NOW) is Verdict.UNTRUSTED     # untrusted key
    tampered = bytearray(rec(b, 1, endpoints=("tcp:1.2.3.4:5",)).encode())
    tampered[-70] ^= 1                                                                        # wrong signature
    assert store.put(bytes(tampered), b.public_key, NOW) is Verdict.INVALID
    # b's key but signed by a: the signature is a's, the key field b's
    forged = dataclasses.replace(rec(a, 9), public_key=b.public_key)
    assert store.put(forged.encode(), a.public_key, NOW) is Verdict.INVALID
    assert store.put(rec(a, 4).encode(), a.public_key, NOW) is Verdict.STALE                  # older sequence
    assert store.put(rec(a, 5, endpoints=("tcp:9.9.9.9:9",)).encode(), a.public_key, NOW) is Verdict.STALE
    assert store.put(rec(b, 1, network=OTHER_NET).encode(), b.public_key, NOW) is Verdict.INVALID  # other network
    assert store.put(rec(b, 1, expires=NOW - 1).encode(), b.public_key, NOW) is Verdict.INVALID   # expired
    assert store.put(rec(b, 1, expires=NOW + 10 * 3600).encode(), b.public_key, NOW) is Verdict.INVALID  # immortal
    assert store.get(a.public_key, NOW).seq == 5 and store.get(b.public_key, NOW) is None
    assert store.put(rec(a, 6).encode(), a.public_key, NOW) is Verdict.REPLACED              # newer replaces


def test_revoked_key_record_is_no_longer_served(members):
    trusted = {i.public_key for i in members}
    s = RecordStore(trusted.__contains__, NET)
    a = members[0]
    s.put(rec(a).encode(), a.public_key, NOW)
    trusted.discard(a.public_key)
    assert s.get(a.public_key, NOW) is None and len(s) == 0


def test_flood_from_one_trusted_key_evicts_no_one(members, store):
    for i in members:
        store.put(rec(i, 1).encode(), i.public_key, NOW)
    flooder = members[0]
    for seq in range(2, 300):                                    # its own key, ever newer: replaces itself
        store.put(rec(flooder, seq).encode(), flooder.public_key, NOW)
    assert len(store) == len(members)
    assert all(store.get(i.public_key, NOW).seq == 1 for i in members[1:])
    assert store.get(flooder.public_key, NOW).seq == 299


def test_flood_from_untrusted_keys_evicts_no_one(members, store):
    for i in members:
        store.put(rec(i, 1).encode(), i.public_key, NOW)
    attacker_records = [rec(Identity.generate()).encode() for _ in range(200)]
    verdicts = {store.put(r, members[0].public_key, NOW) for r in attacker_records}
    assert verdicts == {Verdict.UNTRUSTED} and store.refused["untrusted"] == 200
    assert len(store) == len(members) and all(store.get(i.public_key, NOW) for i in members)


def test_source_quota_and_capacity_never_evict_live_records():
    idents = [Identity.generate() for _ in range(40)]
    trusted = {i.public_key for i in idents}
    s = RecordStore(trusted.__contains__, NET, capacity=20, per_source=5)
    source = idents[0].public_key
    verdicts = [s.put(rec(i).encode(), source, NOW) for i in idents[1:10]]     # other keys' genuine records
    assert verdicts.count(Verdict.STORED) == 5 and verdicts.count(Verdict.SOURCE_FULL) == 4
    for i in idents[10:25]:                                                    # each device stores its own
        s.put(rec(i).encode(), i.public_key, NOW)
    assert len(s) == 20
    late = idents[30]
    assert s.put(rec(late).encode(), late.public_key, NOW) is Verdict.FULL    # full of live records: refused
    short = idents[31]
    trusted_keys_before = set(s.keys())
    trusted.discard(idents[10].public_key)                                   # one revoked: its slot frees
    assert s.put(rec(short).encode(), short.public_key, NOW) is Verdict.STORED
    assert set(s.keys()) == (trusted_keys_before - {idents[10].public_key}) | {short.public_key}


def test_dht_node_serves_only_checked_records_and_trusted_servers(members):
    trusted = {i.public_key for i in members}
    me = members[0]
    node = DhtNode(m.Contact(me.public_key, "relay-0"), NET, trusted.__contains__)
    a = members[1]
    stranger = Identity.generate()
    assert node.handle(m.Contact(a.public_key, "a"), m.Store(rec(a).encode(), 1), NOW).verdict is Verdict.STORED
    node.handle(m.Contact(stranger.public_key, "s"), m.Ping(2), NOW)
    assert a.public_key in node.table and stranger.public_key not in node.table   # only trusted servers
    got = node.handle(None, m.FindValue(a.public_key, 3), NOW)
    assert isinstance(got, m.Value) and decode(got.record).public_key == a.public_key
    miss = node.handle(None, m.FindValue(members[2].public_key, 4), NOW)
    assert isinstance(miss, m.Nodes) and [c.key for c in miss.contacts] == [a.public_key]


@pytest.mark.parametrize("msg", [
    m.Ping(1), m.Pong(2), m.FindNode(bytes(range(32)), 3), m.FindValue(bytes(32), 4), m.Store(b"x" * 40, 5),
    m.Nodes((m.Contact(bytes(32), "r1"), m.Contact(bytes([1]) * 32, "")), 6),
    m.Value(b"rec", (m.Contact(bytes(32)),), 7),
    m.Stored(Verdict.SOURCE_FULL, 8), m.Observed("203.0.113.9", 40001),
    m.Candidates(bytes([7]) * 32, (("203.0.113.9", 40001), ("10.0.0.2", 5)), True),
])
def test_messages_round_trip(msg):
    raw = m.encode(msg)
    assert m.is_discovery(raw) and m.decode(raw) == msg
    if isinstance(msg, m.Store):       # the record runs to the end of the message
        return
    with pytest.raises(DiscoveryError):
        m.decode(raw + b"\0")
