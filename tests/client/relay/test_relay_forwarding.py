"""The relay's forwarding path (issue 17): frames go out from the reader with ``send_nowait`` while the
destination's link has room (no writer task per frame); a link without room gets one writer task that
sends the rest IN ORDER once the device reads again. RelayServer over MemoryTransport, in process."""

from __future__ import annotations

import asyncio

from shadowmesh_client.relay import RelayConfig, decode, encode_forward
from shadowmesh_client.relay.server import RelayServer
from shadowmesh_client.transport import ClientConfig, LinkLimits, ServerConfig
from shadowmesh_client.transport.memory import MemoryTransport
from tests.client.relay.helpers import inner_frame, wait_for

A, B = bytes([1]) * 32, bytes([2]) * 32
URL = "ws://relay.test:7443/r"


async def _relay(write_limit: int):
    """A relay whose links to devices buffer at most ``write_limit`` unread bytes before ``send_nowait``
    says "no room"."""
    transport = MemoryTransport()
    server = RelayServer(ServerConfig(host="relay.test", port=7443, path="/r",
                                      limits=LinkLimits(write_limit=write_limit)), RelayConfig(),
                         lambda hello: ([], bytes(hello)), transport=transport)
    await server.start()
    a = await transport.dial(ClientConfig(URL), A)
    b = await transport.dial(ClientConfig(URL), B)
    await wait_for(lambda: server.core.link_of(A) is not None and server.core.link_of(B) is not None,
                   what="both devices attached")
    return server, a, b


def _frames(n: int) -> list[bytes]:
    return [encode_forward(B, inner_frame(A, 100 + i)) for i in range(n)]


async def test_frames_are_sent_from_the_reader_without_a_writer_task():
    server, a, b = await _relay(write_limit=1 << 20)
    created: list = []
    original = server._write

    def counting(*args):
        created.append(args)
        return original(*args)

    server._write = counting
    try:
        got: list[bytes] = []
        b.deliver_to(got.append)
        for f in _frames(20):
            assert a.send_nowait(f)
        await wait_for(lambda: len(got) == 20, what="20 deliveries")
        assert [len(decode(m).inner) for m in got] == [64 + 100 + i for i in range(20)]   # in order
        assert all(decode(m).key == A for m in got)   # DELIVER names the authenticated source
        assert created == [] and server._writers == {}
    finally:
        await server.close()


async def test_a_full_link_gets_one_writer_task_and_keeps_the_order():
    # The relay's write limit is small and B does not read at first: the relay's sends to B find no room.
    server, a, b = await _relay(write_limit=1024)
    try:
        for f in _frames(30):
            await a.send(f)
        await wait_for(lambda: server.core.usage(A).messages_in == 30, what="relay read all 30")
        await asyncio.sleep(0.01)
        assert len(server._writers) == 1            # one writer task for B, not one per frame
        got = [await b.recv() for _ in range(30)]   # B reads: the writer sends the rest
        assert [len(decode(m).inner) for m in got] == [64 + 100 + i for i in range(30)]
        await wait_for(lambda: not server._writers, what="the writer task to end")
    finally:
        await server.close()
