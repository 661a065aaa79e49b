"""`shadowmesh-client` end to end against a real anvil: init -> register -> peers -> revoke -> untrusted,
and the one-line errors (unreachable RPC, wrong chain, missing deployments, no funds, decoded revert)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_account import Account

from lab.chain import ANVIL_KEYS, PROJECT_ROOT, free_port
from shadowmesh_client.cli import main

PASSWORD = "owner-password"
PASSPHRASE = "device-passphrase"


def keystore(path: Path, key: str) -> Path:
    path.write_text(json.dumps(Account.encrypt(key, PASSWORD, kdf="pbkdf2", iterations=1000)))
    return path


def env():
    e = dict(os.environ, SHADOWMESH_PASSPHRASE=PASSPHRASE, SHADOWMESH_OWNER_PASSWORD=PASSWORD)
    e["PYTHONPATH"] = str(PROJECT_ROOT)
    return e


def cli(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The real command in its own process."""
    p = subprocess.run([sys.executable, "-m", "shadowmesh_client.cli", "--config", str(config), *args],
                       capture_output=True, text=True, env=env(), cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                       timeout=120)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def setup_node(tmp: Path, deployed, key: str, network_id: int, rpc_url: str | None = None,
               deployments: Path | None = None) -> Path:
    config = tmp / "config.yaml"
    args = ["init", "--rpc-url", rpc_url or deployed.url, "--deployments", str(deployments or deployed.record_path),
            "--network-id", str(network_id), "--owner-keystore", str(keystore(tmp / "owner.json", key)),
            "--keystore-backend", "file", "--endpoint", "wss://node.example/ws", "--json"]
    out = CliRunner().invoke(main, ["--config", str(config), *args], env=env())
    assert out.exit_code == 0, out.output
    return config


def test_init_register_peers_revoke(deployed, tmp_path):
    net = deployed.new_network(deployed.accounts[1])
    config = setup_node(tmp_path, deployed, ANVIL_KEYS[1], net)
    assert (tmp_path / "device.key").stat().st_mode & 0o777 == 0o600
    public_key = json.loads(cli(config, "init", "--json").stdout)["public_key"]  # idempotent, same key

    reg = json.loads(cli(config, "register", "--json").stdout)
    assert reg["overlay_address"] == "100.64.0.1" and reg["gas_used"] > 0 and reg["tx_hash"].startswith("0x")

    peers = json.loads(cli(config, "peers", "--json").stdout)["peers"]
    assert [(p["public_key"], p["trusted"], p["endpoint"]) for p in peers] == [
        (public_key, True, "wss://node.example/ws")]
    table = cli(config, "peers").stdout
    assert "100.64.0.1" in table and public_key[:16] in table

    status = json.loads(cli(config, "status", "--json").stdout)
    assert status["status"] == "active" and status["device_id"] == reg["device_id"]

    again = cli(config, "register", check=False)
    assert again.returncode == 1
    assert again.stderr.strip().startswith("error: this key is already registered in this network by this owner")
    assert "Traceback" not in again.stderr

    cli(config, "revoke", "--json")
    after = json.loads(cli(config, "peers", "--json").stdout)["peers"]
    assert after == []
    listed = json.loads(cli(config, "peers", "--all", "--json").stdout)["peers"]
    assert [(p["status"], p["trusted"]) for p in listed] == [("revoked", False)]


def run(config: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), *args], env=env())


def test_unreachable_rpc(deployed, tmp_path):
    config = setup_node(tmp_path, deployed, ANVIL_KEYS[2], 1, rpc_url=f"http://127.0.0.1:{free_port()}")
    for args in (["register"], ["peers"], ["status"]):
        out = run(config, *args)
        assert out.exit_code == 1
        assert "cannot reach the RPC endpoint" in out.output and "Traceback" not in out.output


def test_wrong_chain_id(deployed, tmp_path):
    record = json.loads(deployed.record_path.read_text())
    record["chainId"] = 137
    other = tmp_path / "polygon.json"
    other.write_text(json.dumps(record))
    config = setup_node(tmp_path, deployed, ANVIL_KEYS[2], 1, deployments=other)
    out = run(config, "register")
    assert out.exit_code == 1 and "wrong chain" in out.output and "137" in out.output
    out = run(config, "peers")
    assert out.exit_code == 1 and "wrong chain" in out.output


def test_missing_deployments_file(deployed, tmp_path):
    config = setup_node(tmp_path, deployed, ANVIL_KEYS[2], 1, deployments=tmp_path / "nope.json")
    out = run(config, "register")
    assert out.exit_code == 1 and "nope.json not found" in out.output


def test_no_funds_sends_nothing(deployed, tmp_path):
    net = deployed.new_network()
    poor = Account.create()
    config = setup_node(tmp_path, deployed, poor.key.hex(), net)
    out = run(config, "register")
    assert out.exit_code == 1 and "fund the owner account" in out.output
    assert deployed.w3.eth.get_transaction_count(poor.address) == 0


def test_network_admin_commands(deployed, tmp_path):
    config = setup_node(tmp_path, deployed, ANVIL_KEYS[3], 1)
    created = json.loads(run(config, "network", "create", "lab", "--policy", "approval", "--json").output)
    net = created["network_id"]
    reg = json.loads(run(config, "register", "--network", str(net), "--json").output)
    assert reg["status"] == "pending approval"
    assert json.loads(run(config, "peers", "--network", str(net), "--json").output)["peers"] == []
    assert run(config, "network", "approve", reg["device_id"]).exit_code == 0
    assert len(json.loads(run(config, "peers", "--network", str(net), "--json").output)["peers"]) == 1
    assert run(config, "network", "suspend", reg["device_id"]).exit_code == 0
    out = run(config, "network", "suspend", reg["device_id"])
    assert out.exit_code == 1 and "is suspended: that operation is not allowed" in out.output
    outsider = tmp_path / "outsider"
    outsider.mkdir()
    other = setup_node(outsider, deployed, ANVIL_KEYS[4], net)
    out = run(other, "network", "approve", reg["device_id"])
    assert out.exit_code == 1 and f"is not the admin of network {net}" in out.output


@pytest.mark.parametrize("cmd", [[], ["init"], ["register"], ["revoke"], ["renew"], ["set-endpoint"], ["status"],
                                 ["peers"], ["network"], ["network", "create"], ["network", "approve"],
                                 ["network", "suspend"], ["account", "new"]])
def test_help_everywhere(cmd):
    out = CliRunner().invoke(main, [*cmd, "--help"])
    assert out.exit_code == 0 and "Usage:" in out.output
