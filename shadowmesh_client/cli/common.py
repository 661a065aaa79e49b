"""Shared plumbing of the `shadowmesh-client` commands: config, keys, chain connection, output, errors.

Exit codes and error output (:class:`ErrorsAsMessages`, docs/cli.md "Errors"): never a traceback.

* 0 success; 1 an error the user can fix (ShadowMeshError, the deadline passed, a file or socket error):
  one line ``error: <what happened and what to do>`` on stderr;
* 2 a usage error (unknown option, bad option value): one line ``error: ... (see `... --help`)``;
* 130 interrupted (Ctrl-C): one line ``interrupted``.
* With ``--json`` anywhere on the command line, an error is also printed on stdout as
  ``{"error": "<message>", "exit_code": N}`` so scripts always get JSON.

Each command that talks to the chain has one overall deadline (chain.deadline): ``--timeout`` /
``$SHADOWMESH_TIMEOUT`` / config ``rpc_timeout``. Option values are checked by the click types below
(amounts, prices, addresses) before any RPC. Secrets (passphrases, passwords) come from a file, an
environment variable or a hidden prompt, never from a command-line value.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

import click

from shadowmesh_client.chain.deadline import DEFAULT_TIMEOUT, Deadline, DeadlineExceeded
from shadowmesh_client.errors import ConfigError, KeystoreError, ShadowMeshError

OWNER_PASSWORD_ENV = "SHADOWMESH_OWNER_PASSWORD"
TIMEOUT_ENV = "SHADOWMESH_TIMEOUT"
UINT256_MAX = 2**256 - 1
SMT_DECIMALS = 18


class ErrorsAsMessages(click.Group):
    """The root group: runs the command and turns every failure into one line (see module docstring)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        as_json = "--json" in argv
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else (prog_name or "shadowmesh-client")
            _fail(f"{exc.format_message()} (see `{where} --help`)", 2, as_json)
        except (click.Abort, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            if as_json:
                click.echo(json.dumps({"error": "interrupted", "exit_code": 130}))
            sys.exit(130)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code, as_json)
        except (ShadowMeshError, DeadlineExceeded) as exc:
            _fail(str(exc), 1, as_json)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                sys.exit(1)
            where = f" {exc.filename}" if exc.filename else ""
            _fail(f"{exc.strerror or exc}{':' if where else ''}{where}", 1, as_json)
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int, as_json: bool) -> NoReturn:
    message = " ".join(message.split())  # one line, always
    click.echo(f"error: {message}", err=True)
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": code}))
    sys.exit(code)


class State:
    """What the global options chose; loads each part on first use."""

    def __init__(self, config_path: str | None, passphrase_file: str | None, owner_password_file: str | None,
                 timeout: float | None = None):
        self.config_path = config_path
        self.passphrase_file = passphrase_file
        self.owner_password_file = owner_password_file
        self.timeout = timeout
        self._config = None
        self._deadline: Deadline | None = None

    @property
    def deadline(self) -> Deadline:
        """The command's overall RPC deadline, armed on first use until the command ends."""
        if self._deadline is None:
            seconds = self.timeout
            if seconds is None:
                try:
                    seconds = self.config.rpc_timeout
                except ConfigError:  # no config (dev faucet --rpc-url ...): the command reports it if it needs one
                    seconds = DEFAULT_TIMEOUT
            self._deadline = Deadline(seconds)
            ctx = click.get_current_context(silent=True)
            if ctx is not None:
                ctx.find_root().with_resource(self._deadline)
            else:
                self._deadline.__enter__()
        return self._deadline

    def pause(self) -> contextlib.AbstractContextManager:
        """Stop the deadline's clock while the user types at a prompt."""
        return self._deadline.paused() if self._deadline is not None else contextlib.nullcontext()

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

    def chain(self, cls=None):
        """A connected Chain (or ``cls``, e.g. rewards.onchain.TokenChain) under the command's deadline."""
        from shadowmesh_client.chain import Chain

        deadline = self.deadline
        return (cls or Chain)(self.config.rpc_url, self.deployment(), timeout=deadline.seconds + 5,
                              watch=deadline.watch)

    def keystore(self):
        from shadowmesh_client.identity import DeviceKeystore

        return DeviceKeystore(self.config.device_key, backend=self.config.keystore_backend)

    def identity(self):
        from shadowmesh_client.identity import resolve_passphrase

        ks = self.keystore()
        if ks.uses_keyring():
            return ks.load(None)
        ks.public_key()  # a missing or corrupted file is reported before asking for a passphrase
        prompt = (lambda: self._prompt("Device key passphrase")) if sys.stdin.isatty() else None
        return ks.load(resolve_passphrase(self.passphrase_file, prompt))

    def _prompt(self, text: str, confirm: bool = False) -> str:
        with self.pause():
            return click.prompt(text, hide_input=True, confirmation_prompt=confirm)

    def owner_address(self) -> str:
        from eth_utils import is_hex_address, to_checksum_address

        path = self._owner_path()
        try:
            blob = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise KeystoreError(
                f"owner keystore {path} not found: create one with `shadowmesh-client account new`") from None
        except (OSError, ValueError) as exc:
            raise KeystoreError(f"owner keystore {path} is not an eth-account keystore file ({exc})") from None
        address = blob.get("address") if isinstance(blob, dict) else None
        if not isinstance(address, str) or not is_hex_address("0x" + address.removeprefix("0x")):
            raise KeystoreError(f"owner keystore {path} is not an eth-account keystore file (no valid `address`): "
                                "create one with `shadowmesh-client account new` or `account import`")
        return to_checksum_address("0x" + address.removeprefix("0x"))

    def _owner_path(self) -> Path:
        if self.config.owner_keystore is None:
            raise ConfigError("set `owner_keystore:` in the config (an eth-account keystore file of the owner)")
        return Path(self.config.owner_keystore)

    def owner_account(self):
        from shadowmesh_client.chain import load_owner_account

        path = self._owner_path()
        with self.pause():
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


def when(ts: int | None) -> str:
    """A block timestamp as the one date format of the CLI ("2025-06-01 12:00:00 UTC")."""
    from datetime import UTC, datetime

    from shadowmesh_client.chain.client import DATE_FORMAT

    return "-" if not ts else datetime.fromtimestamp(ts, UTC).strftime(DATE_FORMAT)


def _value(key: str, v: Any) -> str:
    if key.endswith(("_at", "_time")) and isinstance(v, int) and not isinstance(v, bool):
        return when(v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def tx_lines(r) -> str:
    d = r.to_dict()
    order = ["device_id", "network_id", "overlay_address", "status", "expires_at", "endpoint", "relay", "tx_hash",
             "block", "gas_used"]
    return "\n".join(f"{k.replace('_', ' ')}: {_value(k, d[k])}" for k in order if k in d)


def dict_lines(d: dict) -> str:
    """``key: value`` lines with dates and yes/no the same everywhere."""
    return "\n".join(f"{k.replace('_', ' ')}: {_value(k, v)}" for k, v in d.items())


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of text.")


# ---------------------------------------------------------------- option types: checked before any RPC


class SmtAmount(click.ParamType):
    """An amount of SMT as typed ("12.5", up to 18 decimals) -> base units (int), 0 <= x <= 2**256-1."""

    name = "SMT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        try:
            amount = Decimal(text)
        except InvalidOperation:
            self.fail(f"{text!r} is not an amount of SMT (e.g. 12.5)", param, ctx)
        if not amount.is_finite():
            self.fail(f"{text!r} is not an amount of SMT (e.g. 12.5)", param, ctx)
        if amount < 0:
            self.fail(f"{text} is negative: amounts of SMT are 0 or more", param, ctx)
        if amount.adjusted() > 80:
            self.fail(f"{text} SMT is more than can exist (at most about 1.16e59 SMT)", param, ctx)
        base = amount.scaleb(SMT_DECIMALS)
        if base != base.to_integral_value():
            self.fail(f"{text} has more than {SMT_DECIMALS} decimals", param, ctx)
        if int(base) > UINT256_MAX:
            self.fail(f"{text} SMT is more than can exist (at most about 1.16e59 SMT)", param, ctx)
        return int(base)


class Uint256(click.ParamType):
    """A whole number 0 <= x <= 2**256-1 (a price in base units per byte)."""

    name = "INTEGER"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().replace("_", "")
        if not text.isdigit():
            self.fail(f"{value!r} is not a whole number of base units (0 or more)"
                      + (": it is negative" if text.startswith("-") else ""), param, ctx)
        number = int(text)
        if number > UINT256_MAX:
            self.fail(f"{text[:12]}... ({len(text)} digits) is above the largest value a contract can hold "
                      "(2**256-1, 78 digits)", param, ctx)
        return number


class EthAddress(click.ParamType):
    """An Ethereum address (0x + 40 hex digits) -> its checksummed form."""

    name = "ADDRESS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from eth_utils import is_hex_address, to_checksum_address

        text = str(value).strip()
        if not is_hex_address(text) or not text.startswith(("0x", "0X")):
            self.fail(f"{text!r} is not an address (0x followed by 40 hex digits)", param, ctx)
        return to_checksum_address(text)


SMT_AMOUNT = SmtAmount()
UINT256 = Uint256()
ETH_ADDRESS = EthAddress()

# Lets a negative number reach an argument's type check ("deposit -1": "is negative", not "No such option").
NUMBERS_AS_ARGUMENTS = {"ignore_unknown_options": True}
