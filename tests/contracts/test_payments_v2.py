"""Issue 10, contract half: each payment attack of the security review, as a test that failed on the v1
contracts (or could not even be expressed: v1 had no reserves, bindings or skip events) and passes now.

Attack numbers follow issue 10: 2 stolen signer, 3/5 payer drains a relay's collateral, 4 de-authorisation voids
acknowledged receipts, 6 price bait-and-switch, 7 Sybil devices, 8 poisoned batch.
"""

from __future__ import annotations

import ape

from .conftest import DAY, ONE_SMT, WITHDRAWAL_DELAY

PRICE = 10**9
DEVICE = b"\xd2" * 32
OTHER_DEVICE = b"\xd3" * 32
INVALID_SIGNER, SIGNER_REVOKED, ZERO_PRICE, STALE, RESERVE_EMPTY, CAP_REACHED = range(6)  # ClaimFailure


def _fund(token, admin, payer, relay, amount):
    token.mint(payer, amount, sender=admin)
    token.depositToReserve(relay, amount, sender=payer)


# ---------------------------------------------------------------- 2: a stolen hot signer


def test_stolen_signer_takes_at_most_its_cap_per_period(token, admin, payer, relay, hot, sign_receipt, chain):
    """v1: a stolen signer + a relay price of the whole balance took 500 SMT in two transactions. Now the thief
    (even colluding with a relay the payer funded) is held to the signer's cap per period, whatever it signs:
    a price above the cap pays nothing, a huge byte count pays the cap."""
    _fund(token, admin, payer, relay, 500 * ONE_SMT)
    cap = ONE_SMT
    token.authorizeSigner(hot, DEVICE, cap, DAY, sender=payer)
    chain.pending_timestamp = (chain.pending_timestamp // DAY + 1) * DAY + 10  # early in a period
    greedy_price = sign_receipt(hot.private_key, payer, DEVICE, relay, 1, 500 * ONE_SMT)
    with ape.reverts(token.ShadowMeshTokenSignerCapReached, signer=hot.address, deviceId=DEVICE, left=cap):
        token.claim(greedy_price, sender=relay)
    greedy_bytes = sign_receipt(hot.private_key, payer, DEVICE, relay, 10**30, PRICE)
    tx = token.claim(greedy_bytes, sender=relay)
    assert tx.decode_logs(token.Claimed)[0].amount == cap
    with ape.reverts(token.ShadowMeshTokenSignerCapReached, signer=hot.address, deviceId=DEVICE, left=0):
        token.claim(greedy_bytes, sender=relay)  # the same period: nothing more
    chain.pending_timestamp += DAY  # next period: the cap again, never more
    assert token.claim(greedy_bytes, sender=relay).decode_logs(token.Claimed)[0].amount == cap
    assert token.balanceOf(relay) == 2 * cap
    assert token.reserveOf(payer, relay).balance == 500 * ONE_SMT - 2 * cap


def test_stolen_signer_cannot_pay_another_device_or_an_unfunded_relay(
    token, admin, payer, relay, hot, attacker, sign_receipt
):
    _fund(token, admin, payer, relay, 50 * ONE_SMT)
    token.authorizeSigner(hot, DEVICE, 10 * ONE_SMT, DAY, sender=payer)
    # Another device id of the same payer: the signer is not bound to it.
    other = sign_receipt(hot.private_key, payer, OTHER_DEVICE, relay, 1_000, PRICE)
    with ape.reverts(token.ShadowMeshTokenInvalidSigner, signer=hot.address, payer=payer.address):
        token.claim(other, sender=relay)
    # A relay the payer never funded (the thief's own address): no reserve, nothing to take.
    to_thief = sign_receipt(hot.private_key, payer, DEVICE, attacker, 1_000, PRICE)
    with ape.reverts(token.ShadowMeshTokenReserveEmpty, payer=payer.address, relay=attacker.address, price=PRICE):
        token.claim(to_thief, sender=attacker)
    # Another payer's money: the binding is the payer's own (a signer bound by `payer` means nothing to others).
    _fund(token, admin, attacker, relay, ONE_SMT)
    foreign = sign_receipt(hot.private_key, attacker, DEVICE, relay, 1_000, PRICE)
    with ape.reverts(token.ShadowMeshTokenInvalidSigner, signer=hot.address, payer=attacker.address):
        token.claim(foreign, sender=relay)
    assert token.reserveOf(payer, relay).balance == 50 * ONE_SMT


# ---------------------------------------------------------------- 3 and 5: the payer drains its collateral


def test_relay_guarantee_survives_a_withdrawal_race(token, admin, payer, relay, sign_receipt, chain):
    """v1: after the notice, the payer's withdraw (higher tip) landed before the relay's claim and took everything.
    Now a withdrawal takes at most the pending amount, which the guarantee already excluded."""
    _fund(token, admin, payer, relay, 10 * ONE_SMT)
    token.requestReserveWithdrawal(relay, 4 * ONE_SMT, sender=payer)
    guaranteed = token.guaranteedAmount(payer, relay)
    assert guaranteed == 6 * ONE_SMT
    owed = sign_receipt(payer.private_key, payer, DEVICE, relay, guaranteed // PRICE, PRICE)  # credit up to it
    chain.pending_timestamp += WITHDRAWAL_DELAY
    token.withdrawReserve(relay, sender=payer)  # lands first
    tx = token.claim(owed, sender=relay)
    assert tx.decode_logs(token.Claimed)[0].amount == guaranteed  # paid in full
    assert token.balanceOf(relay) == guaranteed and token.balanceOf(payer) == 4 * ONE_SMT


def test_relay_claims_everything_owed_before_unlock_and_the_withdrawal_gets_the_rest(
    token, admin, payer, relay, sign_receipt, chain
):
    """A request for the whole reserve: the relay, watching ReserveWithdrawalRequested, claims all it is owed
    (even above the new guarantee of 0) before unlockAt; the withdrawal never takes back what it claimed."""
    _fund(token, admin, payer, relay, 10 * ONE_SMT)
    owed = sign_receipt(payer.private_key, payer, DEVICE, relay, 7 * ONE_SMT // PRICE, PRICE)
    tx = token.requestReserveWithdrawal(relay, 10 * ONE_SMT, sender=payer)
    [request] = tx.decode_logs(token.ReserveWithdrawalRequested)
    assert request.relay == relay.address and token.guaranteedAmount(payer, relay) == 0
    chain.pending_timestamp = request.unlockAt - 1
    assert token.claim(owed, sender=relay).decode_logs(token.Claimed)[0].amount == 7 * ONE_SMT
    chain.pending_timestamp = request.unlockAt
    assert token.withdrawReserve(relay, sender=payer).decode_logs(token.ReserveWithdrawn)[0].amount == 3 * ONE_SMT
    assert token.balanceOf(relay) == 7 * ONE_SMT


def test_a_new_request_restarts_the_notice(token, admin, payer, relay, chain):
    """Raising the request cannot shorten the relay's time to react: the clock restarts."""
    _fund(token, admin, payer, relay, 10 * ONE_SMT)
    token.requestReserveWithdrawal(relay, ONE_SMT, sender=payer)
    chain.pending_timestamp += WITHDRAWAL_DELAY - 10
    tx = token.requestReserveWithdrawal(relay, 10 * ONE_SMT, sender=payer)
    unlock = tx.decode_logs(token.ReserveWithdrawalRequested)[0].unlockAt
    assert unlock == chain.provider.get_block(tx.block_number).timestamp + WITHDRAWAL_DELAY
    chain.pending_timestamp += 20
    with ape.reverts(token.ShadowMeshTokenWithdrawalLocked):
        token.withdrawReserve(relay, sender=payer)


# ---------------------------------------------------------------- 4: de-authorising a signer


def test_deauthorised_signer_receipts_stay_claimable_during_notice(
    token, admin, payer, relay, hot, sign_receipt, chain
):
    """v1: de-authorising voided every receipt the signer had signed, acknowledged ones included."""
    _fund(token, admin, payer, relay, 50 * ONE_SMT)
    token.authorizeSigner(hot, DEVICE, 10 * ONE_SMT, DAY, sender=payer)
    acked = sign_receipt(hot.private_key, payer, DEVICE, relay, 500, PRICE)
    later = sign_receipt(hot.private_key, payer, DEVICE, relay, 900, PRICE)
    tx = token.revokeSigner(hot, DEVICE, sender=payer)
    valid_until = tx.decode_logs(token.SignerRevoked)[0].validUntil
    chain.pending_timestamp = valid_until - 1
    assert token.claim(acked, sender=relay).decode_logs(token.Claimed)[0].amount == 500 * PRICE
    chain.pending_timestamp = valid_until  # from validUntil on, its receipts pay nothing
    with ape.reverts(token.ShadowMeshTokenSignerRevoked, signer=hot.address, payer=payer.address, deviceId=DEVICE,
                     validUntil=valid_until):
        token.claim(later, sender=relay)
    assert token.paidBytes(payer, DEVICE, relay) == 500


# ---------------------------------------------------------------- 6: price bait-and-switch


def test_claimed_price_never_exceeds_the_receipt_price(token, admin, payer, relay, sign_receipt):
    """v1: the relay advertised 1, the device signed a 1e9 price cap, the relay raised its price and claimed 1e9.
    Now the receipt carries the accepted price and that is what is paid, whatever the relay advertises."""
    _fund(token, admin, payer, relay, 50 * ONE_SMT)
    token.setRelayPrice(1, sender=relay)
    receipt = sign_receipt(payer.private_key, payer, DEVICE, relay, 10**6, 1)  # the advertised price, accepted
    token.setRelayPrice(10**9, sender=relay)  # raised after the session started
    tx = token.claim(receipt, sender=relay)
    assert tx.decode_logs(token.Claimed)[0].amount == 10**6 * 1
    # The relay cannot rewrite the price: any change makes the signature recover to someone else.
    raised = sign_receipt(payer.private_key, payer, DEVICE, relay, 2 * 10**6, 1)
    with ape.reverts(token.ShadowMeshTokenInvalidSigner):
        token.claim((*raised[:3], 10**9, *raised[4:]), sender=relay)
    assert token.balanceOf(relay) == 10**6


# ---------------------------------------------------------------- 7: Sybil devices share one reserve


def test_many_devices_of_one_payer_share_one_reserve(token, admin, payer, relay, sign_receipt):
    """The collateral is per (payer, relay), not per device: N devices never get N times the reserve."""
    _fund(token, admin, payer, relay, 10 * PRICE)
    receipts = [sign_receipt(payer.private_key, payer, bytes([n]) * 32, relay, 10, PRICE) for n in range(1, 6)]
    tx = token.claimBatch(receipts, sender=relay)
    assert sum(e.amount for e in tx.decode_logs(token.Claimed)) == 10 * PRICE
    assert [e.reason for e in tx.decode_logs(token.ClaimSkipped)] == [RESERVE_EMPTY] * 4


# ---------------------------------------------------------------- 8: a poisoned batch


def test_poisoned_batch_pays_its_good_entries(token, admin, accounts, payer, relay, hot, sign_receipt, chain):
    """v1: one payer front-ran a relay's claimBatch with setReceiptSigner(false) and reverted all 10 entries.
    Now every entry that cannot pay is skipped with its reason, and the others are paid."""
    good = [accounts[i] for i in range(10, 13)]
    for p in good:
        _fund(token, admin, p, relay, ONE_SMT)
    _fund(token, admin, payer, relay, ONE_SMT)
    token.authorizeSigner(hot, DEVICE, ONE_SMT, DAY, sender=payer)
    revoked = sign_receipt(hot.private_key, payer, DEVICE, relay, 100, PRICE)
    token.revokeSigner(hot, DEVICE, sender=payer)
    chain.pending_timestamp += WITHDRAWAL_DELAY
    broke = accounts[13]
    token.mint(broke, 1, sender=admin)
    token.depositToReserve(relay, 1, sender=broke)
    token.authorizeSigner(hot, OTHER_DEVICE, PRICE // 2, DAY, sender=good[1])
    entries = [
        sign_receipt(good[0].private_key, good[0], DEVICE, relay, 100, PRICE),  # pays
        revoked,  # SignerRevoked
        sign_receipt(good[0].private_key, good[0], DEVICE, relay, 50, PRICE),  # StaleReceipt (after entry 0)
        sign_receipt(hot.private_key, good[0], DEVICE, relay, 300, PRICE),  # InvalidSigner: not bound by good[0]
        (good[1].address, DEVICE, 10, PRICE, bytes(32), bytes(32)),  # InvalidSigner: garbage signature
        sign_receipt(broke.private_key, broke, DEVICE, relay, 10, PRICE),  # ReserveEmpty
        sign_receipt(good[1].private_key, good[1], DEVICE, relay, 10, 0),  # ZeroPrice
        sign_receipt(hot.private_key, good[1], OTHER_DEVICE, relay, 10, PRICE),  # SignerCapReached
        sign_receipt(good[1].private_key, good[1], DEVICE, relay, 200, PRICE),  # pays
        sign_receipt(good[2].private_key, good[2], DEVICE, relay, 300, PRICE),  # pays
    ]
    tx = token.claimBatch(entries, sender=relay)
    paid = [(e.payer, e.amount) for e in tx.decode_logs(token.Claimed)]
    assert paid == [(good[0].address, 100 * PRICE), (good[1].address, 200 * PRICE), (good[2].address, 300 * PRICE)]
    skipped = [(e.relay, e.payer, e.deviceId, e.cumulativeBytes, e.reason) for e in tx.decode_logs(token.ClaimSkipped)]
    assert skipped == [
        (relay.address, payer.address, DEVICE, 100, SIGNER_REVOKED),
        (relay.address, good[0].address, DEVICE, 50, STALE),
        (relay.address, good[0].address, DEVICE, 300, INVALID_SIGNER),
        (relay.address, good[1].address, DEVICE, 10, INVALID_SIGNER),
        (relay.address, broke.address, DEVICE, 10, RESERVE_EMPTY),
        (relay.address, good[1].address, DEVICE, 10, ZERO_PRICE),
        (relay.address, good[1].address, OTHER_DEVICE, 10, CAP_REACHED),
    ]
    assert token.balanceOf(relay) == 600 * PRICE
