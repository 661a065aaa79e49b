"""The one-round-trip handshake (used for the first key and, inside REKEY frames, for every rekey).

Spec: "Ed25519 Key Management" (device keys Ed25519, session keys ephemeral X25519), "Threat Model"
(active adversaries cannot impersonate devices; perfect forward secrecy). SIGMA-style, like WireGuard's
timing but with signatures instead of static DH:

    I -> R  header_I || E( peer_R(32) || eph_I(32) || timestamp(8) || sig_I(64) )          136 bytes
            sig_I = Ed25519_I( CTX_INIT || binding || header_I || peer_R || eph_I || timestamp )
    R -> I  header_R || E( eph_R(32) || sig_R(64) )                                          96 bytes
            sig_R = Ed25519_R( CTX_RESP || binding || header_I || msg_I || header_R || eph_R )
    keys    okm = BLAKE2b-512(key = X25519(eph_I, eph_R), person "sm1-session",
                              data = BLAKE2b-512(binding || header_I || msg_I || header_R || msg_R))
            initiator->responder key = okm[:32], responder->initiator key = okm[32:]

``binding`` is NetworkBinding.digest() (chain id, registry address, network id): a handshake signed for
one directory never verifies under another. Headers are the 64-byte frame headers (type, flags, sender
key, nonce...): the signatures cover the whole transcript, every byte either side sent. The timestamp
(nanoseconds, strictly increasing per initiator) lets the responder refuse a replayed initiation; a
replayed one could in any case never complete, since the attacker lacks eph_I's private key, and the
responder only switches its sending key once the initiator proved it holds the new key (its first frame).
Initiator authenticity and key confirmation therefore complete with the initiator's first frame under
the new key, which the Session sends at once (a keepalive if no data is queued). Exception: a responder
with no key yet installs the new key at once (nothing to protect); a replayed initiation accepted by a
brand-new Session (its replay floor starts empty) thus yields a key nobody else holds, which costs
nothing secret and is undone by the dead-peer re-handshake (15 s) or the peer's next initiation.
Both signatures name the other side (sig_I covers peer_R; sig_R covers header_I, i.e. the initiator's
key) and the keys hash the whole transcript, so there is no identity misbinding / unknown key share;
authentication is by signature, not static DH, so a stolen device key lets its thief impersonate that
device only, never others to it (no key-compromise impersonation).

HANDSHAKE_INIT/RESPONSE frames are sealed with NetworkBinding.handshake_key() (obfuscation and early
rejection of other networks; not a secret); REKEY frames with the current session key. Pure functions:
no clock, no randomness except through the ``rng`` argument.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shadowmesh_client import crypto
from shadowmesh_client.protocol import constants as C
from shadowmesh_client.protocol.errors import AuthenticationError, HandshakeError
from shadowmesh_client.protocol.frames import HEADER

INIT_SIZE = 32 + 32 + 8 + 64  # bytes of initiation plaintext
RESPONSE_SIZE = 32 + 64  # bytes of response plaintext
_TS = struct.Struct(">Q")


@dataclass(frozen=True)
class SessionKeys:
    """What a completed handshake yields. SECRET: never log."""

    send_key: bytes
    recv_key: bytes

    def __repr__(self) -> str:
        return "SessionKeys(<secret>)"


@dataclass
class PendingInitiation:
    """The initiator's state between sending an initiation and receiving the response."""

    ephemeral_private: bytes
    header: bytes
    plaintext: bytes
    timestamp: int

    def __repr__(self) -> str:
        return f"PendingInitiation(timestamp={self.timestamp})"


def build_header(ftype: int, flags: int, seq: int, sender: bytes, nonce: bytes, size: int) -> bytes:
    """The 64-byte header of a frame whose encrypted payload is ``size`` bytes (<= 65,535 here)."""
    return HEADER.pack((C.PROTOCOL_VERSION << 4) | ftype, flags, size, seq, sender, nonce)


def _derive(shared: bytes, binding: bytes, transcript: bytes, initiator: bool) -> SessionKeys:
    th = crypto.blake2b(binding + transcript, person=b"sm1-transcript", size=64)
    okm = crypto.blake2b(th, key=shared, person=b"sm1-session", size=64)
    i2r, r2i = okm[:32], okm[32:]
    return SessionKeys(i2r, r2i) if initiator else SessionKeys(r2i, i2r)


def create_initiation(identity: crypto.Identity, peer: bytes, binding: bytes, header: bytes, timestamp: int,
                      rng: crypto.RandomSource) -> PendingInitiation:
    """Sign an initiation to ``peer``; ``header`` was built for INIT_SIZE bytes of payload."""
    private, public = crypto.x25519_keypair(rng)
    body = peer + public + _TS.pack(timestamp)
    signature = identity.sign(C.SIGNATURE_CONTEXT_INIT + binding + header + body)
    return PendingInitiation(private, header, body + signature, timestamp)


def parse_initiation(identity: crypto.Identity, binding: bytes, header: bytes, plaintext: bytes | bytearray,
                     min_timestamp: int = -1) -> tuple[bytes, int]:
    """Check an initiation addressed to ``identity``; return (initiator ephemeral key, timestamp).

    The initiator's identity is the header's sender field; its signature must verify over the transcript.
    A timestamp not above ``min_timestamp`` (the last one accepted from this initiator) is refused as a
    replay BEFORE the signature is checked, so a replayed initiation costs no Ed25519 verification (the
    unauthenticated timestamp is only compared here; the caller stores it only after this returns).
    """
    if len(plaintext) != INIT_SIZE:
        raise HandshakeError(f"handshake initiation must be {INIT_SIZE} bytes, got {len(plaintext)}")
    plaintext = bytes(plaintext)
    to, eph, ts_bytes, signature = plaintext[:32], plaintext[32:64], plaintext[64:72], plaintext[72:]
    if to != identity.public_key:
        raise HandshakeError("handshake initiation is addressed to another device")
    timestamp = _TS.unpack(ts_bytes)[0]
    if timestamp <= min_timestamp:
        raise HandshakeError("handshake initiation is not newer than the last one (replayed?)")
    sender = header[8:40]
    if not crypto.verify_signature(sender, C.SIGNATURE_CONTEXT_INIT + binding + header + plaintext[:72], signature):
        raise AuthenticationError("handshake initiation signature does not verify (wrong key or network?)")
    return eph, timestamp


def create_response(identity: crypto.Identity, binding: bytes, init_header: bytes, init_plaintext: bytes | bytearray,
                    peer_ephemeral: bytes, header: bytes, rng: crypto.RandomSource) -> tuple[bytes, SessionKeys]:
    """The response plaintext (RESPONSE_SIZE bytes) and the responder's session keys."""
    private, public = crypto.x25519_keypair(rng)
    transcript = init_header + bytes(init_plaintext) + header
    signature = identity.sign(C.SIGNATURE_CONTEXT_RESPONSE + binding + transcript + public)
    plaintext = public + signature
    shared = crypto.x25519(private, peer_ephemeral)
    return plaintext, _derive(shared, binding, transcript + plaintext, initiator=False)


def finish_initiation(pending: PendingInitiation, binding: bytes, header: bytes,
                      plaintext: bytes | bytearray) -> SessionKeys:
    """Verify the response to ``pending`` (responder = header's sender) and derive the initiator's keys."""
    if len(plaintext) != RESPONSE_SIZE:
        raise HandshakeError(f"handshake response must be {RESPONSE_SIZE} bytes, got {len(plaintext)}")
    plaintext = bytes(plaintext)
    eph, signature = plaintext[:32], plaintext[32:]
    if header[8:40] != pending.plaintext[:32]:  # the responder must be the device the initiation named
        raise HandshakeError("handshake response comes from another device than the one addressed")
    transcript = pending.header + pending.plaintext + header
    if not crypto.verify_signature(header[8:40], C.SIGNATURE_CONTEXT_RESPONSE + binding + transcript + eph,
                                   signature):
        raise AuthenticationError("handshake response signature does not verify (stale or forged response?)")
    shared = crypto.x25519(pending.ephemeral_private, eph)
    return _derive(shared, binding, transcript + plaintext, initiator=True)
