"""The payment attacks of issue 10 reproduced against a real anvil with the real contracts, each now held by
the v2 contract and this client (the relay-daemon ones are in test_relay_daemon_billing.py, junk DELIVERs in
test_unbillable.py, Sybil devices in test_payments_pure.py):

2. a stolen hot signer takes at most its cap, only for its device, only from reserves (no relay it was not
   funded for);
4. revoking a signer does not void receipts the relay acknowledged: they stay claimable until validUntil;
   the relay refuses NEW receipts of a revoked signer too close to it;
5. withdraw/claim race after the notice: whatever the order in the block, the relay's claim up to the
   guarantee it extended credit against is paid in full;
6. price bait-and-switch: receipts carry the price accepted at session start; raising the price later
   claims nothing more; a receipt altered to a higher price does not verify;
8. a poisoned claimBatch pays its good entries and reports the bad one with the contract's reason.
"""

from __future__ import annotations

import time

import pytest
from eth_account import Account

from shadowmesh_client.errors import ChainError
from shadowmesh_client.rewards import DevicePayments, IssuerConfig, onchain
from shadowmesh_client.rewards.errors import ReceiptRejected
from shadowmesh_client.rewards.messages import RejectReason, decode
from tests.client.payments.conftest import SMT, WITHDRAWAL_DELAY
from tests.client.payments.helpers import open_ledger, setup_parties, signed, token_balance

PRICE = 10**9


def test_stolen_signer_takes_at_most_its_cap_for_its_device_only(chain_env, tmp_path):
    p = setup_parties(chain_env, deposit=100 * SMT, price=PRICE)
    tok = chain_env.token
    hot = Account.create()   # the device's hot key: stolen
    chain_env.chain.transact(p.payer, tok.functions.authorizeSigner(hot.address, p.device_id, SMT, 3600))
    before = token_balance(chain_env, p.relay.address)
    # v1: the thief's relay set its price to the whole balance and claimed one byte. Now: the cap binds.
    chain_env.chain.transact(p.relay, tok.functions.setRelayPrice(100 * SMT))
    greedy = signed(chain_env, p, 1, signer=hot, price=100 * SMT)
    with pytest.raises(ChainError, match="SignerCapReached|cap"):
        chain_env.chain.transact(p.relay, tok.functions.claim(greedy.as_contract_tuple()))
    many = signed(chain_env, p, 10_000, signer=hot, price=SMT // 1000)   # 10 SMT worth of bytes
    chain_env.chain.transact(p.relay, tok.functions.claim(many.as_contract_tuple()))
    assert token_balance(chain_env, p.relay.address) - before == SMT      # exactly the cap for this period
    # Another device of the same payer: not bound, nothing.
    other = signed(chain_env, p, 10, signer=hot, device_id=bytes(31) + b"\x09", price=SMT // 1000)
    with pytest.raises(ChainError, match="InvalidSigner|may not sign"):
        chain_env.chain.transact(p.relay, tok.functions.claim(other.as_contract_tuple()))
    # A relay the payer never funded: its reserve there is empty, whatever the signer signs.
    thief = chain_env.new_account()
    chain_env.chain.transact(thief, tok.functions.setRelayPrice(PRICE))
    from shadowmesh_client.rewards.receipts import Receipt, sign_receipt

    rc = Receipt(p.payer.address, p.device_id, thief.address, 10**6, PRICE)
    with pytest.raises(ChainError, match="ReserveEmpty|reserve|cap"):
        chain_env.chain.transact(thief, tok.functions.claim(sign_receipt(chain_env.chain.domain, rc, hot)
                                                            .as_contract_tuple()))
    assert tok.functions.reserveOf(p.payer.address, p.relay.address).call()[0] == 99 * SMT


def test_revoking_a_signer_does_not_void_acknowledged_receipts(chain_env, tmp_path):
    p = setup_parties(chain_env, deposit=SMT, price=PRICE)
    tok = chain_env.token
    hot = Account.create()
    chain_env.chain.transact(p.payer, tok.functions.authorizeSigner(hot.address, p.device_id, SMT, 86_400))
    ledger = open_ledger(chain_env, tmp_path / "r.sqlite", p.relay.address, price_per_byte=PRICE)
    ledger.add_counted(p.payer.address, p.device_id, 300_000)
    assert ledger.accept(signed(chain_env, p, 200_000, signer=hot)) == 200_000     # acknowledged
    r = onchain.revoke_signer(chain_env.chain, p.payer, hot.address, p.device_id)
    assert r["valid_until"] >= int(time.time()) + WITHDRAWAL_DELAY - 60
    # A new receipt of the revoked signer: refused by a relay that could not claim it in time.
    strict = open_ledger(chain_env, tmp_path / "s.sqlite", p.relay.address, price_per_byte=PRICE,
                         signer_margin=2 * WITHDRAWAL_DELAY)
    strict.add_counted(p.payer.address, p.device_id, 300_000)
    with pytest.raises(ReceiptRejected) as err:
        strict.accept(signed(chain_env, p, 250_000, signer=hot))
    assert err.value.reason is RejectReason.SIGNER_EXPIRING
    # v1: the revocation voided the acknowledged receipt. Now it is paid in full (claimed before validUntil).
    report = onchain.claim(chain_env.chain, p.relay, ledger)
    assert report.total == 200_000 * PRICE and report.lines[0].status == "claimed"
    chain_env.increase_time(WITHDRAWAL_DELAY + 1)    # after validUntil, the signer's receipts pay nothing
    ledger.add_counted(p.payer.address, p.device_id, 0)
    late = signed(chain_env, p, 250_000, signer=hot)
    with pytest.raises(ChainError, match="SignerRevoked|revoked"):
        chain_env.chain.transact(p.relay, tok.functions.claim(late.as_contract_tuple()))


def _raw_tx(env, account, fn, tip: int, nonce: int | None = None) -> bytes:
    w3 = env.chain.w3
    base = int(w3.eth.get_block("latest")["baseFeePerGas"])
    tx = fn.build_transaction({"from": account.address, "gas": 400_000, "maxFeePerGas": 4 * base + tip,
                               "maxPriorityFeePerGas": tip, "chainId": env.chain.chain_id,
                               "nonce": w3.eth.get_transaction_count(account.address) if nonce is None else nonce})
    return w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)


def test_withdraw_and_claim_in_one_block_never_take_the_relays_guarantee(chain_env, tmp_path):
    """After the notice the payer's withdrawReserve (higher tip, first in the block) races the relay's claim:
    the relay extended credit only up to guaranteedAmount (reserve minus the pending withdrawal), and the
    withdrawal pays at most the pending amount, so the claim is paid in full."""
    p = setup_parties(chain_env, deposit=1000 * PRICE, price=PRICE)
    tok, w3 = chain_env.token, chain_env.chain.w3
    onchain.withdraw(chain_env.chain, p.payer, 400 * PRICE, p.relay.address)   # notice starts
    guaranteed = tok.functions.guaranteedAmount(p.payer.address, p.relay.address).call()
    assert guaranteed == 600 * PRICE
    ledger = open_ledger(chain_env, tmp_path / "r.sqlite", p.relay.address, price_per_byte=PRICE)
    ledger.add_counted(p.payer.address, p.device_id, 600)
    receipt = signed(chain_env, p, 600)                    # credit extended up to the guarantee
    ledger.accept(receipt)
    chain_env.increase_time(WITHDRAWAL_DELAY)
    payer_before, relay_before = token_balance(chain_env, p.payer.address), token_balance(chain_env, p.relay.address)
    chain_env.rpc("evm_setAutomine", [False])
    try:
        h_withdraw = _raw_tx(chain_env, p.payer, tok.functions.withdrawReserve(p.relay.address), tip=50 * 10**9)
        h_claim = _raw_tx(chain_env, p.relay, tok.functions.claimBatch([receipt.as_contract_tuple()]), tip=10**9)
        chain_env.rpc("evm_mine")
    finally:
        chain_env.rpc("evm_setAutomine", [True])
    rw, rc = w3.eth.get_transaction_receipt(h_withdraw), w3.eth.get_transaction_receipt(h_claim)
    assert rw["blockNumber"] == rc["blockNumber"] and rw["transactionIndex"] < rc["transactionIndex"]
    assert rw["status"] == 1 and rc["status"] == 1
    assert token_balance(chain_env, p.relay.address) - relay_before == 600 * PRICE       # in full
    assert token_balance(chain_env, p.payer.address) - payer_before == 400 * PRICE       # only what was pending


def test_claimed_price_never_exceeds_the_price_accepted_at_session_start(chain_env, tmp_path):
    p = setup_parties(chain_env, deposit=SMT, price=1)                   # the relay advertises 1
    tok = chain_env.token
    relay_key = b"R" * 32
    device = DevicePayments(chain_env.chain.domain, p.payer, p.payer.address, p.device_id,
                            IssuerConfig(every_bytes=1000, every_seconds=60, max_price_per_byte=1000))
    device.add_relay(relay_key, p.relay.address)
    assert device.start_session(relay_key, tok.functions.relayPrice(p.relay.address).call())   # session: 1
    chain_env.chain.transact(p.relay, tok.functions.setRelayPrice(10**9))                       # the switch
    payload = device.on_usage(relay_key, 5000, 1.0)[0][1]
    receipt = decode(payload).signed
    assert receipt.receipt.price_per_byte == 1
    ledger = open_ledger(chain_env, tmp_path / "r.sqlite", p.relay.address, price_per_byte=10**9)
    ledger.add_counted(p.payer.address, p.device_id, 5000)
    assert ledger.accept(receipt, expected_price=1) == 5000               # the session's price
    switched = receipt.with_receipt(price_per_byte=10**9)                 # the relay rewrites the price
    with pytest.raises(ChainError, match="InvalidSigner|may not sign"):
        chain_env.chain.transact(p.relay, tok.functions.claim(switched.as_contract_tuple()))
    assert onchain.claim(chain_env.chain, p.relay, ledger).total == 5000 * 1       # 1 per byte, as advertised
    # The next session reads 10**9: above this device's cap, so it signs nothing at all.
    device.end_session(relay_key)
    assert not device.start_session(relay_key, tok.functions.relayPrice(p.relay.address).call())
    assert device.on_usage(relay_key, 10**6, 2.0) == [] and device.poll(100.0) == []


def test_a_poisoned_batch_pays_its_good_entries(chain_env, tmp_path):
    from shadowmesh_client.rewards.onchain import ClaimLine

    first = setup_parties(chain_env, deposit=SMT, price=PRICE)
    relay = first.relay
    parties = [first]
    for _ in range(2):   # two more payers with a reserve for the same relay
        payer = chain_env.new_account(smt=SMT)
        chain_env.chain.transact(payer, chain_env.token.functions.depositToReserve(relay.address, SMT))
        parties.append(type(first)(payer, relay, bytes(31) + bytes([len(parties)]), PRICE, SMT))
    good1, bad, good2 = parties
    thief = Account.create()   # poison: a receipt "for" the second payer, signed by a key it never bound
    todo = [(signed(chain_env, good1, 1000), ClaimLine(good1.payer.address, "g1", 1000, 0, None, "would claim")),
            (signed(chain_env, bad, 10**6, signer=thief), ClaimLine(bad.payer.address, "bad", 0, 0, None, "")),
            (signed(chain_env, good2, 2000), ClaimLine(good2.payer.address, "g2", 2000, 0, None, "would claim"))]
    before = token_balance(chain_env, relay.address)
    lines = {x.device_id: x for x in onchain.submit_batch(chain_env.chain, relay, todo)}
    assert lines["g1"].status == lines["g2"].status == "claimed"
    assert lines["bad"].status == "skipped on chain: invalid signer" and lines["bad"].amount == 0
    assert token_balance(chain_env, relay.address) - before == 3000 * PRICE
    again = {x.device_id: x.status for x in onchain.submit_batch(chain_env.chain, relay, todo[:1])}
    assert again == {"g1": "skipped on chain: already paid"}   # a stale entry is skipped, not fatal
