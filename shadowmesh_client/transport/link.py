"""A Link: one authenticated WebSocket connection carrying whole protocol frames.

Contract: one binary WebSocket message = one protocol frame (which may batch many IP packets). A text
message is a protocol violation: the link closes with code 1003 and ``recv`` raises LinkClosedError.
Messages larger than ``LinkLimits.max_message_bytes`` close the link with 1009 (websockets enforces it
while reading, before buffering the whole message).

Not task-safe for concurrent ``recv`` (one reader task per link); ``send`` may be called from several
tasks (websockets serialises whole messages).
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from websockets.asyncio.connection import Connection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from shadowmesh_client.transport.errors import LinkClosedError


class Link:
    """Wraps a websockets connection. Create via LinkServer / dial / ReconnectingClient, not directly."""

    __slots__ = ("_conn", "peer", "is_client", "messages_in", "bytes_in", "messages_out", "bytes_out",
                 "__weakref__")

    def __init__(self, connection: Connection, peer: Any, *, is_client: bool) -> None:
        self._conn = connection
        _drop_handshake(connection)
        self.peer = peer              # server side: what authenticate() returned; client side: the url
        self.is_client = is_client
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0

    # ---- sending ----------------------------------------------------------------------------------
    async def send(self, message: bytes | bytearray | memoryview) -> None:
        """Send one frame as one binary message. Waits while the write buffer is above
        ``write_limit`` (backpressure). The buffer is handed to websockets as is (no copy here).
        Raises LinkClosedError if the link is closed."""
        try:
            await self._conn.send(message)
        except ConnectionClosed as exc:
            raise LinkClosedError(f"link closed while sending ({_describe(exc)})") from None
        self.messages_out += 1
        self.bytes_out += len(message)

    # ---- receiving --------------------------------------------------------------------------------
    async def recv(self) -> bytes:
        """Next frame. Raises LinkClosedError when the link closes (cleanly or not)."""
        try:
            message = await self._conn.recv()
        except ConnectionClosed as exc:
            raise LinkClosedError(f"link closed ({_describe(exc)})") from None
        if isinstance(message, str):
            await self._conn.close(CloseCode.UNSUPPORTED_DATA, "binary only")
            raise LinkClosedError("peer sent a text message: link closed with 1003 (binary frames only)")
        self.messages_in += 1
        self.bytes_in += len(message)
        return message

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            try:
                yield await self.recv()
            except LinkClosedError:
                return

    # ---- lifecycle --------------------------------------------------------------------------------
    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close (closing handshake, bounded by close_timeout). Idempotent."""
        await self._conn.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        self._conn.transport.abort()

    async def wait_closed(self) -> None:
        await self._conn.wait_closed()

    @property
    def closed(self) -> bool:
        return self._conn.close_code is not None or self._conn.transport.is_closing()

    @property
    def close_code(self) -> int | None:
        return self._conn.close_code

    @property
    def remote_address(self) -> Any:
        return self._conn.remote_address

    @property
    def latency(self) -> float:
        """Seconds of the last heartbeat round trip (0 until the first pong)."""
        return self._conn.latency

    def __repr__(self) -> str:
        side = "client" if self.is_client else "server"
        return f"<Link {side} {self.remote_address} closed={self.closed}>"


# Shared placeholders: once open, a connection no longer needs the upgrade's request and response
# (about 2.7 KB of header objects per link). websockets tests ``request is None`` / ``response is None``
# to recognise the first event, so they are replaced, not cleared.
_EMPTY_REQUEST = Request("/", Headers())
_EMPTY_RESPONSE = Response(101, "Switching Protocols", Headers())


def _drop_handshake(connection: Connection) -> None:
    if getattr(connection, "request", None) is not None:
        connection.request = _EMPTY_REQUEST
    if getattr(connection, "response", None) is not None:
        connection.response = _EMPTY_RESPONSE


def _describe(exc: ConnectionClosed) -> str:
    rcvd = exc.rcvd
    if rcvd is None:
        return "no close frame received"
    return f"code {rcvd.code}{' ' + rcvd.reason if rcvd.reason else ''}"
