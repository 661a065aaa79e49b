"""Protocol errors: all subclasses of shadowmesh_client.errors.ProtocolError (itself a ValueError).

The transport catches ProtocolError around ``Session.open`` and drops the frame; the subclass says why
(each is also counted in ``Session.counters``). Messages never contain key material.
"""

from shadowmesh_client.errors import ProtocolError

__all__ = [
    "AuthenticationError", "FrameFormatError", "HandshakeError", "NotEstablishedError", "ProtocolError", "ReplayError",
    "SessionClosedError", "UntrustedPeerError",
]


class FrameFormatError(ProtocolError):
    """The bytes are not a well-formed frame (wrong version, type, length or size)."""


class AuthenticationError(ProtocolError):
    """The AEAD tag or a signature did not verify: wrong key, wrong network, or altered bytes."""


class ReplayError(ProtocolError):
    """The sequence number was already seen or is older than the replay window (RFC 6479)."""


class UntrustedPeerError(ProtocolError):
    """The directory (the ``is_trusted`` callback) does not trust this peer's public key."""


class HandshakeError(ProtocolError):
    """A handshake message is unexpected, stale, addressed to someone else, or fails verification."""


class NotEstablishedError(ProtocolError):
    """No session key yet (handshake not complete): use ``send_packets`` to queue, or wait."""


class SessionClosedError(ProtocolError):
    """The session was closed or failed; create a new Session and handshake again."""
