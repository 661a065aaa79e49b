"""The one module that imports PyNaCl (libsodium): Ed25519 identities, X25519, XChaCha20-Poly1305, BLAKE2b.

Spec: "Ed25519 Key Management" (device keys, ephemeral X25519 session keys) and "Encryption Strategy"
(ChaCha20-Poly1305 AEAD; we use the XChaCha20 variant for its 24-byte nonce, as the frame format draws).

Secret material (seeds, private scalars, session keys) never appears in repr(), str() or exception
messages. ``Identity.seed_bytes()`` is the single deliberate way out, for the encrypted keystore.

Speed: the AEAD hot path calls libsodium through PyNaCl's cffi handle (``nacl._sodium``, PyNaCl's
only private API used here, imported once below) and writes the ciphertext straight into a preallocated
frame buffer. It pays (both paths in one run, interleaved, 5,000/2,000 iterations, this 2-core VM,
per call): 1,400-byte seal 1.8 us vs 4.9 us through ``nacl.bindings`` (which allocates, copies the output
and re-checks types), open 2.0 vs 4.8 us; 64 KiB seal 39 vs 51 us, open 40 vs 48 us. At MTU 1,400 that
is ~6 us of the ~20 us of Python per hop (docs/mesh.md). If the private handle ever disappears, the
public ``nacl.bindings`` functions are used instead (same bytes, slower; tests/client/protocol/
test_protocol_crypto.py forces that path). Raw pointers are guarded: key and nonce bounds are checked
before libsodium reads them, the output buffer must be writable (``bytes`` is refused, never mutated),
and the cffi buffer export pins the bytearray (it cannot be resized) while libsodium runs without the GIL.
"""

from __future__ import annotations

import hashlib as _hashlib
import hmac
import os
from collections.abc import Callable

import nacl.bindings as _b
from nacl.exceptions import CryptoError as _CryptoError

from shadowmesh_client.errors import ProtocolError

try:  # fast path (the figures above): libsodium through cffi, writing into caller buffers
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _lib

    _enc = _lib.crypto_aead_xchacha20poly1305_ietf_encrypt
    _dec = _lib.crypto_aead_xchacha20poly1305_ietf_decrypt
    _NULL = _ffi.NULL
    _from_buffer = _ffi.from_buffer
except Exception:  # pragma: no cover - depends on the PyNaCl build
    _lib = None

PUBLIC_KEY_SIZE = 32  # bytes, Ed25519 and X25519 public keys
SEED_SIZE = 32  # bytes, Ed25519 seed (RFC 8032 private key)
SIGNATURE_SIZE = 64  # bytes, Ed25519
AEAD_KEY_SIZE = 32  # bytes, XChaCha20-Poly1305
AEAD_NONCE_SIZE = 24  # bytes
AEAD_TAG_SIZE = 16  # bytes

RandomSource = Callable[[int], bytes]
"""``rng(n) -> n random bytes``; os.urandom in production, a seeded stream for test vectors."""


class Identity:
    """An Ed25519 device key (spec "Ed25519 Key Management": generated on first run, long-lived)."""

    __slots__ = ("_seed", "_secret", "_public")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is exactly {SEED_SIZE} bytes")
        self._seed = bytes(seed)
        self._public, self._secret = _b.crypto_sign_seed_keypair(self._seed)

    @classmethod
    def generate(cls, rng: RandomSource = os.urandom) -> Identity:
        """A new random device key."""
        return cls(rng(SEED_SIZE))

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The key whose 32-byte seed the keystore stored."""
        return cls(seed)

    def seed_bytes(self) -> bytes:
        """SECRET: the 32-byte seed, for the encrypted keystore only. Never log or print it."""
        return self._seed

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key: the device's identity in the registry and in frame headers."""
        return self._public

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``message``."""
        return _b.crypto_sign(message, self._secret)[:SIGNATURE_SIZE]

    def __repr__(self) -> str:
        return f"Identity(public_key={self._public.hex()})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and hmac.compare_digest(self._seed, other._seed)

    def __hash__(self) -> int:
        return hash(self._public)

    def __reduce__(self):  # refuse pickling: it would write the seed somewhere unencrypted
        raise TypeError("Identity cannot be pickled; store seed_bytes() in the encrypted keystore")


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        _b.crypto_sign_open(bytes(signature) + bytes(message), bytes(public_key))
    except (_CryptoError, ValueError, TypeError):
        return False
    return True


def x25519_keypair(rng: RandomSource = os.urandom) -> tuple[bytes, bytes]:
    """An ephemeral X25519 key pair ``(private, public)`` (32 bytes each; private is SECRET)."""
    private = rng(32)
    return private, _b.crypto_scalarmult_base(private)


def x25519(private: bytes, peer_public: bytes) -> bytes:
    """The X25519 shared secret; raises ProtocolError for a low-order peer key (all-zero result)."""
    try:
        shared = _b.crypto_scalarmult(private, peer_public)
    except (_CryptoError, ValueError, TypeError, RuntimeError) as exc:  # libsodium refuses low-order points
        raise ProtocolError("peer sent an invalid X25519 public key") from exc
    if not any(shared):  # pragma: no cover - libsodium already refuses low-order points
        raise ProtocolError("peer sent a low-order X25519 public key")
    return shared


def blake2b(data: bytes, *, key: bytes = b"", person: bytes = b"", size: int = 32) -> bytes:
    """BLAKE2b (RFC 7693) with optional key (<= 64 bytes) and personalisation (<= 16 bytes, zero-padded).

    The same function as libsodium's ``crypto_generichash_blake2b_salt_personal`` (zero salt), computed
    with the standard library's C implementation: ~0.9 us instead of ~5 us through PyNaCl's argument
    checks, five calls per handshake (bench relay). The protocol's pinned vectors check the bytes."""
    return _hashlib.blake2b(data, digest_size=size, key=key, person=person).digest()


def _check_aead_args(ad_size: int, nonce_offset: int, key: bytes) -> None:
    """libsodium reads exactly 32 key bytes and 24 nonce bytes through raw pointers: check both bounds
    here so a caller's mistake is a ValueError, never an out-of-bounds read."""
    if len(key) != AEAD_KEY_SIZE:
        raise ValueError(f"an XChaCha20-Poly1305 key is exactly {AEAD_KEY_SIZE} bytes")
    if not 0 <= nonce_offset <= ad_size - AEAD_NONCE_SIZE:
        raise ValueError("the 24-byte nonce must lie inside the associated data")


def aead_seal_in_place(buf: bytearray, ad_size: int, nonce_offset: int, size: int, key: bytes) -> None:
    """XChaCha20-Poly1305 over a frame buffer, in place.

    ``buf[:ad_size]`` is the associated data (authenticated, not encrypted) and holds the 24-byte nonce at
    ``nonce_offset``; ``buf[ad_size:ad_size+size]`` is the plaintext, replaced by the ciphertext, and the
    16-byte tag is written right after it (``buf`` must be exactly ad_size + size + 16 bytes long).
    The caller guarantees that a (key, nonce) pair is never used twice.
    """
    if len(buf) != ad_size + size + AEAD_TAG_SIZE:
        raise ValueError("frame buffer size does not match ad + plaintext + tag")
    if len(key) != AEAD_KEY_SIZE or not 0 <= nonce_offset <= ad_size - AEAD_NONCE_SIZE:
        _check_aead_args(ad_size, nonce_offset, key)  # raises the precise ValueError
    if _lib is not None:
        # libsodium writes through this pointer: anything but a bytearray (always writable; the common
        # case, checked cheaply) must prove it is writable, so an immutable object (bytes) is refused,
        # never silently mutated. The cdata ``p`` holds the buffer export until we return, so the buffer
        # cannot be resized or freed while libsodium runs (cffi releases the GIL during the call).
        p = _from_buffer(buf) if type(buf) is bytearray else _from_buffer(buf, require_writable=True)
        if _enc(p + ad_size, _NULL, p + ad_size, size, p, ad_size, _NULL, p + nonce_offset, key) != 0:
            raise ProtocolError("encryption failed")  # pragma: no cover - only on absurd sizes
        return
    ad = bytes(buf[:ad_size])  # pragma: no cover - slow fallback through the public bindings
    nonce = ad[nonce_offset : nonce_offset + AEAD_NONCE_SIZE]
    buf[ad_size:] = _b.crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(buf[ad_size : ad_size + size]), ad, nonce, key)


def aead_open(frame, ad_size: int, nonce_offset: int, key: bytes) -> bytearray | None:
    """Decrypt ``frame[ad_size:]`` (ciphertext || 16-byte tag) with ``frame[:ad_size]`` as associated data
    and the nonce at ``frame[nonce_offset:nonce_offset+24]``.

    Returns the plaintext as a new bytearray, or None when the tag does not verify (wrong key, any
    altered byte). ``frame`` may be bytes, bytearray or a memoryview; it is not copied.
    """
    if len(key) != AEAD_KEY_SIZE or not 0 <= nonce_offset <= ad_size - AEAD_NONCE_SIZE:
        _check_aead_args(ad_size, nonce_offset, key)  # raises the precise ValueError
    clen = len(frame) - ad_size
    if clen < AEAD_TAG_SIZE:
        return None
    out = bytearray(clen - AEAD_TAG_SIZE)
    if _lib is not None:
        p = _from_buffer(frame)
        rc = _dec(_from_buffer(out) if out else _NULL, _NULL, _NULL, p + ad_size, clen, p, ad_size,
                  p + nonce_offset, key)
        return out if rc == 0 else None
    view = bytes(frame)  # pragma: no cover - slow fallback
    try:  # pragma: no cover
        return bytearray(_b.crypto_aead_xchacha20poly1305_ietf_decrypt(
            view[ad_size:], view[:ad_size], view[nonce_offset : nonce_offset + AEAD_NONCE_SIZE], key))
    except _CryptoError:  # pragma: no cover
        return None


def deterministic_rng(seed: bytes) -> RandomSource:
    """A reproducible byte stream (BLAKE2b in counter mode) for test vectors and benchmarks ONLY.

    Never use it for real keys: anyone who knows ``seed`` knows every byte it returns.
    """
    counter = 0
    buffer = b""

    def rng(n: int) -> bytes:
        nonlocal counter, buffer
        while len(buffer) < n:
            buffer += blake2b(counter.to_bytes(8, "big"), key=seed[:64], person=b"sm-test-rng", size=64)
            counter += 1
        out, buffer = buffer[:n], buffer[n:]
        return out

    return rng


# -- secrets at rest: Argon2id + XSalsa20-Poly1305 (the device keystore) ---------------------------------

PASSPHRASE_SALT_BYTES = 16
"""Bytes of Argon2id salt (libsodium's crypto_pwhash_argon2id_SALTBYTES)."""
SECRETBOX_NONCE_BYTES = 24
"""Bytes of XSalsa20-Poly1305 nonce."""


def seal_with_passphrase(secret: bytes, passphrase: str, *, opslimit: int, memlimit: int) -> dict[str, str]:
    """Encrypt ``secret`` under a key derived from ``passphrase`` with Argon2id (``opslimit`` passes,
    ``memlimit`` bytes). Returns hex fields ``salt``, ``nonce``, ``ciphertext`` to store beside the limits."""
    import nacl.pwhash
    import nacl.secret

    salt = os.urandom(PASSPHRASE_SALT_BYTES)
    key = nacl.pwhash.argon2id.kdf(32, passphrase.encode(), salt, opslimit=opslimit, memlimit=memlimit)
    nonce = os.urandom(SECRETBOX_NONCE_BYTES)
    sealed = nacl.secret.SecretBox(key).encrypt(secret, nonce).ciphertext
    return {"salt": salt.hex(), "nonce": nonce.hex(), "ciphertext": sealed.hex()}


def open_with_passphrase(salt: bytes, nonce: bytes, ciphertext: bytes, passphrase: str, *,
                         opslimit: int, memlimit: int) -> bytes | None:
    """The secret sealed by :func:`seal_with_passphrase`, or None for a wrong passphrase or altered data.

    Raises ValueError when the parameters themselves are malformed (a corrupted file, not a wrong passphrase).
    """
    import nacl.pwhash
    import nacl.secret

    try:
        key = nacl.pwhash.argon2id.kdf(32, passphrase.encode(), salt, opslimit=opslimit, memlimit=memlimit)
    except _CryptoError as exc:
        raise ValueError(f"bad key-derivation parameters: {exc}") from None
    try:
        return nacl.secret.SecretBox(key).decrypt(ciphertext, nonce)
    except (_CryptoError, ValueError):
        return None
