"""The relay's door: who may open a link, and the one small protocol Session per device.

Spec "Security Architecture" (relay tier), "Data Plane" (relay fallback). Every trust decision is the
directory's one ``TrustPolicy`` (directory/trust.py), the same the node asks:

* ``authenticate(hello)``: the hello in the upgrade must be a HANDSHAKE_INIT from a key the policy admits
  (trusted in this network now, not ours; checked on the 64-byte header before any crypto), and must open
  a Session with this relay's registered key; the answer is the handshake response frame(s) and the
  device's AUTHENTICATED key. Anything else returns None (the prober gets the decoy page) and counts in
  ``refused``. Any role is admitted: a device registered with the relay flag may also run ``up`` behind
  this relay, as it could before the restructure (``admit_hello`` without ``role``).
* Flood guard (relay/guard.py, issue 12 "Handshake floods"): after the header check and before any
  crypto, ``HelloGuard.check`` applies the per-source rate and, under load, the cookie: a hello without a
  valid cookie then gets a ``Challenge`` (the cookie reply; RelayServer sends it as the link's only LOCAL
  message and closes with CLOSE_COOKIE), a hello over its source's rate is refused like any other.
  ``source`` is the initiator's address when the transport passes one, else its claimed key.
* Replays (issue 12): every Session shares the daemon's ``HandshakeFloors`` (protocol/floors.py), loaded
  from and appended to ``<state_dir>/handshake-floors.bin`` (relay/floors.py) before the response is
  built, so a hello recorded earlier is refused after the device's session ended and after a restart of
  this relay; hellos older than the freshness window (10 min) are refused too. One Session per device
  key, replaced by each newly authenticated link's (its key is current at once); a device the directory
  stops trusting loses its Session at the next sweep
  (``forget_untrusted``), and the Session's own trust callback refuses it meanwhile.
* ``open(key, frame)``: a LOCAL protocol frame of that device (the key confirmation, keepalives, sealed
  control messages: relay/control.py); ``seal(key, payloads)`` seals control messages for it.

Not task-safe beyond the event loop that owns the directory. May import: protocol, directory.trust,
relay.guard, relay.control.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shadowmesh_client.directory.trust import TrustPolicy
from shadowmesh_client.errors import ProtocolError
from shadowmesh_client.protocol import ProtocolConfig, Session
from shadowmesh_client.protocol.cookie import split_hello
from shadowmesh_client.protocol.floors import HandshakeFloors
from shadowmesh_client.relay.control import Opened, open_local, seal_controls
from shadowmesh_client.relay.guard import Challenge, GuardConfig, HelloGuard, Verdict


class Door:
    """``Door(identity, trust, protocol, floors=None, guard=None)``; ``sessions`` maps device key -> Session.
    ``floors=None``: in-memory floors (freshness window only across restarts); ``guard=None``: default
    GuardConfig (pass ``GuardConfig`` to tune, or ``False`` for none, e.g. a benchmark's own limits)."""

    def __init__(self, identity, trust: TrustPolicy, protocol: ProtocolConfig, *,
                 floors: HandshakeFloors | None = None, guard: GuardConfig | bool | None = None) -> None:
        self.identity = identity
        self.trust = trust
        self.protocol = protocol
        self.floors = floors if floors is not None else HandshakeFloors()
        self.guard = None if guard is False else HelloGuard(guard if isinstance(guard, GuardConfig) else None,
                                                            now=trust.now())
        self.sessions: dict[bytes, Session] = {}
        self.refused = 0   # hellos refused (malformed, untrusted, ours, forged, replayed, over rate)
        self.challenged = 0   # hellos answered with a cookie (under load)

    def authenticate(self, hello: bytes, source: object = None
                     ) -> tuple[Sequence[bytes | bytearray], bytes] | Challenge | None:
        """(handshake response frames, device key) for an admitted hello; a Challenge under load without a
        valid cookie; None otherwise (counted)."""
        trust = self.trust
        t = trust.now()
        frame, cookie = split_hello(hello)
        key = trust.admit_hello(frame)   # header only: unknown keys cost nothing more, and are no load
        if key is None:
            self.refused += 1
            return None
        if self.guard is not None:
            check = self.guard.check(frame, cookie, source, t)
            if check.verdict is Verdict.COOKIE:
                assert check.reply is not None
                self.challenged += 1
                return Challenge(check.reply)
            if check.verdict is Verdict.DROP:
                self.refused += 1
                return None
        # A fresh Session per authenticated link (the floors carry replay protection across sessions), so
        # its key is current at once and what we seal right after (RECEIPT_STATE) opens on a restarted
        # device too. It replaces the old one only once the hello verified: a forged or replayed hello
        # never disturbs a live session.
        s = Session(self.identity, key, self.protocol, trust.is_trusted, floors=self.floors)
        try:
            received = s.open(frame, t)
        except ProtocolError:
            self.refused += 1
            return None
        self.sessions[key] = s
        return received.outgoing, key

    def open(self, key: bytes, frame) -> Opened | None:
        """A LOCAL protocol frame from ``key``: its control messages and the frames its Session answers
        (None: no session, or the frame did not open)."""
        s = self.sessions.get(key)
        if s is None:
            return None
        try:
            return open_local(s, frame, self.trust.now())
        except ProtocolError:
            return None

    def on_frame(self, key: bytes, frame) -> Sequence[bytes | bytearray] | None:
        """A LOCAL protocol frame from ``key``: what its Session answers (None: nothing, or no session)."""
        opened = self.open(key, frame)
        return None if opened is None else opened.outgoing

    def seal(self, key: bytes, payloads: Sequence[bytes]) -> list[bytearray]:
        """Control messages for ``key`` sealed in its session (DATA frames; RelayServer adds LOCAL)."""
        s = self.sessions.get(key)
        return [] if s is None or not payloads else seal_controls(s, payloads, self.trust.now())

    def keepalive(self, key: bytes) -> list[bytearray]:
        """A KEEPALIVE of ``key``'s session: the answer to a control message that needs none (so the
        device's dead-peer timer sees the relay alive)."""
        s = self.sessions.get(key)
        frame = s.keepalive(self.trust.now()) if s is not None else None
        return [frame] if frame is not None else []

    def forget_untrusted(self, extra: Iterable[bytes] = ()) -> list[bytes]:
        """Drop the Sessions of keys no longer trusted; returns the untrusted keys among the sessions'
        and ``extra`` (the connected devices), each once, for the caller to disconnect."""
        keys = list(dict.fromkeys([*self.sessions, *extra]))
        gone = self.trust.untrusted(keys)
        for key in gone:
            self.sessions.pop(key, None)
        return gone
