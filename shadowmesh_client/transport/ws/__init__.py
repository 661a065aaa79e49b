"""The WebSocket implementation of the transport (WS/WSS, websockets 15 asyncio API): the only package
that imports websockets. ``link.py`` wraps a connection (including the fast paths that reach into
websockets' internals, each measured and pinned by tests/client/transport/test_websockets_internals.py),
``server.py`` accepts links behind the decoy web server (``decoy.py``), ``client.py`` dials.

May import: transport.base/config/errors, websockets. Nothing above the transport.
"""

from __future__ import annotations

from typing import Any

from shadowmesh_client.transport.base import Authenticate, OnLink
from shadowmesh_client.transport.config import ClientConfig, ServerConfig
from shadowmesh_client.transport.ws.client import dial
from shadowmesh_client.transport.ws.link import Link
from shadowmesh_client.transport.ws.server import LinkServer


class WebSocketTransport:
    """``transport.base.Transport`` over real sockets."""

    def server(self, config: ServerConfig, authenticate: Authenticate, on_link: OnLink) -> LinkServer:
        return LinkServer(config, authenticate, on_link)

    async def dial(self, config: ClientConfig, hello: bytes, *, peer: Any = None) -> Link:
        return await dial(config, hello, peer=peer)


__all__ = ["Link", "LinkServer", "WebSocketTransport", "dial"]
