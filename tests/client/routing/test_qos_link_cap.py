"""routing/qos.py ``link_cap`` (off by default; ``LINK_BULK_CAP``): with a cap, bulk is handed to a link
only while the link holds less than the cap (``Link.buffered_bytes``), on the fast path and in the drain;
interactive packets go at once, ahead of the bulk held back (issue 14 "QoS", docs/routing.md)."""

from __future__ import annotations

import asyncio

from shadowmesh_client.routing.qos import LINK_BULK_CAP, QosSender
from tests.client.node.helpers import ipv4, wait_for
from tests.client.node.test_node_inprocess import run


class _Link:
    def __init__(self) -> None:
        self.buffered_bytes = 0


class _Path:
    """A direct path with room, whose link reports ``buffered_bytes`` as the test sets it."""

    name = "direct"
    up = True

    def __init__(self) -> None:
        self.link = _Link()
        self.sent: list[bytes] = []

    def send_nowait(self, frame) -> bool:
        self.sent.append(frame)
        return True

    async def send(self, frame) -> None:
        self.sent.append(frame)


class _Peer:
    key = b"\x01" * 32

    def __init__(self) -> None:
        self.path = _Path()

    def select(self) -> None:
        pass


def _seal(peer, packets: list) -> list:
    return [b"".join(packets)]          # one frame per batch, its bytes the packets (tests read them back)


BULK = ipv4("100.64.0.1", "100.64.0.2", bytes(1200), proto=6)       # > 256 B, no interactive port
PING = ipv4("100.64.0.1", "100.64.0.2", bytes(56), proto=1)         # small: interactive


def test_bulk_waits_for_the_link_cap_and_interactive_goes_first():
    async def scenario():
        qos, peer = QosSender(_seal, link_cap=LINK_BULK_CAP), _Peer()
        sent = peer.path.sent
        async with asyncio.TaskGroup() as group:
            task = group.create_task(qos.run())
            await asyncio.sleep(0)
            qos.send(peer, [BULK])                        # below the cap: the fast path, at once
            assert sent == [BULK]
            peer.path.link.buffered_bytes = LINK_BULK_CAP  # the link holds the cap: bulk is held back
            qos.send(peer, [BULK])
            qos.send(peer, [BULK, BULK])
            await asyncio.sleep(0.02)
            assert sent == [BULK] and qos.cap_waits >= 1
            qos.send(peer, [PING])                        # interactive: sent although the link is full
            await wait_for(lambda: PING in sent, 1, "the ping")
            assert sent == [BULK, PING]
            peer.path.link.buffered_bytes = 0             # the link drained: the held bulk follows, in order
            await wait_for(lambda: len(sent) == 4, 1, "the bulk")
            assert sent[2:] == [BULK, BULK + BULK]
            assert qos.counters()["qos_dropped"] == 0
            task.cancel()

    run(scenario())


def test_without_a_cap_bulk_goes_to_a_link_with_room_at_once():
    async def scenario():
        qos, peer = QosSender(_seal), _Peer()         # the default: no cap
        peer.path.link.buffered_bytes = 10 * LINK_BULK_CAP
        async with asyncio.TaskGroup() as group:
            task = group.create_task(qos.run())
            await asyncio.sleep(0)
            qos.send(peer, [BULK])
            qos.send(peer, [BULK])
            assert peer.path.sent == [BULK, BULK] and qos.cap_waits == 0
            task.cancel()

    run(scenario())
