"""Configuration assistant (spec "AI Integration Architecture": Configuration Assistant agent; issue 16):
``shadowmesh-client doctor`` runs every check a user would otherwise do by hand, and ``doctor --suggest``
writes a config for a described use case.

``run_checks(ctx)`` returns one ``Check`` per item, in this order (later checks are skipped, with the reason,
when what they need failed): config, key_file, dns, rpc (reachable, right chain), contracts (code at the
registry and token), network, device (registered, active, expiring within EXPIRY_WARN_DAYS), clock (skew
against the latest block), tun (device node + CAP_NET_ADMIN), listen (port free, matches the endpoint),
relays (TCP reachable), escrow (SMT in escrow vs the reserve the device spends), api (a running daemon's
local API). Every failure carries its fix, in words and commands.

``suggest_config(text)`` turns a short description ("home server behind NAT for 3 laptops, gaming") into a
config (YAML text) plus the reasons for each choice; pure keyword rules, offline. ``troubleshoot(lines)``
matches log lines against known failures and returns their fixes (the VS Code extension's
``troubleshootConnection(logs)``).

I/O: files, sockets, the chain (web3) through ``chain.Chain``; everything with a timeout. No prompts: a
doctor never blocks on input. May import: config, chain, rewards.onchain, identity, errors.
"""

from __future__ import annotations

import concurrent.futures
import errno
import os
import re
import socket
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

EXPIRY_WARN_DAYS = 14
"""Days before ``expires_at`` from which the device check warns (renew with `shadowmesh-client renew`)."""

CLOCK_SKEW_MAX = 120.0
"""Seconds: largest tolerated difference between this machine's clock and the latest block's timestamp
(registrations expire by the chain's clock; receipts carry times). Local chains mine only on demand, so an
old latest block there is not a skew: only a block from the future is."""

NET_TIMEOUT = 3.0
"""Seconds: each DNS lookup, TCP connect and RPC request of a check."""

ESCROW_LOW = 10**18
"""SMT base units (1 SMT, 18 decimals): escrow below this warns (the reserve relayed traffic is paid from)."""

CAP_NET_ADMIN = 12


@dataclass
class Check:
    name: str
    status: str                 # ok | warn | fail | skip
    detail: str
    fix: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class Context:
    """What the checks read: the config file, optional passphrase and the local API's address."""

    def __init__(self, config_path: str | None, *, api_url: str | None = None, token_file: str | None = None) -> None:
        self.config_path = config_path
        self.api_url = api_url
        self.token_file = token_file
        self.config: Any = None
        self.deployment: Any = None
        self.chain: Any = None
        self.owner: str | None = None
        self.public_key: bytes | None = None


def run_checks(ctx: Context) -> list[Check]:
    out: list[Check] = []
    for fn in (check_config, check_key_file, check_dns, check_rpc, check_contracts, check_network, check_device,
               check_clock, check_tun, check_listen, check_relays, check_escrow, check_api):
        try:
            out.append(fn(ctx))
        except Exception as exc:  # noqa: BLE001 - a doctor reports, it does not crash
            out.append(Check(fn.__name__.removeprefix("check_"), "fail", f"{type(exc).__name__}: {exc}",
                             "this is a bug in the check: please report it with `doctor --json` output"))
    return out


# ---- checks -------------------------------------------------------------------------------------------------
def check_config(ctx: Context) -> Check:
    from shadowmesh_client.config import load_config
    from shadowmesh_client.errors import ShadowMeshError

    try:
        ctx.config = load_config(ctx.config_path)
    except ShadowMeshError as exc:
        return Check("config", "fail", str(exc), "create one with `shadowmesh-client init --rpc-url URL --deployments "
                     "FILE --network-id N`, or pass --config PATH")
    cfg = ctx.config
    if cfg.deployments is None and cfg.registry is None:
        return Check("config", "fail", "neither `deployments:` nor `registry:` is set",
                     "set `deployments:` to the deployment record (deployments/<network>.json)")
    if cfg.network_id is None:
        return Check("config", "fail", "`network_id:` is not set", "set `network_id:` (ask your network admin)")
    if cfg.deployments is not None:
        from shadowmesh_client.chain import load_deployment

        try:
            ctx.deployment = load_deployment(cfg.deployments)
        except ShadowMeshError as exc:
            return Check("config", "fail", str(exc), "point `deployments:` at the record `make deploy` wrote")
    if cfg.owner_keystore is not None:
        try:
            import json

            addr = json.loads(Path(cfg.owner_keystore).read_text()).get("address", "")
            ctx.owner = "0x" + addr.removeprefix("0x")
        except (OSError, ValueError) as exc:
            return Check("config", "warn", f"owner keystore {cfg.owner_keystore} unreadable: {exc}",
                         "create one with `shadowmesh-client account new`")
    return Check("config", "ok", f"network {cfg.network_id}, rpc {cfg.rpc_url}")


def check_key_file(ctx: Context) -> Check:
    if ctx.config is None:
        return _skip("key_file", "config")
    from shadowmesh_client.errors import ShadowMeshError
    from shadowmesh_client.identity import DeviceKeystore

    cfg = ctx.config
    path = Path(cfg.device_key)
    ks = DeviceKeystore(path, backend=cfg.keystore_backend)
    try:
        ctx.public_key = ks.public_key()
    except ShadowMeshError as exc:
        return Check("key_file", "fail", str(exc), "create the device key with `shadowmesh-client init`")
    except PermissionError:
        return Check("key_file", "fail", f"{path} is not readable by this user",
                     f"run as the user who owns it, or `chown $USER {path}`")
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            return Check("key_file", "warn", f"{path} is readable by others (mode {mode:o})", f"chmod 600 {path}")
    return Check("key_file", "ok", f"device key {ctx.public_key.hex()[:16]}.. ({path})")


def check_dns(ctx: Context) -> Check:
    if ctx.config is None:
        return _skip("dns", "config")
    cfg = ctx.config
    hosts = {h for h in (_host(cfg.rpc_url), _host(cfg.endpoint), *(_host(r) for r in cfg.relays)) if h}
    bad = []
    for host in sorted(hosts):
        err = resolve(host)
        if err:
            bad.append(f"{host}: {err}")
    if bad:
        return Check("dns", "fail", "; ".join(bad), "check the spelling of these hosts and /etc/resolv.conf "
                     "(`getent hosts HOST`); use an IP address if there is no DNS")
    return Check("dns", "ok", f"{len(hosts)} host(s) resolve")


def check_rpc(ctx: Context) -> Check:
    if ctx.config is None or ctx.deployment is None:
        return _skip("rpc", "config (with `deployments:`)")
    from shadowmesh_client.chain import Chain
    from shadowmesh_client.errors import ShadowMeshError

    try:
        ctx.chain = Chain(ctx.config.rpc_url, ctx.deployment, timeout=NET_TIMEOUT)
    except ShadowMeshError as exc:
        return Check("rpc", "fail", str(exc), "start the chain node (`make chain` for a local one) or fix `rpc_url`; "
                     "`rpc_url` and `deployments:` must name the same chain")
    return Check("rpc", "ok", f"{ctx.config.rpc_url} is chain {ctx.chain.chain_id}")


def check_contracts(ctx: Context) -> Check:
    if ctx.chain is None:
        return _skip("contracts", "rpc")
    from shadowmesh_client.errors import ShadowMeshError

    dep = ctx.deployment
    try:
        ctx.chain.require_code(dep.registry, "DeviceRegistry")
        if dep.token:
            ctx.chain.require_code(dep.token, "ShadowMeshToken")
    except ShadowMeshError as exc:
        return Check("contracts", "fail", str(exc), "redeploy (`make chain` locally) or use the deployment "
                     "record of this chain")
    return Check("contracts", "ok", f"DeviceRegistry {dep.registry}" + (f", token {dep.token}" if dep.token else ""))


def check_network(ctx: Context) -> Check:
    if ctx.chain is None:
        return _skip("network", "rpc")
    from shadowmesh_client.chain.registry import require_network
    from shadowmesh_client.errors import ShadowMeshError

    try:
        require_network(ctx.chain, ctx.config.network_id)
    except ShadowMeshError as exc:
        return Check("network", "fail", str(exc), "fix `network_id:` or create it: `shadowmesh-client network "
                     "create NAME`")
    return Check("network", "ok", f"network {ctx.config.network_id} exists")


def check_device(ctx: Context) -> Check:
    if ctx.chain is None or ctx.public_key is None or ctx.owner is None:
        return _skip("device", "rpc, key_file and the owner keystore")
    from shadowmesh_client.chain.registry import device_status

    st = device_status(ctx.chain, ctx.config.network_id, ctx.owner, ctx.public_key)
    status = st["status"]
    if status == "not registered" or "expires_at" not in st:
        return Check("device", "fail", f"this device is not registered in network {ctx.config.network_id}",
                     "register it: `shadowmesh-client register` (add `--relay --endpoint URL` for a relay)")
    if status == "expired":
        return Check("device", "fail", "the registration has expired", "renew it: `shadowmesh-client renew`")
    if status != "active":
        return Check("device", "fail", f"the device is {status}", "ask the network admin to approve it "
                     "(`shadowmesh-client network approve DEVICE_ID`), or register again if it was revoked")
    left = st["expires_at"] - st["chain_time"]
    if left < EXPIRY_WARN_DAYS * 86400:
        return Check("device", "warn", f"active, but expires in {left / 86400:.1f} days",
                     "renew it now: `shadowmesh-client renew`")
    return Check("device", "ok", f"active, overlay {st['overlay_address']}, expires in {left / 86400:.0f} days"
                 + (" (relay)" if st.get("relay") else ""))


def check_clock(ctx: Context) -> Check:
    if ctx.chain is None:
        return _skip("clock", "rpc")
    from shadowmesh_client.chain.client import LOCAL_CHAIN_IDS

    block_time = int(ctx.chain.w3.eth.get_block("latest")["timestamp"])
    skew = time.time() - block_time
    local = ctx.chain.chain_id in LOCAL_CHAIN_IDS
    if skew < -CLOCK_SKEW_MAX:
        return Check("clock", "fail", f"this clock is {-skew:.0f} s behind the chain's latest block",
                     "enable time sync: `timedatectl set-ntp true` (or chrony/systemd-timesyncd)")
    if skew > CLOCK_SKEW_MAX and not local:
        return Check("clock", "fail", f"this clock is {skew:.0f} s ahead of the chain's latest block (or the RPC "
                     "node is behind)", "enable time sync (`timedatectl set-ntp true`); if the clock is right, "
                     "the RPC node is not synced: use another `rpc_url`")
    note = " (local chain: blocks are mined on demand)" if local and skew > CLOCK_SKEW_MAX else ""
    return Check("clock", "ok", f"skew {skew:+.0f} s against the latest block{note}")


def check_tun(ctx: Context) -> Check:
    if not os.path.exists("/dev/net/tun"):
        return Check("tun", "fail", "/dev/net/tun does not exist", "load the module: `modprobe tun` (in a "
                     "container: run it with --device /dev/net/tun)")
    if not has_cap_net_admin():
        return Check("tun", "fail", "no CAP_NET_ADMIN: `up` cannot create the TUN device",
                     "run `up` as root, or `setcap cap_net_admin+ep $(readlink -f $(which python3))`, or as a "
                     "systemd service with AmbientCapabilities=CAP_NET_ADMIN")
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        os.close(fd)
    except OSError as exc:
        return Check("tun", "fail", f"cannot open /dev/net/tun: {exc.strerror}",
                     "check the device's permissions (`ls -l /dev/net/tun`: crw-rw-rw-)")
    return Check("tun", "ok", "/dev/net/tun opens and CAP_NET_ADMIN is held")


def check_listen(ctx: Context) -> Check:
    if ctx.config is None:
        return _skip("listen", "config")
    cfg = ctx.config
    if not cfg.endpoint:
        return Check("listen", "ok", "no endpoint published: this device only dials out (no listener)")
    ep = urlsplit(cfg.endpoint)
    ep_port = ep.port or (443 if ep.scheme == "wss" else 80)
    # what `up` binds (daemon_common.listen_address): `listen:` if set, else 0.0.0.0 and the endpoint's port
    listen = cfg.listen if "listen" in cfg.model_fields_set else f"0.0.0.0:{ep_port}"
    host, _, port_text = listen.rpartition(":")
    port = int(port_text)
    err = port_free(host.strip("[]") or "0.0.0.0", port)
    if err == errno.EADDRINUSE:
        return Check("listen", "warn", f"{listen} is in use (a running `up`/`relay`, or another server)",
                     f"if no ShadowMesh daemon is running, stop what holds it (`ss -ltnp 'sport = :{port}'`) or "
                     "change `listen:`")
    if err == errno.EACCES:
        return Check("listen", "fail", f"port {port} needs root or CAP_NET_BIND_SERVICE",
                     "run as root, or choose a port >= 1024 for `listen:` (behind a proxy on 443)")
    if err:
        return Check("listen", "fail", f"cannot bind {listen}: {os.strerror(err)}",
                     "use 0.0.0.0 or one of this machine's addresses in `listen:`")
    if ep_port != port:
        return Check("listen", "warn", f"`listen:` port {port} differs from the endpoint's port {ep_port}",
                     "fine behind a proxy or port forward from the endpoint to this port; otherwise make them equal")
    return Check("listen", "ok", f"{listen} is free and matches the endpoint")


def check_relays(ctx: Context) -> Check:
    if ctx.config is None:
        return _skip("relays", "config")
    urls = list(ctx.config.relays)
    if not urls:
        return Check("relays", "ok", "no relays pinned in the config (the daemon uses every relay in the directory)")
    down = [f"{u.split('/')[2]}: {err}" for u in urls if (err := tcp_reachable(u))]
    if down:
        return Check("relays", "fail", "; ".join(down), "check the relays' hosts and firewalls; remove dead ones "
                     "from `relays:` (the directory lists the others)")
    return Check("relays", "ok", f"{len(urls)} relay(s) accept TCP connections")


def check_escrow(ctx: Context) -> Check:
    if ctx.chain is None or ctx.owner is None:
        return _skip("escrow", "rpc and the owner keystore")
    dep = ctx.deployment
    if not dep.token:
        return Check("escrow", "ok", "no token contract in this deployment: relays are free")
    from shadowmesh_client.rewards.onchain import TokenChain, balance, format_smt

    tc = TokenChain(ctx.config.rpc_url, dep, timeout=NET_TIMEOUT)
    b = balance(tc, ctx.owner)
    if b.escrow == 0:
        return Check("escrow", "warn", f"no SMT in escrow (wallet {format_smt(b.wallet)})",
                     "deposit some for relayed traffic: `shadowmesh-client deposit 10` (direct paths are free)")
    if b.escrow < ESCROW_LOW:
        return Check("escrow", "warn", f"escrow {format_smt(b.escrow)} is below {format_smt(ESCROW_LOW)}",
                     "top it up: `shadowmesh-client deposit AMOUNT` (relays stop relaying past your credit)")
    return Check("escrow", "ok", f"escrow {format_smt(b.escrow)}, wallet {format_smt(b.wallet)}")


def check_api(ctx: Context) -> Check:
    if not ctx.api_url:
        return Check("api", "skip", "no daemon API address given (--api)")
    from shadowmesh_client.api.client import ApiClient, ApiUnavailable

    try:
        st = ApiClient(ctx.api_url, token_file=ctx.token_file, timeout=NET_TIMEOUT).get("/api/v1/status")
    except ApiUnavailable as exc:
        return Check("api", "warn", f"no daemon answers at {ctx.api_url}: {exc}",
                     "start it: `shadowmesh-client up` (or `relay`)")
    peers = st.get("peers_connected")
    return Check("api", "ok", f"{st.get('kind', 'daemon')} running, {peers} peer(s) connected")


# ---- helpers --------------------------------------------------------------------------------------------------
def _skip(name: str, needs: str) -> Check:
    return Check(name, "skip", f"needs {needs}")


def _host(url: str | None) -> str | None:
    if not url:
        return None
    return urlsplit(url).hostname


def resolve(host: str, timeout: float = NET_TIMEOUT) -> str | None:
    """None if ``host`` resolves within ``timeout`` s, else why not."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pool.submit(socket.getaddrinfo, host, None).result(timeout)
        return None
    except concurrent.futures.TimeoutError:
        return f"no answer in {timeout:.0f} s"
    except socket.gaierror as exc:
        return exc.strerror or str(exc)
    finally:
        pool.shutdown(wait=False)


def tcp_reachable(url: str, timeout: float = NET_TIMEOUT) -> str | None:
    """None if a TCP connection to ``url``'s host:port opens within ``timeout`` s, else why not."""
    p = urlsplit(url)
    port = p.port or (443 if p.scheme in ("wss", "https") else 80)
    try:
        with socket.create_connection((p.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def port_free(host: str, port: int) -> int | None:
    """None if ``host:port`` can be bound now (SO_REUSEADDR, as the daemons bind), else the errno."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno
    return None


def has_cap_net_admin() -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


# ---- suggestions --------------------------------------------------------------------------------------------
def suggest_config(description: str) -> dict:
    """A config for the use case in ``description`` (free text). Returns {"yaml": text, "reasons": [...],
    "profile": {...}}. Keyword rules (offline); unknown words are ignored, defaults are explained."""
    text = description.lower()
    reasons: list[str] = []
    relay = bool(re.search(r"\brelay\b|\bvps\b|\bcloud\b|\bdatacenter\b", text)) and "no relay" not in text
    nat = bool(re.search(r"\bnat\b|behind|home|cgnat|router|laptop|phone|mobile", text)) and not relay
    public = relay or bool(re.search(r"public ip|static ip|port forward|server", text)) and not nat
    latency = bool(re.search(r"gam|voice|voip|call|video|latency|real.?time", text))
    bulk = bool(re.search(r"backup|bulk|file|sync|nas|stream|media|throughput", text))
    mobile = bool(re.search(r"phone|mobile|laptop|travel|4g|5g|lte", text))
    devices = int(m.group(1)) if (m := re.search(r"(\d+)\s*(?:devices|laptops|machines|hosts|phones|nodes)", text)) \
        else None
    cfg: dict[str, Any] = {"rpc_url": "https://polygon-rpc.com" if "polygon" in text or "mainnet" in text
                           else "http://127.0.0.1:8545",
                           "deployments": "deployments/polygon-local.json", "network_id": 1,
                           "device_key": "device.key", "owner_keystore": "owner.json", "state_dir": "state",
                           "log_level": "INFO"}
    if relay:
        cfg["listen"] = "0.0.0.0:443"
        cfg["endpoint"] = "wss://relay.example.org/api/v1/ws/CHANGE-ME-secret-path"
        reasons.append("relay: a public host that forwards for devices behind NAT; listen on 443 with TLS "
                       "(`relay --tls-cert/--tls-key`) so it looks like any HTTPS site; register with `--relay`")
        cfg["payments"] = {"credit_bytes": 64_000_000}
        reasons.append("payments.credit_bytes 64 MB: devices may run that far ahead of their receipts")
    elif public:
        cfg["listen"] = "0.0.0.0:7443"
        cfg["endpoint"] = "wss://HOST.example.org:7443/api/v1/ws/CHANGE-ME-secret-path"
        reasons.append("reachable host: publish an endpoint so peers connect directly (no relay hop, no fees)")
    else:
        reasons.append("behind NAT: no endpoint (peers cannot dial in); direct paths to public peers, a relay "
                       "for the rest; nothing to open on the router")
    mtu = 65000
    if latency:
        reasons.append("latency-sensitive: keep the default 64 KiB MTU (one frame per packet burst, no extra "
                       "copies); pin the nearest relay first in `relays:` (the optimizer's `relay_choice`)")
        cfg["relays"] = ["wss://NEAREST-RELAY.example.org/ws"]
    if bulk:
        reasons.append("bulk transfers: large MTU (65000) amortises per-packet cost; a direct path avoids "
                       "relay fees: publish an endpoint on at least one side if you can")
    if mobile:
        mtu = 1400
        reasons.append("mobile/roaming: MTU 1400 keeps packets under common tunnel limits when the device "
                       "falls back to other networks; the node reconnects on its own after a network change")
    cfg["tun"] = {"name": "sm0", "mtu": mtu}
    if devices:
        reasons.append(f"{devices} devices: register each one with its own key (`init` + `register` on each); "
                       f"one owner keystore may own all of them")
    import yaml

    return {"yaml": yaml.safe_dump(cfg, sort_keys=False),
            "reasons": reasons, "profile": {"relay": relay, "behind_nat": nat, "public": public,
                                            "latency_sensitive": latency, "bulk": bulk, "mobile": mobile,
                                            "devices": devices}}


TROUBLES = [
    (r"not an active, unexpired member|not registered", "device not registered/active",
     "register or renew: `shadowmesh-client register` / `renew`; `shadowmesh-client doctor` shows which"),
    (r"cannot reach the RPC endpoint|chain unreachable", "chain RPC unreachable",
     "check `rpc_url` and that the chain node runs (`make chain` locally); the daemon keeps retrying"),
    (r"wrong chain", "rpc_url and deployments are different chains", "point both at the same network"),
    (r"address already in use|cannot listen on", "listen port taken", "stop the other daemon or change `listen:`"),
    (r"HTTP 404 instead of upgrading|wrong path", "the peer/relay refused the handshake",
     "the endpoint path is wrong, or this device is not trusted there: check the registry and network id"),
    (r"Operation not permitted|CAP_NET_ADMIN|/dev/net/tun", "no permission for the TUN device",
     "run `up` as root or with CAP_NET_ADMIN (`doctor` tun check)"),
    (r"certificate verify failed|CERTIFICATE_VERIFY", "TLS certificate not trusted",
     "pass the CA with `up --ca-file ca.pem`, or use a certificate from a public CA"),
    (r"credit|over (its|their) credit|escrow", "relay stopped for lack of credit",
     "deposit SMT: `shadowmesh-client deposit AMOUNT`; check `balance`"),
    (r"timed out|timeout", "a connection timed out", "check the firewall and that the peer/relay is up; "
     "`doctor` relays check"),
    (r"revoked|suspended|expired", "a device lost its registration", "its owner renews or registers it again"),
]


def troubleshoot(lines: list[str]) -> dict:
    """Known problems found in ``lines`` (log lines), each with its fix; the first match per problem."""
    found = []
    for pattern, problem, fix in TROUBLES:
        rx = re.compile(pattern, re.IGNORECASE)
        hit = next((ln for ln in lines if rx.search(ln)), None)
        if hit is not None:
            found.append({"problem": problem, "fix": fix, "evidence": hit.strip()[:300]})
    summary = (f"{len(found)} known problem(s): " + "; ".join(f["problem"] for f in found)) if found else \
        "no known problem in these lines: run `shadowmesh-client doctor` for the full checklist"
    return {"summary": summary, "problems": found}


# ---- configuration review (analyzeConfiguration) --------------------------------------------------------------
def analyze_config(data: dict) -> dict:
    """Validate a config (as the daemon would) and review it for security and performance issues.
    Returns {"valid": bool, "issues": [{severity, field, problem, fix}]}."""
    from shadowmesh_client.config import parse_config
    from shadowmesh_client.errors import ShadowMeshError

    issues: list[dict] = []
    try:
        cfg = parse_config(data, "<analyzed config>", Path.cwd())
    except ShadowMeshError as exc:
        return {"valid": False, "issues": [{"severity": "error", "field": "", "problem": str(exc),
                                            "fix": "correct the field named above (docs/cli.md lists every key)"}]}

    def add(severity: str, field: str, problem: str, fix: str) -> None:
        issues.append({"severity": severity, "field": field, "problem": problem, "fix": fix})

    rpc = urlsplit(cfg.rpc_url)
    if rpc.scheme == "http" and rpc.hostname not in ("127.0.0.1", "localhost", "::1"):
        add("warning", "rpc_url", "the chain is read over plain HTTP from another host: whoever sits on the path "
            "can feed the node a false directory (trust comes from these reads)", "use https:// or a local node")
    if cfg.endpoint and cfg.endpoint.startswith("ws://"):
        add("warning", "endpoint", "the endpoint is plain ws://: the tunnel is still encrypted end to end, but the "
            "secret path and the WebSocket are visible to observers", "serve wss:// (`up --tls-cert/--tls-key`)")
    if cfg.endpoint and "/" not in (urlsplit(cfg.endpoint).path or "/").strip("/"):
        if len((urlsplit(cfg.endpoint).path or "").strip("/")) < 8:
            add("warning", "endpoint", "the endpoint path is short or empty: probers find the listener easily",
                "publish a long random path, e.g. /api/v1/ws/<16 random characters>")
    if cfg.confirmations == 0 and rpc.hostname not in ("127.0.0.1", "localhost", "::1"):
        add("info", "confirmations", "0 confirmations on a remote chain: a reorg can briefly show a revoked device "
            "as trusted", "set `confirmations:` to a few blocks on public chains")
    if cfg.tun.mtu < 1280:
        add("warning", "tun.mtu", f"MTU {cfg.tun.mtu} is below IPv6's minimum (1280)", "use 1280 or more")
    if cfg.log_level == "DEBUG":
        add("info", "log_level", "DEBUG logs every handshake: noisy and larger logs", "use INFO in production")
    if not cfg.endpoint and not cfg.relays:
        add("info", "relays", "no endpoint and no pinned relays: peers behind NAT are reached through any relay in "
            "the directory", "fine; pin a nearby relay in `relays:` for predictable latency")
    if cfg.payments.credit_bytes > 1_000_000_000:
        add("info", "payments.credit_bytes", "more than 1 GB of unreceipted traffic is tolerated per device",
            "lower it to bound what a device that stops paying can use")
    return {"valid": True, "issues": issues}


# ---- templates (generateTerraformModule) ------------------------------------------------------------------------
_TF_COMPUTE = {
    "aws": ('provider "aws" {\n  region = var.region\n}\n\nvariable "region" { default = "eu-central-1" }\n'
            'variable "ami" { description = "Debian 12 AMI of the region" }\n\n'
            'resource "aws_security_group" "relay" {\n  ingress {\n    from_port = 443\n    to_port = 443\n'
            '    protocol = "tcp"\n    cidr_blocks = ["0.0.0.0/0"]\n  }\n  egress {\n    from_port = 0\n'
            '    to_port = 0\n    protocol = "-1"\n    cidr_blocks = ["0.0.0.0/0"]\n  }\n}\n\n'
            'resource "aws_instance" "relay" {\n  ami = var.ami\n  instance_type = "t3.small"\n'
            '  vpc_security_group_ids = [aws_security_group.relay.id]\n  user_data = local.cloud_init\n}\n\n'
            'output "address" { value = aws_instance.relay.public_ip }\n'),
    "gcp": ('provider "google" {\n  project = var.project\n  region = "europe-west3"\n}\n\n'
            'variable "project" {}\n\nresource "google_compute_firewall" "relay" {\n  name = "shadowmesh-relay"\n'
            '  network = "default"\n  allow {\n    protocol = "tcp"\n    ports = ["443"]\n  }\n'
            '  source_ranges = ["0.0.0.0/0"]\n  target_tags = ["shadowmesh-relay"]\n}\n\n'
            'resource "google_compute_instance" "relay" {\n  name = "shadowmesh-relay"\n'
            '  machine_type = "e2-small"\n  zone = "europe-west3-a"\n  tags = ["shadowmesh-relay"]\n'
            '  boot_disk {\n    initialize_params { image = "debian-cloud/debian-12" }\n  }\n'
            '  network_interface {\n    network = "default"\n    access_config {}\n  }\n'
            '  metadata = { user-data = local.cloud_init }\n}\n\n'
            'output "address" {\n  value = '
            'google_compute_instance.relay.network_interface[0].access_config[0].nat_ip\n}\n'),
    "hetzner": ('terraform {\n  required_providers {\n    hcloud = { source = "hetznercloud/hcloud" }\n  }\n}\n\n'
                'resource "hcloud_server" "relay" {\n  name = "shadowmesh-relay"\n  server_type = "cx22"\n'
                '  image = "debian-12"\n  location = "fsn1"\n  user_data = local.cloud_init\n}\n\n'
                'output "address" { value = hcloud_server.relay.ipv4_address }\n'),
}


def terraform_module(cloud: str) -> str:
    """A Terraform module for one relay VM on ``cloud`` (aws, gcp, hetzner): firewall for 443 and cloud-init
    that installs the client and runs `shadowmesh-client relay` as a systemd service. ValueError otherwise."""
    cloud = cloud.lower()
    if cloud not in _TF_COMPUTE:
        raise ValueError(f"unknown cloud {cloud!r}: choose one of {', '.join(sorted(_TF_COMPUTE))}")
    cloud_init = ('locals {\n  cloud_init = <<-EOT\n    #cloud-config\n    packages: [python3-venv]\n    runcmd:\n'
                  '      - python3 -m venv /opt/shadowmesh && /opt/shadowmesh/bin/pip install shadowmesh-client\n'
                  '      - mkdir -p /etc/shadowmesh\n'
                  '      - echo "copy config.yaml, device.key and the TLS files to /etc/shadowmesh, then: '
                  'systemctl enable --now shadowmesh-relay"\n'
                  '    write_files:\n      - path: /etc/systemd/system/shadowmesh-relay.service\n        content: |\n'
                  '          [Service]\n          ExecStart=/opt/shadowmesh/bin/shadowmesh-client --config '
                  '/etc/shadowmesh/config.yaml relay --tls-cert /etc/shadowmesh/cert.pem --tls-key '
                  '/etc/shadowmesh/key.pem\n          Restart=always\n          [Install]\n'
                  '          WantedBy=multi-user.target\n  EOT\n}\n\n')
    return f"# ShadowMesh relay on {cloud} (generated by the configuration assistant)\n\n" + cloud_init + \
        _TF_COMPUTE[cloud]
