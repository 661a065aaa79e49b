"""Exceptions of the transport and the relay envelope (subclasses of the package's base error).

Messages say what went wrong and what to do next; they never contain key material or hello bytes.
"""

from shadowmesh_client.errors import ConfigError, ShadowMeshError
from shadowmesh_client.relay.errors import EnvelopeError  # noqa: F401  (re-exported)


class TransportError(ShadowMeshError, ConnectionError):
    """A link could not be opened, or broke. Usually transient: the reconnecting client retries."""


class LinkClosedError(TransportError):
    """The link is closed (by either side, by a heartbeat timeout, or by a protocol violation)."""


class HandshakeRejectedError(TransportError):
    """The server answered the WebSocket upgrade with an ordinary HTTP page instead of 101.

    Either the path is wrong, or the server did not accept our hello (untrusted device, wrong network,
    stale handshake). The server deliberately does not say which.
    """


class TransportConfigError(ConfigError):
    """A transport or relay setting is invalid; the message names the setting."""
