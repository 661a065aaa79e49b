"""The transport: moves whole protocol frames between authenticated ends (interface: ``base.py``).

Implementations: ``ws`` (WebSocket, WS/WSS: production) and ``memory`` (in-process pair: tests).
Node, relay and payments code depend on ``base.Transport``/``base.Link`` and receive an implementation;
``reconnect.ReconnectingClient`` keeps a link up over either. May import: errors, relay.errors (the
envelope error type is re-exported here). Never imports node/, relay daemons, rewards/ or chain/.

Spec: "Network Layer" (WS/WSS), "Data Plane" (WebSocket tunnels), "Cloudflare Proxy Compatibility"
(random path, heartbeat, TLS). Design and measured figures: docs/transport.md.

Public API (what node/ and relay/ call)::

    ServerConfig(host="127.0.0.1", port=0, path=random_path(), tls_cert=None, tls_key=None,
                 limits=LinkLimits(), hello_cookie="sid", max_hello_bytes=4096, server_name="nginx")
    ClientConfig(url, ca_file=None, server_hostname=None, limits=LinkLimits(), hello_cookie="sid",
                 user_agent=..., backoff_initial=0.25, backoff_max=30.0, backoff_multiplier=2.0,
                 backoff_jitter=0.5, stable_after=5.0)
    LinkLimits(max_message_bytes=66560, max_queue=4, write_limit=262144, ping_interval=20.0,
               ping_timeout=20.0, close_timeout=2.0, open_timeout=10.0)
    random_path() -> str                                   # "/api/v1/ws/<24 base64url chars>"

    transport = WebSocketTransport()  (transport.ws)  or  MemoryTransport()  (transport.memory, tests)
    server = transport.server(config, authenticate, on_link)   # async with server: ...; server.url, .port
        authenticate(first_message: bytes) -> (response: bytes | list[bytes], peer) | None   (sync or async)
        on_link(link: Link) -> Awaitable[None]             # awaited for the link's lifetime
    link = await transport.dial(client_config, hello: bytes, peer=None) -> Link
    client = ReconnectingClient(client_config, hello: () -> bytes | Awaitable[bytes], on_link,
                                dial=transport.dial, peer=None)
        client.start(); await client.close(); client.link; client.connected (asyncio.Event)

    Link: await link.send(frame)   await link.recv() -> bytes   async for frame in link
          await link.close()   link.abort()   link.closed   link.peer   link.latency
          counters: messages_in, bytes_in, messages_out, bytes_out

Errors (transport/errors.py): TransportError (ConnectionError), LinkClosedError, HandshakeRejectedError,
TransportConfigError (ConfigError), EnvelopeError (ValueError).

The relay's forwarding logic (sans-I/O) is ``shadowmesh_client.relay.core``; its asyncio wrapper is
``shadowmesh_client.relay.server.RelayServer``.
"""

from shadowmesh_client.transport.base import CLOSE_REPLACED, CLOSE_REVOKED, Link, Server, Transport
from shadowmesh_client.transport.config import ClientConfig, LinkLimits, ServerConfig, random_path
from shadowmesh_client.transport.errors import (
    EnvelopeError,
    HandshakeRejectedError,
    LinkClosedError,
    TransportConfigError,
    TransportError,
)
from shadowmesh_client.transport.reconnect import Backoff, ReconnectingClient

__all__ = [
    "CLOSE_REPLACED",
    "CLOSE_REVOKED",
    "Backoff",
    "ClientConfig",
    "EnvelopeError",
    "HandshakeRejectedError",
    "Link",
    "LinkClosedError",
    "LinkLimits",
    "Server",
    "ReconnectingClient",
    "ServerConfig",
    "Transport",
    "TransportConfigError",
    "TransportError",
    "random_path",
]
