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


def _listen_error(exc: BaseException) -> OSError | None:
    """The OSError of binding the listener, also when it comes wrapped in a TaskGroup's ExceptionGroup."""
    if isinstance(exc, OSError) and exc.errno in _LISTEN_ERRORS:
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _listen_error(inner)
            if found is not None:
                return found
    return None


def _run_daemon(run: Callable[[Any], Awaitable[None]], listen: str) -> None:
    """Run a daemon until SIGINT/SIGTERM; a listen address that cannot be bound is one ConfigError line."""
    try:
        run_until_signalled(run)
    except (OSError, BaseExceptionGroup) as exc:
        found = _listen_error(exc)
        if found is None:
            raise
        raise ConfigError(f"cannot listen on {listen}: {_LISTEN_ERRORS[found.errno]}") from None


def _open_source(state, interval: float):
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
    return DirectorySyncer(syncer, interval=interval)


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
@_tls
@click.pass_obj
def up(state, listen, mtu, tun_name, ca_file, status_file, tls_cert, tls_key):
    """Bring this device into the mesh: TUN device, sessions with every trusted peer, until Ctrl-C.
    Signs relay receipts per the config's `payments:` section (docs/payments.md "Integration")."""
    from shadowmesh_client.node import Node, NodeSettings
    from shadowmesh_client.node.payments import load_device_payments

    cfg = state.config
    setup_logging(cfg.log_level)
    identity = state.identity()
    if mtu is None:
        mtu = cfg.tun.mtu
    settings = NodeSettings(
        tun_name=tun_name or cfg.tun.name, mtu=mtu, listen=listen or cfg.listen, tls_cert=tls_cert, tls_key=tls_key,
        ca_file=ca_file, relays=tuple(cfg.relays), status_file=status_file or str(cfg.state_dir / "node-status.json"))
    node = Node(identity, _open_source(state, settings.directory_interval), settings, endpoint=cfg.endpoint,
                payments=load_device_payments(state))
    _run_daemon(node.run, settings.listen)


@click.command("relay")
@click.option("--listen", help="HOST:PORT to listen on (default: config `listen`).")
@click.option("--rate-limit", type=click.FloatRange(min=1), help="Per-device ingress limit in bytes/s (default: none).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on this port.")
@click.option("--status-file", type=click.Path(dir_okay=False),
              help="Write the relay's status (per-device byte counts) as JSON every second "
                   "(default: <state_dir>/relay-status.json).")
@_tls
@click.pass_obj
def relay(state, listen, rate_limit, metrics_port, status_file, tls_cert, tls_key):
    """Run a relay for the network: forwards end-to-end encrypted frames between trusted devices.
    With a token in the deployment record it keeps devices' receipts in <state_dir>/receipts.sqlite (for
    `shadowmesh-client claim`) and stops relaying for devices over their credit (config `payments:`)."""
    from shadowmesh_client.relay.billing import BillingSettings
    from shadowmesh_client.relay.daemon import RelayDaemon, RelaySettings

    cfg = state.config
    setup_logging(cfg.log_level)
    identity = state.identity()
    settings = RelaySettings(listen=listen or cfg.listen, tls_cert=tls_cert, tls_key=tls_key,
                             rate_bytes_per_second=rate_limit, metrics_port=metrics_port,
                             status_file=status_file or str(cfg.state_dir / "relay-status.json"),
                             payments=_billing(state, BillingSettings))
    source = _open_source(state, settings.directory_interval)
    _run_daemon(RelayDaemon(identity, source, settings, endpoint=cfg.endpoint).run, settings.listen)


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
