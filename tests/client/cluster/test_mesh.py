"""The member mesh in-process (MemoryTransport): authentication, presence, one-hop forwarding, member death."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from shadowmesh_client.crypto import Identity
from shadowmesh_client.relay import open_delivery
from shadowmesh_client.relay.cluster import RemoteRoute, wire
from tests.client.cluster.helpers import cluster_lab
from tests.client.relay.helpers import wait_for

BINDING = b"31337:0xregistry:1"


# ---- wire and authentication (pure) --------------------------------------------------------------------------
def test_hello_and_welcome_authenticate_members_holding_the_relay_key():
    relay = Identity.generate()
    now = time.time()
    hello = wire.make_hello(relay, BINDING, b"A" * 16, now, b"n" * 16)
    opened = wire.open_hello(hello, relay.public_key, BINDING, now + 1)
    assert opened.member_id == b"A" * 16
    welcome = wire.make_welcome(relay, BINDING, b"B" * 16, opened)
    assert wire.open_welcome(welcome, relay.public_key, BINDING, opened) == b"B" * 16


@pytest.mark.parametrize("case", ["other key", "other network", "too old", "too new", "tampered", "short"])
def test_hello_refused(case):
    relay, other = Identity.generate(), Identity.generate()
    now = time.time()
    signer, binding, t = relay, BINDING, now
    if case == "other key":
        signer = other
    elif case == "other network":
        binding = b"1:0xregistry:1"
    elif case == "too old":
        t = now - wire.HELLO_WINDOW_SECONDS - 1
    elif case == "too new":
        t = now + wire.HELLO_WINDOW_SECONDS + 1
    hello = bytearray(wire.make_hello(signer, binding, b"A" * 16, t, b"n" * 16))
    if case == "tampered":
        hello[5] ^= 1
    if case == "short":
        hello = hello[:-1]
    with pytest.raises(wire.ClusterWireError):
        wire.open_hello(bytes(hello), relay.public_key, BINDING, now)


def test_welcome_must_answer_our_nonce():
    relay = Identity.generate()
    now = time.time()
    ours = wire.open_hello(wire.make_hello(relay, BINDING, b"A" * 16, now, b"1" * 16), relay.public_key, BINDING, now)
    old = wire.open_hello(wire.make_hello(relay, BINDING, b"A" * 16, now, b"2" * 16), relay.public_key, BINDING, now)
    replayed = wire.make_welcome(relay, BINDING, b"B" * 16, old)
    with pytest.raises(wire.ClusterWireError):
        wire.open_welcome(replayed, relay.public_key, BINDING, ours)


def test_nonce_cache_refuses_replays_and_stays_bounded():
    cache = wire.NonceCache(capacity=4)
    assert cache.fresh(b"a", 0.0) and not cache.fresh(b"a", 1.0)
    for i in range(10):
        assert cache.fresh(bytes([i]) * 2, 2.0)
    assert len(cache._seen) <= 4


def test_presence_messages_are_chunked_and_round_trip():
    keys = [os.urandom(32) for _ in range(100)]
    messages = wire.encode_presence(wire.PRESENT, keys, 32 * 30 + 1)
    assert len(messages) == 4 and all(len(m) <= 32 * 30 + 1 for m in messages)
    assert [k for m in messages for k in wire.decode_presence(m)[1]] == keys
    with pytest.raises(wire.ClusterWireError):
        wire.decode_presence(b"\x01" + b"x" * 31)


# ---- the mesh in-process -------------------------------------------------------------------------------------
async def test_members_form_a_full_mesh_and_refuse_a_stranger():
    async with cluster_lab(3) as lab:
        for m in lab.members:
            assert len(m.mesh.dialed) == 2
        stranger = Identity.generate()
        m0 = lab.members[0].mesh
        hello = wire.make_hello(stranger, m0.binding, os.urandom(16), time.time(), os.urandom(16))
        assert m0._authenticate(hello) is None
        good = wire.make_hello(lab.relay.identity, m0.binding, os.urandom(16), time.time(), os.urandom(16))
        assert m0._authenticate(good) is not None
        assert m0._authenticate(good) is None          # a replayed hello
        assert m0.refused == 2


async def test_presence_and_one_hop_forwarding_between_members():
    async with cluster_lab(3) as lab:
        a, b = lab.device(), lab.device()
        lab.registry.sync()
        await a.connect(0)
        await b.connect(2)
        m0, m2 = lab.members[0], lab.members[2]
        await wait_for(lambda: m0.mesh.where.get(b.key) == m2.mesh.member_id, what="presence of b at member 0")
        assert type(m0.core.link_of(b.key)) is RemoteRoute
        assert type(lab.members[1].core.link_of(a.key)) is RemoteRoute   # everyone knows everyone
        frame = await a.forward(b)
        env = await b.recv_deliver()
        source, inner = open_delivery(env.encode())
        assert source == a.key and bytes(inner) == frame
        frame = await b.forward(a, 2000)
        env = await a.recv_deliver()
        assert env.key == b.key and bytes(env.inner) == frame
        assert m0.mesh.sent_frames == 1 and m2.mesh.received_frames == 1
        assert lab.members[1].mesh.received_frames == 0       # no detour through a third member
        # Each member bills only the devices it holds: member 0 counted a's bytes, not b's.
        m0.daemon._account()
        m2.daemon._account()
        assert m0.daemon.totals[a.key][0] > 0 and m0.daemon.totals.get(b.key, [0, 0, 0, 0])[2] == 0
        assert m2.daemon.totals[b.key][2] > 0 and m2.daemon.totals.get(a.key, [0, 0, 0, 0])[0] == 0


async def test_a_frame_is_never_forwarded_a_second_hop():
    async with cluster_lab(3) as lab:
        a, b = lab.device(), lab.device()
        lab.registry.sync()
        await a.connect(0)
        await b.connect(2)
        m1 = lab.members[1]
        await wait_for(lambda: b.key in m1.mesh.where, what="presence at member 1")
        # Member 0 hands member 1 a frame for b (which member 1 does not hold): member 1 must not pass it on.
        m1.mesh._on_forward(lab.members[0].mesh.member_id,
                            wire.forward_from_deliver(b.key, b"\x02" + a.key + bytes(100)))
        assert m1.mesh.drops["not_here"] == 1 and lab.members[2].mesh.received_frames == 0


async def test_a_device_that_moves_is_reached_at_its_new_member():
    async with cluster_lab(3) as lab:
        a, b = lab.device(), lab.device()
        lab.registry.sync()
        await a.connect(0)
        await b.connect(1)
        m0 = lab.members[0]
        await wait_for(lambda: m0.mesh.where.get(b.key) == lab.members[1].mesh.member_id, what="b at member 1")
        await b.link.close()
        await b.connect(2)
        await wait_for(lambda: m0.mesh.where.get(b.key) == lab.members[2].mesh.member_id
                       and m0.core.link_of(b.key).member == lab.members[2].mesh.member_id, what="b at member 2")
        frame = await a.forward(b)
        assert bytes((await b.recv_deliver()).inner) == frame
        # And to the member it left, b is now a remote device, not a local one.
        assert type(lab.members[1].core.link_of(b.key)) is RemoteRoute


async def test_member_death_its_devices_reconnect_elsewhere_and_traffic_resumes():
    async with cluster_lab(3) as lab:
        a, b = lab.device(), lab.device()
        lab.registry.sync()
        await a.connect(0)
        await b.connect(1)
        m0, m1 = lab.members[0], lab.members[1]
        await wait_for(lambda: b.key in m0.mesh.where, what="b known at member 0")
        await m1.kill()
        # Member 0 forgets member 1 and every route to it at once.
        await wait_for(lambda: m1.mesh.member_id not in m0.mesh.dialed and b.key not in m0.core,
                       what="member 1's routes gone")
        assert b.link.closed
        await b.connect(2)            # the load balancer sends it to a live member
        await wait_for(lambda: m0.mesh.where.get(b.key) == lab.members[2].mesh.member_id, what="b at member 2")
        frame = await a.forward(b)
        assert bytes((await b.recv_deliver()).inner) == frame
        status = m0.daemon.status()["cluster"]
        assert status["devices_local"] == 1 and status["members_linked"] == [lab.members[2].mesh.member_id.hex()]


async def test_a_restarted_member_rejoins_with_a_new_id_and_learns_presence():
    async with cluster_lab(2) as lab:
        a = lab.device()
        lab.registry.sync()
        await a.connect(0)
        m1 = lab.members[1]
        old_id = m1.mesh.member_id
        await m1.kill()
        from tests.client.cluster.helpers import Member

        lab.members[1] = Member(lab, 1)
        await lab.members[1].start()
        await lab.meshed()
        assert lab.members[1].mesh.member_id != old_id
        await wait_for(lambda: a.key in lab.members[1].mesh.where, what="a announced to the new member")
        assert old_id not in lab.members[0].mesh.held


async def test_shutdown_leaves_no_task_behind():
    async with cluster_lab(2):
        pass
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}
