"""A whole ShadowMesh on one machine, for the end-to-end tests, the demo and the mesh benchmark (root).

Real parts only: anvil runs in the topology's ``anvil`` namespace, the contracts are deployed with the
project's real deploy script (``ape run deploy``), every device is set up and registered with the real
``shadowmesh-client`` commands (``init``, ``network create``, ``register``) run inside its own namespace,
and each daemon (``up`` / ``relay``) is its own process in its namespace, tracked by the Topology (killed
by PID and its namespace deleted at teardown, also on failure). Needs a checkout of the project (the
deploy script and compiled contracts) and root.

    with MeshLab(mesh_topology(), workdir) as lab:
        lab.start_chain()
        net = lab.create_network("relay")
        relay = lab.add_device("relay", endpoint="ws://198.18.0.20:7443/api/v1/ws/r", relay=True)
        a = lab.add_device("a", endpoint="ws://198.18.0.30:7443/api/v1/ws/a")
        b = lab.add_device("b")
        lab.start_relay(relay); lab.start_node(a); lab.start_node(b)
        lab.wait_for(lambda: lab.peer(b, a)["session"] == "established")
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ANVIL_IP = "198.18.0.10"
ANVIL_PORT = 18545
CHAIN_ID = 31337
PASSPHRASE = "mesh-lab-device-passphrase"   # lab-only secrets: anvil's public dev keys
OWNER_PASSWORD = "mesh-lab-owner-password"
# anvil's well-known dev accounts (mnemonic "test test ... junk"): public knowledge, local chain only
ANVIL_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",  # account 3
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",  # account 4 (a second payer)
)


class LabError(RuntimeError):
    """A lab step failed; the message carries the command's output."""


@dataclass
class Device:
    name: str
    ns: str                      # short namespace name in the topology
    dir: Path
    config: Path
    network_id: int
    endpoint: str | None = None
    relay: bool = False
    public_key: str | None = None
    overlay: str | None = None
    device_id: str | None = None
    proc: subprocess.Popen | None = None
    log: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def status_file(self) -> Path:
        return self.dir / ("relay-status.json" if self.relay else "node-status.json")


def anvil_binary() -> str:
    for cand in sorted((PROJECT_ROOT / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil")):
        if os.access(cand, os.X_OK):
            return str(cand)
    raise LabError("anvil not found: run `make npm`")


class MeshLab:
    def __init__(self, topo, workdir: str | os.PathLike) -> None:
        self.topo = topo
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rpc_url = f"http://{ANVIL_IP}:{ANVIL_PORT}"
        self.deployment: Path | None = None
        self.devices: dict[str, Device] = {}
        self.anvil = None
        (self.workdir / "passphrase").write_text(PASSPHRASE)
        (self.workdir / "owner-password").write_text(OWNER_PASSWORD)
        self._owners: dict[int, Path] = {}

    def __enter__(self) -> MeshLab:
        return self

    def __exit__(self, *exc) -> None:
        self.topo.teardown()

    # ---- chain -----------------------------------------------------------------------------------------
    def start_chain(self, timeout: float = 20.0) -> None:
        log = open(self.workdir / "anvil.log", "wb")
        self.anvil = self.topo.spawn("anvil", [anvil_binary(), "--host", ANVIL_IP, "--port", str(ANVIL_PORT),
                                               "--chain-id", str(CHAIN_ID)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            r = self.topo.run("anvil", ["curl", "-s", "-m", "1", "-H", "Content-Type: application/json", "-d",
                                        '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}', self.rpc_url],
                              check=False) if _has_curl() else self._py_probe()
            if r.returncode == 0 and "result" in r.stdout:
                break
            if time.monotonic() > deadline or self.anvil.poll() is not None:
                raise LabError("anvil did not start: see " + str(self.workdir / "anvil.log"))
            time.sleep(0.1)
        self.deployment = self.workdir / "deployment.json"
        env = dict(os.environ, APE_FOUNDRY_HOST=self.rpc_url,
                   SOLCX_BINARY_PATH=str(PROJECT_ROOT / "tools" / "solc-bin"))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), str(PROJECT_ROOT / "node_modules" / ".bin"),
                                       env.get("PATH", "")])
        ape = str(Path(sys.executable).parent / "ape")
        cmd = ["ip", "netns", "exec", self.topo.ns("anvil"), ape, "run", "deploy", "--network", "polygon:local:foundry",
               "--account", "TEST::0", "--registration-fee", "0", "--withdrawal-delay", "86400",
               "--output", str(self.deployment)]
        r = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0 or not self.deployment.exists():
            raise LabError(f"deploy failed (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")

    def _py_probe(self) -> subprocess.CompletedProcess:
        code = ("import json,urllib.request,sys;r=urllib.request.urlopen(urllib.request.Request(sys.argv[1],"
                "data=b'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_chainId\",\"params\":[]}',"
                "headers={'Content-Type':'application/json'}),timeout=1);print(r.read().decode())")
        return self.topo.run("anvil", [sys.executable, "-c", code, self.rpc_url], check=False)

    def owner_keystore(self, index: int) -> Path:
        if index not in self._owners:
            path = self.workdir / f"owner{index}.json"
            keystore = Account.encrypt(ANVIL_KEYS[index], OWNER_PASSWORD, kdf="pbkdf2", iterations=1000)
            path.write_text(json.dumps(keystore))
            self._owners[index] = path
        return self._owners[index]

    # ---- the real CLI ---------------------------------------------------------------------------------
    def cli_argv(self, config: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "shadowmesh_client.cli", "--config", str(config),
                "--passphrase-file", str(self.workdir / "passphrase"),
                "--owner-password-file", str(self.workdir / "owner-password"), *args]

    def cli(self, ns: str, config: Path, *args: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
        r = self.topo.run(ns, self.cli_argv(config, *args), check=False, timeout=timeout)
        if check and r.returncode != 0:
            raise LabError(f"shadowmesh-client {' '.join(args)} in {ns} failed: {r.stderr.strip()[-2000:]}")
        return r

    def _init(self, name: str, ns: str, owner: int, network_id: int | None, endpoint: str | None) -> tuple[Path, Path]:
        d = self.workdir / name
        d.mkdir(parents=True, exist_ok=True)
        config = d / "config.yaml"
        args = ["init", "--rpc-url", self.rpc_url, "--deployments", str(self.deployment),
                "--owner-keystore", str(self.owner_keystore(owner)), "--keystore-backend", "file", "--json"]
        if network_id is not None:
            args += ["--network-id", str(network_id)]
        if endpoint:
            args += ["--endpoint", endpoint]
        self.cli(ns, config, *args)
        return d, config

    def create_network(self, ns: str, name: str = "lab", owner: int = 0) -> int:
        _, config = self._init(f"admin{owner}", ns, owner, None, None)
        out = self.cli(ns, config, "network", "create", name, "--json").stdout
        return int(json.loads(out)["network_id"])

    def add_device(self, name: str, network_id: int, *, ns: str | None = None, endpoint: str | None = None,
                   relay: bool = False, register: bool = True, owner: int = 1) -> Device:
        ns = ns or name
        d, config = self._init(name, ns, owner, network_id, endpoint)
        dev = Device(name, ns, d, config, network_id, endpoint, relay)
        dev.public_key = json.loads(self.cli(ns, config, "init", "--json").stdout)["public_key"]
        if register:
            args = ["register", "--json"] + (["--relay"] if relay else [])
            reg = json.loads(self.cli(ns, config, *args).stdout)
            dev.overlay, dev.device_id = reg["overlay_address"], reg["device_id"]
        self.devices[name] = dev
        return dev

    def mint(self, to: str, amount: int) -> None:
        """Mint ``amount`` SMT base units to ``to`` with the deployer (anvil account 0, the token's minter)."""
        code = ("import sys;from eth_account import Account;from shadowmesh_client.chain import load_deployment;"
                "from shadowmesh_client.rewards.onchain import TokenChain;"
                "c=TokenChain(sys.argv[1],load_deployment(sys.argv[2]));"
                "c.transact(Account.from_key(sys.argv[3]),c.token.functions.mint(sys.argv[4],int(sys.argv[5])))")
        self.topo.run("anvil", [sys.executable, "-c", code, self.rpc_url, str(self.deployment), ANVIL_KEYS[0], to,
                                str(amount)], timeout=60)

    def address(self, dev: Device) -> str:
        """The owner account of ``dev`` (who pays for it, or, for a relay, who is paid)."""
        return json.loads(self.cli(dev.ns, dev.config, "balance", "--json").stdout)["address"]

    def setup_payments(self, payer: Device, relay: Device, *, reserve: str = "5", price: int = 10**9,
                       mint: int = 10 * 10**18) -> dict:
        """Payments v2 with the real CLI: the relay advertises ``price`` (base units/byte), ``payer``'s owner
        gets ``mint`` SMT and funds a reserve of ``reserve`` SMT that only this relay can claim from. Call
        before the daemons start: devices accept the price when their session with the relay starts."""
        relay_address = self.address(relay)
        payer_address = self.address(payer)
        self.mint(payer_address, mint)
        priced = self.cli(relay.ns, relay.config, "set-price", str(price)).stdout.splitlines()[0]
        funded = self.cli(payer.ns, payer.config, "deposit", "--relay", relay_address, reserve).stdout.splitlines()[0]
        return {"relay": relay_address, "payer": payer_address, "price": priced, "reserve": funded}

    def revoke(self, dev: Device) -> dict:
        return json.loads(self.cli(dev.ns, dev.config, "revoke", "--json").stdout)

    # ---- routing (issue 14) ----------------------------------------------------------------------------
    @property
    def records_dir(self) -> Path:
        """The signed device records folder every device of the lab shares (docs/routing.md: distribution
        between machines is out of band; in the lab it is one folder)."""
        return self.workdir / "records"

    def set_routing(self, dev: Device, **fields: object) -> None:
        """Turn routing on in ``dev``'s config (``routing: {enabled: true, records_dir: <shared>, **fields}``);
        ``up`` options (``--exit-node``...) still override. Call before the daemon starts."""
        import yaml

        values = yaml.safe_load(dev.config.read_text()) or {}
        values["routing"] = {"enabled": True, "records_dir": str(self.records_dir), **fields}
        dev.config.write_text(yaml.safe_dump(values, sort_keys=False))

    def approve_record(self, dev: Device, owner: int = 0) -> dict:
        """The network admin (``owner``: the account that created the network) approves ``dev``'s record."""
        path = self.records_dir / f"{dev.public_key}.json"
        admin = self.workdir / f"admin{owner}" / "config.yaml"
        return json.loads(self.cli("anvil", admin, "approve-record", str(path), "--json").stdout)

    # ---- daemons --------------------------------------------------------------------------------------
    def _spawn(self, dev: Device, *args: str) -> subprocess.Popen:
        dev.log = dev.dir / ("relay.log" if dev.relay else "node.log")
        if dev.status_file.exists():
            dev.status_file.unlink()
        out = open(dev.log, "ab")
        dev.proc = self.topo.spawn(dev.ns, self.cli_argv(dev.config, *args), stdout=out, stderr=subprocess.STDOUT,
                                   cwd=str(PROJECT_ROOT))
        return dev.proc

    def start_node(self, dev: Device, *extra: str) -> subprocess.Popen:
        listen = []
        if dev.endpoint:
            hostport = dev.endpoint.split("/")[2]
            listen = ["--listen", f"0.0.0.0:{hostport.rsplit(':', 1)[1]}"]
        return self._spawn(dev, "up", "--tun-name", f"sm{dev.name}"[:15], "--status-file", str(dev.status_file),
                           *listen, *extra)

    def start_relay(self, dev: Device, *extra: str, listen: str | None = None) -> subprocess.Popen:
        """``listen`` ("HOST:PORT") defaults to all addresses on the published endpoint's port; behind a
        TLS-terminating proxy (the endpoint is the proxy's URL) give the backend address instead."""
        hostport = dev.endpoint.split("/")[2]
        listen = listen or f"0.0.0.0:{hostport.rsplit(':', 1)[1]}"
        return self._spawn(dev, "relay", "--listen", listen, "--status-file", str(dev.status_file), *extra)

    def stop(self, dev: Device, timeout: float = 10.0) -> int | None:
        if dev.proc is None:
            return None
        code = self.topo.stop(dev.proc, timeout)
        dev.proc = None
        return code

    def status(self, dev: Device) -> dict:
        try:
            return json.loads(dev.status_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def peer(self, dev: Device, other: Device) -> dict:
        for p in self.status(dev).get("peers", []):
            if p["public_key"] == other.public_key:
                return p
        return {}

    def wait_for(self, predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition",
                 interval: float = 0.1):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            for dev in self.devices.values():
                if dev.proc is not None and dev.proc.poll() is not None:
                    raise LabError(f"{dev.name}'s daemon exited with {dev.proc.returncode}:\n{self.tail(dev)}")
            if time.monotonic() > deadline:
                raise LabError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(interval)

    def tail(self, dev: Device, n: int = 3000) -> str:
        try:
            return dev.log.read_text()[-n:] if dev.log else ""
        except FileNotFoundError:
            return ""


def _has_curl() -> bool:
    from shutil import which

    return which("curl") is not None


RELAY_URL = "ws://198.18.0.20:7443/api/v1/ws/relay-k3"
A_URL = "ws://198.18.0.30:7443/api/v1/ws/a-9x"


def standard_mesh(workdir: str | os.PathLike, *, node_args: tuple[str, ...] = (), progress=print,
                  before_start=None, relay_owner: int = 2) -> MeshLab:
    """The issue-5 mesh, running: chain deployed, network created, relay + A (public, endpoint) + B and C
    (behind NATs) registered with the real CLI, every daemon up. ``before_start(lab)``: called once every
    device is registered and before any daemon starts (e.g. ``lab.setup_payments``: a device accepts a
    relay's price when its session starts). ``relay_owner``: 2, another owner, whom the devices relay
    through only once payments are set up; 1, the devices' own owner (relayed without payments). The
    caller tears it down (``with``)."""
    from lab.netns import mesh_topology

    lab = MeshLab(mesh_topology(), workdir)
    try:
        t0 = time.monotonic()
        lab.start_chain()
        progress(f"chain: anvil at {lab.rpc_url}, contracts deployed ({time.monotonic() - t0:.1f} s)")
        net = lab.create_network("relay")
        lab.relay = lab.add_device("relay", net, endpoint=RELAY_URL, relay=True, owner=relay_owner)
        lab.a = lab.add_device("a", net, endpoint=A_URL)
        lab.b = lab.add_device("b", net)
        lab.c = lab.add_device("c", net)
        progress(f"network {net}: relay, a={lab.a.overlay}, b={lab.b.overlay}, c={lab.c.overlay} registered "
                 f"({time.monotonic() - t0:.1f} s)")
        if before_start is not None:
            before_start(lab)
        lab.start_relay(lab.relay)
        for dev in (lab.a, lab.b, lab.c):
            lab.start_node(dev, *node_args)
        lab.wait_for(lambda: all(lab.status(d).get("ready_at") for d in (lab.a, lab.b, lab.c)), 30, "nodes up")
        progress(f"daemons up ({time.monotonic() - t0:.1f} s)")
    except BaseException:
        lab.topo.teardown()
        raise
    return lab
