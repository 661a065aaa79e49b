"""Claims, withdrawals and receipt checks against a real anvil with the real contracts (no mocked chain)."""

from __future__ import annotations

import time

import pytest

from shadowmesh_client.errors import ChainError
from shadowmesh_client.rewards import onchain
from shadowmesh_client.rewards.errors import PaymentError, ReceiptRejected
from shadowmesh_client.rewards.messages import RejectReason
from tests.client.payments.conftest import SMT, WITHDRAWAL_DELAY
from tests.client.payments.helpers import open_ledger, setup_parties, signed, token_balance

PRICE = 3 * 10**9  # base units per byte


def test_claim_pays_price_times_receipted_bytes_and_only_once(chain_env, tmp_path):
    p = setup_parties(chain_env, deposit=10 * SMT, price=PRICE)
    ledger = open_ledger(chain_env, tmp_path / "r.sqlite", p.relay.address, price_per_byte=PRICE)
    second_device = bytes(32)[:-1] + b"\x07"
    for device, nbytes in ((p.device_id, 1_234_567), (second_device, 700_001)):
        ledger.add_counted(p.payer.address, device, nbytes)
        ledger.accept(signed(chain_env, p, nbytes, device_id=device))
    before = token_balance(chain_env, p.relay.address)

    dry = onchain.claim(chain_env.chain, p.relay, ledger, dry_run=True)
    assert dry.total == (1_234_567 + 700_001) * PRICE
    assert token_balance(chain_env, p.relay.address) == before  # dry run sends nothing

    report = onchain.claim(chain_env.chain, p.relay, ledger, batch_size=1)  # two transactions
    assert token_balance(chain_env, p.relay.address) - before == (1_234_567 + 700_001) * PRICE
    assert report.total == (1_234_567 + 700_001) * PRICE
    by_device = {line.device_id: line for line in report.lines}
    assert by_device["0x" + p.device_id.hex()].bytes == 1_234_567
    assert by_device["0x" + second_device.hex()].amount == 700_001 * PRICE
    assert len({line.tx_hash for line in report.lines}) == 2
    assert chain_env.token.functions.reserveOf(p.payer.address, p.relay.address).call()[0] == 10 * SMT - report.total

    again = onchain.claim(chain_env.chain, p.relay, ledger)
    assert again.total == 0
    assert {line.status for line in again.lines} == {"skipped: already paid"}
    assert token_balance(chain_env, p.relay.address) - before == (1_234_567 + 700_001) * PRICE

    # A later receipt pays only the difference.
    ledger.add_counted(p.payer.address, p.device_id, 1000)
    ledger.accept(signed(chain_env, p, 1_235_567))
    assert onchain.claim(chain_env.chain, p.relay, ledger).total == 1000 * PRICE

    earned = onchain.earnings(chain_env.chain, p.relay.address, ledger)
    assert earned["claimed_base"] == (1_234_567 + 700_001 + 1000) * PRICE and earned["unclaimed_base"] == 0


def test_min_amount_skips_small_receipts_and_earnings_shows_them_unclaimed(chain_env, tmp_path):
    p = setup_parties(chain_env, deposit=SMT, price=PRICE)
    ledger = open_ledger(chain_env, tmp_path / "r.sqlite", p.relay.address, price_per_byte=PRICE)
    ledger.add_counted(p.payer.address, p.device_id, 10)
    ledger.accept(signed(chain_env, p, 10))
    report = onchain.claim(chain_env.chain, p.relay, ledger, min_amount=11 * PRICE)
    assert report.total == 0 and report.lines[0].status == "skipped: below --min-amount"
    earned = onchain.earnings(chain_env.chain, p.relay.address, ledger)
    assert earned["unclaimed_base"] == 10 * PRICE and earned["claimed_base"] == 0


def test_receipt_altered_by_relay_is_rejected_by_contract_and_ledger(chain_env, tmp_path):
    p = setup_parties(chain_env, deposit=SMT, price=PRICE)
    honest = signed(chain_env, p, 5000)
    forged = honest.with_receipt(cumulative_bytes=50_000)  # the relay inflates the byte count
    with pytest.raises(ChainError, match="InvalidSigner|may not sign receipts for|not bound"):
        chain_env.chain.transact(p.relay, chain_env.token.functions.claim(forged.as_contract_tuple()))
    assert chain_env.token.functions.paidBytes(p.payer.address, p.device_id, p.relay.address).call() == 0

    ledger = open_ledger(chain_env, tmp_path / "r.sqlite", p.relay.address, price_per_byte=PRICE)
    ledger.add_counted(p.payer.address, p.device_id, 100_000)
    with pytest.raises(ReceiptRejected) as err:
        ledger.accept(forged)
    assert err.value.reason is RejectReason.BAD_SIGNATURE
    # The honest one is accepted and pays exactly its bytes.
    ledger.accept(honest)
    assert onchain.claim(chain_env.chain, p.relay, ledger).total == 5000 * PRICE


def test_ledger_checks_signer_relay_chain_monotonic_and_count(chain_env, tmp_path):
    from eth_account import Account

    from shadowmesh_client.rewards.receipts import ReceiptDomain, sign_receipt

    p = setup_parties(chain_env, deposit=SMT, price=PRICE)
    ledger = open_ledger(chain_env, tmp_path / "r.sqlite", p.relay.address, tolerance_bytes=100,
                         price_per_byte=PRICE)
    ledger.add_counted(p.payer.address, p.device_id, 10_000)

    def reason(s):
        with pytest.raises(ReceiptRejected) as err:
            ledger.accept(s)
        return err.value.reason

    hot = Account.create()  # a device signer key the payer has not bound (yet)
    assert reason(signed(chain_env, p, 1000, signer=hot)) is RejectReason.BAD_SIGNATURE
    other_chain = sign_receipt(ReceiptDomain(chain_env.chain.chain_id + 1, chain_env.chain.domain.contract),
                               signed(chain_env, p, 1000).receipt, p.payer)
    assert reason(other_chain) is RejectReason.BAD_SIGNATURE
    assert reason(signed(chain_env, p, 10_101)) is RejectReason.OVER_COUNT  # counted 10 000 + tolerance 100
    assert reason(signed(chain_env, p, 1000, price=PRICE - 1)) is RejectReason.PRICE_MISMATCH
    assert reason(signed(chain_env, p, 1000, price=PRICE + 1)) is RejectReason.PRICE_MISMATCH
    other_relay = signed(chain_env, p, 1000).with_receipt(relay="0x" + "33" * 20)
    assert reason(other_relay) is RejectReason.WRONG_RELAY

    assert ledger.accept(signed(chain_env, p, 10_100)) == 10_100       # within tolerance
    assert ledger.accept(signed(chain_env, p, 10_100)) == 10_100       # resent: acknowledged again
    assert reason(signed(chain_env, p, 9000)) is RejectReason.STALE

    # Bound on chain (after a negative answer was cached): accepted once the cache entry expires.
    chain_env.chain.transact(p.payer, chain_env.token.functions.authorizeSigner(hot.address, p.device_id, SMT, 3600))
    ledger.add_counted(p.payer.address, p.device_id, 1000)
    assert reason(signed(chain_env, p, 10_500, signer=hot)) is RejectReason.BAD_SIGNATURE  # cached "no"
    assert ledger.accept(signed(chain_env, p, 10_500, signer=hot), now=time.time() + 120) == 10_500
    assert onchain.claim(chain_env.chain, p.relay, ledger).total == 10_500 * PRICE


def test_reserve_withdrawal_after_notice_returns_exactly_the_unclaimed_reserve(chain_env, tmp_path):
    p = setup_parties(chain_env, deposit=5 * SMT, price=PRICE)
    before = token_balance(chain_env, p.payer.address)
    r = onchain.withdraw(chain_env.chain, p.payer, 5 * SMT, p.relay.address)
    assert r["action"] == "requested" and r["seconds_left"] == WITHDRAWAL_DELAY
    with pytest.raises(PaymentError, match=r"notice period ends in 1 h 0 min 0 s|notice period ends in 59 min"):
        onchain.withdraw(chain_env.chain, p.payer, None, p.relay.address)

    # During the notice the relay still claims.
    ledger = open_ledger(chain_env, tmp_path / "r.sqlite", p.relay.address, price_per_byte=PRICE)
    ledger.add_counted(p.payer.address, p.device_id, 2_000_000)
    ledger.accept(signed(chain_env, p, 2_000_000), expected_price=PRICE)
    claimed = onchain.claim(chain_env.chain, p.relay, ledger).total
    assert claimed == 2_000_000 * PRICE

    chain_env.increase_time(WITHDRAWAL_DELAY)
    done = onchain.withdraw(chain_env.chain, p.payer, None, p.relay.address)
    assert done["amount_base"] == 5 * SMT - claimed
    assert token_balance(chain_env, p.payer.address) - before == 5 * SMT - claimed
    assert onchain.balance(chain_env.chain, p.payer.address).escrow == 0
    with pytest.raises(PaymentError, match="no withdrawal from the reserve"):
        onchain.withdraw(chain_env.chain, p.payer, None, p.relay.address)


def test_unallocated_deposit_is_nobodys_collateral_and_withdraws_at_once(chain_env):
    payer = chain_env.new_account(smt=3 * SMT)
    relay = chain_env.new_account()
    onchain.deposit(chain_env.chain, payer, 2 * SMT)
    r = onchain.deposit(chain_env.chain, payer, SMT, relay.address)          # one-deposit convenience
    assert r["from"] == "deposit" and r["reserve"] == "1"
    b = onchain.balance(chain_env.chain, payer.address)
    assert b.unallocated == SMT and [x.guaranteed for x in b.reserves] == [SMT] and b.escrow == 2 * SMT
    assert onchain.withdraw(chain_env.chain, payer, SMT)["action"] == "withdrawn"   # no notice
    assert token_balance(chain_env, payer.address) == 2 * SMT


def test_claim_is_capped_by_the_reserve_and_skips_an_empty_one(chain_env, tmp_path):
    p = setup_parties(chain_env, deposit=1000 * PRICE, price=PRICE)
    ledger = open_ledger(chain_env, tmp_path / "r.sqlite", p.relay.address, price_per_byte=PRICE)
    ledger.add_counted(p.payer.address, p.device_id, 5000)
    ledger.accept(signed(chain_env, p, 5000))
    assert onchain.claim(chain_env.chain, p.relay, ledger).total == 1000 * PRICE  # all the reserve covers
    again = onchain.claim(chain_env.chain, p.relay, ledger)
    assert again.total == 0 and again.lines[0].status == "skipped: payer's reserve for this relay is empty"
