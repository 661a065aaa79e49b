"""Test helpers for a real local chain: an anvil process on a free port, and the real deploy script.

    from lab.chain import anvil, deploy_contracts

    with anvil() as rpc_url:                       # "http://127.0.0.1:<free port>", answering eth_chainId
        record = deploy_contracts(rpc_url)         # runs `ape run deploy --network polygon:local:foundry`
        registry = record["contracts"]["DeviceRegistry"]["address"]

- ``anvil()`` starts the native anvil binary on 127.0.0.1 and a free random port (never 8545: other
  engineers run their own anvils), waits until it answers JSON-RPC, yields the URL, and on exit (also on
  failure) terminates the process group it started, by id, then kills it if it does not stop within 5 s.
- ``deploy_contracts(rpc_url)`` runs the project's real deploy script in a subprocess; Ape's foundry
  provider connects to ``rpc_url`` through the ``APE_FOUNDRY_HOST`` environment variable (honoured by
  ape-foundry 0.8), so no config file changes. It returns the parsed deployment record
  (deployments/README.md), written to ``output`` or to a temporary file that is removed.

``python -m lab.chain start|stop`` (``make chain`` / ``make chain-stop``): a long-lived local chain for the
quickstart (docs/quickstart.md): anvil on 127.0.0.1:8545 in the background (pid file), both contracts
deployed, a new dev owner account in an encrypted keystore funded with ETH and test SMT by
``shadowmesh-client dev faucet``, and network 1 ("dev", open) administered by that owner. Everything it
writes is in one folder (``--dir``, default ``.state/chain``); ``stop`` ends the anvil it started (by the pid
in the pid file) and removes the now meaningless deployment record.

Anvil's default accounts are those of the mnemonic "test test ... junk" (Ape's test accounts too);
``ANVIL_KEYS[0]`` deploys and holds every admin role.

Not thread-safe; every call starts its own processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHAIN_ID = 31337
FORBIDDEN_PORTS = frozenset({8545})  # the default anvil port: left to `make anvil` and humans

# Private keys of anvil's first accounts (mnemonic "test test test test test test test test test test test junk").
ANVIL_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
)


class ChainHelperError(RuntimeError):
    """Anvil did not start, or the deploy script failed; the message carries its output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (never 8545)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in FORBIDDEN_PORTS:
            return port


def anvil_binary() -> str:
    """The native anvil executable: the npm platform package, else `anvil` on PATH."""
    for candidate in sorted((PROJECT_ROOT / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil")):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("anvil")
    if found:
        return found
    raise ChainHelperError("anvil not found: run `make npm` (npm package @foundry-rs/anvil)")


def rpc_call(url: str, method: str, params: list | None = None, timeout: float = 2.0):
    """One JSON-RPC call over HTTP; returns the result or raises ChainHelperError."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise ChainHelperError(f"{method} failed: {reply['error']}")
    return reply["result"]


def _stop(process: subprocess.Popen) -> None:
    """Terminate the process group we created (its id is the child's pid), then kill it if needed."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@contextlib.contextmanager
def anvil(
    *,
    chain_id: int = DEFAULT_CHAIN_ID,
    block_time: float | None = None,
    extra_args: tuple[str, ...] = (),
    startup_timeout: float = 20.0,
    attempts: int = 3,
) -> Iterator[str]:
    """Run anvil on 127.0.0.1:<free port>; yield its RPC URL once it answers; stop it on exit.

    ``block_time`` (seconds) mines on an interval instead of per transaction. Retries on another port if
    the chosen one was taken in the meantime.
    """
    binary = anvil_binary()
    last_output = ""
    for _ in range(attempts):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = [binary, "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id), *extra_args]
        if block_time is not None:
            args += ["--block-time", str(block_time)]
        log = tempfile.TemporaryFile()
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + startup_timeout
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    rpc_call(url, "eth_chainId", timeout=1.0)
                    break
                except (OSError, urllib.error.URLError, ValueError):
                    time.sleep(0.05)
            else:
                log.seek(0)
                last_output = log.read().decode(errors="replace")[-2000:]
                continue  # exited (port taken?) or timed out: the finally stops it, then retry
            yield url
            return
        finally:
            _stop(process)
            log.close()
    raise ChainHelperError(f"anvil did not start after {attempts} attempts; last output:\n{last_output}")


def _ape_executable() -> str:
    beside = Path(sys.executable).parent / "ape"
    if beside.exists():
        return str(beside)
    found = shutil.which("ape")
    if found:
        return found
    raise ChainHelperError("the `ape` command is not installed: run `make venv`")


def deploy_contracts(
    rpc_url: str,
    *,
    output: str | os.PathLike | None = None,
    account: str = "TEST::0",
    registration_fee: int = 0,
    withdrawal_delay: int = 86_400,
    network: str = "polygon:local:foundry",
    timeout: float = 300.0,
) -> dict:
    """Deploy both contracts to the anvil at ``rpc_url`` with the real deploy script; return the record.

    ``output``: where the record is written (kept); default a temporary file, removed afterwards.
    Raises ChainHelperError with the script's output if it fails.
    """
    env = dict(os.environ)
    env["APE_FOUNDRY_HOST"] = rpc_url
    env.setdefault("SOLCX_BINARY_PATH", str(PROJECT_ROOT / "tools" / "solc-bin"))
    env["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), str(PROJECT_ROOT / "node_modules" / ".bin"), env.get("PATH", "")]
    )
    with tempfile.TemporaryDirectory(prefix="shadowmesh-deploy-") as tmp:
        path = Path(output) if output is not None else Path(tmp) / "deployment.json"
        command = [
            _ape_executable(), "run", "deploy",
            "--network", network,
            "--account", account,
            "--registration-fee", str(registration_fee),
            "--withdrawal-delay", str(withdrawal_delay),
            "--output", str(path),
        ]
        try:
            result = subprocess.run(
                command, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired as err:
            raise ChainHelperError(f"deploy script timed out after {timeout} s: {err.stdout}\n{err.stderr}") from None
        if result.returncode != 0 or not path.exists():
            raise ChainHelperError(
                f"deploy script failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return json.loads(path.read_text())


def load_deployment(path: str | os.PathLike) -> dict:
    """Parse a deployment record (deployments/README.md)."""
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------- `make chain`: a local chain for people

DEV_DIR = PROJECT_ROOT / ".state" / "chain"
DEV_OWNER_PASSWORD = "dev-owner-password"  # a local throw-away account: the password is no secret
DEV_NETWORK_NAME = "dev"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(url: str) -> bool:
    try:
        rpc_call(url, "eth_chainId", timeout=1.0)
        return True
    except (OSError, urllib.error.URLError, ValueError, ChainHelperError):
        return False


def _cli(*args: str) -> str:
    """Run the real `shadowmesh-client` (this interpreter's) and return its stdout; raise with its error line."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "shadowmesh_client.cli", *args], capture_output=True, text=True,
                       env=env, stdin=subprocess.DEVNULL, timeout=300)
    if r.returncode != 0:
        raise ChainHelperError(f"shadowmesh-client {args[0]} ...: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def dev_chain_start(folder: Path = DEV_DIR, port: int = 8545, say=print, host: str = "127.0.0.1") -> dict:
    """Start (or find running) the local chain of `make chain` on ``host:port``; return its summary (also in
    summary.json). ``host``: 127.0.0.1, or an address of this machine that network namespaces can reach."""
    folder.mkdir(parents=True, exist_ok=True)
    url = f"http://{host}:{port}"
    pid_file, summary_file = folder / "anvil.pid", folder / "summary.json"
    if pid_file.exists() and _alive(int(pid_file.read_text())) and summary_file.exists() and _answers(url):
        summary = json.loads(summary_file.read_text())
        say(f"a local chain is already running (pid {pid_file.read_text().strip()}, {url}); "
            "`make chain-stop` ends it")
        return summary
    if _answers(url):
        raise ChainHelperError(f"something else already answers on {url} (an anvil of your own?): stop it, or "
                               f"use another port: make chain CHAIN_PORT=8546")
    started = time.monotonic()
    say(f"starting anvil on {url} (chain id {DEFAULT_CHAIN_ID}; log: {folder / 'anvil.log'})")
    with open(folder / "anvil.log", "wb") as log:
        process = subprocess.Popen([anvil_binary(), "--host", host, "--port", str(port), "--chain-id",
                                    str(DEFAULT_CHAIN_ID)], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file.write_text(str(process.pid))
    try:
        deadline = time.monotonic() + 20
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ChainHelperError(f"anvil did not start; see {folder / 'anvil.log'}")
            time.sleep(0.05)
        say("deploying DeviceRegistry and ShadowMeshToken (`ape run deploy`, about 10 s)")
        record_path = folder / "deployment.json"
        record_path.unlink(missing_ok=True)
        deploy_contracts(url, output=record_path, withdrawal_delay=300)
        from eth_account import Account

        owner = Account.create()
        keystore, password_file = folder / "owner.json", folder / "owner-password"
        keystore.unlink(missing_ok=True)
        keystore.write_text(json.dumps(Account.encrypt(owner.key, DEV_OWNER_PASSWORD, kdf="pbkdf2")))
        keystore.chmod(0o600)
        password_file.write_text(DEV_OWNER_PASSWORD + "\n")
        password_file.chmod(0o600)
        say(f"funding the dev owner {owner.address} (`shadowmesh-client dev faucet`)")
        _cli("dev", "faucet", "--rpc-url", url, "--deployments", str(record_path), "--to", owner.address,
             "--eth", "100", "--smt", "1000")
        from shadowmesh_client.chain import Chain, load_deployment
        from shadowmesh_client.chain.registry import create_network

        chain = Chain(url, load_deployment(record_path))
        network = create_network(chain, owner, DEV_NETWORK_NAME, "open", 365 * 86400).network_id
    except BaseException:
        dev_chain_stop(folder, say=lambda _m: None)
        raise
    summary = {"rpc_url": url, "chain_id": DEFAULT_CHAIN_ID, "pid": process.pid, "deployments": str(record_path),
               "owner": owner.address, "owner_keystore": str(keystore), "owner_password_file": str(password_file),
               "network_id": network, "eth": 100, "smt": 1000}
    summary_file.write_text(json.dumps(summary, indent=2))
    say(f"ready in {time.monotonic() - started:.0f} s:\n"
        f"  rpc_url:             {url}\n"
        f"  deployments:         {record_path}\n"
        f"  owner:               {owner.address} (100 ETH, 1000 SMT)\n"
        f"  owner keystore:      {keystore} (password in {password_file})\n"
        f"  network:             {network} (\"{DEV_NETWORK_NAME}\", open: registrations are active at once)\n"
        "  stop it with `make chain-stop` (the chain lives in anvil's memory: stopping it forgets everything)")
    return summary


def dev_chain_stop(folder: Path = DEV_DIR, say=print) -> bool:
    """Stop the anvil `make chain` started (by its pid file). True if one was running."""
    pid_file = folder / "anvil.pid"
    if not pid_file.exists():
        say("no local chain is running (no pid file)")
        return False
    pid = int(pid_file.read_text())
    running = _alive(pid)
    if running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # its own session: the group id is its pid
        for _ in range(100):
            if not _alive(pid):
                break
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    for name in ("anvil.pid", "deployment.json", "summary.json"):
        (folder / name).unlink(missing_ok=True)
    say(f"stopped the local chain (pid {pid})" if running else f"the local chain (pid {pid}) had already stopped")
    return running


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lab.chain", description="the local chain of `make chain`")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=DEV_DIR, help="where its files go (default .state/chain)")
    parser.add_argument("--port", type=int, default=8545)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            dev_chain_start(args.dir.resolve(), args.port, host=args.host)
        else:
            dev_chain_stop(args.dir.resolve())
    except ChainHelperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
