"""Dialling a WebSocket link: one attempt (``dial``); reconnecting is transport/reconnect.py.

Spec: "Network Layer" (WS/WSS), "Cloudflare Proxy Compatibility", issue 5 "Survives restarts of peers
and relays (reconnects with backoff)". The hello (the protocol's first handshake message) is sent in the
upgrade request (see decoy.py); a server that refuses it answers with an ordinary page, reported as
HandshakeRejectedError. Every attempt asks the ``hello`` factory for a FRESH hello: handshakes carry
timestamps and ephemeral keys and must not be replayed.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from shadowmesh_client.transport.config import ClientConfig
from shadowmesh_client.transport.errors import HandshakeRejectedError, TransportError
from shadowmesh_client.transport.ws.decoy import encode_hello
from shadowmesh_client.transport.ws.link import Link

log = logging.getLogger(__name__)



async def dial(config: ClientConfig, hello: bytes, *, peer: Any = None) -> Link:
    """Open one link to ``config.url`` presenting ``hello``. Returns the Link (the server's handshake
    response arrives as the first received message). Raises HandshakeRejectedError if the server
    answered with a page instead of 101, TransportError for network/TLS failures."""
    headers = {"Cookie": f"{config.hello_cookie}={encode_hello(hello)}"}
    try:
        connection = await connect(
            config.url,
            additional_headers=headers,
            user_agent_header=config.user_agent,
            ssl=config.ssl_context(),
            server_hostname=config.server_hostname,
            proxy=None,  # never pick up HTTP(S)_PROXY from the environment by surprise
            **config.limits.websockets_kwargs(),
        )
    except InvalidStatus as exc:
        raise HandshakeRejectedError(
            f"{_safe_url(config.url)} answered HTTP {exc.response.status_code} instead of upgrading: wrong "
            "path, or this device is not accepted there (check the registry and network id)") from None
    except ssl.SSLCertVerificationError as exc:
        raise TransportError(
            f"TLS certificate of {_safe_url(config.url)} not trusted ({exc.verify_message}): set "
            "transport.ca_file to the CA that signed it, or fix server_hostname") from None
    except (TimeoutError, OSError, InvalidHandshake, ssl.SSLError) as exc:
        raise TransportError(f"cannot reach {_safe_url(config.url)}: {type(exc).__name__}: {exc}") from None
    link = Link(connection, peer if peer is not None else config.url, is_client=True)
    if config.limits.idle_ping_interval is not None:
        link.ping_when_idle(config.limits.idle_ping_interval)
    return link


def _safe_url(url: str) -> str:
    """The URL without its path: the secret path must not end up in logs."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"
