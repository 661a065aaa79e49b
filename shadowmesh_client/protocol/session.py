"""A Session: everything between this device and ONE peer: handshake, keys, replay windows, rekey, timers.

Spec: "Network Protocol Design", "Ed25519 Key Management" (rotation every 24 h or 1 GB), "Threat Model".
Sans-I/O (like boringtun's ``noise`` and aioquic): methods take ``now`` (seconds, float, one clock) and
return frames for the caller to send; nothing here reads a clock, a socket or a random device except via
the ``rng`` argument. NOT thread- or task-safe: one owner drives a Session. After every call the caller
re-reads ``next_timer_at()`` and calls ``on_timer(now)`` when that time comes.

Keys. Up to three key pairs live at once: ``current`` (sends and receives), ``previous`` (receives only,
for ``grace_seconds`` after it was replaced, so frames in flight are not lost) and ``next`` (a responder's
new key, used for receiving only until the initiator's first frame under it confirms it; then it becomes
current). Frames carry the KEY_PHASE flag so the receiver picks the key without trial decryption. A rekey's new
key has the opposite phase of the key that carried the REKEY frames; a fresh HANDSHAKE_INIT announces
the new key's phase in its (signed) flags. When two live keys share a phase (after a peer restarted, or
``previous`` and ``next`` during a rekey), each candidate with that phase is tried, newest first.

Rekey: started by whoever first sees its current key reach rekey_after_messages (well before the 32-bit
sequence wraps), rekey_after_bytes sent or received, or rekey_after_seconds of age (age: the key's
initiator first; the responder after two more retry periods, as a fallback). Both sides rekeying at once
is settled by the lower public key keeping the initiator role. The old key keeps working during the
exchange and for the grace period after it, so no packet is lost.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from shadowmesh_client import crypto
from shadowmesh_client.protocol import constants as C
from shadowmesh_client.protocol import frames as F
from shadowmesh_client.protocol import handshake as H
from shadowmesh_client.protocol.config import ProtocolConfig, TrustCallback
from shadowmesh_client.protocol.errors import (
    AuthenticationError,
    FrameFormatError,
    HandshakeError,
    NotEstablishedError,
    ProtocolError,
    ReplayError,
    SessionClosedError,
    UntrustedPeerError,
)
from shadowmesh_client.protocol.floors import HandshakeFloors
from shadowmesh_client.protocol.replay import ReplayWindow

_HEADER = F.HEADER
_SESSION_HEADER = F.SESSION_HEADER
_VERSION_NIBBLE = C.PROTOCOL_VERSION << 4
_PHASE = int(F.Flags.KEY_PHASE)
_PADDED = int(F.Flags.PADDED)
_RESPONSE = int(F.Flags.RESPONSE)
_OFFLOAD = int(F.Flags.OFFLOAD)
_DATA, _KEEPALIVE, _REKEY, _CLOSE = (int(F.FrameType.DATA), int(F.FrameType.KEEPALIVE),
                                     int(F.FrameType.REKEY), int(F.FrameType.CLOSE))


class SessionState(enum.Enum):
    NEW = "new"  # nothing sent or received yet
    INITIATING = "initiating"  # our first handshake initiation is out, no key yet
    ESTABLISHED = "established"  # a current key exists: packets can be sealed
    CLOSED = "closed"  # closed by either side; keys wiped
    FAILED = "failed"  # the first handshake got no answer within handshake_give_up_seconds


class SessionEvent(enum.Enum):
    ESTABLISHED = "established"  # first key in place
    REKEYED = "rekeyed"  # a newer key took over
    KEEPALIVE = "keepalive"  # peer's keepalive (or handshake confirmation) arrived
    CLOSED = "closed"  # peer sent CLOSE


@dataclass(slots=True)
class Received:
    """What ``Session.open`` produced: packets for the TUN device, frames to send, events."""

    packets: list[bytes] = field(default_factory=list)
    outgoing: list[bytearray] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)
    offload: bool = False  # the packets are in offload form (tun/gso.py): write them with tun.write_offloaded


@dataclass(slots=True)
class Counters:
    """Per-session statistics (monotonic). ``dropped`` counts every rejected frame, ``replayed`` the subset
    rejected by the replay window; ``bytes_*`` count whole frames."""

    delivered_packets: int = 0
    delivered_frames: int = 0
    replayed: int = 0
    dropped: int = 0
    sent_frames: int = 0
    sent_packets: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    handshakes: int = 0
    rekeys: int = 0


class _Keypair:
    """One generation of keys. SECRET fields; no repr of them."""

    __slots__ = ("send_key", "recv_key", "prefix", "seq", "phase", "created", "replay", "sent_bytes",
                 "recv_bytes", "initiator", "retired_at")

    def __init__(self, keys: H.SessionKeys, phase: int, now: float, initiator: bool, prefix: bytes,
                 limit: int) -> None:
        self.send_key = keys.send_key
        self.recv_key = keys.recv_key
        self.prefix = prefix  # 20 random bytes; nonce = prefix || seq
        self.seq = 0  # next sequence number to send
        self.phase = phase  # 0 or KEY_PHASE flag value
        self.created = now
        self.replay = ReplayWindow(C.REPLAY_WINDOW_BITS, limit + 1)
        self.sent_bytes = 0
        self.recv_bytes = 0
        self.initiator = initiator
        self.retired_at: float | None = None

    def __repr__(self) -> str:
        return f"_Keypair(phase={self.phase}, seq={self.seq})"


class Session:
    """The protocol state with one peer; see the module docstring and the package docstring for use."""

    def __init__(self, identity: crypto.Identity, peer_public_key: bytes, config: ProtocolConfig,
                 is_trusted: TrustCallback, rng: crypto.RandomSource = os.urandom,
                 floors: HandshakeFloors | None = None) -> None:
        if len(peer_public_key) != 32:
            raise ValueError("peer public key must be 32 bytes (Ed25519)")
        if bytes(peer_public_key) == identity.public_key:
            raise ValueError("a session with oneself is not possible")
        self._identity = identity
        self._me = identity.public_key
        self._peer = bytes(peer_public_key)
        self._config = config
        self._is_trusted = is_trusted
        self._rng = rng
        self._binding = config.binding.digest()
        self._hs_key = config.binding.handshake_key()
        self._current: _Keypair | None = None
        self._previous: _Keypair | None = None
        self._next: _Keypair | None = None
        self._pending: H.PendingInitiation | None = None
        self._pending_rekey = False  # pending initiation travels in a REKEY frame
        self._pending_started = 0.0
        self._pending_sent = 0.0
        self._rekey_due = False  # a rekey should start at the next on_timer/send_packets
        self._pending_phase = 0  # KEY_PHASE of the key our pending initiation will create
        self._peer_ts = -1  # highest handshake timestamp accepted from the peer (ns)
        self._floors = floors  # daemon-wide floors (protocol/floors.py): replay across sessions/restarts
        self._my_ts = -1
        self._queue: list[F.BytesLike] = []  # packets waiting for a key, oldest first
        self._last_sent = 0.0
        self._keepalive_at: float | None = None  # passive keepalive deadline
        self._awaiting_since: float | None = None  # first data sent since the peer was last heard
        self.state = SessionState.NEW
        self.counters = Counters()
        self._offload = _OFFLOAD if config.offload else 0  # our handshakes offer offload-form DATA frames
        self.peer_offload = False  # the peer's last verified handshake offered them (issue 17, tun/gso.py)

    # ---- properties ------------------------------------------------------------------------------
    @property
    def peer_public_key(self) -> bytes:
        return self._peer

    @property
    def is_established(self) -> bool:
        return self.state is SessionState.ESTABLISHED

    def __repr__(self) -> str:
        return f"Session(peer={self._peer.hex()[:16]}..., state={self.state.value})"

    # ---- handshake -------------------------------------------------------------------------------
    def initiate(self, now: float) -> bytearray:
        """Start the first handshake (or a fresh one); returns the HANDSHAKE_INIT frame to send."""
        self._check_open()
        if self.state in (SessionState.NEW, SessionState.FAILED):
            self.state = SessionState.INITIATING
        self._pending_started = now
        return self._send_initiation(now, rekey=False)

    def _next_ts(self, now: float) -> int:
        self._my_ts = max(int(now * 1e9), self._my_ts + 1)
        return self._my_ts

    def _send_initiation(self, now: float, rekey: bool) -> bytearray:
        ts = self._next_ts(now)
        if rekey:
            kp = self._current
            assert kp is not None, "a rekey is only started with a current key"
            seq = self._take_seq(kp)
            flags = kp.phase
            nonce = kp.prefix + seq.to_bytes(4, "big")
            header = H.build_header(_REKEY, flags, seq, self._me, nonce, H.INIT_SIZE)
            key = kp.send_key
            self._pending_phase = kp.phase ^ _PHASE  # a rekey flips the carrying key's phase
        else:
            # a fresh handshake announces the new key's phase in its (signed) flags
            phase = self._current.phase ^ _PHASE if self._current is not None else 0
            nonce = self._rng(24)
            header = H.build_header(F.FrameType.HANDSHAKE_INIT, phase | self._offload, 0, self._me, nonce,
                                    H.INIT_SIZE)
            key = self._hs_key
            self._pending_phase = phase
        self._pending = H.create_initiation(self._identity, self._peer, self._binding, header, ts, self._rng)
        self._pending_rekey = rekey
        self._pending_sent = now
        frame = F.seal(header[0] & 0x0F, header[1], int.from_bytes(header[4:8], "big"), self._me, nonce,
                       self._pending.plaintext, key)
        return self._sent(frame, now)

    def _on_initiation(self, header: bytes, plaintext: bytearray, now: float, rekey_kp: _Keypair | None) -> Received:
        if self._pending is not None:
            if self._pending_rekey == (rekey_kp is not None) and self._me < self._peer:
                return Received()  # both initiated at once: the lower key wins, and that is ours
            if rekey_kp is not None and not self._pending_rekey:
                return Received()  # a REKEY crossing our fresh handshake: the fresh one wins on both sides
        floor = self._peer_ts
        floors = self._floors
        if floors is not None:
            floor = max(floor, floors.floor(self._peer, now))
        eph, ts = H.parse_initiation(self._identity, self._binding, header, plaintext, floor)
        self._peer_ts = ts
        if rekey_kp is None:  # a fresh handshake states the peer's capabilities (a rekey keeps them)
            self.peer_offload = bool(header[1] & _OFFLOAD)
        if floors is not None:
            floors.raise_to(self._peer, ts)  # stored (and persisted by the daemon) before we answer
        self._pending = None
        if rekey_kp is not None:
            seq = self._take_seq(rekey_kp)
            nonce = rekey_kp.prefix + seq.to_bytes(4, "big")
            rheader = H.build_header(_REKEY, rekey_kp.phase | _RESPONSE, seq, self._me, nonce, H.RESPONSE_SIZE)
            key = rekey_kp.send_key
        else:
            nonce = self._rng(24)
            rheader = H.build_header(F.FrameType.HANDSHAKE_RESPONSE, self._offload, 0, self._me, nonce,
                                     H.RESPONSE_SIZE)
            key = self._hs_key
        body, keys = H.create_response(self._identity, self._binding, header, plaintext, eph, rheader, self._rng)
        phase = rekey_kp.phase ^ _PHASE if rekey_kp is not None else header[1] & _PHASE
        kp = self._new_keypair(keys, now, False, phase)
        events: list[SessionEvent] = []
        if self._current is None:  # nothing to protect: use the new key at once
            self._install(kp, now, events)
        else:
            self._next = kp  # wait until the initiator proves it holds the key
        frame = F.seal(rheader[0] & 0x0F, rheader[1], int.from_bytes(rheader[4:8], "big"), self._me, nonce, body, key)
        out = Received(outgoing=[self._sent(frame, now)], events=events)
        if self._current is kp and self._queue:
            out.outgoing.extend(self._flush_queue(now))
        return out

    def _on_response(self, header: bytes, plaintext: bytearray, now: float) -> Received:
        pending = self._pending
        if pending is None:
            raise HandshakeError("unexpected handshake response (no handshake in progress)")
        keys = H.finish_initiation(pending, self._binding, header, plaintext)
        self._pending = None
        if not self._pending_rekey:
            self.peer_offload = bool(header[1] & _OFFLOAD)
        kp = self._new_keypair(keys, now, True, self._pending_phase)
        out = Received()
        self._install(kp, now, out.events)
        if self._queue:
            out.outgoing.extend(self._flush_queue(now))
        else:  # confirm the key to the responder at once, so it can switch too
            out.outgoing.append(self._seal_control(_KEEPALIVE, b"", now))
        return out

    def _new_keypair(self, keys: H.SessionKeys, now: float, initiator: bool, phase: int) -> _Keypair:
        return _Keypair(keys, phase, now, initiator, self._rng(20), self._config.reject_after_messages)

    def _install(self, kp: _Keypair, now: float, events: list[SessionEvent]) -> None:
        first = self._current is None
        if self._current is not None:
            self._current.retired_at = now
            self._previous = self._current
        self._current = kp
        self._next = None
        self._rekey_due = False
        self.state = SessionState.ESTABLISHED
        if first:
            self.counters.handshakes += 1
            events.append(SessionEvent.ESTABLISHED)
        else:
            self.counters.rekeys += 1
            events.append(SessionEvent.REKEYED)

    # ---- receiving -------------------------------------------------------------------------------
    def open(self, frame: F.BytesLike, now: float) -> Received:
        """Authenticate and process one frame from the peer. Raises a ProtocolError subclass (and counts
        it in ``counters.dropped``) for anything that must be dropped; never delivers a packet twice."""
        try:
            return self._open(frame, now)
        except ReplayError:
            self.counters.replayed += 1
            self.counters.dropped += 1
            raise
        except ProtocolError:
            self.counters.dropped += 1
            raise

    def _open(self, frame: F.BytesLike, now: float) -> Received:
        if self.state is SessionState.CLOSED:
            raise SessionClosedError("session is closed; create a new Session to talk to this peer again")
        size = len(frame)
        if size < C.OVERHEAD:
            raise FrameFormatError(f"frame of {size} bytes is shorter than header + tag ({C.OVERHEAD})")
        vt, flags, length, seq, sender, _nonce = _HEADER.unpack_from(frame)
        if vt >> 4 != C.PROTOCOL_VERSION:
            raise FrameFormatError(f"unsupported frame version {vt >> 4}")
        ftype = vt & 0x0F
        if flags & ~F.KNOWN_FLAGS or ftype not in F._VALID_TYPES:
            raise FrameFormatError("unknown frame type or flag bits")
        if size > 0xFFFF + C.OVERHEAD or flags & 0x80 or length != size - C.OVERHEAD:
            F.check_length(flags, length, size)  # JUMBO or malformed: the full check (raises if bad)
        if sender != self._peer:
            raise FrameFormatError("frame was sent by another device than this session's peer")
        self.counters.bytes_received += size
        if ftype <= 2:  # HANDSHAKE_INIT / HANDSHAKE_RESPONSE, sealed with the network's handshake key
            if not self._is_trusted(self._peer):
                raise UntrustedPeerError("the directory does not trust this peer's key; handshake refused")
            plaintext = F.open_payload(frame, self._hs_key)
            if plaintext is None:
                raise AuthenticationError("handshake frame does not open (another network's handshake?)")
            header = bytes(memoryview(frame)[: C.HEADER_SIZE])
            if ftype == 1:
                return self._on_initiation(header, plaintext, now, None)
            return self._on_response(header, plaintext, now)
        kp, plaintext = self._decrypt(frame, flags & _PHASE, now)
        if not kp.replay.check_and_mark(seq):
            raise ReplayError(f"frame {seq} was already received or is older than the replay window")
        kp.recv_bytes += size
        self._awaiting_since = None
        out = Received([], [], [])
        confirmed = kp is self._next
        if confirmed:  # the initiator's first frame under the new key confirms it
            self._install(kp, now, out.events)
        if kp is self._current and (kp.recv_bytes >= self._config.rekey_after_bytes):
            self._rekey_due = True
        if ftype == _DATA:
            packets = F.decode_packets(plaintext, bool(flags & _PADDED))
            out.packets = packets
            if flags & _OFFLOAD:
                if not self._offload:
                    raise FrameFormatError("offload-form data frame, but our handshake never offered offload")
                out.offload = True
            self.counters.delivered_packets += len(packets)
            self.counters.delivered_frames += 1
            if self._keepalive_at is None:
                self._keepalive_at = now + self._config.keepalive_seconds
        elif ftype == _KEEPALIVE:
            out.events.append(SessionEvent.KEEPALIVE)
        elif ftype == _CLOSE:
            self._wipe(SessionState.CLOSED)
            out.events.append(SessionEvent.CLOSED)
        else:  # REKEY
            if not self._is_trusted(self._peer):
                raise UntrustedPeerError("the directory no longer trusts this peer's key; rekey refused")
            header = bytes(memoryview(frame)[: C.HEADER_SIZE])
            inner = (self._on_response(header, plaintext, now) if flags & _RESPONSE
                     else self._on_initiation(header, plaintext, now, kp))
            out.outgoing.extend(inner.outgoing)
            out.events.extend(inner.events)
        if confirmed and self._queue and self._current is kp:  # packets held back while our key was used up
            out.outgoing.extend(self._flush_queue(now))
        return out

    def _decrypt(self, frame: F.BytesLike, phase: int, now: float) -> tuple[_Keypair, bytearray]:
        grace = self._config.grace_seconds
        tried = False
        for kp in (self._current, self._next, self._previous):
            if kp is None or kp.phase != phase:
                continue
            if kp.retired_at is not None and now - kp.retired_at > grace:
                continue
            if now - kp.created > self._config.reject_after_seconds + grace:
                continue
            tried = True
            plaintext = F.open_payload(frame, kp.recv_key)
            if plaintext is not None:
                return kp, plaintext
        if not tried:
            raise AuthenticationError("no session key for this frame (expired, or handshake not complete)")
        raise AuthenticationError("frame does not authenticate (wrong key, or altered in transit)")

    # ---- sending ---------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.state is SessionState.CLOSED:
            raise SessionClosedError("session is closed; create a new Session to talk to this peer again")

    def _sendable(self, now: float) -> _Keypair:
        kp = self._current
        if kp is None:
            self._check_open()
            raise NotEstablishedError("no session key yet: the handshake has not completed")
        if kp.seq >= self._config.reject_after_messages or now - kp.created >= self._config.reject_after_seconds:
            raise NotEstablishedError("the session key is used up and the rekey has not completed yet")
        return kp

    def _take_seq(self, kp: _Keypair) -> int:
        seq = kp.seq
        kp.seq = seq + 1
        if kp.seq >= self._config.rekey_after_messages:
            self._rekey_due = True
        return seq

    def _sent(self, frame: bytearray, now: float) -> bytearray:
        self.counters.sent_frames += 1
        self.counters.bytes_sent += len(frame)
        self._last_sent = now
        self._keepalive_at = None
        return frame

    def seal_packets(self, packets: Sequence[F.BytesLike], now: float, offload: bool = False) -> bytearray:
        """One DATA frame carrying ``packets`` (1..1024 IP packets of 1..65,536 bytes; <= 1 MiB in all).
        ``offload``: they are in offload form (tun/gso.py); only if ``peer_offload`` (ValueError otherwise).

        Raises NotEstablishedError when there is no usable key (use ``send_packets`` to queue instead).
        If this frame crossed a rekey threshold, ``next_timer_at()`` becomes ``now``.
        """
        kp = self._sendable(now)
        seq = kp.seq
        flags = kp.phase
        if offload:
            if not self.peer_offload:
                raise ValueError("offload-form packets for a peer whose handshake did not offer offload")
            flags |= _OFFLOAD
        frame = F.seal_packets(flags, seq, self._me, kp.prefix, packets, self._config.padding, kp.send_key)
        kp.seq = seq + 1
        size = len(frame)
        kp.sent_bytes += size
        if kp.seq >= self._config.rekey_after_messages or kp.sent_bytes >= self._config.rekey_after_bytes:
            self._rekey_due = True
        c = self.counters
        c.sent_frames += 1
        c.sent_packets += len(packets)
        c.bytes_sent += size
        self._last_sent = now
        self._keepalive_at = None
        if self._awaiting_since is None:
            self._awaiting_since = now
        return frame

    def send_packets(self, packets: Sequence[F.BytesLike], now: float) -> list[bytearray]:
        """Frames to send for ``packets``: sealed now if a key is usable, otherwise queued (at most
        ``max_queued_packets``, oldest dropped and counted) while a handshake runs, which this starts
        if none is running. Also emits a due rekey initiation."""
        self._check_open()
        out: list[bytearray] = []
        try:
            if self._queue:  # older packets first (normally flushed when the handshake completed)
                F.check_batch(packets)  # before flushing: an error must not swallow the flushed frames
                self._sendable(now)
                out.extend(self._flush_queue(now))
                if self._queue:
                    raise NotEstablishedError("the key ran out while sending the queue")
            out.append(self.seal_packets(packets, now))
        except NotEstablishedError:
            F.check_batch(packets)  # refuse a bad batch now, as when a key exists, not later inside open()
            self._queue.extend(packets)
            excess = len(self._queue) - self._config.max_queued_packets
            if excess > 0:
                del self._queue[:excess]
                self.counters.dropped += excess
            if self._pending is None:
                if self._current is None:
                    out.append(self.initiate(now))
                else:
                    self._rekey_due = True
        if self._rekey_due and self._pending is None and self._current is not None:
            out.append(self._start_rekey(now))
        return out

    def _flush_queue(self, now: float) -> list[bytearray]:
        """DATA frames for the queued packets, in order. If the key runs out midway, what could not be
        sealed stays queued (nothing sealed is ever dropped: its sequence number was spent)."""
        out: list[bytearray] = []
        queue, self._queue = self._queue, []
        limit = C.MAX_SHORT_PAYLOAD - 2   # no JUMBO frame unless one packet alone needs it (docs/protocol.md)
        start, size = 0, 0
        try:
            for i, p in enumerate(queue):
                if i > start and (i - start == C.MAX_PACKETS_PER_FRAME or size + len(p) + 2 > limit):
                    out.append(self.seal_packets(queue[start:i], now))
                    start, size = i, 0
                size += len(p) + 2
            if start < len(queue):
                out.append(self.seal_packets(queue[start:], now))
        except NotEstablishedError:
            self._queue = queue[start:] + self._queue
        return out

    def _seal_control(self, ftype: int, body: bytes, now: float) -> bytearray:
        kp = self._sendable(now)
        seq = self._take_seq(kp)
        frame = F.seal(ftype, kp.phase, seq, self._me, kp.prefix + seq.to_bytes(4, "big"), body, kp.send_key,
                       pad=self._config.padding)
        kp.sent_bytes += len(frame)
        return self._sent(frame, now)

    def _start_rekey(self, now: float) -> bytearray:
        self._rekey_due = False
        try:
            self._sendable(now)
        except NotEstablishedError:  # the current key can't even carry the rekey: fresh handshake
            return self.initiate(now)
        self._pending_started = now
        return self._send_initiation(now, rekey=True)

    def keepalive(self, now: float) -> bytearray | None:
        """A KEEPALIVE frame now (an answer that tells the peer we are alive), or None without a usable key."""
        try:
            return self._seal_control(_KEEPALIVE, b"", now)
        except (NotEstablishedError, SessionClosedError):
            return None

    def close(self, now: float, reason: int = 0) -> bytearray | None:
        """A CLOSE frame for the peer (None if no key was ever established); the session is then closed
        and its keys dropped."""
        frame: bytearray | None = None
        if self._current is not None and self.state is SessionState.ESTABLISHED:
            try:
                frame = self._seal_control(_CLOSE, bytes([reason & 0xFF]), now)
            except NotEstablishedError:
                frame = None
        self._wipe(SessionState.CLOSED)
        return frame

    def _wipe(self, state: SessionState) -> None:
        self._current = self._previous = self._next = None
        self._pending = None
        self._queue = []
        self.state = state

    # ---- timers ----------------------------------------------------------------------------------
    def next_timer_at(self) -> float | None:
        """When ``on_timer`` must next be called (seconds, same clock as ``now``), or None."""
        if self.state in (SessionState.CLOSED, SessionState.FAILED):
            return None
        cfg = self._config
        times: list[float] = []
        if self._pending is not None:
            times.append(min(self._pending_sent + cfg.handshake_retry_seconds,
                             self._pending_started + cfg.handshake_give_up_seconds))
        kp = self._current
        if kp is not None:
            if self._rekey_due and self._pending is None:
                return self._last_sent if self._last_sent else kp.created
            if self._pending is None:
                age = cfg.rekey_after_seconds + (0.0 if kp.initiator else 2 * cfg.handshake_retry_seconds)
                times.append(kp.created + age)
            if self._keepalive_at is not None:
                times.append(self._keepalive_at)
            if self._awaiting_since is not None and self._pending is None:
                times.append(self._awaiting_since + self._dead_after())
            if cfg.persistent_keepalive_seconds:
                times.append(self._last_sent + cfg.persistent_keepalive_seconds)
        if self._previous is not None and self._previous.retired_at is not None:
            times.append(self._previous.retired_at + cfg.grace_seconds)
        return min(times) if times else None

    def _dead_after(self) -> float:
        """Seconds without any frame from the peer, after we sent data, before we re-handshake."""
        return self._config.keepalive_seconds + self._config.handshake_retry_seconds

    def on_timer(self, now: float) -> list[bytearray]:
        """Frames that timers make due at ``now``: handshake retries, rekey initiations, keepalives."""
        if self.state in (SessionState.CLOSED, SessionState.FAILED):
            return []
        cfg = self._config
        out: list[bytearray] = []
        prev = self._previous
        if prev is not None and prev.retired_at is not None and now - prev.retired_at >= cfg.grace_seconds:
            self._previous = None
        if self._pending is not None:
            if now - self._pending_started >= cfg.handshake_give_up_seconds:
                self._pending = None
                if self._current is None:
                    self._wipe(SessionState.FAILED)
                    return []
            elif now - self._pending_sent >= cfg.handshake_retry_seconds:
                rekey = self._pending_rekey and self._current is not None
                if rekey:
                    try:
                        self._sendable(now)
                    except NotEstablishedError:
                        rekey = False
                out.append(self._send_initiation(now, rekey=rekey))
        kp = self._current
        if kp is None:
            return out
        if self._pending is None and self._awaiting_since is not None and (
                now - self._awaiting_since >= self._dead_after()):
            # we sent data and heard nothing back (not even a keepalive): the peer lost our key, or the
            # key was never real (a replayed initiation). Start over with a fresh handshake.
            self._awaiting_since = None
            out.append(self.initiate(now))
            return out
        if self._pending is None:
            age = cfg.rekey_after_seconds + (0.0 if kp.initiator else 2 * cfg.handshake_retry_seconds)
            if self._rekey_due or now - kp.created >= age:
                out.append(self._start_rekey(now))
                return out
        if (self._keepalive_at is not None and now >= self._keepalive_at) or (
                cfg.persistent_keepalive_seconds and now - self._last_sent >= cfg.persistent_keepalive_seconds):
            try:
                out.append(self._seal_control(_KEEPALIVE, b"", now))
            except NotEstablishedError:
                pass
        return out
