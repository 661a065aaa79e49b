"""`shadowmesh-client up` and `shadowmesh-client relay`: the two daemons (docs/mesh.md).

Standalone click commands; cli/__init__.py attaches them to the main group. Thin: parse
options, lock the state directory (one daemon per state directory: daemon_common.state_lock), open the
identity and the directory, build settings, run the daemon until SIGINT/SIGTERM. The listen address is
`--listen`, else `listen:` if the config sets it, else 0.0.0.0 and the published endpoint's port
(daemon_common.listen_address, resolved by the daemon once it knows the published endpoint).
Errors the user can fix are ShadowMeshError: the main group prints them as one ``error:`` line.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

import click

from shadowmesh_client.daemon_common import run_until_signalled, setup_logging, state_lock
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


def _run_daemon(daemon: Any) -> None:
    """Run ``daemon`` (a Node or RelayDaemon) until SIGINT/SIGTERM; a listen address that cannot be bound
    is one ConfigError line."""
    try:
        run_until_signalled(daemon.run)
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is a bind failure
        found = _listen_error(exc)
        if found is None:
            raise
        raise ConfigError(f"cannot listen on {daemon.listen_address}: {_LISTEN_ERRORS[found.errno or 0]}") from None


def _listen(option: str | None, cfg) -> str | None:
    """--listen, else `listen:` when the config sets it, else None (the daemon listens on 0.0.0.0 and the
    port of the endpoint it publishes, and warns if a set address's port differs from it)."""
    return option or (cfg.listen if "listen" in cfg.model_fields_set else None)


def _open_source(state, interval: float, rpc_watch=None, state_dir=None):
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
    syncer = open_syncer(cfg.rpc_url, chain_id, registry, cfg.network_id, state_dir or cfg.state_dir,
                         deploy_block=start,
                         confirmations=cfg.confirmations, retries=1, timeout=5.0, extra_rpc_urls=cfg.rpc_urls)
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


_ROUTING_OPTIONS = ("exit_node", "exit_allow_lan", "advertise_exit", "advertise_routes", "name", "kill_switch",
                    "qos")


def _routing_options(fn):
    """``up`` options of issue 14 (docs/routing.md); they override the config's ``routing:`` section and are
    handed to ``_routing_settings`` through the click context (``up``'s own signature stays as it is)."""
    opts = [
        click.option("--exit-node", metavar="NAME|ADDRESS",
                     help="Send default-route traffic (IPv4 and IPv6) through this device (it must offer an exit)."),
        click.option("--exit-allow-lan", is_flag=True, default=None,
                     help="With --exit-node: keep directly connected networks outside the tunnel."),
        click.option("--advertise-exit", is_flag=True, default=None,
                     help="Offer this device as an exit node (NAT to its uplink; admin approval in approval "
                          "networks)."),
        click.option("--advertise-routes", metavar="PREFIX[,PREFIX...]",
                     help="Prefixes behind this device (its LAN), routed to it after the network admin approves."),
        click.option("--name", "name", metavar="LABEL", help="This device's name (NAME.NETWORK.<suffix> in DNS)."),
        click.option("--kill-switch", is_flag=True, default=None,
                     help="With --exit-node: block traffic that would leave outside the tunnel (nftables)."),
        click.option("--qos/--no-qos", default=None, help="Per-peer, per-class send queues (interactive first)."),
    ]
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        ctx.meta["shadowmesh.routing"] = {k: kwargs.pop(k) for k in _ROUTING_OPTIONS}
        return fn(*args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    # the options declared below this decorator (click keeps them on the function): without this copy they
    # were silently dropped and `up --discovery` was "No such option"
    wrapper.__click_params__ = list(getattr(fn, "__click_params__", []))
    for opt in reversed(opts):
        wrapper = opt(wrapper)
    return wrapper


def _routing_settings(cfg):
    """RoutingSettings from the config's ``routing:`` section and the ``up`` options (None: routing off)."""
    from shadowmesh_client.routing.qos import parse_ports
    from shadowmesh_client.routing.settings import RoutingSettings

    r = cfg.routing
    ctx = click.get_current_context(silent=True)
    o = {k: v for k, v in (ctx.meta.get("shadowmesh.routing", {}) if ctx else {}).items() if v is not None}
    if not r.enabled and not o:
        return None
    routes = o.get("advertise_routes")
    return RoutingSettings(
        ipv6=r.ipv6, name=o.get("name", r.name), advertise_exit=o.get("advertise_exit", r.advertise_exit),
        advertise_routes=tuple(x.strip() for x in routes.split(",") if x.strip()) if routes
        else tuple(r.advertise_routes),
        exit_allow=tuple(r.exit_allow), uplink=r.uplink, exit_node=o.get("exit_node", r.exit_node),
        exit_allow_lan=o.get("exit_allow_lan", r.exit_allow_lan), include=tuple(r.include), exclude=tuple(r.exclude),
        kill_switch=o.get("kill_switch", r.kill_switch),
        records_dir=str(r.records_dir) if r.records_dir else None, dns=r.dns, dns_suffix=r.dns_suffix,
        dns_forward=r.dns_forward, configure_resolver=r.configure_resolver, qos=o.get("qos", r.qos),
        qos_ports=parse_ports(r.qos_ports), rpc_url=cfg.rpc_url)


@click.command("up")
@click.option("--listen", metavar="HOST:PORT",
              help="Where to accept peers when an endpoint is published. Default: config `listen:`, else 0.0.0.0 "
                   "and the published endpoint's port (ws://h:7000/x -> 0.0.0.0:7000; wss:// without a port: 443). "
                   "A port other than the endpoint's is logged as a WARNING.")
@click.option("--mtu", type=click.IntRange(576, 65535),
              help="TUN MTU in bytes (default: config `tun.mtu`, 65000: see docs/mesh.md).")
@click.option("--tun-name", help="TUN interface name (default: config `tun.name`, sm0).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="PEM CA for wss:// peers and relays.")
@click.option("--status-file", type=click.Path(dir_okay=False),
              help="Write the node's status as JSON here every second (default: <state_dir>/node-status.json).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on this port.")
@click.option("--userspace", is_flag=True, default=None,
              help="No TUN device, no root: reach peers through the SOCKS5/HTTP proxies and forwards "
                   "(config `userspace:`, `forward:`, `expose:`; docs/userspace.md).")
@click.option("--socks", metavar="HOST:PORT|off", help="SOCKS5 proxy address (default: config `userspace.socks`).")
@_observability
@_api("127.0.0.1:7780")
@_tls
@_routing_options
@click.option("--discovery/--no-discovery", "discovery", default=False, show_default=True,
              help="Publish a signed endpoint record (no transaction) and go direct through NATs (docs/discovery.md).")
@click.option("--on-demand/--no-on-demand", "on_demand", default=False, show_default=True,
              help="Sessions on first packet or hello, dropped after --idle-timeout (for networks of thousands; "
                   "not yet with --exit-node: docs/discovery.md).")
@click.option("--idle-timeout", type=click.FloatRange(5), default=180.0, show_default=True,
              help="Seconds without packets before an on-demand session is dropped.")
@click.option("--punch-port", type=click.IntRange(0, 65535), default=0,
              help="Local TCP port for relay links and hole punching (0: any free port).")
@click.option("--offload/--no-offload", "offload", default=True, show_default=True,
              help="TUN send-side offload: TCP super-packets of up to 64 KiB to peers that accept them "
                   "(docs/protocol.md \"Offload\"); others get them segmented in software.")
@click.pass_obj
def up(state, listen, mtu, tun_name, ca_file, status_file, metrics_port, userspace, socks, metrics_host, log_format,
       api, tls_cert, tls_key, **issue15):
    """Bring this device into the mesh: TUN device, sessions with every trusted peer, until Ctrl-C.
    Signs relay receipts per the config's `payments:` section (docs/payments.md "Integration").
    One daemon per state directory (<state_dir>/daemon.lock); exit codes: 1 error, 130 Ctrl-C."""
    with state_lock(state.config.state_dir, "up"):   # first: a second daemon touches nothing
        _up(state, listen, mtu, tun_name, ca_file, status_file, metrics_port, metrics_host, log_format, api,
            tls_cert, tls_key, userspace, socks, issue15=issue15)


def _up(state, listen, mtu, tun_name, ca_file, status_file, metrics_port, metrics_host, log_format, api, tls_cert,
        tls_key, userspace=None, socks=None, issue15=None) -> None:
    from shadowmesh_client.node import Node, NodeSettings
    from shadowmesh_client.node.payments import load_device_payments

    cfg = state.config
    rpc_watch = _start_observability(state, "node", log_format)
    identity = state.identity()
    if mtu is None:
        mtu = cfg.tun.mtu
    settings = NodeSettings(
        tun_name=tun_name or cfg.tun.name, mtu=mtu, listen=_listen(listen, cfg), tls_cert=tls_cert, tls_key=tls_key,
        ca_file=ca_file, relays=tuple(cfg.relays), status_file=status_file or str(cfg.state_dir / "node-status.json"),
        api=_api_settings(state, api), state_dir=str(cfg.state_dir),
        userspace=bool(userspace or cfg.userspace.enabled),   # issue 18: no TUN device (docs/userspace.md)
        streams=_stream_settings(cfg, bool(userspace or cfg.userspace.enabled), socks),
        routing=_routing_settings(cfg),
        **(issue15 or {}))   # issues 15, 17: discovery, on_demand, idle_timeout, punch_port, offload (NodeSettings)
    node = Node(identity, _open_source(state, settings.directory_interval, rpc_watch), settings, endpoint=cfg.endpoint,
                payments=load_device_payments(state), rpc_watch=rpc_watch,
                metrics=(metrics_host, metrics_port) if metrics_port else None)
    _run_daemon(node)


def _stream_settings(cfg, userspace: bool, socks: str | None):
    """StreamSettings from the config (issue 18): the proxies run by default in userspace mode, in TUN mode
    only when `userspace.socks`/`userspace.http` are set explicitly; forwards and exposed ports always."""
    from shadowmesh_client.userspace.policy import Expose, Forward
    from shadowmesh_client.userspace.settings import StreamSettings

    u = cfg.userspace
    explicit = u.model_fields_set

    def proxy(key: str) -> str | None:
        return getattr(u, key) if userspace or key in explicit else None

    socks_at = proxy("socks") if socks is None else (None if socks == "off" else socks)
    return StreamSettings(socks=socks_at, http=proxy("http"), forwards=tuple(Forward.parse(f) for f in cfg.forward),
                          expose=tuple(Expose.parse(e) for e in cfg.expose), allow_lan=tuple(u.allow_lan),
                          lan_via=tuple(u.lan_via.items()))


@click.command("relay")
@click.option("--listen", metavar="HOST:PORT",
              help="Where to listen. Default: config `listen:`, else 0.0.0.0 and the published endpoint's port.")
@click.option("--rate-limit", type=click.FloatRange(min=1), help="Per-device ingress limit in bytes/s (default: none).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on this port.")
@click.option("--status-file", type=click.Path(dir_okay=False),
              help="Write the relay's status (per-device byte counts) as JSON every second "
                   "(default: <state_dir>/relay-status.json).")
@click.option("--metrics-per-device", is_flag=True,
              help="Also export bytes per device (one series per device: high cardinality, off by default).")
@click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True,
              help="Relay processes on this host sharing the port (SO_REUSEPORT) as one cluster; 0: one per core. "
                   "Worker i serves metrics on --metrics-port + i and its mesh on --cluster-listen port + i.")
@click.option("--cluster-listen", metavar="HOST:PORT",
              help="Join a relay cluster: this member's mesh listener (keep it internal). With --workers > 1 "
                   "the default is 127.0.0.1:7946.")
@click.option("--cluster-peer", "cluster_peers", multiple=True, metavar="URL",
              help="Another member's mesh, ws://host:port (or wss://); repeat for each. docs/cluster.md.")
@click.option("--cluster-ledger", metavar="POSTGRESQL_URL",
              help="The cluster's shared receipt ledger (postgresql://user@host/db); default: SQLite per member.")
@_observability
@_api("127.0.0.1:7781")
@_tls
@click.pass_obj
def relay(state, listen, rate_limit, metrics_port, status_file, metrics_per_device, workers, cluster_listen,
          cluster_peers, cluster_ledger, metrics_host, log_format, api, tls_cert, tls_key):
    """Run a relay for the network: forwards end-to-end encrypted frames between trusted devices.
    With a token in the deployment record it keeps devices' receipts in <state_dir>/receipts.sqlite (for
    `shadowmesh-client claim`) and stops relaying for devices over their credit (config `payments:`).
    With --cluster-* or --workers it is one member of a relay cluster (docs/cluster.md)."""
    from shadowmesh_client.relay.cluster.workers import default_workers, supervise, worker_env

    worker = worker_env()
    n = workers or default_workers()
    if worker is None and n > 1:   # the supervisor: start the workers and wait (it holds the relay lock)
        with state_lock(state.config.state_dir, "relay"):
            if supervise(n):
                raise ConfigError("relay workers kept exiting: fix the error they printed above")
        return
    lock_dir = state.config.state_dir if worker is None else state.config.state_dir / f"worker-{worker[0]}"
    with state_lock(lock_dir, "relay"):   # first: a second daemon touches nothing
        _relay(state, listen, rate_limit, metrics_port, status_file, metrics_per_device, metrics_host, log_format,
               api, tls_cert, tls_key, cluster=(cluster_listen, cluster_peers, cluster_ledger), worker=worker)


def _cluster_settings(cluster, worker):
    """ClusterSettings from the --cluster-* options (None: not a cluster member), per worker on one host."""
    from shadowmesh_client.relay.cluster import ClusterSettings, worker_settings

    listen, peers, ledger = cluster
    if worker is not None and listen is None:
        listen = "127.0.0.1:7946"
    if listen is None:
        if peers or ledger:
            raise ConfigError("--cluster-peer and --cluster-ledger need --cluster-listen HOST:PORT "
                              "(this member's mesh)")
        return None
    base = ClusterSettings(listen=listen, peers=tuple(peers), ledger_url=ledger)
    return base if worker is None else worker_settings(base, worker[0], worker[1])


def _relay(state, listen, rate_limit, metrics_port, status_file, metrics_per_device, metrics_host, log_format, api,
           tls_cert, tls_key, *, cluster=(None, (), None), worker=None) -> None:
    from shadowmesh_client.relay.billing import BillingSettings
    from shadowmesh_client.relay.daemon import RelayDaemon, RelaySettings

    cfg = state.config
    rpc_watch = _start_observability(state, "relay", log_format)
    identity = state.identity()
    state_dir, status = cfg.state_dir, status_file or str(cfg.state_dir / "relay-status.json")
    if worker is not None:   # one of `relay --workers N`: own floors, directory copy, status, metrics port
        from shadowmesh_client.relay.cluster.workers import reuse_port_policy, worker_state_dir

        reuse_port_policy()
        state_dir = worker_state_dir(cfg.state_dir, worker[0])
        status = str(state_dir / "relay-status.json")
        metrics_port = metrics_port + worker[0] if metrics_port else None
        api = api if worker[0] == 0 else "off"
    settings = RelaySettings(listen=_listen(listen, cfg), tls_cert=tls_cert, tls_key=tls_key,
                             rate_bytes_per_second=rate_limit, metrics_port=metrics_port,
                             status_file=status,
                             payments=_billing(state, BillingSettings),
                             api=_api_settings(state, api),
                             state_dir=str(state_dir), cluster=_cluster_settings(cluster, worker))
    source = _open_source(state, settings.directory_interval, rpc_watch, state_dir=state_dir)
    daemon = RelayDaemon(identity, source, settings, endpoint=cfg.endpoint, metrics_host=metrics_host,
                         rpc_watch=rpc_watch, metrics_per_device=metrics_per_device)
    _run_daemon(daemon)


def _billing(state, settings_cls):
    """BillingSettings when the deployment record has the token contract, else None (no payments)."""
    cfg = state.config
    dep = state.deployment() if cfg.deployments is not None else None
    if dep is None or not dep.token:
        logging.getLogger(__name__).warning("relay payments off: no ShadowMeshToken in the deployment record")
        return None
    from shadowmesh_client.relay.billing import settings_from_config

    return settings_from_config(state, dep)   # payments v2: confirmations, automatic claims (issue 10)


COMMANDS = (up, relay)
