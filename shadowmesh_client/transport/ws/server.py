"""LinkServer: accepts authenticated WebSocket links and answers everything else like a web server.

Spec: "Network Layer", "Cloudflare Proxy Compatibility". Flow of one connection:

1. HTTP request arrives. Unless ALL of these hold, the answer is a static nginx-like page (decoy.py):
   the path equals the secret ``ServerConfig.path`` (compared in constant time), the request is a valid
   RFC 6455 upgrade, it carries a hello cookie, and ``authenticate(hello)`` returns a result.
2. ``authenticate(first_message) -> (response, peer) | None`` is supplied by the node or relay. It gets the
   protocol's first handshake message and returns the bytes to send back (``bytes``, or a list of frames;
   empty ones are skipped) and an opaque ``peer`` (for the relay: the authenticated 32-byte Ed25519 key). It may be
   a plain function or a coroutine function. If it raises, the request is treated as failed (logged at
   DEBUG without the hello). It runs inside the upgrade, so it is bounded by ``open_timeout``.
3. On success: 101, then each response frame is sent as one binary message, then
   ``on_link(link)`` is awaited; when it returns, the link is closed (1000; 1011 if it raised).

What a prober can tell (docs/transport.md has the long form): everything outside the secret path looks
like nginx with ``server_tokens off`` and keep-alive off. It cannot tell a wrong path from a failed
authentication by content. It can tell: (a) requests websockets cannot parse (non-GET methods, bodies,
HTTP/1.0) get the connection closed without a response, where nginx would answer 400/405; (b) the
authentication takes measurable time when a hello is present on the right path (knowing the path is
required); (c) TLS fingerprints (JA3S) are Python's OpenSSL defaults. Fronting with nginx/a CDN removes (a)
and (c).
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import weakref

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from shadowmesh_client.transport.base import CLOSE_INTERNAL_ERROR, Authenticate, AuthResult, OnLink
from shadowmesh_client.transport.config import ServerConfig
from shadowmesh_client.transport.ws.decoy import Decoy, extract_hello, is_websocket_upgrade, path_digest
from shadowmesh_client.transport.ws.link import Link

log = logging.getLogger(__name__)


class _QuietHandshakeFilter(logging.Filter):
    """websockets logs scanners' malformed requests at ERROR with a traceback; demote them to DEBUG."""

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
        self._decoy = Decoy(config.server_name)
        self._path_digest = path_digest(config.path)
        self._server: Server | None = None
        # authenticate()'s result between process_request and the handler, keyed by the connection
        # (public API only: no attribute set on websockets' object); weak, so a handshake that fails
        # after authentication leaves nothing behind.
        self._accepted: weakref.WeakKeyDictionary[ServerConnection, AuthResult] = weakref.WeakKeyDictionary()
        self.links: set[Link] = set()
        self.decoys_served = 0
        self.auth_failures = 0
        self.links_opened = 0

    # ---- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await serve(
            self._handler, self.config.host, self.config.port,
            ssl=self.config.ssl_context(),
            process_request=self._process_request,
            process_response=self._process_response,
            server_header=None,  # decoys carry their own; 101 responses get it in _process_response
            logger=_ws_logger,
            **self.config.limits.websockets_kwargs(),
        )

    async def close(self) -> None:
        """Stop listening, close every link (close code 1001) and return once every handler has ended
        (websockets' ``Server.close`` waits for them; it does not cancel them)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> LinkServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """The URL clients dial (host as configured; 127.0.0.1 in tests)."""
        scheme = "wss" if self.config.tls else "ws"
        return f"{scheme}://{self.config.host}:{self.port}{self.config.path}"

    # ---- opening handshake ------------------------------------------------------------------------
    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if not hmac.compare_digest(path_digest(path), self._path_digest) or not is_websocket_upgrade(request):
            return self._decoy_for(request)
        hello = extract_hello(request, self.config.hello_cookie, self.config.max_hello_bytes)
        if hello is None:
            return self._decoy_for(request)
        try:
            result = self._authenticate(hello)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # the node's hook failed: refuse like any other failure
            log.debug("authenticate hook raised %s; answering with a decoy", type(exc).__name__)
            result = None
        if result is None:
            self.auth_failures += 1
            return self._decoy_for(request)
        self._accepted[connection] = result
        return None

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        if response.status_code == 101:
            response.headers["Server"] = self.config.server_name
        return None

    def _decoy_for(self, request: Request) -> Response:
        self.decoys_served += 1
        return self._decoy.response(request)

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
            response = frames = frame = None  # not kept alive by this frame for the link's lifetime
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
