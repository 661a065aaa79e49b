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
