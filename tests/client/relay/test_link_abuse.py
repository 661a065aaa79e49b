"""Issue 12 attacks that need real WebSocket framing: a ping flood by a peer that never reads the pongs,
and a fragment flood. A real LinkServer on 127.0.0.1 (no root) and a raw-socket client that speaks just
enough RFC 6455 to misbehave. Bounds: transport/ws/link.py (write buffer, fragments, ping rate)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

from shadowmesh_client.transport.config import LinkLimits, ServerConfig
from shadowmesh_client.transport.ws import link as ws_link
from shadowmesh_client.transport.ws.server import LinkServer
from tests.client.relay.helpers import wait_for

PATH = "/abuse-secret"


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame (RFC 6455 5.2); payload < 126 bytes."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + body


def _open(port: int, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    hello = base64.urlsafe_b64encode(b"hello").rstrip(b"=").decode()
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nCookie: sid={hello}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


async def _server(limits: LinkLimits):
    links = []

    async def on_link(link):
        links.append(link)
        await link.wait_closed()

    server = LinkServer(ServerConfig(port=0, path=PATH, limits=limits), lambda hello: ([], b"k" * 32), on_link)
    await server.start()
    return server, links


def _flood(s: socket.socket, frame: bytes, count: int) -> int:
    sent = 0
    try:
        for _ in range(count // 100):
            s.sendall(frame * 100)
            sent += 100
    except OSError:   # reset by the server: what the bound does
        pass
    return sent


async def test_ping_flood_without_reading_pongs_aborts_the_link_at_the_write_buffer_bound(monkeypatch):
    monkeypatch.setattr(ws_link, "MAX_PINGS_PER_SECOND", 10**9)   # this test isolates the buffer bound
    limits = LinkLimits(max_message_bytes=1_024, write_limit=4_096, ping_interval=None, ping_timeout=None)
    server, links = await _server(limits)
    try:
        s = await asyncio.to_thread(_open, server.port, 4_096)
        await wait_for(lambda: links, what="link")
        conn = links[0]._conn
        peak = [0]

        def watch():
            peak[0] = max(peak[0], conn.transport.get_write_buffer_size())
            if not links[0].closed:
                asyncio.get_running_loop().call_later(0.001, watch)

        watch()
        sent = await asyncio.to_thread(_flood, s, _frame(0x9, b"p" * 125), 400_000)
        await wait_for(lambda: links[0].closed, 5, "link aborted")
        s.close()
        bound = 4_096 + ws_link.WRITE_SLACK_MESSAGES * 1_024
        # Without the bound the buffer grew with every pong (~35 MB/s at the relay); now the link is cut.
        assert sent < 400_000, "the server never cut the link"
        assert peak[0] <= bound + 256 * 1024, peak[0]   # + at most one read's worth of pongs
    finally:
        await server.close()


async def test_a_fast_ping_flood_closes_the_link():
    server, links = await _server(LinkLimits(ping_interval=None, ping_timeout=None))
    try:
        s = await asyncio.to_thread(_open, server.port)
        await wait_for(lambda: links, what="link")
        await asyncio.to_thread(s.sendall, _frame(0x9, b"x") * (ws_link.MAX_PINGS_PER_SECOND + 10))
        await wait_for(lambda: links[0].closed, 5, "link closed")
        s.close()
        assert links[0].close_code in (1008, 1006)
    finally:
        await server.close()


async def test_fragment_flood_closes_the_link_after_max_fragments():
    server, links = await _server(LinkLimits(ping_interval=None, ping_timeout=None))
    try:
        s = await asyncio.to_thread(_open, server.port)
        await wait_for(lambda: links, what="link")
        fragments = _frame(0x2, b"f" * 16, fin=False) + _frame(0x0, b"f" * 16, fin=False) * 200
        await asyncio.to_thread(s.sendall, fragments)

        def read_close() -> bytes:
            s.settimeout(5)
            return s.recv(64)

        close = await asyncio.to_thread(read_close)
        assert close[0] == 0x88 and struct.unpack(">H", close[2:4])[0] == 1009   # "message too big"
        s.close()
        await wait_for(lambda: links[0].closed, 5, "link closed")
    finally:
        await server.close()
