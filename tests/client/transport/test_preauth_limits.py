"""Pre-authentication bounds of the LinkServer (issue 12 "Slowloris"): per-source and total caps, nginx's
draining of idle connections at the total cap, a legitimate hello upgrading during a flood, bounded
buffers for pipelined input, and nothing of a closed connection left behind. Real sockets on loopback
(the whole 127/8 is local: 127.0.0.2 and 127.0.0.3 act as other source addresses)."""

from __future__ import annotations

import asyncio
import gc
import socket
import time

import pytest

from shadowmesh_client.transport import ClientConfig, ServerConfig
from shadowmesh_client.transport.errors import TransportConfigError
from shadowmesh_client.transport.ws import LinkServer, dial
from shadowmesh_client.transport.ws.http import HEADER_TOTAL_MAX_BYTES, HttpConnection
from shadowmesh_client.transport.ws.server import READ_CHUNK_BYTES, WRITE_HIGH_BYTES, _Front, source_key

GOOD_HELLO = b"\x01good-hello" + bytes(100)
PARTIAL = b"GET / HTTP/1.1\r\nHost: x\r\n"  # a request head that never ends (slowloris)
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def accept_good(hello: bytes):
    return (b"welcome", "peer") if hello == GOOD_HELLO else None


async def idle(link):
    async for _ in link:
        pass


async def connect_from(source: str, port: int, payload: bytes = b"", rcvbuf: int | None = None) -> socket.socket:
    """A non-blocking TCP socket from ``source`` to 127.0.0.1:``port``, ``payload`` sent."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    sock.bind((source, 0))
    await loop.sock_connect(sock, ("127.0.0.1", port))
    if payload:
        await loop.sock_sendall(sock, payload)
    return sock


async def flood(source: str, port: int, count: int, payload: bytes = PARTIAL) -> list[socket.socket]:
    socks: list[socket.socket] = []
    for start in range(0, count, 50):  # batches: the listen backlog is 100
        batch = range(start, min(count, start + 50))
        socks += await asyncio.gather(*(connect_from(source, port, payload) for _ in batch))
    return socks


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def closed_by_server(sock: socket.socket, wait: float = 0.2) -> bool:
    """True if the server closed (FIN or RST) the connection within ``wait`` seconds without answering."""
    try:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), wait)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    assert data == b"", f"the server answered {data[:40]!r} instead of closing"
    return True


async def answer(source: str, port: int, request: bytes = GET) -> bytes:
    sock = await connect_from(source, port, request)
    try:
        return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65536), 2.0)
    finally:
        sock.close()


def live(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


async def test_flood_over_the_per_source_cap_is_closed_at_once_and_a_hello_still_upgrades_within_1s():
    cap = 64
    cfg = ServerConfig(max_preauth_per_source=cap, max_preauth_total=1_024)
    async with LinkServer(cfg, accept_good, idle) as server:
        socks = await flood("127.0.0.2", server.port, cap + 40)
        try:
            await until(lambda: server.preauth + server.preauth_refused == cap + 40)
            assert server.preauth_by_source == {"127.0.0.2": cap}
            assert server.preauth_refused == 40
            # the first `cap` are held (no answer, not closed: the header timeout is 60 s), the rest closed
            assert not any(await asyncio.gather(*(closed_by_server(s, 0.05) for s in socks[:cap])))
            assert all(await asyncio.gather(*(closed_by_server(s, 1.0) for s in socks[cap:])))
            # another source is served as usual while the flood is held ...
            page = await answer("127.0.0.3", server.port)
            assert page.startswith(b"HTTP/1.1 200 OK\r\n")
            # ... and a legitimate hello upgrades within 1 s; the link is not counted as pre-auth
            started = time.monotonic()
            link = await dial(ClientConfig(url=server.url), GOOD_HELLO)
            assert time.monotonic() - started < 1.0
            assert await link.recv() == b"welcome"
            assert server.preauth_by_source == {"127.0.0.2": cap}
            await link.close()
        finally:
            close_all(socks)
        await until(lambda: server.preauth == 0)
        assert server.preauth_by_source == {} and not server._idle


async def test_total_cap_closes_the_oldest_idle_connections_first_like_nginx_then_refuses():
    total = 40
    cfg = ServerConfig(max_preauth_per_source=total, max_preauth_total=total)
    async with LinkServer(cfg, accept_good, idle) as server:
        idle_socks = await flood("127.0.0.2", server.port, total, payload=b"")  # no byte sent: reusable
        await until(lambda: server.preauth == total)
        # a new client at the cap: nginx's ngx_drain_connections closes the 32 oldest idle ones
        page = await answer("127.0.0.3", server.port)
        assert page.startswith(b"HTTP/1.1 200 OK\r\n")
        assert server.preauth_drained == 32 and server.preauth_refused == 0
        assert all(await asyncio.gather(*(closed_by_server(s, 1.0) for s in idle_socks[:32])))
        assert not any(await asyncio.gather(*(closed_by_server(s, 0.05) for s in idle_socks[32:])))
        close_all(idle_socks)
        await until(lambda: server.preauth == 0)
        # connections in the middle of a request are never drained: over the cap the newcomer is closed
        busy = await flood("127.0.0.2", server.port, total)
        await until(lambda: server.preauth == total)
        late = await connect_from("127.0.0.3", server.port, GET)
        assert await closed_by_server(late, 1.0)
        assert server.preauth_refused == 1 and server.preauth == total
        assert not any(await asyncio.gather(*(closed_by_server(s, 0.05) for s in busy)))
        close_all(busy + [late])
        await until(lambda: server.preauth == 0)


async def test_nothing_of_a_closed_preauth_connection_stays_referenced():
    cfg = ServerConfig(max_preauth_per_source=300, max_preauth_total=300, header_timeout=0.5)
    async with LinkServer(cfg, accept_good, idle) as server:
        assert live(_Front) == 0 and live(HttpConnection) == 0
        closed_by_client = await flood("127.0.0.2", server.port, 150)
        timed_out = await flood("127.0.0.3", server.port, 100, payload=PARTIAL + b"X-Big: " + b"a" * 6_000)
        refused = await flood("127.0.0.2", server.port, 150 + 20)  # 150 held, the last 20 over the cap
        await until(lambda: server.preauth == 300 and server.preauth_refused >= 20)
        assert live(_Front) >= 300
        close_all(closed_by_client)
        assert all(await asyncio.gather(*(closed_by_server(s, 2.0) for s in timed_out)))  # header timeout
        close_all(timed_out + refused)
        await until(lambda: server.preauth == 0)
        await asyncio.sleep(0.05)  # let asyncio run the last connection_lost callbacks
        assert live(_Front) == 0 and live(HttpConnection) == 0
        assert server.preauth_by_source == {} and not server._idle and not server._tasks
        # the server still works afterwards
        assert (await answer("127.0.0.2", server.port)).startswith(b"HTTP/1.1 200 OK\r\n")


async def test_pipelined_requests_from_a_client_that_never_reads_are_answered_in_bounded_memory():
    # 600 one-byte ranges: a ~54 KB multipart answer to a ~4.5 KB request; 500 of them (under nginx's
    # keepalive_requests) make ~27 MB of answers, far more than the kernel's socket buffers hold
    requests = 500
    ranged = ("GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=" + ",".join(f"{i}-{i}" for i in range(600))
              + "\r\n\r\n").encode()
    async with LinkServer(ServerConfig(), accept_good, idle) as server:
        loop = asyncio.get_running_loop()
        sock = await connect_from("127.0.0.2", server.port, rcvbuf=4_096)
        sender = asyncio.create_task(loop.sock_sendall(sock, ranged * requests))
        try:
            await until(lambda: any(f._write_paused for f in server._fronts))
            await asyncio.sleep(0.2)
            (front,) = server._fronts
            assert front.http is not None and front._write_paused and front.http.stalled
            assert front.http.requests < requests / 2  # answering paused: the rest waits in TCP buffers
            assert len(front.http.buffer) <= HEADER_TOTAL_MAX_BYTES + READ_CHUNK_BYTES
            assert front.transport.get_write_buffer_size() <= 3 * WRITE_HIGH_BYTES  # high water + one batch
            answered, tail = 0, b""
            while answered < requests:  # now read: every request is answered, in order
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 5.0)
                assert chunk
                data = tail + chunk
                answered += data.count(b"HTTP/1.1 206 Partial Content\r\n")
                tail = data[-40:]
                answered -= tail.count(b"HTTP/1.1 206 Partial Content\r\n")
            await sender
        finally:
            sender.cancel()
            sock.close()
        await until(lambda: server.preauth == 0)


def test_source_key_counts_ipv4_addresses_and_ipv6_slash_64s():
    assert source_key(("192.0.2.7", 5555)) == "192.0.2.7"
    assert source_key(("::ffff:192.0.2.7", 5555, 0, 0)) == "192.0.2.7"
    assert source_key(("2001:db8:1:2:aaaa::1", 1, 0, 0)) == source_key(("2001:db8:1:2:bbbb::9", 1, 0, 0)) == \
        "2001:db8:1:2::/64"
    assert source_key(("2001:db8:1:3::1", 1, 0, 0)) != source_key(("2001:db8:1:2::1", 1, 0, 0))
    assert source_key(None) == source_key("/tmp/sock") == "?"


def test_preauth_caps_are_validated():
    assert (ServerConfig().max_preauth_per_source, ServerConfig().max_preauth_total) == (256, 4_096)
    with pytest.raises(TransportConfigError, match="max_preauth_per_source"):
        ServerConfig(max_preauth_per_source=0)
    with pytest.raises(TransportConfigError, match="max_preauth_total"):
        ServerConfig(max_preauth_per_source=10, max_preauth_total=5)
