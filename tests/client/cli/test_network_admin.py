"""`shadowmesh-client network show|set-fee|withdraw-fees|close|open|transfer-admin|accept-admin` against a real
anvil with the contracts deployed by the real deploy script: the network fee is what `register` pays, a closed
network refuses `register` in one line, the admin role moves only when the new admin accepts it, and a
non-admin's attempt is one line naming the account."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from lab.chain import ANVIL_KEYS
from tests.client.cli.helpers import PASSWORD, one_error_line, run
from tests.client.onchain.helpers import start_deployed


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    with start_deployed(tmp_path_factory.mktemp("chain")) as d:
        yield d


def node(tmp: Path, deployed, key: str, network_id: int) -> Path:
    """A config (device key + owner keystore of anvil account ``key``) in ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "owner.json").write_text(json.dumps(Account.encrypt(key, PASSWORD, kdf="pbkdf2", iterations=1000)))
    cfg = tmp / "config.yaml"
    p = run("init", "--rpc-url", deployed.url, "--deployments", str(deployed.record_path), "--network-id",
            str(network_id), "--owner-keystore", str(tmp / "owner.json"), "--keystore-backend", "file", config=cfg)
    assert p.returncode == 0, p.stderr
    return cfg


def ok(*args: str, config: Path) -> dict:
    p = run(*args, "--json", config=config)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_the_network_fee_is_what_register_pays_and_the_admin_withdraws_it(deployed, tmp_path):
    admin, member, payee = deployed.accounts[1], deployed.accounts[2], deployed.accounts[3]
    net = deployed.new_network(admin)
    admin_cfg = node(tmp_path / "admin", deployed, ANVIL_KEYS[1], net)
    member_cfg = node(tmp_path / "member", deployed, ANVIL_KEYS[2], net)
    protocol = deployed.registry.functions.registrationFee().call()

    assert ok("network", "set-fee", str(net), "0.01", config=admin_cfg)["network_fee_wei"] == 10**16
    text = run("network", "show", str(net), config=admin_cfg).stdout
    assert "network fee: 0.01 ETH/POL (10000000000000000 wei)" in text and "registration: open" in text
    before = deployed.w3.eth.get_balance(member)
    r = ok("register", config=member_cfg)
    assert r["fee_paid"] == protocol + 10**16
    receipt = deployed.w3.eth.get_transaction_receipt(r["tx_hash"])
    assert before - deployed.w3.eth.get_balance(member) == protocol + 10**16 + receipt["gasUsed"] * receipt[
        "effectiveGasPrice"]
    assert ok("network", "show", str(net), config=admin_cfg)["collected_fees_wei"] == 10**16

    # a non-admin cannot set the fee nor take the fees: one line naming the account, nothing sent
    sent = deployed.w3.eth.get_transaction_count(member)
    for args in (["set-fee", str(net), "0"], ["withdraw-fees", str(net)]):
        line = one_error_line(run("network", *args, config=member_cfg))
        assert f"{member} is not the admin of network {net}" in line
    assert deployed.w3.eth.get_transaction_count(member) == sent

    payee_before = deployed.w3.eth.get_balance(payee)
    w = ok("network", "withdraw-fees", str(net), "--to", payee, config=admin_cfg)
    assert w["withdrawn_wei"] == 10**16 and w["to"] == payee
    assert deployed.w3.eth.get_balance(payee) - payee_before == 10**16
    assert "no fees to withdraw" in one_error_line(run("network", "withdraw-fees", str(net), config=admin_cfg))

    # wei amounts, zero, and amounts checked before any RPC
    assert ok("network", "set-fee", str(net), "1234wei", config=admin_cfg)["network_fee_wei"] == 1234
    assert ok("network", "show", str(net), config=admin_cfg)["network_fee_wei"] == 1234
    assert "negative" in one_error_line(run("network", "set-fee", str(net), "-1", config=admin_cfg), 2)
    assert "2**128-1" in one_error_line(run("network", "set-fee", str(net), f"{2**128}wei", config=admin_cfg), 2)
    assert ok("network", "set-fee", str(net), "0", config=admin_cfg)["network_fee_wei"] == 0


def test_a_closed_network_refuses_register_in_one_line_until_reopened(deployed, tmp_path):
    net = deployed.new_network(deployed.accounts[3])
    admin_cfg = node(tmp_path / "admin", deployed, ANVIL_KEYS[3], net)
    member_cfg = node(tmp_path / "member", deployed, ANVIL_KEYS[4], net)
    assert ok("network", "close", str(net), config=admin_cfg)["registration"] == "closed"
    assert ok("network", "show", str(net), config=member_cfg)["registration"] == "closed"
    line = one_error_line(run("register", config=member_cfg))
    assert f"network {net} is closed to new registrations" in line
    assert "is not the admin" in one_error_line(run("network", "open", str(net), config=member_cfg))
    assert ok("network", "open", str(net), config=admin_cfg)["registration"] == "open"
    assert ok("register", config=member_cfg)["status"] == "active"
    assert "does not exist" in one_error_line(run("network", "show", "999", config=member_cfg))


def test_the_admin_role_moves_only_when_the_new_admin_accepts(deployed, tmp_path):
    old, new, other = deployed.accounts[2], deployed.accounts[3], deployed.accounts[4]
    net = deployed.new_network(old)
    old_cfg = node(tmp_path / "old", deployed, ANVIL_KEYS[2], net)
    new_cfg = node(tmp_path / "new", deployed, ANVIL_KEYS[3], net)
    other_cfg = node(tmp_path / "other", deployed, ANVIL_KEYS[4], net)

    assert f"is not the admin of network {net}" in one_error_line(
        run("network", "transfer-admin", str(net), other, config=new_cfg))
    assert ok("network", "transfer-admin", str(net), new, config=old_cfg)["pending_admin"] == new
    shown = ok("network", "show", str(net), config=other_cfg)
    assert shown["admin"] == old and shown["pending_admin"] == new
    # offered but not accepted: the new admin cannot act yet, the old one still can
    assert f"{new} is not the admin of network {net}" in one_error_line(
        run("network", "close", str(net), config=new_cfg))
    assert f"{other} has not been offered the admin role of network {net}" in one_error_line(
        run("network", "accept-admin", str(net), config=other_cfg))
    assert ok("network", "accept-admin", str(net), config=new_cfg)["admin"] == new
    shown = ok("network", "show", str(net), config=other_cfg)
    assert shown["admin"] == new and shown["pending_admin"] is None
    assert ok("network", "close", str(net), config=new_cfg)["registration"] == "closed"
    assert f"{old} is not the admin of network {net}" in one_error_line(
        run("network", "open", str(net), config=old_cfg))
    assert "not an address" in one_error_line(run("network", "transfer-admin", str(net), "0x12", config=new_cfg), 2)
