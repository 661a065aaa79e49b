"""`shadowmesh-client up` and `shadowmesh-client relay`: the two daemons (docs/mesh.md).

Standalone click commands; cli/__init__.py attaches them to the main group. Thin: parse
options, open the identity and the directory, build settings, run the daemon until SIGINT/SIGTERM.
Errors the user can fix are ShadowMeshError: the main group prints them as one ``error:`` line.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import click

from shadowmesh_client.daemon_common import run_until_signalled, setup_logging
from shadowmesh_client.errors import ConfigError

_LISTEN_ERRORS = {
    errno.EADDRINUSE: "the port is already in use (another `up` or `relay`, or another server): stop it, or "
                      "choose another port with --listen HOST:PORT or `listen:` in the config",
    errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE: run as root, or choose a port of 1024 "
                  "or more with --listen HOST:PORT or `listen:` in the config",
    errno.EADDRNOTAVAIL: "this machine has no such address: use 0.0.0.0 or one of its own addresses in --listen",
}


def _listen_error(exc: BaseException | None, depth: int = 0) -> OSError | None:
    """The OSError of binding the listener, also when it comes wrapped in a TaskGroup's ExceptionGroup or as
    the context of an error raised while cleaning up after it."""
    if exc is None or depth > 8:
        return None
    if isinstance(exc, OSError) and exc.errno in _LISTEN_ERRORS:
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _listen_error(inner, depth + 1)
            if found is not None:
                return found
    return _listen_error(exc.__context__, depth + 1)


def _run_daemon(run: Callable[[Any], Awaitable[None]], listen: str) -> None:
    """Run a daemon until SIGINT/SIGTERM; a listen address that cannot be bound is one ConfigError line."""
    try:
        run_until_signalled(run)
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is (or hides) a bind failure
        found = _listen_error(exc)
        if found is None:
            raise
        raise ConfigError(f"cannot listen on {listen}: {_LISTEN_ERRORS[found.errno or 0]}") from None


def _open_source(state, interval: float, rpc_watch=None):
    from shadowmesh_client.directory.syncer import DirectorySyncer, open_syncer

    cfg = state.config
    if cfg.network_id is None:
        raise ConfigError("set `network_id:` in the config (the network this device belongs to)")
    if cfg.deployments is not None:
        dep = state.deployment()
        chain_id, registry, start = dep.chain_id, dep.registry, dep.deploy_block
    else:
        chain_id, registry, start = cfg.chain_id, cfg.registry, cfg.deploy_block
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    syncer = open_syncer(cfg.rpc_url, chain_id, registry, cfg.network_id, cfg.state_dir, deploy_block=start,
                         confirmations=cfg.confirmations, retries=1, timeout=5.0)
    if rpc_watch is not None:
        syncer.reader.rpc.watch = rpc_watch   # counts requests/failures, traces them (observability/rpc.py)
    return DirectorySyncer(syncer, interval=interval)


def _observability(fn):
    """--log-format, --metrics-host: options both daemons share (docs/observability.md)."""
    fn = click.option("--metrics-host", default="127.0.0.1", show_default=True,
                      help="Address the metrics port listens on (0.0.0.0 to be scraped from elsewhere).")(fn)
    return click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
                        help="Log lines as text or as JSON objects (spec levels; secrets redacted).")(fn)


def _start_observability(state, role: str, log_format: str):
    """Logging (secret path redacted), optional tracing ($SHADOWMESH_TRACING), and the RPC watch."""
    from urllib.parse import urlsplit

    from shadowmesh_client.observability import tracing
    from shadowmesh_client.observability.rpc import RpcWatch

    cfg = state.config
    secret_path = urlsplit(cfg.endpoint).path if cfg.endpoint else None
    setup_logging(cfg.log_level, log_format, [secret_path] if secret_path and secret_path != "/" else [])
    tracing.setup_tracing(f"shadowmesh-{role}")
    return RpcWatch()


def _api(default: str):
    """--api: the local API and dashboard (docs/api.md), on by default on loopback."""
    return click.option("--api", "api", default=default, show_default=True, metavar="HOST:PORT|unix:PATH|off",
                        help="Local API + dashboard (loopback only; token in <state_dir>/api-token). `off` disables.")


def _api_settings(state, api: str):
    from shadowmesh_client.api import ApiSettings

    if api == "off":
        return None
    cfg = state.config
    settings = ApiSettings(listen=api, token_file=str(cfg.state_dir / "api-token"),
                           config_path=str(state.config_path) if state.config_path else None)
    try:
        settings.check()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return settings


def _tls(fn):
    fn = click.option("--tls-key", type=click.Path(exists=True, dir_okay=False),
                      help="PEM private key of --tls-cert.")(fn)
    return click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False),
                        help="PEM certificate chain: serve wss:// instead of ws://.")(fn)


@click.command("up")
@click.option("--listen", help="HOST:PORT to accept peers on when an endpoint is published (default: config `listen`).")
@click.option("--mtu", type=click.IntRange(576, 65535),
              help="TUN MTU in bytes (default: config `tun.mtu`, 65000: see docs/mesh.md).")
@click.option("--tun-name", help="TUN interface name (default: config `tun.name`).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="PEM CA for wss:// peers and relays.")
@click.option("--status-file", type=click.Path(dir_okay=False),
              help="Write the node's status as JSON here every second (default: <state_dir>/node-status.json).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on this port.")
@_observability
@_api("127.0.0.1:7780")
@_tls
@click.pass_obj
def up(state, listen, mtu, tun_name, ca_file, status_file, metrics_port, metrics_host, log_format, api, tls_cert,
       tls_key):
    """Bring this device into the mesh: TUN device, sessions with every trusted peer, until Ctrl-C.
    Signs relay receipts per the config's `payments:` section (docs/payments.md "Integration")."""
    from shadowmesh_client.node import Node, NodeSettings
    from shadowmesh_client.node.payments import load_device_payments

    cfg = state.config
    rpc_watch = _start_observability(state, "node", log_format)
    identity = state.identity()
    if mtu is None:
        mtu = cfg.tun.mtu
    settings = NodeSettings(
        tun_name=tun_name or cfg.tun.name, mtu=mtu, listen=listen or cfg.listen, tls_cert=tls_cert, tls_key=tls_key,
        ca_file=ca_file, relays=tuple(cfg.relays), status_file=status_file or str(cfg.state_dir / "node-status.json"),
        api=_api_settings(state, api))
    node = Node(identity, _open_source(state, settings.directory_interval, rpc_watch), settings, endpoint=cfg.endpoint,
                payments=load_device_payments(state), rpc_watch=rpc_watch,
                metrics=(metrics_host, metrics_port) if metrics_port else None)
    _run_daemon(node.run, settings.listen)


@click.command("relay")
@click.option("--listen", help="HOST:PORT to listen on (default: config `listen`).")
@click.option("--rate-limit", type=click.FloatRange(min=1), help="Per-device ingress limit in bytes/s (default: none).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on this port.")
@click.option("--status-file", type=click.Path(dir_okay=False),
              help="Write the relay's status (per-device byte counts) as JSON every second "
                   "(default: <state_dir>/relay-status.json).")
@click.option("--metrics-per-device", is_flag=True,
              help="Also export bytes per device (one series per device: high cardinality, off by default).")
@_observability
@_api("127.0.0.1:7781")
@_tls
@click.pass_obj
def relay(state, listen, rate_limit, metrics_port, status_file, metrics_per_device, metrics_host, log_format, api,
          tls_cert, tls_key):
    """Run a relay for the network: forwards end-to-end encrypted frames between trusted devices.
    With a token in the deployment record it keeps devices' receipts in <state_dir>/receipts.sqlite (for
    `shadowmesh-client claim`) and stops relaying for devices over their credit (config `payments:`)."""
    from shadowmesh_client.relay.billing import BillingSettings
    from shadowmesh_client.relay.daemon import RelayDaemon, RelaySettings

    cfg = state.config
    rpc_watch = _start_observability(state, "relay", log_format)
    identity = state.identity()
    settings = RelaySettings(listen=listen or cfg.listen, tls_cert=tls_cert, tls_key=tls_key,
                             rate_bytes_per_second=rate_limit, metrics_port=metrics_port,
                             status_file=status_file or str(cfg.state_dir / "relay-status.json"),
                             payments=_billing(state, BillingSettings), api=_api_settings(state, api))
    source = _open_source(state, settings.directory_interval, rpc_watch)
    daemon = RelayDaemon(identity, source, settings, endpoint=cfg.endpoint, metrics_host=metrics_host,
                         rpc_watch=rpc_watch, metrics_per_device=metrics_per_device)
    _run_daemon(daemon.run, settings.listen)


def _billing(state, settings_cls):
    """BillingSettings when the deployment record has the token contract, else None (no payments)."""
    cfg = state.config
    dep = state.deployment() if cfg.deployments is not None else None
    if dep is None or not dep.token:
        logging.getLogger(__name__).warning("relay payments off: no ShadowMeshToken in the deployment record")
        return None
    p = cfg.payments
    return settings_cls(cfg.rpc_url, dep, cfg.state_dir, credit_bytes=p.credit_bytes, resume_bytes=p.resume_bytes,
                        escrow_refresh_seconds=p.escrow_refresh_seconds, tolerance_bytes=p.tolerance_bytes)


COMMANDS = (up, relay)
