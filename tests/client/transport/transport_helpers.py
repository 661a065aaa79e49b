"""Test helpers for the transport tests: a throwaway PKI, a controllable TCP proxy, raw HTTP requests,
fake inner frames. Real sockets on loopback only."""

from __future__ import annotations

import asyncio

from lab.pki import write_test_pki  # noqa: F401  (re-exported for the transport tests)

INNER_HEADER_BYTES = 64


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target port. ``freeze()`` stops moving bytes in both directions
    while keeping the sockets open (a peer that vanished behind a NAT). ``idle_timeout`` closes a
    connection that carried no byte for that many seconds (like a proxy/CDN idle timer)."""

    def __init__(self, target_port: int, idle_timeout: float | None = None) -> None:
        self.target_port = target_port
        self.idle_timeout = idle_timeout
        self.frozen = False
        self.idle_kills = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self.frozen = True

    async def close(self) -> None:
        self._server.close()
        for w in self._writers:
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        activity = [asyncio.get_running_loop().time()]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                while self.frozen:
                    await asyncio.sleep(3600)
                activity[0] = asyncio.get_running_loop().time()
                dst.write(data)
                await dst.drain()
            dst.close()

        tasks = [asyncio.create_task(pipe(reader, up_writer)), asyncio.create_task(pipe(up_reader, writer))]
        self._tasks.update(tasks)
        try:
            while not all(t.done() for t in tasks):
                await asyncio.sleep(0.05)
                idle = asyncio.get_running_loop().time() - activity[0]
                if self.idle_timeout is not None and idle > self.idle_timeout:
                    self.idle_kills += 1
                    break
        finally:
            for t in tasks:
                t.cancel()
            writer.close()
            up_writer.close()


async def raw_http(port: int, request: bytes, *, ssl_context=None, server_hostname=None) -> bytes:
    """Send raw request bytes; return everything the server sends until it closes (max 5 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl_context,
                                                   server_hostname=server_hostname)
    writer.write(request)
    await writer.drain()
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            data += chunk
    except (TimeoutError, ConnectionError):
        pass
    writer.close()
    return data


def upgrade_request(path: str, extra_headers: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
            ).encode()


def without_date(response: bytes) -> bytes:
    """The response with its Date header line removed (the only part that varies with time)."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def fake_inner(sender: bytes, payload: bytes = b"") -> bytes:
    """A stand-in for a protocol frame: 64-byte header with the sender key at offset 8 (spec layout),
    then opaque bytes. The relay never decrypts, so this is all it can see of a real frame too."""
    header = bytes([0x13, 0x00, 0x00, 0x00]) + (7).to_bytes(4, "big") + sender + bytes(24)
    assert len(header) == INNER_HEADER_BYTES
    return header + payload
