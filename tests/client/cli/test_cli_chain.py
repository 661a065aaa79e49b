"""Issue 11 items 4, 5, 7, 8 and 9 against a real anvil with the contracts deployed by the real deploy script:
endpoints checked before gas, set-endpoint keeps the relay flag, networks and contracts that do not exist,
"expired", amounts checked client-side, the dev faucet (local chains only), the listen port in use."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from eth_account import Account

from lab.chain import ANVIL_KEYS, anvil, rpc_call
from tests.client.cli.helpers import PASSWORD, one_error_line, run
from tests.client.onchain.helpers import start_deployed


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    with start_deployed(tmp_path_factory.mktemp("chain")) as d:
        yield d


def node(tmp: Path, deployed, key: str, network_id: int, *, record: Path | None = None, **extra) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "owner.json").write_text(json.dumps(Account.encrypt(key, PASSWORD, kdf="pbkdf2", iterations=1000)))
    cfg = tmp / "config.yaml"
    p = run("init", "--rpc-url", extra.pop("rpc_url", deployed.url),
            "--deployments", str(record or deployed.record_path), "--network-id", str(network_id),
            "--owner-keystore", str(tmp / "owner.json"), "--keystore-backend", "file", config=cfg)
    assert p.returncode == 0, p.stderr
    with cfg.open("a") as f:
        f.writelines(f"{k}: {v}\n" for k, v in extra.items())
    return cfg


def test_endpoints_are_checked_before_gas_and_set_endpoint_keeps_the_relay_flag(deployed, tmp_path):
    net = deployed.new_network(deployed.accounts[1])
    cfg = node(tmp_path, deployed, ANVIL_KEYS[1], net)
    assert run("register", "--relay", "--endpoint", "wss://relay.example/ws", config=cfg).returncode == 0
    sent = deployed.w3.eth.get_transaction_count(deployed.accounts[1])
    for bad, words in (("wss://", "has no host"), ("wss:///path", "has no host"), ("wss://[::1", "not a valid URL"),
                       ("wss://[zz]/ws", "IPv6 address"), ("wss://h:99999/", "not a valid URL"),
                       ("https://h/", "must be a ws:// or wss:// URL")):
        assert words in one_error_line(run("set-endpoint", bad, config=cfg))
    assert deployed.w3.eth.get_transaction_count(deployed.accounts[1]) == sent  # nothing was sent

    r = json.loads(run("set-endpoint", "wss://[2001:db8::1]:8443/ws", "--json", config=cfg).stdout)
    assert r["relay"] is True  # kept: no --relay/--no-relay given
    (peer,) = json.loads(run("peers", "--json", config=cfg).stdout)["peers"]
    assert peer["relay"] is True and peer["endpoint"] == "wss://[2001:db8::1]:8443/ws"
    assert json.loads(run("set-endpoint", "--no-relay", "--json", config=cfg).stdout)["relay"] is False
    (peer,) = json.loads(run("peers", "--json", config=cfg).stdout)["peers"]
    assert peer["relay"] is False and not peer["endpoint"]


def test_a_network_that_does_not_exist_is_named_and_nothing_is_created(deployed, tmp_path):
    cfg = node(tmp_path, deployed, ANVIL_KEYS[2], 1)
    line = one_error_line(run("peers", "--network", "99", config=cfg))
    assert "network 99 does not exist" in line
    assert not list(tmp_path.glob("state/*99*"))
    assert "network 99 does not exist" in one_error_line(run("status", "--network", "99", config=cfg))
    assert "nothing stored for network 98" in one_error_line(run("peers", "--network", "98", "--no-sync", config=cfg))


def test_a_record_whose_addresses_have_no_code(deployed, tmp_path):
    record = json.loads(deployed.record_path.read_text())
    record["contracts"]["DeviceRegistry"]["address"] = "0x" + "42" * 20
    other = tmp_path / "stale.json"
    other.write_text(json.dumps(record))
    cfg = node(tmp_path / "n", deployed, ANVIL_KEYS[2], 1, record=other)
    for args in (["peers"], ["status"], ["register"]):
        line = one_error_line(run(*args, config=cfg))
        assert "there is no DeviceRegistry contract at" in line and "make chain" in line


def test_status_says_expired_with_readable_dates(deployed, tmp_path):
    net = deployed.new_network(deployed.accounts[3], period=60)
    cfg = node(tmp_path, deployed, ANVIL_KEYS[3], net)
    assert run("register", config=cfg).returncode == 0
    assert "status: active" in run("status", config=cfg).stdout
    deployed.rpc("evm_increaseTime", [120])
    deployed.rpc("evm_mine")
    out = run("status", config=cfg).stdout
    assert "status: expired (renew it with `shadowmesh-client renew`)" in out and "valid now: no" in out
    assert "relay: no" in out and " UTC" in out.split("expires at:")[1].splitlines()[0]
    assert json.loads(run("status", "--json", config=cfg).stdout)["status"] == "expired"


def test_deposit_is_checked_against_the_wallet_first(deployed, tmp_path):
    cfg = node(tmp_path, deployed, ANVIL_KEYS[4], 1)
    sent = deployed.w3.eth.get_transaction_count(deployed.accounts[4])
    line = one_error_line(run("deposit", "5", config=cfg))
    assert "holds 0 SMT; cannot deposit 5 SMT" in line and "dev faucet" in line
    assert deployed.w3.eth.get_transaction_count(deployed.accounts[4]) == sent


def test_dev_faucet_funds_on_a_local_chain_only(deployed, tmp_path):
    new = Account.create()
    p = run("dev", "faucet", "--rpc-url", deployed.url, "--deployments", str(deployed.record_path), "--to", new.address,
            "--eth", "2", "--smt", "7.5", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["smt_balance"] == "7.5 SMT"
    assert deployed.w3.eth.get_balance(new.address) == 2 * 10**18
    record = json.loads(deployed.record_path.read_text())
    record["chainId"] = 137
    (tmp_path / "polygon.json").write_text(json.dumps(record))
    with anvil(chain_id=137) as url:
        p = run("dev", "faucet", "--rpc-url", url, "--deployments", str(tmp_path / "polygon.json"), "--to", new.address)
        assert "refusing" in one_error_line(p) and "chain 137" in p.stderr
        assert int(rpc_call(url, "eth_getBalance", [new.address, "latest"]), 16) == 0


def test_relay_listen_port_in_use_is_one_line(deployed, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        net = deployed.new_network(deployed.accounts[1])
        cfg = node(tmp_path, deployed, ANVIL_KEYS[1], net, listen=f"127.0.0.1:{port}")
        assert run("register", "--relay", "--endpoint", f"ws://127.0.0.1:{port}/ws", config=cfg).returncode == 0
        line = one_error_line(run("relay", config=cfg, timeout=60))
        assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in line and "--listen" in line
    finally:
        taken.close()
