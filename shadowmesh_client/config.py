"""Typed YAML configuration of a ShadowMesh node (docs/cli.md "Configuration").

One YAML file, by default ``$XDG_CONFIG_HOME/shadowmesh/config.yaml`` (``~/.config/...``), ``--config`` to
choose another. Validated with pydantic; unknown keys are errors (a typo is named, with the closest valid
key), and every bad value names its key and the expected form. Relative paths in the file are relative to
the file's folder.

Example::

    rpc_url: http://127.0.0.1:8545
    deployments: deployments/polygon-local.json   # or: chain_id + registry (+ deploy_block)
    network_id: 1
    confirmations: 12           # blocks; default: 0 on a local chain (31337, 1337), 12 elsewhere
    rpc_urls: [https://rpc-b.example.org]   # more endpoints: the directory accepts only what all agree on
    device_key: device.key      # the encrypted Ed25519 device key (identity.py)
    owner_keystore: owner.json  # eth-account keystore of the owner account
    state_dir: state            # SQLite directory state
    listen: 0.0.0.0:443
    endpoint: wss://vpn.example.org/api/v1/ws/x1y2
    relays: [wss://relay.example.org/ws]
    tun: {name: sm0, mtu: 65000}
    log_level: INFO
    rpc_timeout: 60             # seconds: a command's overall deadline for the RPC (--timeout overrides)
    payments:                   # docs/payments.md "Integration"; every key optional
      sign_receipts: auto       # device: auto | true | false (see PaymentsConfig)
      signer_keystore: null     # a key authorised with `authorize-signer`; default: owner_keystore
      every_bytes: 16000000     # device: a receipt every N bytes relayed...
      every_seconds: 10         # ...or every T seconds with new bytes
      max_price_per_byte: 1000000000   # device: highest advertised price accepted at session start
      credit_bytes: 64000000    # relay: unreceipted bytes tolerated per payer (all its devices)
      auto_claim: true          # relay: claim on withdrawal requests, revocations, the threshold
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from shadowmesh_client.errors import ConfigError

_ADDR = re.compile(r"^0x[0-9a-fA-F]{40}$")
MAX_ENDPOINT_BYTES = 256  # DeviceRegistry's MAX_ENDPOINT_LENGTH
LOCAL_CHAIN_IDS = frozenset({31337, 1337})  # anvil / hardhat, ganache / geth --dev: one node, no reorgs
PUBLIC_CONFIRMATIONS = 12
"""Blocks the directory and the relay's billing stay behind the head on any other chain when ``confirmations``
is not set: a reorg shallower than this never shows a device that the chain later drops (issue 10, "Trust in
one RPC"). 12 blocks is ~25 s on Polygon PoS (2 s blocks), whose reorgs since the 2023 hard fork stay well
under it, and ~2.5 min on Ethereum (checkpoint finality needs 64+). Raise it for a chain with deeper reorgs."""


def confirmations_for(chain_id: int, configured: int | None) -> int:
    """``configured`` when set, else 0 on a local chain and PUBLIC_CONFIRMATIONS elsewhere."""
    if configured is not None:
        return configured
    return 0 if chain_id in LOCAL_CHAIN_IDS else PUBLIC_CONFIRMATIONS


def check_endpoint(url: str, what: str = "endpoint") -> str:
    """``url`` if it is a usable ws:// or wss:// URL (a host, IPv6 literals in brackets, a valid port, at most
    MAX_ENDPOINT_BYTES bytes, no whitespace), else ConfigError saying what is wrong. The one check used by
    the config, ``init``, ``register`` and ``set-endpoint``: nothing unusable is ever sent on chain."""
    example = "e.g. wss://vpn.example.org/ws or ws://[2001:db8::1]:8443/ws"
    if not re.match(r"^wss?://", url):
        raise ConfigError(f"{what} {url!r} must be a ws:// or wss:// URL, {example}")
    if any(c.isspace() for c in url):
        raise ConfigError(f"{what} {url!r} contains whitespace")
    if len(url.encode()) > MAX_ENDPOINT_BYTES:
        raise ConfigError(f"{what} is {len(url.encode())} bytes long; at most {MAX_ENDPOINT_BYTES} are allowed")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{what} {url!r} is not a valid URL ({exc}), {example}") from None
    host = parts.hostname
    if not host:
        raise ConfigError(f"{what} {url!r} has no host, {example}")
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{what} {url!r}: {host!r} in brackets is not an IPv6 address") from None
    elif ":" in host:
        raise ConfigError(f"{what} {url!r}: write an IPv6 address in brackets, e.g. ws://[::1]:8443/ws")
    if port == 0:
        raise ConfigError(f"{what} {url!r}: port 0 is not a port to dial")
    return url


def _scalar_kind(annotation: Any) -> set[type]:
    """The builtin scalar types an annotation accepts (``int | None`` -> {int, NoneType})."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set().union(*(_scalar_kind(a) for a in typing.get_args(annotation)))
    if typing.get_origin(annotation) is Literal:
        return {type(a) for a in typing.get_args(annotation)}
    return {annotation} if isinstance(annotation, type) else set()


class _Strict(BaseModel):
    """Reject YAML booleans where a number is expected (``network_id: true``; pydantic would read 1) and
    numbers or booleans where text is expected; the message names the key."""

    @model_validator(mode="before")
    @classmethod
    def _scalar_types(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for key, value in data.items():
            field = cls.model_fields.get(key) if isinstance(key, str) else None
            if field is None:
                continue
            kinds = _scalar_kind(field.annotation)
            if isinstance(value, bool) and bool not in kinds and kinds & {int, float}:
                raise ValueError(f"`{key}` must be a number, not {str(value).lower()}")
            if isinstance(value, bool | int | float) and not isinstance(value, bool) and kinds & {str, Path} \
                    and not kinds & {int, float}:
                raise ValueError(f"`{key}` must be text, not the number {value}: quote it")
            if isinstance(value, bool) and kinds & {str, Path} and bool not in kinds and not kinds & {int, float}:
                raise ValueError(f"`{key}` must be text, not {str(value).lower()}")
        return data


def default_config_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "shadowmesh"


def default_config_path() -> Path:
    return default_config_dir() / "config.yaml"


class TunConfig(_Strict):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("sm0", min_length=1, max_length=15, pattern=r"^[A-Za-z0-9_.-]+$")
    mtu: int = Field(65000, ge=576, le=65535)  # large: the tunnel rides TCP (docs/mesh.md)


class PaymentsConfig(_Strict):
    """Relay payments (docs/payments.md "Integration"). Device side (``up``):

    * ``sign_receipts``: ``auto`` (default) signs receipts when the signer key can be unlocked without a
      prompt (password file: ``signer_password_file``, ``--owner-password-file``, or the environment
      variables SHADOWMESH_SIGNER_PASSWORD / SHADOWMESH_OWNER_PASSWORD), else runs unpaid with a warning
      (free relays, price 0, keep carrying its traffic; paid relays stop after their credit); ``true``
      refuses to start without a signer (prompts on a terminal); ``false`` never signs.
    * ``signer_keystore``: eth-account keystore of the receipt signer (the owner's, or a hot key the owner
      authorised with ``authorize-signer``); default ``owner_keystore``.
    * ``every_bytes`` / ``every_seconds`` / ``tolerance_bytes`` / ``max_price_per_byte``: rewards.IssuerConfig
      (``max_price_per_byte``: the highest ``relayPrice`` the device accepts when a session starts; receipts
      carry the accepted price, never more).

    Relay side (``relay``): ``credit_bytes`` / ``resume_bytes`` (rewards.CreditConfig: per payer, all its
    devices together), ``escrow_refresh_seconds`` (how stale the relay's view of payers' reserves and its own
    price may be), ``auto_claim`` (claim with the owner key when a payer requests a reserve withdrawal, a signer
    is revoked, or what is owed passes ``claim_threshold`` x the reserve's guarantee; needs the owner keystore's
    password without a prompt), ``claim_margin_seconds`` (claim this long before an unlockAt/validUntil)."""

    model_config = ConfigDict(extra="forbid")
    sign_receipts: Literal["auto", True, False] = "auto"
    signer_keystore: Path | None = None
    signer_password_file: Path | None = None
    every_bytes: int = Field(16_000_000, ge=1)
    every_seconds: float = Field(10.0, gt=0)
    tolerance_bytes: int = Field(256 * 1024, ge=0)
    max_price_per_byte: int = Field(10**9, ge=1)
    credit_bytes: int = Field(64_000_000, ge=0)
    resume_bytes: int | None = Field(None, ge=0)
    escrow_refresh_seconds: float = Field(10.0, gt=0)
    auto_claim: bool = True
    claim_threshold: float = Field(0.5, gt=0, le=1)
    claim_margin_seconds: float = Field(600.0, ge=0)


class UserspaceConfig(_Strict):
    """``userspace:`` (issue 18, docs/userspace.md): ``enabled`` runs ``up`` without a TUN device (as
    ``--userspace``); ``socks`` / ``http``: HOST:PORT of the local SOCKS5 / HTTP CONNECT proxy (``null``:
    off); ``allow_lan``: networks peers may reach through this node; ``lan_via``: {network: peer overlay
    address} for our proxies. The proxies run in TUN mode too when set here."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    socks: str | None = "127.0.0.1:1080"
    http: str | None = "127.0.0.1:8118"
    allow_lan: list[str] = Field(default_factory=list)
    lan_via: dict[str, str] = Field(default_factory=dict)


class RoutingConfig(_Strict):
    """``routing:`` (issue 14, docs/routing.md): names, IPv6, exit nodes, subnet routes, split tunnelling,
    kill switch, DNS, QoS. ``up`` options override: --exit-node, --exit-allow-lan, --advertise-exit,
    --advertise-routes, --name, --kill-switch, --qos."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False               # opt-in until the routing e2e suite runs it on real kernels (docs/routing.md)
    ipv6: bool = True
    name: str | None = Field(None, pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    advertise_exit: bool = False
    advertise_routes: list[str] = Field(default_factory=list)
    exit_allow: list[str] = Field(default_factory=list)     # names/addresses allowed to use our exit; []: all
    uplink: str | None = None
    exit_node: str | None = None
    exit_allow_lan: bool = False
    include: list[str] = Field(default_factory=list)        # split tunnelling: only these through the exit
    exclude: list[str] = Field(default_factory=list)        # split tunnelling: these never through the exit
    kill_switch: bool = False
    records_dir: Path | None = None                         # default: <state_dir>/records
    dns: bool = True
    dns_suffix: str = Field("shadowmesh.internal", pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
    dns_forward: str | None = "system"                      # "system", "IP[:PORT]", or null (REFUSED)
    configure_resolver: bool = True                          # systemd-resolved per-link DNS when available
    qos: bool = False
    qos_ports: list[str | int] = Field(default_factory=lambda: list[str | int]([22, 53, 3478, 3479, 5060, 5061,
                                                                               5349, "16384-16483"]))

    @field_validator("advertise_routes", "include", "exclude")
    @classmethod
    def _prefixes(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=True)
            except ValueError:
                raise ValueError(f"{item!r}: expected a network like 192.168.7.0/24 or fd00:7::/64") from None
        return v


class Config(_Strict):
    """A node's configuration (see module docstring)."""

    model_config = ConfigDict(extra="forbid")

    rpc_url: str = "http://127.0.0.1:8545"
    deployments: Path | None = None
    chain_id: int | None = Field(None, ge=1)
    registry: str | None = None
    deploy_block: int = Field(0, ge=0)
    network_id: int | None = Field(None, ge=1, lt=2**64)
    confirmations: int | None = Field(None, ge=0, le=1000)   # None: confirmations_for(chain id)
    rpc_urls: list[str] = Field(default_factory=list)         # more endpoints the directory cross-checks
    device_key: Path = Path("device.key")
    keystore_backend: Literal["auto", "file", "keyring"] = "auto"
    owner_keystore: Path | None = None
    state_dir: Path = Path("state")
    listen: str = "0.0.0.0:443"
    endpoint: str | None = None
    relays: list[str] = Field(default_factory=list)
    tun: TunConfig = Field(default_factory=TunConfig)
    payments: PaymentsConfig = Field(default_factory=PaymentsConfig)
    userspace: UserspaceConfig = Field(default_factory=UserspaceConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    forward: list[str] = Field(default_factory=list)   # "127.0.0.1:8022 -> 100.64.0.7:22" (docs/userspace.md)
    expose: list[str] = Field(default_factory=list)    # "22" or "8080 -> 127.0.0.1:3000": ports peers may open
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    rpc_timeout: float = Field(60.0, gt=0, le=3600)  # seconds: each command's overall deadline for the RPC

    @field_validator("rpc_url")
    @classmethod
    def _rpc(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("expected an http:// or https:// URL, e.g. http://127.0.0.1:8545")
        return v

    @field_validator("rpc_urls")
    @classmethod
    def _rpcs(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.match(r"^https?://[^\s/]+", url):
                raise ValueError(f"{url!r}: expected an http:// or https:// URL, e.g. https://rpc.example.org")
        return v

    @field_validator("registry")
    @classmethod
    def _registry(cls, v: str | None) -> str | None:
        if v is not None and not _ADDR.match(v):
            raise ValueError("expected an address: 0x followed by 40 hex digits")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:443")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                check_endpoint(v)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("forward", "expose")
    @classmethod
    def _streams(cls, v: list[str], info) -> list[str]:
        from shadowmesh_client.userspace.policy import Expose, Forward

        parse = Forward.parse if info.field_name == "forward" else Expose.parse
        for entry in v:
            try:
                parse(entry)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("relays")
    @classmethod
    def _relays(cls, v: list[str]) -> list[str]:
        for url in v:
            try:
                check_endpoint(url, "relay URL")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _chain_source(self) -> Config:
        if self.deployments is None and (self.chain_id is None or self.registry is None):
            raise ValueError("set `deployments` (a deployment record) or both `chain_id` and `registry`")
        return self

    def resolve_paths(self, base: Path) -> Config:
        """Make relative paths relative to ``base`` (the config file's folder)."""
        def fix(p: Path | None) -> Path | None:
            if p is None:
                return None
            p = p.expanduser()
            return p if p.is_absolute() else base / p

        return self.model_copy(update={
            "deployments": fix(self.deployments),
            "device_key": fix(self.device_key),
            "owner_keystore": fix(self.owner_keystore),
            "state_dir": fix(self.state_dir),
            "routing": self.routing.model_copy(update={"records_dir": fix(self.routing.records_dir)}),
            "payments": self.payments.model_copy(update={
                "signer_keystore": fix(self.payments.signer_keystore),
                "signer_password_file": fix(self.payments.signer_password_file)}),
        })


def _describe(err: ErrorDetails, data: object) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        parent = data
        for part in err["loc"][:-1]:
            parent = parent.get(part, {}) if isinstance(parent, dict) else {}
        model: type[BaseModel] = Config
        sections: dict[str, type[BaseModel]] = {"tun": TunConfig, "payments": PaymentsConfig}
        for part in err["loc"][:-1]:
            model = sections.get(str(part), model)
        close = difflib.get_close_matches(str(err["loc"][-1]), list(model.model_fields), n=1)
        hint = f" (did you mean `{'.'.join(map(str, err['loc'][:-1] + (close[0],)))}`?)" if close else ""
        return f"unknown key `{loc}`{hint}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    got = err.get("input")
    shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
    if loc == "(top level)":
        return msg
    return f"`{loc}`: {msg}{shown}"


def parse_config(data: object, source: str = "config", base: Path | None = None) -> Config:
    """Validate a parsed YAML document; ConfigError lists every problem, each naming its key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values at the top level")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, data) for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None
    return cfg.resolve_paths(base or Path.cwd())


class _DuplicateKey(ValueError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise _DuplicateKey(f"`{key}` is given twice (lines {seen[key] + 1} and "
                                    f"{key_node.start_mark.line + 1}): keep one")
            if isinstance(key, str | int | float | bool):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and validate the config file (default ``default_config_path()``)."""
    p = Path(path).expanduser() if path else default_config_path()
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p} is not a text (UTF-8) file: byte {exc.start} is {exc.object[exc.start]:#04x}; "
                          "a config is YAML text: see docs/cli.md") from None
    except IsADirectoryError:
        raise ConfigError(f"{p} is a directory; --config wants the YAML file") from None
    except FileNotFoundError:
        raise ConfigError(f"no config file at {p}: run `shadowmesh-client init` or pass --config") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {p}: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data, str(p), p.parent.resolve())


def write_config(path: Path, values: dict) -> None:
    """Write a new config file (validated first); refuses to overwrite an existing one."""
    parse_config(values, str(path), path.parent)
    if path.exists():
        raise ConfigError(f"{path} already exists; edit it or choose another --config")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(yaml.safe_dump(values, sort_keys=False))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
