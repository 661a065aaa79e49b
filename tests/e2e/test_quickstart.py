"""Issue 11 acceptance: docs/quickstart.md, every block (```sh and ```sh-root) in order, run as written by
one bash from the root of the checkout (root; the README points there): a bridge and two namespaces,
`make chain`, init/register, `up` in each namespace, a ping from b to a over the mesh, clean-up.

Substituted only: the chain's port (a free one instead of 8545) and the folders (.state/chain and sm/ go
to a temporary folder). Without `sudo` on the machine (a root container), a `sudo` that just runs its
command is put first on PATH. Whatever happens, the test kills what the blocks started (by the pids in
sm/*.pid), deletes the namespaces and the bridge, and stops the chain.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from lab.chain import PROJECT_ROOT, free_port

QUICKSTART = PROJECT_ROOT / "docs" / "quickstart.md"
NAMESPACES = ("sm-a", "sm-b")
BRIDGE = "smbr0"


def _blocks() -> list[str]:
    return re.findall(r"^```(?:sh|sh-root)\n(.*?)^```$", QUICKSTART.read_text(), flags=re.S | re.M)


def _script(port: int, chain_dir, sm_dir) -> str:
    script = "\n".join(_blocks())
    script = script.replace("make chain CHAIN_HOST=10.99.0.254",
                            f"make chain CHAIN_HOST=10.99.0.254 CHAIN_PORT={port} CHAIN_DIR={chain_dir}")
    script = script.replace("make chain-stop", f"make chain-stop CHAIN_DIR={chain_dir}")
    script = script.replace("10.99.0.254:8545", f"10.99.0.254:{port}").replace(".state/chain", str(chain_dir))
    return re.sub(r"(?<![\w./-])sm(?=[/ ]|$)", str(sm_dir), script, flags=re.M)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, timeout=30)


def _cleanup(sm_dir, chain_dir) -> None:
    """Idempotent: what the blocks left (nothing, when they ran to the end) is killed and deleted."""
    for pid_file in sm_dir.glob("*.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
    for ns in NAMESPACES:
        _ip("netns", "del", ns)
    _ip("link", "del", BRIDGE)
    subprocess.run(["make", "--no-print-directory", "chain-stop", f"CHAIN_DIR={chain_dir}"], cwd=PROJECT_ROOT,
                   capture_output=True, timeout=60)


def test_the_quickstart_as_written_gets_two_devices_pinging(tmp_path):
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0:
        pytest.skip(f"{BRIDGE} exists: someone is following the quickstart on this machine")
    chain_dir, sm_dir = tmp_path / "chain", tmp_path / "sm"
    script = _script(free_port(), chain_dir, sm_dir)
    assert "ping -c 3" in script and "shadowmesh-client" in script and "ip netns del" in script
    env = dict(os.environ)
    if shutil.which("sudo") is None:
        shim = tmp_path / "bin"
        shim.mkdir()
        (shim / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
        (shim / "sudo").chmod(0o755)
        env["PATH"] = f"{shim}:{env['PATH']}"
    started = time.monotonic()
    try:
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=PROJECT_ROOT, capture_output=True,
                           text=True, timeout=900, stdin=subprocess.DEVNULL, env=env)
        logs = "".join(f"\n--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted(sm_dir.glob("*.log")))
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:] + logs
        assert re.search(r"\d+ packets transmitted, 3 received", p.stdout), p.stdout[-3000:]
        assert "2 peer(s) in network 1" in p.stdout
        # the blocks cleaned up after themselves: no namespaces, no bridge, no chain, no sm/ folder
        assert not sm_dir.exists() and not (chain_dir / "anvil.pid").exists()
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        assert not set(NAMESPACES) & set(netns)
        print(f"quickstart ran in {time.monotonic() - started:.0f} s")
    finally:
        _cleanup(sm_dir, chain_dir)
