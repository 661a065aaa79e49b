"""ShadowMesh protocol core: frames, handshake, sessions, replay window, timers. No I/O at all.

Spec: shadowmesh-spec.md "Network Protocol Design", "Frame Format (Binary)", "Ed25519 Key Management",
"Threat Model". Wire format: see ``frames`` (module docstring) and docs/protocol.md.

Nothing in this package opens a socket, reads a clock or starts a task (tests/client/protocol checks the
imports). Every method that depends on time takes ``now``: seconds as a float from ONE clock the caller
picks; the node should pass ``time.time()`` (wall clock, because handshake timestamps must keep growing
across restarts of the peer). Objects here are NOT thread- or task-safe: one owner drives each Session.

Public API (what the transport, relay, directory and keystore code use)
=======================================================================

Identity (``shadowmesh_client.crypto``, re-exported here)::

    Identity.generate() -> Identity                 # new Ed25519 device key
    Identity.from_seed(seed: bytes) -> Identity     # 32-byte seed (what the keystore stores, encrypted)
    identity.seed_bytes() -> bytes                  # SECRET: only for the keystore; never log it
    identity.public_key -> bytes                    # 32-byte Ed25519 public key
    identity.sign(message: bytes) -> bytes          # 64-byte Ed25519 signature
    verify_signature(public_key, message, signature) -> bool
    repr(identity) shows only the public key.

Network binding and configuration::

    NetworkBinding(chain_id: int, registry: bytes | str, network_id: bytes | int | str)
        # the directory a handshake trusts; a handshake made for one binding never verifies under another
    ProtocolConfig(binding, rekey_after_seconds=86400.0, rekey_after_bytes=2**30,
                   rekey_after_messages=2**32 - 2**16, grace_seconds=120.0, keepalive_seconds=10.0,
                   persistent_keepalive_seconds=None, handshake_retry_seconds=5.0,
                   handshake_give_up_seconds=90.0, padding=False, max_queued_packets=256)
    TrustCallback = Callable[[bytes], bool]        # is_trusted(peer_ed25519_public_key) -> bool

Frames without decrypting (routing; the relay's view)::

    peek_header(frame: bytes) -> FrameHeader        # checks version/type/length; no crypto
    peek_sender(frame: bytes) -> bytes              # bytes 8..40 only (fast routing hint, no checks)
    FrameHeader(version, type: FrameType, flags: int, length: int, seq: int, sender: bytes, nonce: bytes)
        .encode() -> bytes (64 bytes)   FrameHeader.decode(data) -> FrameHeader
    header.sender is the SENDER's 32-byte Ed25519 identity key (authenticated as AEAD associated data).
    FrameType: HANDSHAKE_INIT, HANDSHAKE_RESPONSE, DATA, KEEPALIVE, REKEY, CLOSE
    Flags: PADDED, KEY_PHASE, RESPONSE, JUMBO

Sessions (one per peer, either role)::

    session = Session(identity, peer_public_key, config, is_trusted, rng=os.urandom)
    session.initiate(now) -> bytes                  # HANDSHAKE_INIT frame to send (initiator role)
    session.open(frame, now) -> Received            # any frame type from this peer
        Received.packets: list[bytes]   IP packets to write to TUN, in order
        Received.outgoing: list[bytes]  frames to send back now (handshake response, confirmation,
                                        queued packets flushed after the handshake, rekey response)
        Received.events: list[SessionEvent]  ESTABLISHED, REKEYED, KEEPALIVE, CLOSED
        raises ProtocolError subclasses (AuthenticationError, ReplayError, UntrustedPeerError,
        HandshakeError, SessionClosedError, FrameFormatError); each is counted in session.counters
    session.seal_packets(packets: list[bytes], now) -> bytearray  # ONE data frame for the batch
                                        (1..1024 packets of 1..65,536 bytes, <= 1 MiB in all; one AEAD
                                        call); raises NotEstablishedError if no usable key
    session.send_packets(packets, now) -> list[bytes]          # seal, or queue (bounded) and start
                                        the handshake when none is running; queued packets come out in
                                        Received.outgoing once established
    session.next_timer_at() -> float | None
    session.on_timer(now) -> list[bytes]            # keepalives, rekeys, handshake retries, and a
                                        fresh handshake when data got no answer for 15 s (dead peer)
    session.close(now) -> bytes | None              # CLOSE frame (None if never established)
    session.state -> SessionState                   # NEW, INITIATING, ESTABLISHED, CLOSED, FAILED
                                        (FAILED: no answer for 90 s; send_packets/initiate retry)
    session.is_established -> bool
    session.counters -> Counters (delivered_packets, delivered_frames, replayed, dropped, sent_frames,
                                  sent_packets, bytes_sent, bytes_received, handshakes, rekeys)
    session.peer_public_key -> bytes

The node keeps ``dict[peer_public_key, Session]``: for an incoming frame it calls ``peek_header`` and
looks up ``header.sender``; for a HANDSHAKE_INIT from a peer it has no session with, it creates
``Session(identity, header.sender, config, is_trusted)`` and calls ``open`` (which asks ``is_trusted``
before any expensive crypto and raises UntrustedPeerError if the directory says no). Trust is asked
again at every rekey; when the directory revokes a peer mid-session, the node calls ``session.close``.
Frames returned are bytearrays (any WebSocket library sends bytes-like objects as binary messages).
Sizes: 80 bytes of overhead per frame (64 header + 16 tag), plus 2 + 2 per packet inside DATA frames.
"""

from shadowmesh_client.crypto import Identity, verify_signature
from shadowmesh_client.errors import ProtocolError
from shadowmesh_client.protocol.config import NetworkBinding, ProtocolConfig, TrustCallback
from shadowmesh_client.protocol.errors import (
    AuthenticationError,
    FrameFormatError,
    HandshakeError,
    NotEstablishedError,
    ReplayError,
    SessionClosedError,
    UntrustedPeerError,
)
from shadowmesh_client.protocol.frames import Flags, FrameHeader, FrameType, peek_header, peek_sender
from shadowmesh_client.protocol.replay import ReplayWindow
from shadowmesh_client.protocol.session import Counters, Received, Session, SessionEvent, SessionState

__all__ = [
    "AuthenticationError",
    "Counters",
    "Flags",
    "FrameFormatError",
    "FrameHeader",
    "FrameType",
    "HandshakeError",
    "Identity",
    "NetworkBinding",
    "NotEstablishedError",
    "ProtocolConfig",
    "ProtocolError",
    "Received",
    "ReplayError",
    "ReplayWindow",
    "Session",
    "SessionClosedError",
    "SessionEvent",
    "SessionState",
    "TrustCallback",
    "UntrustedPeerError",
    "peek_header",
    "peek_sender",
    "verify_signature",
]
