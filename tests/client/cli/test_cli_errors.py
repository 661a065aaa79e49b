"""Issue 11 items 4, 6 and 10 without a chain: every failure a new user met is one `error:` line with the right
exit code (1 error, 2 usage, 130 Ctrl-C), JSON on stdout with --json, one overall RPC deadline with a progress
line, and `init` leaving nothing behind when it fails."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab.chain import PROJECT_ROOT
from shadowmesh_client.chain.client import load_owner_account
from shadowmesh_client.errors import KeystoreError
from tests.client.cli.helpers import env, one_error_line, run, silent_server

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def write_config(tmp: Path, rpc_url: str = "http://127.0.0.1:9", **extra) -> Path:
    lines = [f"rpc_url: {rpc_url}", "chain_id: 31337", f"registry: '{REGISTRY}'", "network_id: 1",
             "owner_keystore: owner.json"] + [f"{k}: {v}" for k, v in extra.items()]
    cfg = tmp / "config.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


# ---- item 4: tracebacks become one line


def test_binary_config_is_one_line(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_bytes(b"\xff\xfe\x00rpc_url: \x80\x81\n")
    line = one_error_line(run("status", config=cfg))
    assert "is not a text (UTF-8) file" in line


@pytest.mark.parametrize("content, words", [
    ("[1, 2, 3]", "not an eth-account keystore file"),
    ('{"address": "zz"}', "no valid `address`"),
    ("not json", "not an eth-account keystore file"),
])
def test_owner_keystore_of_the_wrong_shape(tmp_path, content, words):
    cfg = write_config(tmp_path)
    (tmp_path / "owner.json").write_text(content)
    line = one_error_line(run("revoke", config=cfg))  # needs the owner address before any RPC
    assert words in line
    with pytest.raises(KeystoreError, match="not an eth-account keystore|damaged"):
        load_owner_account(tmp_path / "owner.json", "pw")


def test_owner_keystore_missing_crypto_fields(tmp_path):
    (tmp_path / "owner.json").write_text('{"address": "' + "ab" * 20 + '", "crypto": {"cipher": "x"}}')
    with pytest.raises(KeystoreError, match="damaged or not a keystore"):
        load_owner_account(tmp_path / "owner.json", "pw")


@pytest.mark.parametrize("args, words", [
    (["deposit", "-1"], "-1 is negative"),
    (["deposit", "1e60"], "more than can exist"),
    (["deposit", "abc"], "is not an amount of SMT"),
    (["deposit", "0.0000000000000000001"], "more than 18 decimals"),
    (["withdraw", "--amount", "-5"], "is negative"),
    (["set-price", "9" * 80], "above the largest value a contract can hold"),
    (["set-price", "-3"], "it is negative"),
    (["balance", "--address", "nope"], "'nope' is not an address"),
    (["authorize-signer", "0x12"], "is not an address"),
    (["claim", "--min-amount", "-1"], "is negative"),
])
def test_bad_amounts_and_addresses_are_usage_errors_before_any_rpc(tmp_path, args, words):
    # rpc_url points at a port nobody listens on: any RPC would fail with "cannot reach", not with the words
    cfg = write_config(tmp_path)
    line = one_error_line(run(*args, config=cfg), code=2)
    assert words in line and "cannot reach" not in line
    assert f"(see `shadowmesh-client {args[0]} --help`)" in line


# ---- item 10: usage errors, --json


def test_usage_errors_are_one_line_exit_2(tmp_path):
    for args in (["deposit"], ["nosuchcommand"], ["peers", "--bogus"], ["peers", "--network", "x"]):
        one_error_line(run(*args, config=write_config(tmp_path)), code=2)


def test_json_errors_are_json_on_stdout(tmp_path):
    cfg = write_config(tmp_path)
    p = run("peers", "--json", config=cfg)
    one_error_line(p, code=1)
    body = json.loads(p.stdout)
    assert body["exit_code"] == 1 and "cannot reach the RPC endpoint" in body["error"]
    p = run("deposit", "-1", "--json", config=cfg)
    assert json.loads(p.stdout)["exit_code"] == 2


@pytest.mark.parametrize("text, words", [
    ("network_id: true\n", "`network_id` must be a number, not true"),
    ("network_id: 1\nnetwork_id: 2\n", "`network_id` is given twice (lines 4 and 5)"),
    ("tun: {mtu: 1400, mtu: 1500}\n", "`mtu` is given twice"),
    ("rpc_timeout: yes\n", "`rpc_timeout` must be a number"),
])
def test_yaml_duplicates_and_wrong_scalars_name_the_key(tmp_path, text, words):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"rpc_url: http://127.0.0.1:9\nchain_id: 31337\nregistry: '{REGISTRY}'\n" + text)
    assert words in one_error_line(run("peers", config=cfg))


def test_init_writes_nothing_until_it_succeeds(tmp_path):
    cfg = tmp_path / "new" / "config.yaml"
    args = ["init", "--rpc-url", "http://127.0.0.1:8545", "--deployments", str(tmp_path / "d.json"),
            "--network-id", "1", "--keystore-backend", "file"]
    # no passphrase anywhere (and no terminal): fails, and leaves no config behind to block the retry
    p = subprocess.run([sys.executable, "-m", "shadowmesh_client.cli", "--config", str(cfg), *args],
                       capture_output=True, text=True, env=env(SHADOWMESH_PASSPHRASE=""), cwd=PROJECT_ROOT,
                       stdin=subprocess.DEVNULL)
    assert "passphrase" in one_error_line(p)
    assert not cfg.exists() and not (cfg.parent / "device.key").exists()
    # an endpoint that is not a usable URL: same, nothing written
    assert "has no host" in one_error_line(run(*args, "--endpoint", "wss:///path", config=cfg))
    assert not cfg.exists()
    p = run(*args, "--json", config=cfg)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["config_created"] and cfg.exists() and (cfg.parent / "device.key").exists()


# ---- item 6: one deadline, a progress line, a message that matches


def test_silent_rpc_deadline_progress_and_message(tmp_path):
    with silent_server() as url:
        cfg = write_config(tmp_path, rpc_url=url)
        started = time.monotonic()
        p = run("--timeout", "6", "peers", config=cfg)
        took = time.monotonic() - started
    line = one_error_line(p)
    assert f"waiting for {url} (5 s)" in p.stderr.splitlines()
    assert f"no answer from {url} to eth_chainId in 6 s" in line and "gave up after 6 s" in line
    assert "--timeout" in line
    assert took < 10, took
    assert not (tmp_path / "state").exists()  # a read that failed created nothing


def test_deadline_from_config_and_environment(tmp_path):
    with silent_server() as url:
        p = run("peers", config=write_config(tmp_path, rpc_url=url, rpc_timeout=2))
        assert "gave up after 2 s" in one_error_line(p)
        p = run("peers", config=write_config(tmp_path, rpc_url=url, rpc_timeout=30), SHADOWMESH_TIMEOUT="2")
        assert "gave up after 2 s" in one_error_line(p)


def test_ctrl_c_is_one_line_exit_130(tmp_path):
    """Ctrl-C while the command waits for the chain: one line, exit 130. The signal is sent once the
    command is waiting for its first answer (a fixed delay could land in the interpreter's start-up on a
    loaded machine, where Python itself prints a traceback). The child gets SIGINT's default disposition,
    as from a terminal: run from a background job of a non-interactive shell, pytest inherits SIGINT
    ignored, Python then keeps it ignored, and the command rightly goes on waiting."""
    accepted = threading.Event()
    with silent_server(accepted) as url:
        cfg = write_config(tmp_path, rpc_url=url)
        proc = subprocess.Popen([sys.executable, "-m", "shadowmesh_client.cli", "--config", str(cfg), "peers"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                                cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            assert accepted.wait(30), "the command never asked the RPC endpoint anything"
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted"
