"""Issue 11 item 7: docs/quickstart.md's non-root blocks (```sh), run as written with bash from the clone's
root: `make chain`, activate the venv, init, register, peers. Substituted only: the chain's address (a free
port on 127.0.0.1 instead of 10.99.0.254:8545, so no bridge and no clash with a developer's anvil) and the
folders (.state/chain and sm/ go to a temporary folder). The root blocks (```sh-root: namespaces, `up`,
ping) are exercised by the end-to-end tests' lab."""

from __future__ import annotations

import re
import subprocess

from lab.chain import PROJECT_ROOT, free_port

QUICKSTART = PROJECT_ROOT / "docs" / "quickstart.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{re.escape(kind)}\n(.*?)^```$", QUICKSTART.read_text(), flags=re.S | re.M)


def test_quickstart_non_root_blocks_run_as_written(tmp_path):
    script = "\n".join(blocks("sh"))
    assert "make chain" in script and "register" in script and "peers" in script
    assert blocks("sh-root"), "the root steps are shown too"
    port = free_port()
    chain_dir = tmp_path / "chain"
    script = script.replace("make chain CHAIN_HOST=10.99.0.254",
                            f"make chain CHAIN_HOST=127.0.0.1 CHAIN_PORT={port} CHAIN_DIR={chain_dir}")
    script = script.replace("10.99.0.254:8545", f"127.0.0.1:{port}").replace(".state/chain", str(chain_dir))
    script = re.sub(r"(?<![\w./-])sm(?=[/ ])", str(tmp_path / "sm"), script)
    try:
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=PROJECT_ROOT, capture_output=True,
                           text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        table = p.stdout.splitlines()
        rows = [line for line in table if line.startswith("100.64.0.")]
        assert len(rows) == 2 and all(" active " in r for r in rows), p.stdout
        assert "ws://10.99.0.1:7000/ws" in p.stdout and "2 peer(s) in network 1" in p.stdout
        assert "funding the dev owner" in p.stdout
    finally:
        subprocess.run(["make", "--no-print-directory", "chain-stop", f"CHAIN_DIR={chain_dir}"], cwd=PROJECT_ROOT,
                       capture_output=True, timeout=60)
    assert not (chain_dir / "anvil.pid").exists()
