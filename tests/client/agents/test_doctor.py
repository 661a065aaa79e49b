"""`shadowmesh-client doctor` (agents/assistant.py + cli/doctor.py) as a real process against a real anvil with
the contracts deployed by the real deploy script: every check's failure comes with its fix, and passes once
the fix is applied. Plus --suggest, --logs and the pure helpers."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from lab.chain import ANVIL_KEYS
from shadowmesh_client.agents.assistant import analyze_config, port_free, suggest_config, troubleshoot
from tests.client.cli.helpers import run
from tests.client.cli.test_cli_chain import node
from tests.client.onchain.helpers import start_deployed

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    with start_deployed(tmp_path_factory.mktemp("chain")) as d:
        yield d


def checks(cfg: Path, *extra: str) -> tuple[int, dict]:
    p = run("doctor", "--json", "--api", "off", *extra, config=cfg)
    assert "Traceback" not in p.stderr, p.stderr
    data = json.loads(p.stdout)
    return p.returncode, {c["name"]: c for c in data["checks"]}


def test_doctor_names_each_problem_with_its_fix_and_passes_once_fixed(deployed, tmp_path):
    net = deployed.new_network(deployed.accounts[3], period=365 * 86400)
    with socket.socket() as held:                      # an endpoint port someone else holds
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        cfg = node(tmp_path, deployed, ANVIL_KEYS[3], net, listen=f"127.0.0.1:{port}",
                   endpoint=f"ws://127.0.0.1:{port + 1}/api/v1/ws/doctor-test",
                   relays="[ws://127.0.0.1:9/relay]")
        code, c = checks(cfg)
        assert code == 1
        assert c["rpc"]["status"] == c["contracts"]["status"] == c["network"]["status"] == "ok"
        assert c["device"]["status"] == "fail" and "shadowmesh-client register" in c["device"]["fix"]
        assert c["listen"]["status"] == "warn" and "in use" in c["listen"]["detail"]
        assert c["relays"]["status"] == "fail" and "127.0.0.1:9" in c["relays"]["detail"]
        assert c["escrow"]["status"] == "warn" and "deposit" in c["escrow"]["fix"]
        assert c["clock"]["status"] == "ok" and c["key_file"]["status"] == "ok" and c["dns"]["status"] == "ok"
    assert run("register", config=cfg).returncode == 0
    code, c = checks(cfg)
    assert c["device"]["status"] == "ok" and "active" in c["device"]["detail"]
    assert c["listen"]["status"] == "warn" and "differs from the endpoint" in c["listen"]["detail"]
    text = run("doctor", "--api", "off", config=cfg).stdout      # the human form: one line per check + fix lines
    assert "[ok  ] device" in text and "fix: check the relays' hosts" in text


def test_a_wrong_rpc_url_fails_rpc_and_skips_what_needs_it(deployed, tmp_path):
    cfg = node(tmp_path, deployed, ANVIL_KEYS[4], 1, rpc_url="http://127.0.0.1:9")
    code, c = checks(cfg)
    assert code == 1 and c["rpc"]["status"] == "fail" and "rpc_url" in c["rpc"]["fix"]
    assert {c[n]["status"] for n in ("contracts", "network", "device", "clock", "escrow")} == {"skip"}


def test_suggest_and_logs_work_offline(tmp_path):
    p = run("doctor", "--suggest", "public relay on a cloud VPS", "--json")
    out = json.loads(p.stdout)
    assert out["profile"]["relay"] and "endpoint: wss://" in out["yaml"] and "listen: 0.0.0.0:443" in out["yaml"]
    log = tmp_path / "node.log"
    log.write_text("INFO up\nWARNING chain unreachable and no stored directory yet; retrying in 1.0 s: cannot reach "
                   "the RPC endpoint http://x:8545\n")
    p = run("doctor", "--logs", str(log))
    assert p.returncode == 0 and "chain RPC unreachable" in p.stdout and "rpc_url" in p.stdout


def test_suggestions_follow_the_description():
    home = suggest_config("laptop behind NAT at home, video calls")["profile"]
    assert home["behind_nat"] and home["latency_sensitive"] and home["mobile"] and not home["relay"]
    assert "mtu: 1400" in suggest_config("phone on 4g")["yaml"]
    assert suggest_config("backup server with a public ip")["profile"]["public"]


def test_troubleshoot_and_config_review():
    out = troubleshoot(["x509: certificate verify failed", "all fine"])
    assert [p["problem"] for p in out["problems"]] == ["TLS certificate not trusted"]
    assert troubleshoot(["nothing here"])["problems"] == []
    bad = analyze_config({"network_id": "x"})
    assert not bad["valid"] and bad["issues"][0]["severity"] == "error"
    review = analyze_config({"rpc_url": "http://203.0.113.5:8545", "chain_id": 137, "registry": "0x" + "22" * 20,
                             "network_id": 1, "endpoint": "ws://h.example:80/a", "tun": {"mtu": 1000},
                             "confirmations": 0})   # unset, a public chain now gets 12 (config.confirmations_for)
    assert {i["field"] for i in review["issues"]} >= {"rpc_url", "endpoint", "confirmations", "tun.mtu"}


def test_port_free():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        assert port_free("127.0.0.1", s.getsockname()[1]) is not None
    assert port_free("127.0.0.1", 0) is None
