"""ShadowMeshToken: ERC-20 basics, balances and reserves, signers, receipts, claims, bonus: every function, revert
and event. The issue-10 attacks are in test_payments_v2.py."""

from __future__ import annotations

import ape
from eth_account import Account

from .conftest import DAY, ONE_SMT, RECEIPT_TYPES, WITHDRAWAL_DELAY, compact, receipt_digest

DEVICE = b"\xd1" * 32
PRICE = 10**9  # SMT base units per byte (1 SMT per GB)
ZERO = "0x" + "00" * 20
INVALID_SIGNER, SIGNER_REVOKED, ZERO_PRICE, STALE, RESERVE_EMPTY, CAP_REACHED = range(6)  # ClaimFailure


def test_metadata_and_roles(token, admin):
    assert (token.name(), token.symbol(), token.decimals()) == ("ShadowMesh", "SMT", 18)
    for role in ("DEFAULT_ADMIN_ROLE", "MINTER_ROLE", "REWARDER_ROLE"):
        assert token.hasRole(getattr(token, role)(), admin)
    assert token.withdrawalDelay() == WITHDRAWAL_DELAY


def test_mint_only_by_minter(token, admin, attacker, other):
    tx = token.mint(other, 5, sender=admin)
    [event] = tx.decode_logs(token.Transfer)
    assert (event["from"], event.to, event.value) == (ZERO, other.address, 5)
    assert token.balanceOf(other) == 5 and token.totalSupply() == 5
    with ape.reverts(token.AccessControlUnauthorizedAccount, account=attacker.address,
                     neededRole=token.MINTER_ROLE()):
        token.mint(attacker, 1, sender=attacker)


def test_constructor_rejects_zero_admin(project, admin):
    with ape.reverts(project.ShadowMeshToken.ShadowMeshTokenZeroAddress):
        admin.deploy(project.ShadowMeshToken, ZERO, 1)


def test_permit(token, admin, payer, other, chain):
    token.mint(payer, ONE_SMT, sender=admin)
    deadline = chain.pending_timestamp + 3600
    domain = {"name": "ShadowMesh", "version": "1", "chainId": chain.chain_id, "verifyingContract": str(token.address)}
    types = {"Permit": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"},
                        {"name": "value", "type": "uint256"}, {"name": "nonce", "type": "uint256"},
                        {"name": "deadline", "type": "uint256"}]}
    message = {"owner": payer.address, "spender": other.address, "value": 7, "nonce": 0, "deadline": deadline}
    signed = Account.sign_typed_data(payer.private_key, domain, types, message)
    token.permit(payer, other, 7, deadline, signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"),
                 sender=other)
    assert token.allowance(payer, other) == 7


# ---------------------------------------------------------------- balances and reserves


def test_deposit_and_immediate_withdraw(token, admin, payer):
    token.mint(payer, 10 * ONE_SMT, sender=admin)
    tx = token.deposit(4 * ONE_SMT, sender=payer)
    [event] = tx.decode_logs(token.Deposited)
    assert (event.payer, event.amount, event.balance) == (payer.address, 4 * ONE_SMT, 4 * ONE_SMT)
    assert token.depositOf(payer) == 4 * ONE_SMT and token.balanceOf(payer) == 6 * ONE_SMT
    assert token.totalEscrowed() == token.balanceOf(token) == 4 * ONE_SMT
    tx = token.withdraw(ONE_SMT, sender=payer)  # unallocated: nobody's collateral, no notice
    [event] = tx.decode_logs(token.Withdrawn)
    assert (event.payer, event.amount, event.balance) == (payer.address, ONE_SMT, 3 * ONE_SMT)
    with ape.reverts(token.ShadowMeshTokenInsufficientDeposit, payer=payer.address, balance=3 * ONE_SMT,
                     needed=4 * ONE_SMT):
        token.withdraw(4 * ONE_SMT, sender=payer)
    with ape.reverts(token.ShadowMeshTokenZeroAmount):
        token.withdraw(0, sender=payer)


def test_deposit_reverts(token, admin, payer, relay):
    with ape.reverts(token.ShadowMeshTokenZeroAmount):
        token.deposit(0, sender=payer)
    with ape.reverts(token.ERC20InsufficientBalance, sender=payer.address, balance=0, needed=1):
        token.deposit(1, sender=payer)
    with ape.reverts(token.ERC20InsufficientBalance, sender=payer.address, balance=0, needed=1):
        token.depositToReserve(relay, 1, sender=payer)
    token.mint(payer, 2**96, sender=admin)
    with ape.reverts(token.ShadowMeshTokenEscrowOverflow, amount=2**96):
        token.depositToReserve(relay, 2**96, sender=payer)
    with ape.reverts(token.ShadowMeshTokenZeroAddress):
        token.depositToReserve(ZERO, 1, sender=payer)
    with ape.reverts(token.ShadowMeshTokenZeroAmount):
        token.depositToReserve(relay, 0, sender=payer)


def test_fund_reserve_from_unallocated_and_directly(token, admin, payer, relay, other):
    token.mint(payer, 10 * ONE_SMT, sender=admin)
    token.deposit(6 * ONE_SMT, sender=payer)
    tx = token.fundReserve(relay, 2 * ONE_SMT, sender=payer)
    [event] = tx.decode_logs(token.ReserveFunded)
    assert (event.payer, event.relay, event.amount, event.balance) == (payer.address, relay.address, 2 * ONE_SMT,
                                                                       2 * ONE_SMT)
    assert token.depositOf(payer) == 4 * ONE_SMT
    tx = token.depositToReserve(relay, ONE_SMT, sender=payer)
    assert tx.decode_logs(token.ReserveFunded)[0].balance == 3 * ONE_SMT
    token.fundReserve(other, ONE_SMT, sender=payer)
    assert tuple(token.reserveOf(payer, relay)) == (3 * ONE_SMT, 0, 0)
    assert token.guaranteedAmount(payer, relay) == 3 * ONE_SMT and token.guaranteedAmount(payer, other) == ONE_SMT
    assert token.totalEscrowed() == token.balanceOf(token) == 7 * ONE_SMT
    with ape.reverts(token.ShadowMeshTokenInsufficientDeposit, payer=payer.address, balance=3 * ONE_SMT,
                     needed=4 * ONE_SMT):
        token.fundReserve(relay, 4 * ONE_SMT, sender=payer)


def test_direct_transfer_to_token_refused(token, admin, payer):
    token.mint(payer, 5, sender=admin)
    with ape.reverts(token.ERC20InvalidReceiver, receiver=token.address):
        token.transfer(token, 5, sender=payer)
    with ape.reverts(token.ERC20InvalidReceiver, receiver=token.address):
        token.mint(token, 5, sender=admin)


def test_reserve_withdrawal_with_notice(token, funded_payer, relay, chain):
    payer = funded_payer
    tx = token.requestReserveWithdrawal(relay, 20 * ONE_SMT, sender=payer)
    [event] = tx.decode_logs(token.ReserveWithdrawalRequested)
    now = chain.provider.get_block(tx.block_number).timestamp
    assert (event.payer, event.relay, event.amount, event.unlockAt) == (
        payer.address, relay.address, 20 * ONE_SMT, now + WITHDRAWAL_DELAY)
    assert token.guaranteedAmount(payer, relay) == 30 * ONE_SMT
    with ape.reverts(token.ShadowMeshTokenWithdrawalLocked, payer=payer.address, relay=relay.address,
                     unlockAt=now + WITHDRAWAL_DELAY):
        token.withdrawReserve(relay, sender=payer)
    chain.pending_timestamp = now + WITHDRAWAL_DELAY
    tx = token.withdrawReserve(relay, sender=payer)
    [event] = tx.decode_logs(token.ReserveWithdrawn)
    assert (event.payer, event.relay, event.amount, event.balance) == (payer.address, relay.address, 20 * ONE_SMT,
                                                                       30 * ONE_SMT)
    assert token.balanceOf(payer) == 70 * ONE_SMT
    assert tuple(token.reserveOf(payer, relay)) == (30 * ONE_SMT, 0, 0)
    with ape.reverts(token.ShadowMeshTokenNoWithdrawalRequested, payer=payer.address, relay=relay.address):
        token.withdrawReserve(relay, sender=payer)


def test_reserve_withdrawal_request_reverts_and_cancel(token, funded_payer, relay):
    payer = funded_payer
    with ape.reverts(token.ShadowMeshTokenZeroAmount):
        token.requestReserveWithdrawal(relay, 0, sender=payer)
    with ape.reverts(token.ShadowMeshTokenInsufficientReserve, payer=payer.address, relay=relay.address,
                     balance=50 * ONE_SMT, needed=51 * ONE_SMT):
        token.requestReserveWithdrawal(relay, 51 * ONE_SMT, sender=payer)
    with ape.reverts(token.ShadowMeshTokenNoWithdrawalRequested, payer=payer.address, relay=relay.address):
        token.cancelReserveWithdrawal(relay, sender=payer)
    token.requestReserveWithdrawal(relay, ONE_SMT, sender=payer)
    tx = token.cancelReserveWithdrawal(relay, sender=payer)
    [event] = tx.decode_logs(token.ReserveWithdrawalCancelled)
    assert (event.payer, event.relay) == (payer.address, relay.address)
    assert tuple(token.reserveOf(payer, relay)) == (50 * ONE_SMT, 0, 0)


def test_relay_can_claim_during_notice_and_withdraw_pays_the_rest(token, funded_payer, relay, sign_receipt, chain):
    payer = funded_payer
    token.requestReserveWithdrawal(relay, 50 * ONE_SMT, sender=payer)
    assert token.guaranteedAmount(payer, relay) == 0  # the relay extends no more credit...
    receipt = sign_receipt(payer.private_key, payer, DEVICE, relay, 10 * 10**9, PRICE)  # 10 GB = 10 SMT
    token.claim(receipt, sender=relay)  # ...but claims what it is owed from the whole reserve before unlockAt
    chain.pending_timestamp += WITHDRAWAL_DELAY
    tx = token.withdrawReserve(relay, sender=payer)
    assert tx.decode_logs(token.ReserveWithdrawn)[0].amount == 40 * ONE_SMT
    assert token.balanceOf(relay) == 10 * ONE_SMT


# ---------------------------------------------------------------- signers and prices


def test_signer_binding_lifecycle(token, payer, hot, chain):
    assert token.isReceiptSigner(payer, payer, DEVICE) is True
    assert token.isReceiptSigner(payer, hot, DEVICE) is False
    assert token.signerAllowance(payer, hot, DEVICE) == 0
    tx = token.authorizeSigner(hot, DEVICE, 5 * ONE_SMT, DAY, sender=payer)
    [event] = tx.decode_logs(token.SignerAuthorized)
    assert (event.payer, event.signer, event.deviceId, event.capPerPeriod, event.period) == (
        payer.address, hot.address, DEVICE, 5 * ONE_SMT, DAY)
    assert token.isReceiptSigner(payer, hot, DEVICE) is True
    assert token.isReceiptSigner(payer, hot, b"\x01" * 32) is False  # bound to one device id only
    assert token.signerAllowance(payer, hot, DEVICE) == 5 * ONE_SMT
    # Terms a relay relies on can only go up: a lower cap or another period is refused.
    with ape.reverts(token.ShadowMeshTokenSignerTermsLowered, signer=hot.address, deviceId=DEVICE,
                     capPerPeriod=5 * ONE_SMT, period=DAY):
        token.authorizeSigner(hot, DEVICE, ONE_SMT, DAY, sender=payer)
    with ape.reverts(token.ShadowMeshTokenSignerTermsLowered):
        token.authorizeSigner(hot, DEVICE, 5 * ONE_SMT, 2 * DAY, sender=payer)
    token.authorizeSigner(hot, DEVICE, 6 * ONE_SMT, DAY, sender=payer)  # a raise is immediate
    tx = token.revokeSigner(hot, DEVICE, sender=payer)
    [event] = tx.decode_logs(token.SignerRevoked)
    now = chain.provider.get_block(tx.block_number).timestamp
    assert (event.payer, event.signer, event.deviceId, event.validUntil) == (
        payer.address, hot.address, DEVICE, now + WITHDRAWAL_DELAY)
    assert token.isReceiptSigner(payer, hot, DEVICE) is True  # until the notice has passed
    with ape.reverts(token.ShadowMeshTokenSignerRevoked, signer=hot.address, payer=payer.address, deviceId=DEVICE,
                     validUntil=now + WITHDRAWAL_DELAY):
        token.revokeSigner(hot, DEVICE, sender=payer)
    chain.pending_timestamp = now + WITHDRAWAL_DELAY
    chain.mine()
    assert token.isReceiptSigner(payer, hot, DEVICE) is False and token.signerAllowance(payer, hot, DEVICE) == 0
    with ape.reverts(token.ShadowMeshTokenSignerNotBound, signer=hot.address, deviceId=DEVICE):
        token.revokeSigner(hot, DEVICE, sender=payer)
    token.authorizeSigner(hot, DEVICE, ONE_SMT, 3_600, sender=payer)  # an ended binding starts afresh
    assert tuple(token.signerBinding(payer, hot, DEVICE))[:3] == (ONE_SMT, 0, 3_600)


def test_authorize_signer_reverts(token, payer, hot):
    with ape.reverts(token.ShadowMeshTokenZeroAddress):
        token.authorizeSigner(ZERO, DEVICE, 1, DAY, sender=payer)
    with ape.reverts(token.ShadowMeshTokenZeroAmount):
        token.authorizeSigner(hot, DEVICE, 0, DAY, sender=payer)
    with ape.reverts(token.ShadowMeshTokenCapOverflow, capPerPeriod=2**80):
        token.authorizeSigner(hot, DEVICE, 2**80, DAY, sender=payer)
    with ape.reverts(token.ShadowMeshTokenInvalidPeriod):
        token.authorizeSigner(hot, DEVICE, 1, 0, sender=payer)


def test_reauthorising_during_notice_cancels_the_revocation(token, payer, hot, chain):
    token.authorizeSigner(hot, DEVICE, ONE_SMT, DAY, sender=payer)
    token.revokeSigner(hot, DEVICE, sender=payer)
    token.authorizeSigner(hot, DEVICE, ONE_SMT, DAY, sender=payer)
    chain.pending_timestamp += WITHDRAWAL_DELAY + 1
    chain.mine()
    assert token.isReceiptSigner(payer, hot, DEVICE) is True and token.signerBinding(payer, hot, DEVICE).validUntil == 0


def test_relay_price(token, relay):
    tx = token.setRelayPrice(PRICE, sender=relay)
    [event] = tx.decode_logs(token.RelayPriceSet)
    assert (event.relay, event.pricePerByte) == (relay.address, PRICE)
    assert token.relayPrice(relay) == PRICE


def test_receipt_digest_matches_eth_account(token, payer, relay, chain):
    message = {"payer": payer.address, "deviceId": DEVICE, "relay": relay.address,
               "cumulativeBytes": 123, "pricePerByte": 456}
    assert token.receiptDigest(payer, DEVICE, relay, 123, 456) == receipt_digest(chain.chain_id, token.address, message)
    assert token.RECEIPT_TYPEHASH() == bytes.fromhex(
        __import__("eth_utils").keccak(text="Receipt(address payer,bytes32 deviceId,address relay,"
                                            "uint256 cumulativeBytes,uint256 pricePerByte)").hex())


# ---------------------------------------------------------------- claims


def test_claim_pays_delta_at_the_receipt_price(token, funded_payer, relay, sign_receipt):
    payer = funded_payer
    first = sign_receipt(payer.private_key, payer, DEVICE, relay, 1_000, 2 * PRICE)
    tx = token.claim(first, sender=relay)
    [event] = tx.decode_logs(token.Claimed)
    assert (event.relay, event.payer, event.deviceId, event.cumulativeBytes, event.amount) == (
        relay.address, payer.address, DEVICE, 1_000, 1_000 * 2 * PRICE)
    second = sign_receipt(payer.private_key, payer, DEVICE, relay, 1_500, PRICE // 2)  # a new session's price
    tx = token.claim(second, sender=relay)
    assert tx.decode_logs(token.Claimed)[0].amount == 500 * (PRICE // 2)
    assert token.paidBytes(payer, DEVICE, relay) == 1_500
    assert token.balanceOf(relay) == 2_000 * PRICE + 500 * (PRICE // 2)
    assert token.reserveOf(payer, relay).balance == 50 * ONE_SMT - token.balanceOf(relay)


def test_claim_by_bound_signer(token, funded_payer, relay, hot, sign_receipt):
    payer = funded_payer
    receipt = sign_receipt(hot.private_key, payer, DEVICE, relay, 10, PRICE)
    with ape.reverts(token.ShadowMeshTokenInvalidSigner, signer=hot.address, payer=payer.address):
        token.claim(receipt, sender=relay)
    token.authorizeSigner(hot, DEVICE, ONE_SMT, DAY, sender=payer)
    token.claim(receipt, sender=relay)
    assert token.paidBytes(payer, DEVICE, relay) == 10
    assert token.signerBinding(payer, hot, DEVICE).spent == 10 * PRICE
    assert token.signerAllowance(payer, hot, DEVICE) == ONE_SMT - 10 * PRICE


def test_claim_capped_by_reserve_then_resumes(token, admin, payer, relay, sign_receipt):
    token.mint(payer, 200 * PRICE, sender=admin)
    token.depositToReserve(relay, 10 * PRICE + 5, sender=payer)  # covers 10 whole bytes
    receipt = sign_receipt(payer.private_key, payer, DEVICE, relay, 25, PRICE)
    tx = token.claim(receipt, sender=relay)
    [event] = tx.decode_logs(token.Claimed)
    assert (event.cumulativeBytes, event.amount) == (10, 10 * PRICE)
    assert token.reserveOf(payer, relay).balance == 5
    with ape.reverts(token.ShadowMeshTokenReserveEmpty, payer=payer.address, relay=relay.address, price=PRICE):
        token.claim(receipt, sender=relay)
    token.depositToReserve(relay, 100 * PRICE, sender=payer)
    tx = token.claim(receipt, sender=relay)  # the same receipt pays the remaining 15 bytes
    assert tx.decode_logs(token.Claimed)[0].amount == 15 * PRICE
    assert token.balanceOf(relay) == 25 * PRICE


def test_a_relay_claims_only_its_own_reserve(token, admin, payer, relay, attacker, sign_receipt):
    """The payer's reserve for `relay` pays `relay` only: another relay with a receipt made out to itself finds
    no reserve, and its receipts never touch `relay`'s."""
    token.mint(payer, 10 * ONE_SMT, sender=admin)
    token.depositToReserve(relay, 5 * ONE_SMT, sender=payer)
    token.deposit(5 * ONE_SMT, sender=payer)  # unallocated: no relay can claim it
    own = sign_receipt(payer.private_key, payer, DEVICE, attacker, 10**6, PRICE)
    with ape.reverts(token.ShadowMeshTokenReserveEmpty, payer=payer.address, relay=attacker.address, price=PRICE):
        token.claim(own, sender=attacker)
    assert token.reserveOf(payer, relay).balance == 5 * ONE_SMT and token.depositOf(payer) == 5 * ONE_SMT


def test_no_double_payment_or_replay(token, funded_payer, relay, attacker, sign_receipt, project, admin):
    payer = funded_payer
    receipt = sign_receipt(payer.private_key, payer, DEVICE, relay, 100, PRICE)
    token.claim(receipt, sender=relay)
    with ape.reverts(token.ShadowMeshTokenStaleReceipt, cumulativeBytes=100, paidBytes=100):
        token.claim(receipt, sender=relay)  # the same receipt again
    lower = sign_receipt(payer.private_key, payer, DEVICE, relay, 99, PRICE)
    with ape.reverts(token.ShadowMeshTokenStaleReceipt, cumulativeBytes=99, paidBytes=100):
        token.claim(lower, sender=relay)
    # Another relay submitting a receipt made out to `relay`: the digest binds the relay, signer mismatches.
    with ape.reverts(token.ShadowMeshTokenInvalidSigner):
        token.claim(receipt, sender=attacker)
    # Altered amount or price: the recovered signer is some other address.
    for forged in ((receipt[0], receipt[1], 10**6, *receipt[3:]), (*receipt[:3], PRICE * 1000, *receipt[4:])):
        with ape.reverts(token.ShadowMeshTokenInvalidSigner):
            token.claim(forged, sender=relay)
    # Another contract (same chain): a receipt signed for a second token deployment does not pay here.
    other_token = admin.deploy(project.ShadowMeshToken, admin, WITHDRAWAL_DELAY)
    assert other_token.receiptDigest(payer, DEVICE, relay, 200, PRICE) != token.receiptDigest(
        payer, DEVICE, relay, 200, PRICE)
    # Another chain: the digest commits to the chain id (domain), so a different id gives another signer.
    wrong_chain = Account.sign_typed_data(
        payer.private_key,
        {"name": "ShadowMesh", "version": "1", "chainId": 1, "verifyingContract": str(token.address)},
        RECEIPT_TYPES,
        {"payer": payer.address, "deviceId": DEVICE, "relay": relay.address, "cumulativeBytes": 200,
         "pricePerByte": PRICE},
    )
    with ape.reverts(token.ShadowMeshTokenInvalidSigner):
        token.claim((payer.address, DEVICE, 200, PRICE, *compact(wrong_chain.v, wrong_chain.r, wrong_chain.s)),
                    sender=relay)
    assert token.balanceOf(relay) == 100 * PRICE


def test_claim_zero_price_reverts(token, funded_payer, relay, sign_receipt):
    payer = funded_payer
    free = sign_receipt(payer.private_key, payer, DEVICE, relay, 10, 0)
    with ape.reverts(token.ShadowMeshTokenZeroPrice, relay=relay.address, payer=payer.address):
        token.claim(free, sender=relay)


def test_claim_batch(token, admin, accounts, relay, sign_receipt):
    payers = [accounts[i] for i in range(10, 13)]
    receipts = []
    for n, p in enumerate(payers):
        token.mint(p, ONE_SMT, sender=admin)
        token.depositToReserve(relay, ONE_SMT, sender=p)
        receipts.append(sign_receipt(p.private_key, p, DEVICE, relay, 1_000 * (n + 1), PRICE))
    tx = token.claimBatch(receipts, sender=relay)
    events = tx.decode_logs(token.Claimed)
    assert [(e.payer, e.amount) for e in events] == [(p.address, 1_000 * (n + 1) * PRICE) for n, p in enumerate(payers)]
    assert len(tx.decode_logs(token.Transfer)) == 1  # one transfer for the whole batch
    assert token.balanceOf(relay) == 6_000 * PRICE
    with ape.reverts(token.ShadowMeshTokenEmptyBatch):
        token.claimBatch([], sender=relay)
    tx = token.claimBatch(receipts, sender=relay)  # all stale now: skipped, nothing paid, no revert
    assert [e.reason for e in tx.decode_logs(token.ClaimSkipped)] == [STALE] * 3
    assert tx.decode_logs(token.Claimed) == [] and tx.decode_logs(token.Transfer) == []


# ---------------------------------------------------------------- bonus emission


def test_reward_relay_node(token, admin, relay, attacker):
    with ape.reverts(token.ShadowMeshTokenZeroAmount):
        token.rewardRelayNode(relay, 1_000, sender=admin)  # rate 0: bonuses disabled
    tx = token.setRewardRate(3, sender=admin)
    [event] = tx.decode_logs(token.RewardRateSet)
    assert (event.previousRate, event.newRate) == (0, 3) and token.rewardRatePerByte() == 3
    tx = token.rewardRelayNode(relay, 1_000, sender=admin)
    [event] = tx.decode_logs(token.RelayRewarded)
    assert (event.relay, event.dataTransferred, event.amount) == (relay.address, 1_000, 3_000)
    assert token.balanceOf(relay) == 3_000
    with ape.reverts(token.ShadowMeshTokenZeroAddress):
        token.rewardRelayNode(ZERO, 1, sender=admin)
    with ape.reverts(token.AccessControlUnauthorizedAccount, account=attacker.address,
                     neededRole=token.REWARDER_ROLE()):
        token.rewardRelayNode(attacker, 1, sender=attacker)
    with ape.reverts(token.AccessControlUnauthorizedAccount, account=attacker.address,
                     neededRole=token.DEFAULT_ADMIN_ROLE()):
        token.setRewardRate(1, sender=attacker)
