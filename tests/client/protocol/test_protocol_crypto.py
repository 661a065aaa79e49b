"""crypto.py's AEAD hot path (libsodium through PyNaCl's private cffi handle ``nacl._sodium``): its
memory-safety guards, and the public-bindings fallback used if that private handle ever disappears."""

from __future__ import annotations

import pytest

from shadowmesh_client import crypto
from shadowmesh_client.protocol import frames as F

KEY = bytes(range(32))
SENDER = b"\x05" * 32
PREFIX = b"\x09" * 20


def _buffer(payload: bytes) -> bytearray:
    buf = bytearray(64 + len(payload) + 16)
    buf[40:64] = b"\x11" * 24
    buf[64 : 64 + len(payload)] = payload
    return buf


def test_seal_in_place_refuses_a_read_only_buffer_and_leaves_it_untouched():
    # libsodium writes through the pointer: handing it an immutable bytes object must not corrupt it
    frozen = bytes(_buffer(b"hello"))
    before = frozen.hex()
    with pytest.raises((TypeError, ValueError, BufferError)):
        crypto.aead_seal_in_place(frozen, 64, 40, 5, KEY)
    assert frozen.hex() == before


@pytest.mark.parametrize("key", [b"", b"\x01" * 5, b"\x01" * 31, b"\x01" * 33])
def test_aead_refuses_keys_that_are_not_32_bytes(key):
    # libsodium reads exactly 32 bytes from the key pointer: a shorter key would be an out-of-bounds read
    with pytest.raises(ValueError, match="32"):
        crypto.aead_seal_in_place(_buffer(b"hello"), 64, 40, 5, key)
    sealed = _buffer(b"hello")
    crypto.aead_seal_in_place(sealed, 64, 40, 5, KEY)
    with pytest.raises(ValueError, match="32"):
        crypto.aead_open(bytes(sealed), 64, 40, key)


@pytest.mark.parametrize("ad_size,nonce_offset", [(64, 41), (30, 10), (64, -1)])
def test_aead_refuses_a_nonce_outside_the_associated_data(ad_size, nonce_offset):
    buf = bytearray(ad_size + 5 + 16)
    with pytest.raises(ValueError, match="nonce"):
        crypto.aead_seal_in_place(buf, ad_size, nonce_offset, 5, KEY)
    with pytest.raises(ValueError, match="nonce"):
        crypto.aead_open(bytes(buf), ad_size, nonce_offset, KEY)


def _frames():
    return [
        F.seal_packets(0, 7, SENDER, PREFIX, [b"\x45" * 1400], False, KEY),
        F.seal_packets(2, 8, SENDER, PREFIX, [b"a", b"bb" * 300], True, KEY),
        F.seal(F.FrameType.KEEPALIVE, 0, 9, SENDER, PREFIX + (9).to_bytes(4, "big"), b"", KEY),
    ]


def test_public_bindings_fallback_gives_the_same_bytes(monkeypatch):
    fast = [bytes(f) for f in _frames()]
    monkeypatch.setattr(crypto, "_lib", None)  # as if nacl._sodium were gone in a future PyNaCl
    slow = [bytes(f) for f in _frames()]
    assert slow == fast
    for frame in fast:
        plaintext = F.open_payload(frame, KEY)
        assert plaintext is not None and isinstance(plaintext, bytearray)
        flipped = bytearray(frame)
        flipped[3] ^= 0x01  # a header (associated data) bit
        assert F.open_payload(bytes(flipped), KEY) is None
        assert F.open_payload(frame, b"\x00" * 32) is None
    monkeypatch.undo()
    assert [bytes(F.open_payload(f, KEY)) for f in slow] == [bytes(F.open_payload(f, KEY)) for f in fast]


def test_open_accepts_bytes_bytearray_and_memoryview_without_changing_them():
    frame = bytes(_frames()[0])
    expected = F.open_payload(frame, KEY)
    for form in (bytearray(frame), memoryview(frame), memoryview(bytearray(frame))):
        assert F.open_payload(form, KEY) == expected
    assert bytes(frame) == frame


def test_the_fast_libsodium_handle_is_in_use():
    """The private ``nacl._sodium`` handle is what makes seal/open 1.2-2.7x faster (figures in crypto.py);
    if a PyNaCl upgrade removes or renames it the fallback keeps working, but this fails loudly."""
    assert crypto._lib is not None, "nacl._sodium (ffi, lib) no longer importable: AEAD runs the slow path"
    for name in ("crypto_aead_xchacha20poly1305_ietf_encrypt", "crypto_aead_xchacha20poly1305_ietf_decrypt"):
        assert hasattr(crypto._lib, name), f"nacl._sodium.lib.{name} is gone"
