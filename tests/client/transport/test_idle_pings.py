"""``LinkLimits.idle_ping_interval`` (transport/ws/link.py ``Link.ping_when_idle``): a WebSocket link that
carries no messages is pinged rarely (at thousands of live sessions the pings were most of a node's idle
CPU), a link that carries messages keeps the short pings, and both ends' sockets get TCP_USER_TIMEOUT so a
link that dies while carrying data is cut within ping_interval + ping_timeout whatever its ping phase."""

from __future__ import annotations

import asyncio
import socket

from shadowmesh_client.transport import ClientConfig, LinkLimits, ServerConfig
from shadowmesh_client.transport.ws import WebSocketTransport
from shadowmesh_client.transport.ws.link import _TCP_USER_TIMEOUT

ACTIVE, IDLE, TIMEOUT = 0.1, 0.6, 2.0


async def eventually(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def count_pings(link) -> list[float]:
    """Wrap the connection's ping (on top of ping_when_idle's wrapper): the interval chosen at each ping."""
    history: list[float] = []
    conn = link._conn
    inner = conn.ping

    async def recorded(data=None):
        waiter = await inner(data)
        history.append(conn.ping_interval)
        return waiter

    conn.ping = recorded
    return history


async def pair(limits: LinkLimits):
    links, transport = [], WebSocketTransport()

    async def serve(link) -> None:
        links.append(link)
        link.deliver_to(lambda _m: None)
        await link.wait_closed()

    server = transport.server(ServerConfig(limits=limits), lambda h: (b"", h), serve)
    return server, links, transport


async def test_idle_link_pings_rarely_and_a_message_brings_the_short_pings_back():
    limits = LinkLimits(ping_interval=ACTIVE, ping_timeout=TIMEOUT, idle_ping_interval=IDLE)
    server, links, transport = await pair(limits)
    async with server as srv:
        client = await transport.dial(ClientConfig(srv.url, limits=limits), b"me")
        await eventually(lambda: links, "the server's link")
        ends = (client, links[0])
        counts = [count_pings(end) for end in ends]
        for end in ends:
            sock = end._conn.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT) == int((ACTIVE + TIMEOUT) * 1000)

        for _ in range(30):                      # busy: a message every 20 ms, short pings
            client.send_nowait(b"x")
            await asyncio.sleep(0.02)
        assert all(end._conn.ping_interval == ACTIVE for end in ends)

        await eventually(lambda: all(end._conn.ping_interval == IDLE for end in ends), "idle pings")   # two quiet pings
        before = [len(h) for h in counts]
        await asyncio.sleep(3 * IDLE)
        idle_pings = [len(h) - b for h, b in zip(counts, before, strict=True)]
        # 3 * IDLE seconds: at most 4 idle pings per end (3 + one in flight), against 18 short ones
        assert all(n <= 4 for n in idle_pings), idle_pings

        marks = [len(h) for h in counts]
        assert client.send_nowait(b"back to work")
        # each end's next ping after the message is a short-interval one again
        await eventually(lambda: all(ACTIVE in h[m:] for h, m in zip(counts, marks, strict=True)), "short pings again")
        assert not client.closed and not links[0].closed      # the pongs kept coming all along
        await client.close()


async def test_without_idle_interval_the_link_always_pings_at_ping_interval():
    limits = LinkLimits(ping_interval=ACTIVE, ping_timeout=TIMEOUT)
    server, links, transport = await pair(limits)
    async with server as srv:
        client = await transport.dial(ClientConfig(srv.url, limits=limits), b"me")
        await eventually(lambda: links, "the server's link")
        counts = [count_pings(end) for end in (client, links[0])]
        await asyncio.sleep(10 * ACTIVE)
        assert all(end._conn.ping_interval == ACTIVE for end in (client, links[0]))
        assert all(len(h) >= 3 for h in counts), counts      # still pinging while idle
        await client.close()
