"""Durability: a relay process killed with SIGKILL right after acknowledging a receipt still has it, and
claims it after restart (real SQLite file, real process, real chain)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from lab.chain import PROJECT_ROOT
from shadowmesh_client.rewards import onchain
from shadowmesh_client.rewards.messages import AckMessage, ReceiptMessage, RejectReason, decode
from tests.client.payments.conftest import SMT
from tests.client.payments.helpers import open_ledger, setup_parties, signed, token_balance

PRICE = 10**9

# The relay side as a separate process: RelayPayments over a ReceiptLedger. Reads hex RECEIPT messages on
# stdin (one per line), counts the bytes first (as the relay's meter would), writes each hex ack to stdout.
RELAY = textwrap.dedent("""
    import sys
    from shadowmesh_client.rewards import CreditConfig, CreditPolicy, ReceiptDomain, ReceiptLedger, RelayPayments
    from shadowmesh_client.rewards.messages import decode
    path, chain_id, token, relay, payer, device, price = sys.argv[1:]
    ledger = ReceiptLedger(path, ReceiptDomain(int(chain_id), token), relay, price_per_byte=int(price))
    resolve = lambda key: (payer, bytes.fromhex(device))
    pay = RelayPayments(ledger, CreditPolicy(CreditConfig()), resolve, lambda p: 10**30, lambda *a: 0, int(price))
    print("READY", flush=True)
    for line in sys.stdin:
        payload = bytes.fromhex(line.strip())
        msg = decode(payload)
        counted = ledger.channel(payer, bytes.fromhex(device)).counted
        pay.on_usage(b"k" * 32, msg.signed.receipt.cumulative_bytes - counted, 0)
        for ack in pay.on_control(b"k" * 32, payload, 0):
            sys.stdout.write(ack.hex() + "\\n")
            sys.stdout.flush()
""")


def test_sigkill_right_after_ack_loses_nothing_and_claims_after_restart(chain_env, tmp_path):
    p = setup_parties(chain_env, deposit=SMT, price=PRICE)
    path = tmp_path / "receipts.sqlite"
    args = [sys.executable, "-c", RELAY, str(path), str(chain_env.chain.chain_id), chain_env.chain.domain.contract,
            p.relay.address, p.payer.address, p.device_id.hex(), str(PRICE)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT,
                            env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)))
    try:
        assert proc.stdout.readline().strip() == "READY"
        acked = 0
        for i in range(1, 6):
            msg = ReceiptMessage(signed(chain_env, p, i * 100_000)).encode()
            proc.stdin.write(msg.hex() + "\n")
            proc.stdin.flush()
            if i == 5:
                # Queue one more receipt so the process is busy writing when it dies.
                proc.stdin.write(ReceiptMessage(signed(chain_env, p, 600_000)).encode().hex() + "\n")
                proc.stdin.flush()
            ack = decode(bytes.fromhex(proc.stdout.readline().strip()))
            assert isinstance(ack, AckMessage) and ack.status is RejectReason.STORED
            acked = ack.cumulative_bytes
        os.kill(proc.pid, signal.SIGKILL)  # right after reading the 5th ack
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert acked == 500_000

    # "Restart": a new process opens the same file; the acknowledged receipt is there (or the later one).
    ledger = open_ledger(chain_env, path, p.relay.address, price_per_byte=PRICE)
    stored = ledger.latest(p.payer.address, p.device_id)
    assert stored is not None and stored.receipt.cumulative_bytes >= acked
    before = token_balance(chain_env, p.relay.address)
    report = onchain.claim(chain_env.chain, p.relay, ledger)
    assert token_balance(chain_env, p.relay.address) - before == stored.receipt.cumulative_bytes * PRICE == report.total


def test_ledger_uses_wal_and_full_sync(tmp_path):
    import sqlite3

    from shadowmesh_client.rewards.ledger import ReceiptLedger
    from shadowmesh_client.rewards.receipts import ReceiptDomain

    ledger = ReceiptLedger(tmp_path / "l.sqlite", ReceiptDomain(1, "0x" + "11" * 20), "0x" + "22" * 20)
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync on every commit
    ledger.close()
    db = sqlite3.connect(tmp_path / "l.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ledger_refuses_another_relay_or_chain(tmp_path):
    import pytest

    from shadowmesh_client.rewards.errors import PaymentError
    from shadowmesh_client.rewards.ledger import ReceiptLedger
    from shadowmesh_client.rewards.receipts import ReceiptDomain

    ReceiptLedger(tmp_path / "l.sqlite", ReceiptDomain(1, "0x" + "11" * 20), "0x" + "22" * 20).close()
    with pytest.raises(PaymentError, match="belongs to relay"):
        ReceiptLedger(tmp_path / "l.sqlite", ReceiptDomain(1, "0x" + "11" * 20), "0x" + "33" * 20)
    with pytest.raises(PaymentError, match="belongs to chain_id"):
        ReceiptLedger(tmp_path / "l.sqlite", ReceiptDomain(2, "0x" + "11" * 20), "0x" + "22" * 20)
