"""The session-timer task (node/timers.py) as a heap of due times (issue 15: 5,000 peers): timers still
fire on their own (a rekey, with no wake-up and before any rescan), a woken subject costs one look however
many peers the table holds, old-style ``wake()`` calls are coalesced, and removed peers are forgotten."""

from __future__ import annotations

import asyncio

from shadowmesh_client.node.peers import PeerState, PeerTable, now
from shadowmesh_client.node.tasks import Spawner
from shadowmesh_client.node.timers import SessionTimers
from shadowmesh_client.protocol import Identity, NetworkBinding, ProtocolConfig, Session, SessionState
from tests.client.node.helpers import wait_for
from tests.client.node.test_node_inprocess import run

BINDING = NetworkBinding(chain_id=31337, registry="0x" + "22" * 20, network_id=3)


class _Recorder:
    name = "direct"
    up = True

    def __init__(self) -> None:
        self.sent: list = []

    def send_nowait(self, frame) -> bool:
        self.sent.append(frame)
        return True

    async def send(self, frame) -> None:
        self.sent.append(frame)


class _LoopPath:
    """A direct path whose far end is ``theirs`` (a Session) in this process: frames are answered at once."""

    name = "direct"
    up = True

    def __init__(self, peer: PeerState, theirs: Session) -> None:
        self.peer, self.theirs, self.sent = peer, theirs, 0

    def send_nowait(self, frame) -> bool:
        self.sent += 1
        for answer in self.theirs.open(frame, now()).outgoing:
            self.peer.session.open(answer, now())
        return True

    async def send(self, frame) -> None:
        self.send_nowait(frame)


def test_a_rekey_fires_from_the_heap_without_a_wake_or_a_rescan():
    config = ProtocolConfig(BINDING, rekey_after_seconds=0.3)

    async def scenario():
        me, other = Identity.generate(), Identity.generate()
        table = PeerTable(me, config, lambda k: True)
        peer = table.peer(other.public_key)
        theirs = Session(other, me.public_key, config, lambda k: True)
        peer.path = _LoopPath(peer, theirs)
        peer.path.send_nowait(peer.session.initiate(now()))
        assert peer.session.state is SessionState.ESTABLISHED
        async with asyncio.TaskGroup() as group:
            spawn = Spawner(group)
            timers = SessionTimers(table, spawn)
            t0 = now()
            spawn(timers.run(), "timers")
            await wait_for(lambda: peer.session.counters.rekeys >= 1, 3, "a rekey on the timer")
            assert now() - t0 < 0.9            # at ~0.3 s: from the heap entry, not the 1 s rescan
            assert timers.full_scans == 1      # only the first scan ran
            assert timers.fired >= 1
            spawn.cancel_all()

    run(scenario())


def test_a_woken_peer_costs_one_look_in_a_2000_peer_table():
    config = ProtocolConfig(BINDING, handshake_retry_seconds=5.0)

    async def scenario():
        me = Identity.generate()
        table = PeerTable(me, config, lambda k: True)
        peers = [table.peer(Identity.generate().public_key) for _ in range(2000)]
        async with asyncio.TaskGroup() as group:
            spawn = Spawner(group)
            timers = SessionTimers(table, spawn)
            spawn(timers.run(), "timers")
            await wait_for(lambda: timers.full_scans == 1, 2, "the first scan")
            assert timers.examined == 2000 and timers.next_at is None     # every session NEW: no timer
            base = timers.examined
            deadlines = []
            for p in peers[:100]:                  # 100 handshakes, one wake-up each
                t = now()
                p.session.initiate(t)
                deadlines.append(p.session.next_timer_at())
                timers.wake(p)
                await asyncio.sleep(0)             # the task runs once per change
            await wait_for(lambda: timers.next_at is not None, 1, "rescheduled")
            assert timers.full_scans == 1
            # one look per change, not one per peer in the table (the old scan: 100 x 2000)
            assert timers.examined - base <= 100
            assert timers.next_at == min(deadlines)
            spawn.cancel_all()

    run(scenario())


def test_wakes_without_a_subject_are_coalesced_into_few_scans():
    config = ProtocolConfig(BINDING, handshake_retry_seconds=5.0)

    async def scenario():
        me = Identity.generate()
        table = PeerTable(me, config, lambda k: True)
        peers = [table.peer(Identity.generate().public_key) for _ in range(200)]
        async with asyncio.TaskGroup() as group:
            spawn = Spawner(group)
            timers = SessionTimers(table, spawn)
            spawn(timers.run(), "timers")
            await wait_for(lambda: timers.full_scans == 1, 2, "the first scan")
            for p in peers:
                p.session.initiate(now())
                timers.wake()                      # old call sites: no subject
                await asyncio.sleep(0)
            # every handshake is seen (a coalesced rescan), with far fewer scans than wake-ups
            await wait_for(lambda: timers.next_at is not None and len(timers._due) == 200, 1, "all seen")
            assert timers.full_scans <= 4
            spawn.cancel_all()

    run(scenario())


def test_a_removed_peer_is_forgotten_not_fired():
    config = ProtocolConfig(BINDING, handshake_retry_seconds=0.1)

    async def scenario():
        me = Identity.generate()
        table = PeerTable(me, config, lambda k: True)
        gone, kept = (table.peer(Identity.generate().public_key) for _ in range(2))
        async with asyncio.TaskGroup() as group:
            spawn = Spawner(group)
            timers = SessionTimers(table, spawn)
            spawn(timers.run(), "timers")
            await wait_for(lambda: timers.full_scans == 1, 2, "the first scan")
            for p in (gone, kept):
                p.path = _Recorder()
                p.session.initiate(now())
                timers.wake(p)
            await asyncio.sleep(0)
            table.remove(gone.key)
            await wait_for(lambda: len(kept.path.sent) >= 2, 2, "the kept peer's retries")
            assert gone not in timers._due and not gone.path.sent   # its entry was dropped, never fired
            spawn.cancel_all()

    run(scenario())
