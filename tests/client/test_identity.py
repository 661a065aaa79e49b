"""Device keystore: sealed file (Argon2id + XSalsa20-Poly1305), 0600, never overwritten, clear errors."""

from __future__ import annotations

import json

import pytest

from shadowmesh_client.errors import KeystoreError
from shadowmesh_client.identity import DeviceKeystore, resolve_passphrase

FAST = dict(opslimit=1, memlimit=8 * 1024 * 1024)  # Argon2id kept cheap for tests only


def test_create_then_load_roundtrip(tmp_path):
    ks = DeviceKeystore(tmp_path / "k" / "device.key", backend="file")
    ident = ks.create("correct horse", **FAST)
    assert (tmp_path / "k" / "device.key").stat().st_mode & 0o777 == 0o600
    assert ks.load("correct horse").public_key == ident.public_key
    assert ks.public_key() == ident.public_key
    assert ident.seed_bytes().hex() not in (tmp_path / "k" / "device.key").read_text()


def test_wrong_passphrase_is_clear_and_keeps_the_file(tmp_path):
    ks = DeviceKeystore(tmp_path / "device.key", backend="file")
    ks.create("correct horse", **FAST)
    before = ks.path.read_bytes()
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        ks.load("battery staple")
    assert ks.path.read_bytes() == before


def test_never_overwrites(tmp_path):
    ks = DeviceKeystore(tmp_path / "device.key", backend="file")
    first = ks.create("correct horse", **FAST)
    with pytest.raises(KeystoreError, match="already exists"):
        ks.create("correct horse", **FAST)
    assert ks.load("correct horse") == first


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "swap_public"])
def test_corrupted_file(tmp_path, damage):
    ks = DeviceKeystore(tmp_path / "device.key", backend="file")
    ks.create("correct horse", **FAST)
    doc = json.loads(ks.path.read_text())
    if damage == "truncate":
        ks.path.write_text(ks.path.read_text()[:40])
    elif damage == "garbage":
        ks.path.write_bytes(b"\x00\xff not json")
    else:
        if damage == "flip":
            ct = bytearray.fromhex(doc["cipher"]["ciphertext"])
            ct[5] ^= 1
            doc["cipher"]["ciphertext"] = ct.hex()
        else:
            doc["public_key"] = "00" * 32
        ks.path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError):
        ks.load("correct horse")


def test_short_passphrase_refused(tmp_path):
    with pytest.raises(KeystoreError, match="at least"):
        DeviceKeystore(tmp_path / "device.key", backend="file").create("short", **FAST)
    assert not (tmp_path / "device.key").exists()


def test_passphrase_sources(tmp_path):
    f = tmp_path / "pass"
    f.write_text("from file\n")
    assert resolve_passphrase(f, None, env={"SHADOWMESH_PASSPHRASE": "env"}) == "from file"
    assert resolve_passphrase(None, None, env={"SHADOWMESH_PASSPHRASE": "env"}) == "env"
    assert resolve_passphrase(None, lambda: "typed", env={}) == "typed"
    with pytest.raises(KeystoreError, match="SHADOWMESH_PASSPHRASE"):
        resolve_passphrase(None, None, env={})


def test_missing_key_file_says_run_init(tmp_path):
    with pytest.raises(KeystoreError, match="shadowmesh-client init"):
        DeviceKeystore(tmp_path / "nope.key").load("x" * 10)
