"""``Link.buffered_bytes`` (transport/base.py), on both transports: the bytes sent on a link that have not
left the process (what ``send_nowait`` compares with ``write_limit``; routing/qos.py caps bulk by it), and,
for WebSocket links, TCP_NOTSENT_LOWAT on both ends' sockets (transport/ws/link.py ``NOTSENT_LOWAT``)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from shadowmesh_client.transport import ClientConfig, LinkClosedError, LinkLimits, ServerConfig
from shadowmesh_client.transport.memory import MemoryTransport
from shadowmesh_client.transport.ws import WebSocketTransport
from shadowmesh_client.transport.ws.link import _TCP_NOTSENT_LOWAT, NOTSENT_LOWAT


@pytest.fixture(params=["memory", "ws"])
def transport(request):
    return MemoryTransport() if request.param == "memory" else WebSocketTransport()


async def eventually(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_buffered_bytes_counts_what_the_peer_has_not_taken_yet(transport):
    go, received, links = asyncio.Event(), [], []

    async def slow_reader(link) -> None:
        links.append(link)
        await go.wait()                                     # not reading: the sender's buffer fills up
        try:
            while True:
                received.append(await link.recv())
        except LinkClosedError:
            pass

    limit = 64 * 1024
    async with transport.server(ServerConfig(), lambda h: (b"", h), slow_reader) as server:
        link = await transport.dial(ClientConfig(server.url, limits=LinkLimits(write_limit=limit)), b"me")
        await eventually(lambda: links)
        assert link.buffered_bytes == 0
        sent = 0
        while sent < 64 * 1024 * 1024 and link.send_nowait(bytes(16 * 1024)):
            sent += 16 * 1024
        assert sent < 64 * 1024 * 1024, "send_nowait never refused"
        # refused: what the link holds is above its write limit, and never more than was sent
        assert limit < link.buffered_bytes <= sent
        go.set()
        await eventually(lambda: link.buffered_bytes == 0)   # all taken by the reader
        await eventually(lambda: sum(map(len, received)) == sent)
        await link.close()


async def test_ws_link_sockets_have_tcp_notsent_lowat():
    links = []

    async def hold(link) -> None:
        links.append(link)
        await link.wait_closed()

    transport = WebSocketTransport()
    async with transport.server(ServerConfig(), lambda h: (b"", h), hold) as server:
        link = await transport.dial(ClientConfig(server.url), b"me")
        await eventually(lambda: links)
        for end in (link, links[0]):
            sock = end._conn.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT) == NOTSENT_LOWAT
        await link.close()
