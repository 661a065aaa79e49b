"""Shared plumbing of the `shadowmesh-client` commands: config, keys, chain connection, output.

Every failure the user can fix is a ShadowMeshError; :class:`ErrorsAsMessages` turns it into one line on
stderr (``error: ...``) and exit code 1, never a traceback. Secrets (passphrases, passwords) come from a
file, an environment variable or a hidden prompt, never from a command-line value.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from shadowmesh_client.errors import ConfigError, KeystoreError, ShadowMeshError

OWNER_PASSWORD_ENV = "SHADOWMESH_OWNER_PASSWORD"


class ErrorsAsMessages(click.Group):
    """A click group that prints ShadowMeshError as ``error: <message>`` and exits 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShadowMeshError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


class State:
    """What the global options chose; loads each part on first use."""

    def __init__(self, config_path: str | None, passphrase_file: str | None, owner_password_file: str | None):
        self.config_path = config_path
        self.passphrase_file = passphrase_file
        self.owner_password_file = owner_password_file
        self._config = None

    @property
    def config(self):
        if self._config is None:
            from shadowmesh_client.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def deployment(self):
        from shadowmesh_client.chain import load_deployment

        cfg = self.config
        if cfg.deployments is None:
            raise ConfigError("this command needs `deployments:` (the deployment record with the ABI) in the config")
        return load_deployment(cfg.deployments)

    def chain(self):
        from shadowmesh_client.chain import Chain

        return Chain(self.config.rpc_url, self.deployment())

    def keystore(self):
        from shadowmesh_client.identity import DeviceKeystore

        return DeviceKeystore(self.config.device_key, backend=self.config.keystore_backend)

    def identity(self):
        from shadowmesh_client.identity import resolve_passphrase

        ks = self.keystore()
        if ks.uses_keyring():
            return ks.load(None)
        ks.public_key()  # a missing or corrupted file is reported before asking for a passphrase
        prompt = (lambda: click.prompt("Device key passphrase", hide_input=True)) if sys.stdin.isatty() else None
        return ks.load(resolve_passphrase(self.passphrase_file, prompt))

    def owner_address(self) -> str:
        from eth_utils import to_checksum_address

        path = self._owner_path()
        try:
            return to_checksum_address("0x" + json.loads(path.read_text())["address"].removeprefix("0x"))
        except FileNotFoundError:
            raise KeystoreError(
                f"owner keystore {path} not found: create one with `shadowmesh-client account new`") from None
        except (ValueError, KeyError, TypeError):
            raise KeystoreError(f"owner keystore {path} is not an eth-account keystore file") from None

    def _owner_path(self) -> Path:
        if self.config.owner_keystore is None:
            raise ConfigError("set `owner_keystore:` in the config (an eth-account keystore file of the owner)")
        return Path(self.config.owner_keystore)

    def owner_account(self):
        from shadowmesh_client.chain import load_owner_account

        path = self._owner_path()
        password = owner_password(self.owner_password_file, f"Password of the owner keystore {path}")
        return load_owner_account(path, password)


def owner_password(password_file: str | None, prompt_text: str, confirm: bool = False) -> str:
    if password_file:
        try:
            return Path(password_file).expanduser().read_text().rstrip("\r\n")
        except OSError as exc:
            raise KeystoreError(f"cannot read the password file {password_file}: {exc.strerror}") from None
    if os.environ.get(OWNER_PASSWORD_ENV):
        return os.environ[OWNER_PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise KeystoreError(
            f"the owner keystore needs its password: pass --owner-password-file or set {OWNER_PASSWORD_ENV}")
    return click.prompt(prompt_text, hide_input=True, confirmation_prompt=confirm)


def emit(as_json: bool, data: dict | list, human: str) -> None:
    """Print ``data`` as JSON (for scripts) or ``human`` (for people)."""
    click.echo(json.dumps(data, indent=2, default=str) if as_json else human)


def tx_lines(r) -> str:
    d = r.to_dict()
    order = ["device_id", "network_id", "overlay_address", "status", "expires_at", "tx_hash", "block", "gas_used"]
    return "\n".join(f"{k.replace('_', ' ')}: {d[k]}" for k in order if k in d)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of text.")
