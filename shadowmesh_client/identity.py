"""The device's Ed25519 identity, encrypted at rest (spec "Ed25519 Key Management": generated on first run,
kept in an encrypted keystore using the system keychain).

Two backends, chosen by ``backend="auto"``:
- ``keyring``: when the ``keyring`` package finds a real OS backend (Secret Service, macOS Keychain,
  Windows Credential Manager), the 32-byte seed is stored there (service ``shadowmesh``, user = key file
  path) and the key file only records ``{"backend": "keyring", "public_key": ...}``.
- ``file``: otherwise (headless servers, containers) the key file holds the seed sealed with a passphrase:
  Argon2id (libsodium ``crypto_pwhash``; ``opslimit``/``memlimit`` stored in the file, default 3 passes
  over 64 MiB) derives a 32-byte key, XSalsa20-Poly1305 (``crypto_secretbox``) seals the seed, the public
  key is authenticated as associated context (it must match the decrypted seed).

Key files are written atomically (temp file, fsync, rename), mode 0600, and never overwritten: ``create``
refuses when one exists. A wrong passphrase, a tampered or truncated file: :class:`KeystoreError` with a
clear message, the file untouched. The seed never appears in logs, reprs or messages.

Passphrase sources (``resolve_passphrase``): ``--passphrase-file``, then ``$SHADOWMESH_PASSPHRASE``, then an
interactive prompt; an unattended node uses the first two.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from shadowmesh_client.crypto import Identity, open_with_passphrase, seal_with_passphrase
from shadowmesh_client.errors import KeystoreError

FILE_VERSION = 1
DEFAULT_OPSLIMIT = 3  # Argon2id passes
DEFAULT_MEMLIMIT = 64 * 1024 * 1024  # bytes of memory for Argon2id
KEYRING_SERVICE = "shadowmesh"
PASSPHRASE_ENV = "SHADOWMESH_PASSPHRASE"
MIN_PASSPHRASE = 8  # characters


def has_real_keyring() -> bool:
    """True when ``keyring`` has an OS backend (not the fail/null/plaintext ones)."""
    try:
        import keyring
        from keyring.backends import chainer, fail
    except Exception:  # noqa: BLE001 - keyring missing or broken: use the file backend
        return False
    kr = keyring.get_keyring()
    if isinstance(kr, fail.Keyring) or "null" in type(kr).__module__:
        return False
    if isinstance(kr, chainer.ChainerBackend):
        return bool(kr.backends)
    return getattr(kr, "priority", 0) > 0


def resolve_passphrase(
    passphrase_file: str | os.PathLike | None,
    prompt: Callable[[], str] | None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The passphrase from a file, else $SHADOWMESH_PASSPHRASE, else ``prompt()``; KeystoreError if none."""
    if env is None:
        env = os.environ
    if passphrase_file:
        try:
            return Path(passphrase_file).expanduser().read_text().rstrip("\r\n")
        except OSError as exc:
            raise KeystoreError(f"cannot read the passphrase file {passphrase_file}: {exc.strerror}") from None
    if env.get(PASSPHRASE_ENV):
        return env[PASSPHRASE_ENV]
    if prompt is None:
        raise KeystoreError(
            f"the device key is passphrase-protected: pass --passphrase-file or set {PASSPHRASE_ENV}"
        )
    return prompt()


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if a key appeared meanwhile: never overwrite
    except FileExistsError:
        raise KeystoreError(f"a device key already exists at {path}; refusing to overwrite it") from None
    finally:
        os.unlink(tmp)


class DeviceKeystore:
    """The device key stored at ``path`` (see module docstring)."""

    def __init__(self, path: str | os.PathLike, *, backend: str = "auto") -> None:
        if backend not in ("auto", "file", "keyring"):
            raise KeystoreError(f"unknown keystore backend {backend!r}: use auto, file or keyring")
        self.path = Path(path).expanduser()
        self.backend = backend

    def exists(self) -> bool:
        return self.path.exists()

    def _read(self) -> dict:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise KeystoreError(f"no device key at {self.path}: run `shadowmesh-client init` first") from None
        except OSError as exc:
            raise KeystoreError(f"cannot read the device key {self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(raw)
            if doc.get("version") != FILE_VERSION or doc.get("backend") not in ("file", "keyring"):
                raise ValueError
            bytes.fromhex(doc["public_key"])
            return doc
        except (ValueError, KeyError, TypeError, AttributeError):
            raise KeystoreError(f"the device key file {self.path} is corrupted or not a ShadowMesh key file") from None

    def public_key(self) -> bytes:
        """The device's public key (no passphrase needed)."""
        return bytes.fromhex(self._read()["public_key"])

    def uses_keyring(self) -> bool:
        if self.exists():
            return self._read()["backend"] == "keyring"
        return self.backend == "keyring" or (self.backend == "auto" and has_real_keyring())

    def create(
        self,
        passphrase: str | None,
        *,
        opslimit: int = DEFAULT_OPSLIMIT,
        memlimit: int = DEFAULT_MEMLIMIT,
        identity: Identity | None = None,
    ) -> Identity:
        """Generate (or take) a device key and store it; refuses if a key file exists."""
        if self.exists():
            raise KeystoreError(f"a device key already exists at {self.path}; refusing to overwrite it")
        identity = identity or Identity.generate()
        pub = identity.public_key.hex()
        if self.uses_keyring():
            import keyring

            try:
                keyring.set_password(KEYRING_SERVICE, str(self.path), identity.seed_bytes().hex())
            except Exception as exc:  # noqa: BLE001 - every backend has its own errors
                raise KeystoreError(f"the OS keychain refused to store the key ({type(exc).__name__})") from None
            _write_private(self.path, json.dumps({"version": FILE_VERSION, "backend": "keyring",
                                                  "public_key": pub}).encode())
            return identity
        if not passphrase or len(passphrase) < MIN_PASSPHRASE:
            raise KeystoreError(f"choose a passphrase of at least {MIN_PASSPHRASE} characters for the device key")
        sealed = seal_with_passphrase(identity.seed_bytes() + identity.public_key, passphrase,
                                      opslimit=opslimit, memlimit=memlimit)
        doc = {
            "version": FILE_VERSION,
            "backend": "file",
            "public_key": pub,
            "kdf": {"name": "argon2id", "opslimit": opslimit, "memlimit": memlimit, "salt": sealed["salt"]},
            "cipher": {"name": "xsalsa20-poly1305", "nonce": sealed["nonce"], "ciphertext": sealed["ciphertext"]},
        }
        _write_private(self.path, json.dumps(doc, indent=1).encode())
        return identity

    def load(self, passphrase: str | None) -> Identity:
        """Unlock the device key (``passphrase`` ignored for the keyring backend)."""
        doc = self._read()
        public = bytes.fromhex(doc["public_key"])
        if doc["backend"] == "keyring":
            import keyring

            try:
                seed_hex = keyring.get_password(KEYRING_SERVICE, str(self.path))
            except Exception as exc:  # noqa: BLE001 - keyring backends raise backend-specific types
                raise KeystoreError(f"the OS keychain is unavailable ({type(exc).__name__})") from None
            if not seed_hex:
                raise KeystoreError(f"the OS keychain has no key for {self.path}: was it deleted?")
            identity = Identity.from_seed(bytes.fromhex(seed_hex))
        else:
            if not passphrase:
                raise KeystoreError(f"the device key {self.path} needs its passphrase")
            try:
                kdf, cipher = doc["kdf"], doc["cipher"]
                if kdf["name"] != "argon2id" or cipher["name"] != "xsalsa20-poly1305":
                    raise ValueError
                plain = open_with_passphrase(
                    bytes.fromhex(kdf["salt"]), bytes.fromhex(cipher["nonce"]),
                    bytes.fromhex(cipher["ciphertext"]), passphrase,
                    opslimit=int(kdf["opslimit"]), memlimit=int(kdf["memlimit"]),
                )
            except (KeyError, ValueError, TypeError):
                raise KeystoreError(f"the device key file {self.path} is corrupted") from None
            if plain is None:
                raise KeystoreError(
                    f"wrong passphrase for the device key {self.path} (or the file was altered)"
                ) from None
            if len(plain) != 64 or plain[32:] != public:
                raise KeystoreError(f"the device key file {self.path} is corrupted")
            identity = Identity.from_seed(plain[:32])
        if identity.public_key != public:
            raise KeystoreError(f"the device key file {self.path} does not match the stored key")
        return identity
