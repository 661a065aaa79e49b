"""The payments commands (cli_payments.register) against a real anvil: deposit, balance, withdraw with its
notice, set-price, claim (--dry-run, --min-amount, --json), earnings; one-line errors, exit code 1."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from eth_account import Account

from shadowmesh_client.cli import payments as cli_payments
from shadowmesh_client.cli.common import ErrorsAsMessages, State
from tests.client.payments.conftest import SMT, WITHDRAWAL_DELAY
from tests.client.payments.helpers import Parties, open_ledger, signed, token_balance

PASSWORD = "owner-password"


@click.group(cls=ErrorsAsMessages)
@click.option("--config", "config_path")
@click.pass_context
def group(ctx, config_path):
    ctx.obj = State(config_path, None, None)


for _command in cli_payments.COMMANDS:
    group.add_command(_command)


def node(tmp: Path, env, account) -> Path:
    tmp.mkdir()
    (tmp / "owner.json").write_text(json.dumps(Account.encrypt(account.key, PASSWORD, kdf="pbkdf2", iterations=1000)))
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump({"rpc_url": env.url, "deployments": str(env.record_path),
                                      "owner_keystore": "owner.json", "state_dir": "state"}))
    return config


def run(config: Path, *args, ok=True):
    r = CliRunner().invoke(group, ["--config", str(config), *args], env={"SHADOWMESH_OWNER_PASSWORD": PASSWORD})
    assert (r.exit_code == 0) == ok, r.output
    return r


def test_device_owner_deposits_into_a_reserve_binds_a_signer_and_withdraws_after_notice(chain_env, tmp_path):
    payer = chain_env.new_account(smt=20 * SMT)
    relay = chain_env.new_account().address
    config = node(tmp_path / "payer", chain_env, payer)
    assert "deposited 2.5 SMT (unallocated now 2.5 SMT" in run(config, "deposit", "2.5").output
    out = run(config, "deposit", "--relay", relay, "12.5").output
    assert f"reserve for {relay}: +12.5 SMT from the wallet (now 12.5 SMT)" in out
    b = json.loads(run(config, "balance", "--json").output)
    assert b["wallet"] == "5" and b["unallocated"] == "2.5" and b["escrow"] == "15"
    assert [(r["relay"], r["guaranteed"], r["unlock_at"]) for r in b["reserves"]] == [(relay, "12.5", 0)]

    err = run(config, "withdraw", "--relay", relay, ok=False)
    assert err.output.startswith("error: no withdrawal from the reserve") and "Traceback" not in err.output
    assert "error:" in run(config, "deposit", "1.0000000000000000001", ok=False).output  # 19 decimals
    assert "cannot deposit 100 SMT" in run(config, "deposit", "100", ok=False).output  # checked before any tx

    hot = Account.create().address
    device = "0x" + "ab" * 32
    assert "give --cap" in run(config, "authorize-signer", hot, "--device-id", device, ok=False).output
    out = run(config, "authorize-signer", hot, "--device-id", device, "--cap", "1", "--period", "3600").output
    assert "may sign receipts for 0xabab" in out and "at most 1 SMT per 3600 s" in out
    assert chain_env.token.functions.isReceiptSigner(payer.address, hot, bytes.fromhex("ab" * 32)).call()
    assert not chain_env.token.functions.isReceiptSigner(payer.address, hot, bytes(32)).call()   # one device
    out = run(config, "authorize-signer", hot, "--device-id", device, "--revoke").output
    assert "receipts it signed pay until then" in out
    assert chain_env.token.functions.isReceiptSigner(payer.address, hot, bytes.fromhex("ab" * 32)).call()  # notice

    assert "withdrew 2.5 SMT (unallocated left 0 SMT)" in run(config, "withdraw", "--all").output   # at once
    r = json.loads(run(config, "withdraw", "--relay", relay, "--all", "--json").output)
    assert r["action"] == "requested" and r["amount"] == "12.5" and r["seconds_left"] == WITHDRAWAL_DELAY
    err = run(config, "withdraw", "--relay", relay, ok=False).output
    assert "notice period ends in" in err and "run `withdraw --relay` again" in err
    assert "unlocks in" in run(config, "balance").output and "guarantees 0 SMT" in run(config, "balance").output

    chain_env.increase_time(WITHDRAWAL_DELAY)
    out = run(config, "withdraw", "--relay", relay).output
    assert "withdrew 12.5 SMT (reserve left 0 SMT)" in out
    assert token_balance(chain_env, payer.address) == 20 * SMT


def test_relay_claims_with_dry_run_min_amount_and_earnings(chain_env, tmp_path):
    price = 2 * 10**9
    payer = chain_env.new_account(smt=SMT)
    relay = chain_env.new_account()
    chain_env.chain.transact(payer, chain_env.token.functions.depositToReserve(relay.address, SMT))
    config = node(tmp_path / "relay", chain_env, relay)

    assert "error: no receipts yet" in run(config, "claim", ok=False).output
    run(config, "set-price", str(price))
    p = Parties(payer, relay, bytes(31) + b"\x01", price, SMT)
    ledger = open_ledger(chain_env, tmp_path / "relay" / "state" / "receipts.sqlite", relay.address,
                         price_per_byte=price)
    for n, device in ((400_000, bytes(31) + b"\x01"), (10, bytes(31) + b"\x02")):
        ledger.add_counted(payer.address, device, n)
        ledger.accept(signed(chain_env, p, n, device_id=device))
    ledger.close()

    dry = json.loads(run(config, "claim", "--dry-run", "--min-amount", "0.0000001", "--json").output)
    assert dry["dry_run"] and dry["total_base"] == 400_000 * price
    assert {c["status"] for c in dry["claims"]} == {"would claim", "skipped: below --min-amount"}
    assert token_balance(chain_env, relay.address) == 0

    text = run(config, "claim", "--min-amount", "0.0000001").output
    assert "total: 0.0008 SMT" in text and "0x" in text
    assert token_balance(chain_env, relay.address) == 400_000 * price
    again = json.loads(run(config, "claim", "--json").output)
    assert again["total_base"] == 10 * price  # only the small one is left, claimed now without --min-amount
    e = json.loads(run(config, "earnings", "--json").output)
    assert e["claimed_base"] == 400_010 * price and e["claims"] == 2 and e["unclaimed_base"] == 0
    assert json.loads(run(config, "claim", "--json").output)["total_base"] == 0


@pytest.mark.parametrize("args", [["deposit", "abc"], ["deposit", "0"], ["claim", "--min-amount", "x"],
                                  ["withdraw", "--amount", "1", "--all"]])
def test_bad_input_is_one_line(chain_env, tmp_path, args):
    config = node(tmp_path / "n", chain_env, chain_env.new_account())
    out = run(config, *args, ok=False).output
    assert out.startswith("error:") and "Traceback" not in out
