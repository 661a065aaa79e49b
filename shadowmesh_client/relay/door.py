"""The relay's door: who may open a link, and the one small protocol Session per device.

Spec "Security Architecture" (relay tier), "Data Plane" (relay fallback). Every trust decision is the
directory's one ``TrustPolicy`` (directory/trust.py), the same the node asks:

* ``authenticate(hello)``: the hello in the upgrade must be a HANDSHAKE_INIT from a key the policy admits
  (trusted in this network now, not ours; checked on the 64-byte header before any crypto), and must open
  a Session with this relay's registered key; the answer is the handshake response frame(s) and the
  device's AUTHENTICATED key. Anything else returns None (the prober gets the decoy page) and counts in
  ``refused``. Any role is admitted: a device registered with the relay flag may also run ``up`` behind
  this relay, as it could before the restructure (``admit_hello`` without ``role``).
* Sessions are kept per device key and reused across reconnects, so a replayed hello (an old handshake
  timestamp) is refused; a device the directory stops trusting loses its Session at the next sweep
  (``forget_untrusted``), and the Session's own trust callback refuses it meanwhile.
* ``on_frame(key, frame)``: a LOCAL protocol frame of that device (the key confirmation, keepalives);
  returns the frames to send back.

Not task-safe beyond the event loop that owns the directory. May import: protocol, directory.trust.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shadowmesh_client.directory.trust import TrustPolicy
from shadowmesh_client.errors import ProtocolError
from shadowmesh_client.protocol import ProtocolConfig, Session, SessionState

_DEAD = (SessionState.CLOSED, SessionState.FAILED)


class Door:
    """``Door(identity, trust, protocol)``; ``sessions`` maps device key -> Session."""

    def __init__(self, identity, trust: TrustPolicy, protocol: ProtocolConfig) -> None:
        self.identity = identity
        self.trust = trust
        self.protocol = protocol
        self.sessions: dict[bytes, Session] = {}
        self.refused = 0   # hellos refused (malformed, untrusted, ours, forged, replayed)

    def authenticate(self, hello: bytes) -> tuple[Sequence[bytes | bytearray], bytes] | None:
        """(handshake response frames, device key) for an admitted hello; None otherwise (counted)."""
        trust = self.trust
        key = trust.admit_hello(hello)
        if key is None:
            self.refused += 1
            return None
        s = self.sessions.get(key)
        if s is None or s.state in _DEAD:
            s = self.sessions[key] = Session(self.identity, key, self.protocol, trust.is_trusted)
        try:
            received = s.open(hello, trust.now())
        except ProtocolError:
            self.refused += 1
            return None
        return received.outgoing, key

    def on_frame(self, key: bytes, frame) -> Sequence[bytes | bytearray] | None:
        """A LOCAL protocol frame from ``key``: what its Session answers (None: nothing, or no session)."""
        s = self.sessions.get(key)
        if s is None:
            return None
        try:
            return s.open(bytes(frame), self.trust.now()).outgoing
        except ProtocolError:
            return None

    def forget_untrusted(self, extra: Iterable[bytes] = ()) -> list[bytes]:
        """Drop the Sessions of keys no longer trusted; returns the untrusted keys among the sessions'
        and ``extra`` (the connected devices), each once, for the caller to disconnect."""
        keys = list(dict.fromkeys([*self.sessions, *extra]))
        gone = self.trust.untrusted(keys)
        for key in gone:
            self.sessions.pop(key, None)
        return gone
