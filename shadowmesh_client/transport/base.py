"""The transport interface: what the node, the relay and the payments code may ask of a link.

A ``Link`` carries whole protocol frames (one message = one frame) between two authenticated ends; a
``Server`` accepts them after the node's or relay's ``authenticate(hello)`` hook said yes; a
``Transport`` makes servers and dials. Two implementations:

* ``transport.ws`` (``WebSocketTransport``): WS/WSS with the decoy web server; the only code that knows
  websockets;
* ``transport.memory`` (``MemoryTransport``): an in-process pair for tests (no sockets, no root).

Both honour the same contract, stated here; ``tests/client/transport/test_transport_contract.py`` runs
the same cases against both.

Close codes (application range 4000-4999, RFC 6455 7.4.2) are defined here, once.

May import: transport.config, transport.errors. Pure typing: no asyncio objects are created here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from shadowmesh_client.transport.config import ClientConfig, ServerConfig

CLOSE_NORMAL = 1000
"""RFC 6455: normal closure."""

CLOSE_INTERNAL_ERROR = 1011
"""RFC 6455: the server hit an unexpected condition (a bug in a handler)."""

CLOSE_REPLACED = 4000
"""Application close code: a newer link for the same peer (or device, at a relay) took over."""

CLOSE_REVOKED = 4001
"""Application close code: the directory no longer trusts the peer (revoked, suspended, expired)."""

Message = bytes | bytearray | memoryview
AuthResult = tuple[bytes | Sequence[bytes], Any]
Authenticate = Callable[[bytes], Awaitable[AuthResult | None] | AuthResult | None]
"""``authenticate(hello) -> (response frame(s), peer) | None``: the protocol's first handshake message,
carried in the opening of the link; None refuses it (the prober sees an ordinary web page)."""


@runtime_checkable
class Link(Protocol):
    """One authenticated, ordered, reliable message link.

    * ``send`` queues the message, then waits while the link's write buffer is above its limit
      (backpressure), and raises LinkClosedError once the link is closed; ``send_nowait`` sends only if
      there is room now and returns False otherwise (then await ``send``). Order between the two is kept.
    * ``recv`` returns the next message (bytes) or raises LinkClosedError; one reader task per link.
    * ``deliver_to(callback)`` switches to push delivery: already queued messages are handed over at
      once, then every message is handed to ``callback(message)`` synchronously as it arrives; ``recv``
      may no longer be used. A callback that raises aborts the link. ``pause_reading()`` /
      ``resume_reading()``: backpressure for such a callback (the peer's further messages wait, then its
      sends); the messages of the read being handled may still arrive after ``pause_reading()``.
    * ``close(code, reason)`` is idempotent; ``wait_closed`` returns once the link is gone.
    * ``latency``: seconds of the last heartbeat round trip (0.0 until measured).
    * ``buffered_bytes``: bytes handed to ``send``/``send_nowait`` that have not left this process yet
      (the write buffer ``send_nowait`` compares with its limit; routing/qos.py caps bulk by it).
    """

    peer: Any
    is_client: bool
    messages_in: int
    bytes_in: int
    messages_out: int
    bytes_out: int

    async def send(self, message: Message) -> None: ...

    def send_nowait(self, message: Message) -> bool: ...

    async def recv(self) -> bytes: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def deliver_to(self, callback: Callable[[bytes], None]) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None: ...

    def abort(self) -> None: ...

    async def wait_closed(self) -> None: ...

    @property
    def closed(self) -> bool: ...

    @property
    def close_code(self) -> int | None: ...

    @property
    def remote_address(self) -> Any: ...

    @property
    def latency(self) -> float: ...

    @property
    def buffered_bytes(self) -> int: ...


OnLink = Callable[[Link], Awaitable[None]]
"""``on_link(link)``: awaited for the link's lifetime; when it returns the link is closed (1000), when it
raises the link is closed with 1011; ``Server.close()`` closes every link with 1001 and waits for the
handlers to return."""


@runtime_checkable
class Server(Protocol):
    """Accepts links whose hello ``authenticate`` accepts; ``links`` is the set of open ones."""

    links: set[Any]
    decoys_served: int
    auth_failures: int
    links_opened: int

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def port(self) -> int: ...

    @property
    def url(self) -> str: ...


@runtime_checkable
class Transport(Protocol):
    """A way to make link servers and to dial them."""

    def server(self, config: ServerConfig, authenticate: Authenticate, on_link: OnLink) -> Server: ...

    async def dial(self, config: ClientConfig, hello: bytes, *, peer: Any = None) -> Link:
        """Open one link to ``config.url`` presenting ``hello``; the server's response frames are the
        first received messages. Raises HandshakeRejectedError when refused, TransportError otherwise."""
        ...
