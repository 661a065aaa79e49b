"""An in-memory transport for tests: link servers and links inside one event loop, no sockets.

Follows the contract in ``transport.base`` (like wireguard-go's ``conn/bindtest``): a node or relay
given a ``MemoryTransport`` runs unchanged, in-process, without root. What it models:

* servers are found by ``host:port`` of the dialled URL; a wrong path, an empty or oversized hello or a
  refused ``authenticate`` raise HandshakeRejectedError (and count as a decoy / an auth failure), an
  unknown address raises TransportError, as the WebSocket transport does;
* messages are delivered in order, asynchronously (never inside the sender's call), so re-entrancy is
  the same as with real sockets; ``deliver_to`` hands already-queued messages over at once, like the
  WebSocket link;
* backpressure: ``send_nowait`` refuses while the receiver has more than ``write_limit`` bytes unread;
  ``send`` queues its message first and then waits for room (websockets writes, then drains), so order
  between the two is kept; a message over the RECEIVER's ``max_message_bytes`` is not delivered and
  closes the link with 1009 on both ends (the sender's call itself succeeds, as on a socket);
* an ``on_link`` that raises closes its link with 1011; ``server.close()`` closes every link with 1001
  and then waits (without cancelling) until every ``on_link`` has returned, as websockets does;
* the initiator's address: ``transport.as_host("10.0.0.5")`` is a view of the same network whose dials
  come from that host; its links' server-side ``remote_address`` is ``(host, port)``, and an
  ``authenticate`` hook with a ``source`` parameter is called as ``authenticate(hello, source=host)``
  (abuse tests: per-source limits). Dials from the plain transport pass no source (as websockets today);
* ``latency`` is a fixed figure per transport (``MemoryTransport(latency=...)``), or per link
  (``link.latency = ...``) for path-choice tests; ``partition(a, b)`` style failures are done by closing
  or aborting links, or by ``stop()``-ing a server.

tests/client/transport/test_transport_contract.py runs the same cases against this and the WebSocket
transport. One event loop only (not thread-safe). Tasks: each server owns the tasks running ``on_link``
for its links and awaits them in ``close()``.

May import: transport.base, transport.config, transport.errors (asyncio and the standard library).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

from shadowmesh_client.transport.base import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    Authenticate,
    Message,
    OnLink,
)
from shadowmesh_client.transport.config import ClientConfig, LinkLimits, ServerConfig
from shadowmesh_client.transport.errors import HandshakeRejectedError, LinkClosedError, TransportError

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001       # RFC 6455: server shutting down (websockets' Server.close uses it)
CLOSE_ABNORMAL = 1006         # RFC 6455: no close frame (abort, connection lost)
CLOSE_MESSAGE_TOO_BIG = 1009  # RFC 6455: message over the receiver's max_message_bytes


class MemoryLink:
    """One end of an in-memory link. See ``transport.base.Link`` for the contract."""

    def __init__(self, peer: Any, *, is_client: bool, limits: LinkLimits, latency: float,
                 remote_address: Any) -> None:
        self.peer = peer
        self.is_client = is_client
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0
        self.latency = latency
        self.remote_address = remote_address
        self._limits = limits
        self._other: MemoryLink | None = None
        self._inbox: deque[bytes] = deque()
        self._unread = 0                      # bytes in _inbox
        self._waiter: asyncio.Future[None] | None = None
        self._room = asyncio.Event()          # set while this end's inbox is below the write limit
        self._room.set()
        self._callback: Callable[[bytes], None] | None = None
        self._drain_scheduled = False
        self._paused = False                  # pause_reading: deliver_to hands nothing over meanwhile
        self._close_code: int | None = None
        self._closed = asyncio.Event()

    # ---- sending ----------------------------------------------------------------------------------
    def send_nowait(self, message: Message) -> bool:
        other = self._other
        if self._close_code is not None or other is None or other._unread > self._limits.write_limit:
            return False
        self._put(other, bytes(message))
        return True

    async def send(self, message: Message) -> None:
        other = self._other
        if self._close_code is not None or other is None:
            raise LinkClosedError(f"link closed while sending (code {self._close_code})")
        self._put(other, bytes(message))
        while other._unread > self._limits.write_limit:  # drain: wait for room after queueing
            if self._close_code is not None:
                raise LinkClosedError(f"link closed while sending (code {self._close_code})")
            other._room.clear()
            await other._room.wait()  # set by the reader's _take, and by _terminate on either end

    @property
    def buffered_bytes(self) -> int:
        """Bytes sent on this end and not yet taken by the other end (the write buffer's equivalent)."""
        other = self._other
        return 0 if other is None else other._unread

    def _put(self, other: MemoryLink, data: bytes) -> None:
        self.messages_out += 1
        self.bytes_out += len(data)
        if len(data) > other._limits.max_message_bytes:  # the receiver's limit, as websockets' max_size
            self._terminate(CLOSE_MESSAGE_TOO_BIG)
            return
        other._inbox.append(data)
        other._unread += len(data)
        if other._callback is not None:
            other._schedule_drain()
        elif other._waiter is not None and not other._waiter.done():
            other._waiter.set_result(None)

    # ---- receiving --------------------------------------------------------------------------------
    def _take(self) -> bytes:
        data = self._inbox.popleft()
        self._unread -= len(data)
        if self._unread <= self._limits.write_limit:
            self._room.set()
        self.messages_in += 1
        self.bytes_in += len(data)
        return data

    async def recv(self) -> bytes:
        if self._callback is not None:
            raise RuntimeError("this link delivers messages to a callback (deliver_to); recv() is not available")
        while not self._inbox:
            if self._close_code is not None:
                raise LinkClosedError(f"link closed (code {self._close_code})")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._take()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        """``async for message in link``: ends when the link closes (like the WebSocket link)."""
        while True:
            try:
                yield await self.recv()
            except LinkClosedError:
                return

    def deliver_to(self, callback: Callable[[bytes], None]) -> None:
        self._callback = callback
        if self._inbox:
            self._drain()  # already-queued messages first, at once (the WebSocket link does the same)

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        if self._inbox and self._callback is not None:
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        callback = self._callback
        while self._inbox and callback is not None and not self._paused:
            data = self._take()
            try:
                callback(data)
            except Exception:
                log.exception("message handler failed; aborting the link")
                self.abort()
                return

    # ---- lifecycle --------------------------------------------------------------------------------
    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        self._terminate(code)

    def abort(self) -> None:
        self._terminate(CLOSE_ABNORMAL)

    def _terminate(self, code: int) -> None:
        for end in (self, self._other):
            if end is None or end._close_code is not None:
                continue
            end._close_code = code
            end._closed.set()
            end._room.set()
            if end._waiter is not None and not end._waiter.done():
                end._waiter.set_result(None)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._close_code is not None

    @property
    def close_code(self) -> int | None:
        return self._close_code

    def __repr__(self) -> str:
        side = "client" if self.is_client else "server"
        return f"<MemoryLink {side} {self.remote_address} closed={self.closed}>"


class MemoryServer:
    """A link server registered in a ``MemoryTransport`` under ``host:port`` while started."""

    def __init__(self, transport: MemoryTransport, config: ServerConfig, authenticate: Authenticate,
                 on_link: OnLink) -> None:
        self.config = config
        self._transport = transport
        self._authenticate = authenticate
        try:
            self._with_source = "source" in inspect.signature(authenticate).parameters
        except (TypeError, ValueError):
            self._with_source = False
        self._on_link = on_link
        self._port: int | None = None
        self._closing = False
        self._handlers: set[asyncio.Task[None]] = set()
        self.links: set[MemoryLink] = set()
        self.decoys_served = 0
        self.auth_failures = 0
        self.links_opened = 0

    async def start(self) -> None:
        self._port = self._transport._register(self)
        self._closing = False

    async def close(self) -> None:
        """Stop accepting, close every link with 1001 (going away), and wait until every ``on_link`` task
        has returned (not cancelled: like websockets, a handler learns of the shutdown from its link)."""
        self._closing = True
        if self._port is not None:
            self._transport._unregister(self)
        for link in list(self.links):
            await link.close(CLOSE_GOING_AWAY, "")
        while self._handlers:
            await asyncio.wait(list(self._handlers))

    async def __aenter__(self) -> MemoryServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        assert self._port is not None, "start() the server first"
        return self._port

    @property
    def url(self) -> str:
        scheme = "wss" if self.config.tls else "ws"
        return f"{scheme}://{self.config.host}:{self.port}{self.config.path}"

    async def _accept(self, path: str, hello: bytes, client_peer: Any, limits: LinkLimits,
                      source: str | None = None) -> MemoryLink:
        if self._closing:
            raise TransportError(f"cannot reach {self._where()}: ConnectionRefusedError")
        if path != self.config.path or not hello or len(hello) > self.config.max_hello_bytes:
            self.decoys_served += 1
            raise HandshakeRejectedError(self._refused())
        try:
            if source is not None and self._with_source:
                result = self._authenticate(hello, source=source)  # type: ignore[call-arg]
            else:
                result = self._authenticate(hello)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # like the WebSocket server: a failing hook refuses
            log.debug("authenticate hook raised %s; refusing", type(exc).__name__)
            result = None
        if result is None:
            self.auth_failures += 1
            self.decoys_served += 1
            raise HandshakeRejectedError(self._refused())
        if self._closing:  # closed while authenticate ran
            raise TransportError(f"cannot reach {self._where()}: ConnectionResetError")
        response, peer = result
        latency = self._transport.latency
        client = MemoryLink(client_peer, is_client=True, limits=limits, latency=latency,
                            remote_address=(self.config.host, self.port))
        server = MemoryLink(peer, is_client=False, limits=self.config.limits, latency=latency,
                            remote_address=(source or "memory", next(self._transport._client_ports)))
        client._other, server._other = server, client
        frames = [response] if isinstance(response, (bytes, bytearray, memoryview)) else list(response)
        for frame in frames:
            if len(frame):
                server._put(client, bytes(frame))
        self.links.add(server)
        self.links_opened += 1
        task = asyncio.get_running_loop().create_task(self._serve(server))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        return client

    def _where(self) -> str:
        """scheme://host:port, never the secret path (it must not end up in logs)."""
        return f"{'wss' if self.config.tls else 'ws'}://{self.config.host}:{self._port}"

    def _refused(self) -> str:
        return (f"{self._where()} answered HTTP 404 instead of upgrading: wrong path, or this device is not "
                "accepted there (check the registry and network id)")

    async def _serve(self, link: MemoryLink) -> None:
        try:
            await self._on_link(link)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not link.closed:
                log.warning("link handler ended with %s: %s", type(exc).__name__, exc)
                await link.close(CLOSE_INTERNAL_ERROR, "")
        finally:
            self.links.discard(link)
            await link.close()


class MemoryTransport:
    """Servers and dialling inside one process. ``latency``: the figure every link reports."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self._servers: dict[tuple[str, int], MemoryServer] = {}
        self._ports = itertools.count(40_000)
        self._client_ports = itertools.count(50_000)
        self.client_host: str | None = None   # the address dials come from (``as_host``); None: not told

    def as_host(self, host: str) -> MemoryTransport:
        """A view of this network whose dials come from ``host`` (servers and ports are shared)."""
        view = copy.copy(self)
        view.client_host = host
        return view

    def server(self, config: ServerConfig, authenticate: Authenticate, on_link: OnLink) -> MemoryServer:
        return MemoryServer(self, config, authenticate, on_link)

    async def dial(self, config: ClientConfig, hello: bytes, *, peer: Any = None) -> MemoryLink:
        parts = urlsplit(config.url)
        server = self._servers.get((parts.hostname or "", parts.port or (443 if parts.scheme == "wss" else 80)))
        if server is None:
            raise TransportError(f"cannot reach {parts.scheme}://{parts.netloc}: ConnectionRefusedError")
        await asyncio.sleep(0)  # dialling is never synchronous
        return await server._accept(parts.path or "/", bytes(hello), peer if peer is not None else config.url,
                                    config.limits, self.client_host)

    def _register(self, server: MemoryServer) -> int:
        port = server.config.port or next(self._ports)
        key = (server.config.host, port)
        if key in self._servers:
            raise TransportError(f"address already in use: {server.config.host}:{port}")
        self._servers[key] = server
        return port

    def _unregister(self, server: MemoryServer) -> None:
        for key in [k for k, v in self._servers.items() if v is server]:   # in place: views share the dict
            del self._servers[key]
