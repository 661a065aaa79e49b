"""LinkServer: accepts authenticated WebSocket links and answers everything else as nginx would.

Spec: "Network Layer", "Cloudflare Proxy Compatibility"; issue 12 "Camouflage". Flow of one connection:

1. (TLS configured) The first byte is peeked, as nginx does: a TLS record (0x16, or SSLv2's high bit)
   starts the TLS handshake (ALPN http/1.1); anything else is read as plain HTTP and every request then
   gets nginx's "400 The plain HTTP request was sent to HTTPS port" page.
2. ``_Front`` (an asyncio Protocol) feeds the bytes to ``http.HttpConnection``, which answers every
   request like Debian's nginx 1.22 default site: pipelining, keep-alive (65 s), header/body timeouts
   (60 s), HEAD, 304, ranges, gzip, error pages. A request that could be a hello (the secret path,
   compared in constant time, and a valid RFC 6455 upgrade) stops the parser: reading pauses and
   ``authenticate(hello)`` runs in a task the server supervises.
3. Refused (no hello cookie, hook returned None or raised): the request is answered as the decoy (404,
   keep-alive, like any missing file) no sooner than ``refusal_floor`` seconds after it was read, so the
   hook's cost does not tell registered keys from unregistered ones. Counted in ``auth_failures``
   (hellos refused) and ``decoys_served`` (requests answered with a page).
4. Accepted: the connection is handed to websockets (its public ``Server``/``ServerConnection``: the
   connection becomes the transport's protocol and receives the request bytes), which answers 101;
   each response frame is sent as one binary message, then ``on_link(link)`` is awaited; when it
   returns, the link is closed (1000; 1011 if it raised).

``authenticate(first_message) -> (response, peer) | None`` may be a plain function or a coroutine
function; ``response`` is ``bytes`` or a list of frames (empty ones are skipped); ``peer`` is opaque (for
the relay: the authenticated 32-byte Ed25519 key). What a prober can still tell: docs/transport.md
"Known limits of the camouflage" (the list tests/e2e/test_camouflage.py asserts).

Concurrency: every task (TLS start, authentication) is owned by the server and awaited by ``close()``;
decoy connections are plain protocol callbacks (no task each).

May import: websockets, transport.base/config/errors, ws/decoy.py, ws/http.py, ws/link.py.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import os
import socket
import ssl
import weakref
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response
from websockets.server import ServerProtocol

from shadowmesh_client.transport.base import CLOSE_INTERNAL_ERROR, Authenticate, AuthResult, OnLink
from shadowmesh_client.transport.config import ServerConfig
from shadowmesh_client.transport.ws.decoy import extract_hello, is_websocket_upgrade, path_digest, site_mtime
from shadowmesh_client.transport.ws.http import HttpConnection, Reply, Request, Site
from shadowmesh_client.transport.ws.link import Link

log = logging.getLogger(__name__)

LINGER_S = 5.0  # seconds: nginx's lingering_timeout: after a closing answer, unread input is drained


class _QuietHandshakeFilter(logging.Filter):
    """websockets logs failed opening handshakes at ERROR with a traceback; demote them to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.getMessage().startswith("opening handshake failed"):
            record.levelno, record.levelname, record.exc_info, record.exc_text = logging.DEBUG, "DEBUG", None, None
            return log.isEnabledFor(logging.DEBUG)
        return True


_ws_logger = logging.getLogger("shadowmesh_client.transport.websockets")
_ws_logger.addFilter(_QuietHandshakeFilter())


class LinkServer:
    """Listens on ``config.host:config.port`` (WS, or WSS when the config has a certificate).

    Use ``async with LinkServer(...) as server:`` or ``await start()`` / ``await close()``.
    Counters: ``decoys_served`` (requests answered with a page), ``auth_failures`` (hellos refused),
    ``links_opened``. ``links`` is the set of open links.
    """

    def __init__(self, config: ServerConfig, authenticate: Authenticate, on_link: OnLink) -> None:
        self.config = config
        self._authenticate = authenticate
        self._on_link = on_link
        self.site = Site(config.server_name, site_mtime(config.site_mtime))
        self._path_digest = path_digest(config.path)
        self._ssl = config.ssl_context()
        self._tcp: asyncio.Server | None = None
        self._ws: Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._fronts: set[_Front] = set()
        # authenticate()'s result between the hand-over and the handler, keyed by the connection
        self._accepted: weakref.WeakKeyDictionary[ServerConnection, AuthResult] = weakref.WeakKeyDictionary()
        self.links: set[Link] = set()
        self.decoys_served = 0
        self.auth_failures = 0
        self.links_opened = 0

    # ---- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        limits = self.config.limits
        self._ws = Server(self._handler, process_response=self._process_response, server_header=None,
                          open_timeout=limits.open_timeout, logger=_ws_logger)
        loop = asyncio.get_running_loop()
        self._tcp = await loop.create_server(lambda: _Front(self), self.config.host, self.config.port)
        self._ws.wrap(self._tcp)

    async def close(self) -> None:
        """Stop listening, close every link (close code 1001), drop decoy connections, and return once
        every handler and task has ended."""
        if self._ws is None:
            return
        self._ws.close()                  # closes the listener, then links (1001), awaits their handlers
        for front in list(self._fronts):
            front.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._ws.wait_closed()
        self._ws = self._tcp = None

    async def __aenter__(self) -> LinkServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        assert self._tcp is not None, "start() the server first"
        return self._tcp.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """The URL clients dial (host as configured; 127.0.0.1 in tests)."""
        scheme = "wss" if self.config.tls else "ws"
        return f"{scheme}://{self.config.host}:{self.port}{self.config.path}"

    # ---- helpers for _Front -----------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _is_candidate(self, request: Request) -> bool:
        on_path = hmac.compare_digest(path_digest(request.path), self._path_digest)
        return on_path and is_websocket_upgrade(request)

    def _hand_over(self, transport: asyncio.Transport, raw: bytes, result: AuthResult) -> None:
        """Make websockets the connection's protocol and replay the upgrade request to it."""
        assert self._ws is not None
        limits = self.config.limits
        protocol = ServerProtocol(extensions=None, max_size=limits.max_message_bytes, logger=_ws_logger)
        connection = ServerConnection(
            protocol, self._ws, ping_interval=limits.ping_interval, ping_timeout=limits.ping_timeout,
            close_timeout=limits.close_timeout, max_queue=limits.max_queue, write_limit=limits.write_limit)
        self._accepted[connection] = result
        transport.set_protocol(connection)
        connection.connection_made(transport)  # registers with the websockets Server: it runs the handler
        connection.data_received(raw)
        transport.resume_reading()

    def _process_response(self, connection: ServerConnection, request: WsRequest, response: Response) -> None:
        if response.status_code == 101:
            response.headers["Server"] = self.config.server_name
        return None

    # ---- after 101 --------------------------------------------------------------------------------
    async def _handler(self, connection: ServerConnection) -> None:
        response, peer = self._accepted.pop(connection)
        link = Link(connection, peer, is_client=False)
        self.links.add(link)
        self.links_opened += 1
        try:
            frames = [response] if isinstance(response, (bytes, bytearray, memoryview)) else response
            for frame in frames:
                if len(frame):  # an empty response means "nothing to send back"
                    await link.send(frame)
            response = frames = frame = None  # type: ignore[assignment]  # not kept alive for the link's lifetime
            await self._on_link(link)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # LinkClosedError is the normal end; anything else is a bug in on_link: log, close with 1011.
            if not link.closed:
                log.warning("link handler ended with %s: %s", type(exc).__name__, exc)
                await link.close(CLOSE_INTERNAL_ERROR, "")
        finally:
            self.links.discard(link)


class _Front(asyncio.Protocol):
    """One TCP connection until it is handed to websockets: the nginx look-alike in front."""

    def __init__(self, server: LinkServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.http = HttpConnection(server.site, server._is_candidate)
        self._timer: asyncio.TimerHandle | None = None
        self._lingering = False
        self._busy = False           # authenticating, TLS handshake: the connection is not ours to close
        self._peek_sock: socket.socket | None = None
        self._early: list[bytes] | None = None  # TLS app data that arrived before start_tls() returned

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._fronts.add(self)
        if self.server._ssl is not None and transport.get_extra_info("sslcontext") is None:
            transport.pause_reading()  # before asyncio registers its reader: peek at the first byte
            fd = os.dup(transport.get_extra_info("socket").fileno())
            self._peek_sock = socket.socket(fileno=fd)
            self._peek_sock.setblocking(False)
            self.loop.add_reader(fd, self._peek)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        if self._early is not None:
            self._early.append(data)
            return
        self._arm()
        self._answer(self.http.receive(data))

    def eof_received(self) -> bool | None:
        return None  # close: nginx closes a connection whose client half-closed while it waited

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_peek()
        if self._timer is not None:
            self._timer.cancel()
        self.server._fronts.discard(self)

    def abort(self) -> None:
        self._stop_peek()
        if self.transport is not None:
            self.transport.abort()

    # -- timers and writes -----------------------------------------------------------------------
    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._lingering:
            delay = LINGER_S
        elif self.http.waiting_for == "keepalive":
            delay = self.server.config.keepalive_timeout
        else:
            delay = self.server.config.header_timeout
        self._timer = self.loop.call_later(delay, self._timeout)

    def _timeout(self) -> None:
        if not self._busy and self.transport is not None:
            self.transport.close()  # nginx: no answer on a timeout (it logs 408), just FIN

    def _answer(self, replies: list[Reply]) -> None:
        transport = self.transport
        assert transport is not None
        for reply in replies:
            if reply.data:
                self.server.decoys_served += 1
                transport.write(reply.data)
            if reply.close:
                self._close_after_answer(reply.fin)
                return
        if self.http.upgrade is not None:
            transport.pause_reading()
            self._busy = True
            self.server._spawn(self._authenticate(self.http.upgrade, self.loop.time()))
        else:
            self._arm()

    def _close_after_answer(self, fin: bool) -> None:
        """nginx's lingering close: FIN (unless nginx still waits for a request body: ``fin`` False),
        then drain (and ignore) input for up to LINGER_S seconds, so a client that sent more than was
        read sees the answer and a FIN, not a reset."""
        transport = self.transport
        assert transport is not None
        if fin and not transport.can_write_eof():
            transport.close()
            return
        if fin:
            transport.write_eof()
        self._lingering = True
        self._arm()

    # -- the hello -------------------------------------------------------------------------------
    async def _authenticate(self, request: Request, started: float) -> None:
        server, transport = self.server, self.transport
        assert transport is not None
        result: Any = None
        hello = extract_hello(request, server.config.hello_cookie, server.config.max_hello_bytes)
        try:
            if hello is not None:
                try:
                    result = server._authenticate(hello)
                    if inspect.isawaitable(result):
                        result = await result
                except Exception as exc:  # the node's hook failed: refuse like any other failure
                    log.debug("authenticate hook raised %s; answering with a decoy", type(exc).__name__)
                    result = None
            if result is not None and not transport.is_closing():
                self.server._fronts.discard(self)
                if self._timer is not None:
                    self._timer.cancel()
                server._hand_over(transport, request.raw + bytes(self.http.buffer), result)
                return
            if hello is not None:
                server.auth_failures += 1
            # constant-time refusal: the same answer at the same time, whatever the hook found
            delay = started + server.config.refusal_floor - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            self._busy = False
        if transport.is_closing():
            return
        self._answer(self.http.refuse())
        if not transport.is_closing():
            transport.resume_reading()

    # -- TLS detection (nginx's ngx_http_ssl_handshake peeks at the first byte) ------------------
    def _peek(self) -> None:
        sock = self._peek_sock
        if sock is None:
            return
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            first = b""
        self.loop.remove_reader(sock.fileno())
        self._peek_sock = None
        transport = self.transport
        assert transport is not None
        sock.close()
        if first and (first[0] == 0x16 or first[0] & 0x80):
            self._busy = True
            self._early = []
            self.server._spawn(self._start_tls())
            return
        if not first:
            transport.close()
        else:
            self.http.plain_on_tls = True
            transport.resume_reading()

    def _stop_peek(self) -> None:
        if self._peek_sock is not None:
            self.loop.remove_reader(self._peek_sock.fileno())
            self._peek_sock.close()
            self._peek_sock = None

    async def _start_tls(self) -> None:
        transport = self.transport
        assert transport is not None and self.server._ssl is not None
        try:
            tls = await self.loop.start_tls(transport, self, self.server._ssl, server_side=True,
                                            ssl_handshake_timeout=self.server.config.header_timeout)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            # asyncio aborts without flushing the alert OpenSSL may have queued (known limit)
            log.debug("TLS handshake failed: %s", type(exc).__name__)
            transport.abort()
            return
        finally:
            self._busy = False
            early, self._early = self._early or [], None
        if tls is None:  # the connection closed during the handshake
            return
        assert isinstance(tls, asyncio.Transport)
        self.transport = tls
        self._arm()
        if early:
            self.data_received(b"".join(early))
