"""LinkServer: accepts authenticated WebSocket links and answers everything else as nginx would.

Spec: "Network Layer", "Cloudflare Proxy Compatibility"; issue 12 "Camouflage". Flow of one connection:

1. (TLS configured) The first byte is peeked, as nginx does: a TLS record (0x16, or SSLv2's high bit)
   starts the TLS handshake (ALPN http/1.1); anything else is read as plain HTTP and every request then
   gets nginx's "400 The plain HTTP request was sent to HTTPS port" page.
2. ``_Front`` (an asyncio BufferedProtocol) feeds the bytes to ``http.HttpConnection``, which answers every
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

Pre-authentication bounds (issue 12 "Slowloris"; docs/transport.md "Pre-authentication limits"): a
connection counts from accept until its hand-over to websockets or its close, per source address (IPv4
address; IPv6 /64) and in total. A new connection over ``max_preauth_per_source`` is closed at once
(``preauth_refused``). At ``max_preauth_total`` the server first closes up to DRAIN_BATCH of the oldest
idle ones (no byte of a request yet, or idle keep-alive: nginx's ngx_drain_connections,
``preauth_drained``), and closes the new one if none was idle: what nginx does when it runs out of
worker_connections. Memory per connection before a request is complete: reads go through one scratch
buffer per server (BufferedProtocol, READ_CHUNK_BYTES at most per read), the head buffer is bounded by
ws/http.py's nginx limits, answers to pipelined requests stop at WRITE_HIGH_BYTES of unsent output
(reading pauses until the client reads), and everything is dropped when the connection closes.

Concurrency: every task (TLS start, authentication) is owned by the server and awaited by ``close()``;
decoy connections are plain protocol callbacks (no task each).

May import: websockets, transport.base/config/errors, ws/decoy.py, ws/http.py, ws/link.py.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import ipaddress
import itertools
import logging
import os
import socket
import ssl
import weakref
from typing import Any, cast

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
DRAIN_BATCH = 32  # connections: idle pre-auth connections closed at once at the total cap (nginx: 32)
READ_CHUNK_BYTES = 16_384  # bytes: largest single read of a pre-auth connection (shared scratch buffer)
WRITE_HIGH_BYTES = 65_536  # bytes: unsent decoy output above which reading (and answering) pauses


def source_key(peername: Any) -> str:
    """The address a pre-auth connection is counted under: the IPv4 address (IPv4-mapped IPv6 too), or
    the IPv6 /64 (one subscriber usually holds a whole /64). Unknown peers share the key ``"?"``."""
    host = peername[0] if isinstance(peername, tuple) and peername else None
    if not isinstance(host, str):
        return "?"
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return f"{ipaddress.IPv6Network((ip, 64), strict=False).network_address}/64"
    return str(ip)


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
    ``links_opened``, ``preauth_refused`` (connections closed at accept: over a pre-auth cap),
    ``preauth_drained`` (idle pre-auth connections closed to make room). ``links`` is the set of open
    links; ``preauth`` the number of pre-authentication connections, ``preauth_by_source`` per source.
    """

    def __init__(self, config: ServerConfig, authenticate: Authenticate, on_link: OnLink) -> None:
        self.config = config
        self._authenticate = authenticate
        try:  # hooks that take ``source`` get the client's address key (per-source handshake limits)
            self._with_source = "source" in inspect.signature(authenticate).parameters
        except (TypeError, ValueError):
            self._with_source = False
        self._on_link = on_link
        self.site = Site(config.server_name, site_mtime(config.site_mtime))
        self._path_digest = path_digest(config.path)
        self._ssl = config.ssl_context()
        self._tcp: asyncio.Server | None = None
        self._ws: Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._fronts: set[_Front] = set()                # admitted pre-auth connections
        self._idle: dict[_Front, None] = {}               # the reusable ones among them, oldest first
        self._per_source: dict[str, int] = {}             # source_key -> admitted pre-auth connections
        self._scratch = memoryview(bytearray(READ_CHUNK_BYTES))  # every front reads into it (one loop)
        # authenticate()'s result between the hand-over and the handler, keyed by the connection
        self._accepted: weakref.WeakKeyDictionary[ServerConnection, AuthResult] = weakref.WeakKeyDictionary()
        self.links: set[Link] = set()
        self.decoys_served = 0
        self.auth_failures = 0
        self.links_opened = 0
        self.preauth_refused = 0
        self.preauth_drained = 0

    # ---- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        limits = self.config.limits
        self._ws = Server(self._handler, process_response=self._process_response, server_header=None,
                          open_timeout=limits.open_timeout, logger=_ws_logger)
        loop = asyncio.get_running_loop()
        try:
            self._tcp = await loop.create_server(lambda: _Front(self), self.config.host, self.config.port)
        except BaseException:
            self._ws = None   # nothing listens: close() has nothing to close (and the OSError is not hidden)
            raise
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

    @property
    def preauth(self) -> int:
        return len(self._fronts)

    @property
    def preauth_by_source(self) -> dict[str, int]:
        return dict(self._per_source)

    # ---- helpers for _Front -----------------------------------------------------------------------
    def _admit(self, front: _Front, source: str) -> bool:
        """Count ``front`` as a pre-auth connection of ``source``, or say it must be closed at once."""
        config = self.config
        held = self._per_source.get(source, 0)
        if held >= config.max_preauth_per_source:
            self.preauth_refused += 1
            return False
        if len(self._fronts) >= config.max_preauth_total:
            for idle in list(itertools.islice(self._idle, DRAIN_BATCH)):  # oldest first
                self.preauth_drained += 1
                idle.abort()
            if len(self._fronts) >= config.max_preauth_total:
                self.preauth_refused += 1
                return False
        self._fronts.add(front)
        self._per_source[source] = self._per_source.get(source, 0) + 1  # draining may have changed it
        return True

    def _release(self, front: _Front, source: str) -> None:
        self._fronts.discard(front)
        self._idle.pop(front, None)
        held = self._per_source.pop(source) - 1
        if held:
            self._per_source[source] = held

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
        if self.config.limits.idle_ping_interval is not None:
            link.ping_when_idle(self.config.limits.idle_ping_interval)
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


_STREAM_METHODS = ("write", "write_eof", "can_write_eof", "abort", "close", "is_closing", "pause_reading",
                   "resume_reading", "set_protocol", "get_extra_info", "get_write_buffer_size",
                   "set_write_buffer_limits")
"""What ``_Front`` and ``_hand_over`` call on a connection's transport."""


def _stream_transport(transport: Any) -> asyncio.Transport:
    """``transport`` as a stream transport, on asyncio's loop or uvloop's. asyncio's are
    ``asyncio.Transport`` subclasses; uvloop's (``TCPTransport``, its TLS transport) are Cython classes
    with the same methods that subclass neither ``asyncio.Transport`` nor ``asyncio.BaseTransport``, so an
    ``isinstance`` check refused every connection there. A datagram or other transport is a bug: TypeError."""
    if isinstance(transport, asyncio.Transport) or all(callable(getattr(transport, m, None)) for m in _STREAM_METHODS):
        return cast(asyncio.Transport, transport)
    raise TypeError(f"LinkServer needs a stream transport, not {type(transport).__name__}")


class _Front(asyncio.BufferedProtocol):
    """One TCP connection until it is handed to websockets: the nginx look-alike in front.

    Lives only while the connection does: ``connection_lost`` drops it from every server table and
    frees its buffer, and nothing else keeps it (timers are cancelled, the transport lets go of it).
    """

    __slots__ = ("server", "loop", "transport", "http", "_timer", "_lingering", "_busy", "_peek_sock", "_early",
                 "_source", "_write_paused", "_raw")

    def __init__(self, server: LinkServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.http: HttpConnection | None = None  # created once admitted
        self._timer: asyncio.TimerHandle | None = None
        self._lingering = False
        self._busy = False           # authenticating, TLS handshake: the connection is not ours to close
        self._peek_sock: socket.socket | None = None
        self._early: list[bytes] | None = None  # TLS app data that arrived before start_tls() returned
        self._raw: list[bytes] | None = None    # TLS port: bytes read before TLS detection/start_tls (uvloop)
        self._source: str | None = None         # set while counted as a pre-auth connection
        self._write_paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = self.transport = _stream_transport(transport)
        server = self.server
        source = source_key(transport.get_extra_info("peername"))
        if not server._admit(self, source):
            transport.abort()  # nginx without a free connection: the accepted socket is closed at once
            return
        self._source = source
        self.http = HttpConnection(server.site, server._is_candidate, reply_budget=WRITE_HIGH_BYTES)
        transport.set_write_buffer_limits(high=WRITE_HIGH_BYTES)
        if server._ssl is not None and transport.get_extra_info("sslcontext") is None:
            transport.pause_reading()  # before asyncio registers its reader: peek at the first byte
            fd = os.dup(transport.get_extra_info("socket").fileno())
            self._peek_sock = socket.socket(fileno=fd)
            self._peek_sock.setblocking(False)
            self.loop.add_reader(fd, self._peek)
            # uvloop starts reading right after connection_made whatever pause_reading said: what it reads
            # before the first byte is classified, or before start_tls takes the connection, is kept here
            # and replayed (asyncio honours the pause: stays empty)
            self._raw = []
        self._arm()
        self._reusable(True)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server._scratch

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.server._scratch[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        if self._lingering or self.http is None:
            return
        if self._raw is not None:
            self._raw.append(data)
            if self._peek_sock is not None:   # uvloop read the first bytes before the peek did
                self._classify(data[:1])
            return
        if self._early is not None:
            self._early.append(data)
            return
        self._reusable(False)
        self._arm()
        self._answer(self.http.receive(data))

    def eof_received(self) -> bool | None:
        return None  # close: nginx closes a connection whose client half-closed while it waited

    def pause_writing(self) -> None:
        self._write_paused = True
        self._reusable(False)
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.http is not None and self.http.stalled:
            self._continue()
        else:
            self._resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_peek()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._release()
        self._early = self._raw = None
        if self.http is not None:
            self.http.buffer.clear()

    def abort(self) -> None:
        self._stop_peek()
        self._release()
        if self.transport is not None:
            self.transport.abort()

    # -- pre-auth bookkeeping --------------------------------------------------------------------
    def _release(self) -> None:
        if self._source is not None:
            self.server._release(self, self._source)
            self._source = None

    def _reusable(self, flag: bool) -> None:
        """Mark the connection idle (closed first when the total cap is reached) or busy; an idle one
        moves to the end of the queue (newest), as in nginx's reusable_connections_queue."""
        idle = self.server._idle
        idle.pop(self, None)
        if flag and self._source is not None:
            idle[self] = None

    # -- timers and writes -----------------------------------------------------------------------
    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._lingering:
            delay = LINGER_S
        elif self.http is not None and self.http.waiting_for == "keepalive":
            delay = self.server.config.keepalive_timeout
        else:
            delay = self.server.config.header_timeout
        self._timer = self.loop.call_later(delay, self._timeout)

    def _timeout(self) -> None:
        self._timer = None
        if not self._busy and self.transport is not None:
            self.transport.close()  # nginx: no answer on a timeout (it logs 408), just FIN

    def _answer(self, replies: list[Reply]) -> None:
        transport, http = self.transport, self.http
        assert transport is not None and http is not None
        for reply in replies:
            if reply.data:
                self.server.decoys_served += 1
                transport.write(reply.data)
            if reply.close:
                self._close_after_answer(reply.fin)
                return
        if http.upgrade is not None:
            transport.pause_reading()
            self._busy = True
            self.server._spawn(self._authenticate(http.upgrade, self.loop.time()))
        elif http.stalled:
            transport.pause_reading()  # pipelined requests wait until the answers so far are sent
            if not self._write_paused:
                self.loop.call_soon(self._continue)
        else:
            self._arm()
            self._reusable(http.reusable and not self._write_paused)
            self._resume_reading()

    def _continue(self) -> None:
        if self.transport is None or self.transport.is_closing() or self.http is None or self._write_paused:
            return
        self._answer(self.http.resume())

    def _resume_reading(self) -> None:
        """Read again unless something still holds reading paused."""
        http, transport = self.http, self.transport
        if (transport is None or transport.is_closing() or http is None or self._busy or self._write_paused
                or http.stalled or http.upgrade is not None or self._peek_sock is not None
                or self._early is not None):
            return
        transport.resume_reading()

    def _close_after_answer(self, fin: bool) -> None:
        """nginx's lingering close: FIN (unless nginx still waits for a request body: ``fin`` False),
        then drain (and ignore) input for up to LINGER_S seconds, so a client that sent more than was
        read sees the answer and a FIN, not a reset."""
        transport = self.transport
        assert transport is not None
        self._reusable(False)
        if self.http is not None:
            self.http.buffer.clear()  # nothing more will be parsed
        if fin and not transport.can_write_eof():
            transport.close()
            return
        if fin:
            transport.write_eof()
        self._lingering = True
        self._arm()
        transport.resume_reading()  # drain even if the answers above paused it

    # -- the hello -------------------------------------------------------------------------------
    async def _authenticate(self, request: Request, started: float) -> None:
        server, transport = self.server, self.transport
        assert transport is not None
        result: Any = None
        hello = extract_hello(request, server.config.hello_cookie, server.config.max_hello_bytes)
        try:
            if hello is not None:
                try:
                    if server._with_source:
                        result = server._authenticate(hello, source=self._source)  # type: ignore[call-arg]
                    else:
                        result = server._authenticate(hello)
                    if inspect.isawaitable(result):
                        result = await result
                except Exception as exc:  # the node's hook failed: refuse like any other failure
                    log.debug("authenticate hook raised %s; answering with a decoy", type(exc).__name__)
                    result = None
            if result is not None and not transport.is_closing():
                self._release()  # from here on an authenticated link, not counted
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                http, self.http = self.http, None
                assert http is not None
                server._hand_over(transport, request.raw + bytes(http.buffer), result)
                return
            if hello is not None:
                server.auth_failures += 1
            # constant-time refusal: the same answer at the same time, whatever the hook found
            delay = started + server.config.refusal_floor - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            self._busy = False
        if transport.is_closing() or self.http is None:
            return
        self._answer(self.http.refuse())

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
        self._classify(first)

    def _classify(self, first: bytes) -> None:
        """The first byte (peeked, or read by uvloop) decides: a TLS handshake, or plain HTTP on the TLS
        port (nginx's 400 page); b"": the client closed."""
        self._stop_peek()
        transport = self.transport
        assert transport is not None
        self._reusable(False)  # a byte arrived: no longer idle (nginx: ngx_http_ssl_handshake)
        if first and (first[0] == 0x16 or first[0] & 0x80):
            self._busy = True
            self._early = []
            self.server._spawn(self._start_tls())
            return
        raw, self._raw = self._raw, None
        if not first or self.http is None:
            transport.close()
        else:
            self.http.plain_on_tls = True
            if raw:
                self.data_received(b"".join(raw))
            else:
                transport.resume_reading()

    def _stop_peek(self) -> None:
        if self._peek_sock is not None:
            self.loop.remove_reader(self._peek_sock.fileno())
            self._peek_sock.close()
            self._peek_sock = None

    def _replay_to_tls(self, transport: asyncio.Transport) -> None:
        raw, self._raw = self._raw, None
        if raw:
            self.loop.call_soon(self._feed_tls, transport, b"".join(raw))

    def _feed_tls(self, transport: asyncio.Transport, data: bytes) -> None:
        """Hand ``data`` (TLS records read before start_tls took the connection) to the TLS protocol, as the
        transport would have: through its get_buffer/buffer_updated (asyncio's and uvloop's SSLProtocol)."""
        protocol: Any = transport.get_protocol()
        if protocol is self or transport.is_closing():
            return
        get_buffer = getattr(protocol, "get_buffer", None)
        if get_buffer is None:
            protocol.data_received(data)
            return
        view = memoryview(data)
        while view:
            buf = get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]

    async def _start_tls(self) -> None:
        transport = self.transport
        assert transport is not None and self.server._ssl is not None
        handshake = self.loop.create_task(self.loop.start_tls(transport, self, self.server._ssl, server_side=True,
                                                              ssl_handshake_timeout=self.server.config.header_timeout))
        # runs right after start_tls's first step (FIFO), which swapped in the TLS protocol and queued its
        # connection_made and resume_reading: bytes uvloop already read are handed to it after those
        self.loop.call_soon(self._replay_to_tls, transport)
        try:
            tls = await handshake
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            # asyncio aborts without flushing the alert OpenSSL may have queued (known limit)
            log.debug("TLS handshake failed: %s", type(exc).__name__)
            self.abort()
            return
        finally:
            self._busy = False
            early, self._early = self._early or [], None
        if tls is None:  # the connection closed during the handshake
            return
        tls = self.transport = _stream_transport(tls)
        tls.set_write_buffer_limits(high=WRITE_HIGH_BYTES)
        self._arm()
        if early:
            self.data_received(b"".join(early))
        else:
            self._reusable(True)  # nginx: idle again until the first request byte
            self._resume_reading()
