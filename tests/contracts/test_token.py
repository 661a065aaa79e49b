"""ShadowMeshToken: ERC-20 basics, escrow, receipts, claims, bonus: every function, revert and event."""

from __future__ import annotations

import ape
from eth_account import Account

from .conftest import ONE_SMT, WITHDRAWAL_DELAY, compact, receipt_digest

DEVICE = b"\xd1" * 32
PRICE = 10**9  # SMT base units per byte (1 SMT per GB)
ZERO = "0x" + "00" * 20


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


# ---------------------------------------------------------------- escrow


def test_deposit(token, admin, payer):
    token.mint(payer, 10 * ONE_SMT, sender=admin)
    tx = token.deposit(4 * ONE_SMT, sender=payer)
    [event] = tx.decode_logs(token.Deposited)
    assert (event.payer, event.amount, event.balance) == (payer.address, 4 * ONE_SMT, 4 * ONE_SMT)
    assert token.escrowOf(payer).balance == 4 * ONE_SMT
    assert token.balanceOf(payer) == 6 * ONE_SMT
    assert token.totalEscrowed() == token.balanceOf(token) == 4 * ONE_SMT


def test_deposit_reverts(token, admin, payer):
    with ape.reverts(token.ShadowMeshTokenZeroAmount):
        token.deposit(0, sender=payer)
    with ape.reverts(token.ERC20InsufficientBalance, sender=payer.address, balance=0, needed=1):
        token.deposit(1, sender=payer)
    token.mint(payer, 2**96, sender=admin)
    with ape.reverts(token.ShadowMeshTokenEscrowOverflow, amount=2**96):
        token.deposit(2**96, sender=payer)


def test_direct_transfer_to_token_refused(token, admin, payer):
    token.mint(payer, 5, sender=admin)
    with ape.reverts(token.ERC20InvalidReceiver, receiver=token.address):
        token.transfer(token, 5, sender=payer)
    with ape.reverts(token.ERC20InvalidReceiver, receiver=token.address):
        token.mint(token, 5, sender=admin)


def test_withdrawal_with_notice(token, funded_payer, chain):
    payer = funded_payer
    tx = token.requestWithdrawal(20 * ONE_SMT, sender=payer)
    [event] = tx.decode_logs(token.WithdrawalRequested)
    now = chain.provider.get_block(tx.block_number).timestamp
    assert (event.payer, event.amount, event.unlockAt) == (payer.address, 20 * ONE_SMT, now + WITHDRAWAL_DELAY)
    with ape.reverts(token.ShadowMeshTokenWithdrawalLocked, payer=payer.address, unlockAt=now + WITHDRAWAL_DELAY):
        token.withdraw(sender=payer)
    chain.pending_timestamp = now + WITHDRAWAL_DELAY
    tx = token.withdraw(sender=payer)
    [event] = tx.decode_logs(token.Withdrawn)
    assert (event.payer, event.amount, event.balance) == (payer.address, 20 * ONE_SMT, 30 * ONE_SMT)
    assert token.balanceOf(payer) == 70 * ONE_SMT
    assert tuple(token.escrowOf(payer)) == (30 * ONE_SMT, 0, 0)
    with ape.reverts(token.ShadowMeshTokenNoWithdrawalRequested, payer=payer.address):
        token.withdraw(sender=payer)


def test_withdrawal_request_reverts_and_cancel(token, funded_payer):
    payer = funded_payer
    with ape.reverts(token.ShadowMeshTokenZeroAmount):
        token.requestWithdrawal(0, sender=payer)
    with ape.reverts(token.ShadowMeshTokenInsufficientEscrow, payer=payer.address, balance=50 * ONE_SMT,
                     needed=51 * ONE_SMT):
        token.requestWithdrawal(51 * ONE_SMT, sender=payer)
    with ape.reverts(token.ShadowMeshTokenNoWithdrawalRequested, payer=payer.address):
        token.cancelWithdrawal(sender=payer)
    token.requestWithdrawal(ONE_SMT, sender=payer)
    tx = token.cancelWithdrawal(sender=payer)
    assert tx.decode_logs(token.WithdrawalCancelled)[0].payer == payer.address
    assert tuple(token.escrowOf(payer)) == (50 * ONE_SMT, 0, 0)


def test_relay_can_claim_during_notice_and_withdraw_pays_the_rest(token, funded_payer, relay, sign_receipt, chain):
    payer = funded_payer
    token.setRelayPrice(PRICE, sender=relay)
    token.requestWithdrawal(50 * ONE_SMT, sender=payer)
    receipt = sign_receipt(payer.private_key, payer, DEVICE, relay, 10 * 10**9, PRICE)  # 10 GB = 10 SMT
    token.claim(receipt, sender=relay)
    chain.pending_timestamp += WITHDRAWAL_DELAY
    tx = token.withdraw(sender=payer)
    assert tx.decode_logs(token.Withdrawn)[0].amount == 40 * ONE_SMT
    assert token.balanceOf(relay) == 10 * ONE_SMT


# ---------------------------------------------------------------- signers and prices


def test_receipt_signer_management(token, payer, other):
    assert token.isReceiptSigner(payer, payer) is True
    assert token.isReceiptSigner(payer, other) is False
    tx = token.setReceiptSigner(other, True, sender=payer)
    [event] = tx.decode_logs(token.ReceiptSignerSet)
    assert (event.payer, event.signer, event.authorized) == (payer.address, other.address, 1)
    assert token.isReceiptSigner(payer, other) is True
    token.setReceiptSigner(other, False, sender=payer)
    assert token.isReceiptSigner(payer, other) is False
    with ape.reverts(token.ShadowMeshTokenZeroAddress):
        token.setReceiptSigner(ZERO, True, sender=payer)


def test_relay_price(token, relay):
    tx = token.setRelayPrice(PRICE, sender=relay)
    [event] = tx.decode_logs(token.RelayPriceSet)
    assert (event.relay, event.pricePerByte) == (relay.address, PRICE)
    assert token.relayPrice(relay) == PRICE


def test_receipt_digest_matches_eth_account(token, payer, relay, chain):
    message = {"payer": payer.address, "deviceId": DEVICE, "relay": relay.address,
               "cumulativeBytes": 123, "maxPricePerByte": 456}
    assert token.receiptDigest(payer, DEVICE, relay, 123, 456) == receipt_digest(chain.chain_id, token.address, message)
    assert token.RECEIPT_TYPEHASH() == bytes.fromhex(
        __import__("eth_utils").keccak(text="Receipt(address payer,bytes32 deviceId,address relay,"
                                            "uint256 cumulativeBytes,uint256 maxPricePerByte)").hex())


# ---------------------------------------------------------------- claims


def test_claim_pays_delta_at_min_price(token, funded_payer, relay, sign_receipt):
    payer = funded_payer
    token.setRelayPrice(PRICE, sender=relay)
    first = sign_receipt(payer.private_key, payer, DEVICE, relay, 1_000, 2 * PRICE)
    tx = token.claim(first, sender=relay)
    [event] = tx.decode_logs(token.Claimed)
    assert (event.relay, event.payer, event.deviceId, event.cumulativeBytes, event.amount) == (
        relay.address, payer.address, DEVICE, 1_000, 1_000 * PRICE)
    second = sign_receipt(payer.private_key, payer, DEVICE, relay, 1_500, PRICE // 2)  # device accepts less now
    tx = token.claim(second, sender=relay)
    assert tx.decode_logs(token.Claimed)[0].amount == 500 * (PRICE // 2)
    assert token.paidBytes(payer, DEVICE, relay) == 1_500
    assert token.balanceOf(relay) == 1_000 * PRICE + 500 * (PRICE // 2)
    assert token.escrowOf(payer).balance == 50 * ONE_SMT - token.balanceOf(relay)


def test_claim_by_designated_signer(token, funded_payer, relay, other, sign_receipt):
    payer = funded_payer
    token.setRelayPrice(PRICE, sender=relay)
    receipt = sign_receipt(other.private_key, payer, DEVICE, relay, 10, PRICE)
    with ape.reverts(token.ShadowMeshTokenInvalidSigner, signer=other.address, payer=payer.address):
        token.claim(receipt, sender=relay)
    token.setReceiptSigner(other, True, sender=payer)
    token.claim(receipt, sender=relay)
    assert token.paidBytes(payer, DEVICE, relay) == 10


def test_claim_capped_by_escrow_then_resumes(token, admin, payer, relay, sign_receipt):
    token.mint(payer, 10 * PRICE + 5, sender=admin)
    token.deposit(10 * PRICE + 5, sender=payer)  # covers 10 whole bytes
    token.setRelayPrice(PRICE, sender=relay)
    receipt = sign_receipt(payer.private_key, payer, DEVICE, relay, 25, PRICE)
    tx = token.claim(receipt, sender=relay)
    [event] = tx.decode_logs(token.Claimed)
    assert (event.cumulativeBytes, event.amount) == (10, 10 * PRICE)
    assert token.escrowOf(payer).balance == 5
    with ape.reverts(token.ShadowMeshTokenEscrowEmpty, payer=payer.address, price=PRICE):
        token.claim(receipt, sender=relay)
    token.mint(payer, 100 * PRICE, sender=admin)
    token.deposit(100 * PRICE, sender=payer)
    tx = token.claim(receipt, sender=relay)  # the same receipt pays the remaining 15 bytes
    assert tx.decode_logs(token.Claimed)[0].amount == 15 * PRICE
    assert token.balanceOf(relay) == 25 * PRICE


def test_no_double_payment_or_replay(token, funded_payer, relay, attacker, sign_receipt, project, admin):
    payer = funded_payer
    token.setRelayPrice(PRICE, sender=relay)
    token.setRelayPrice(PRICE, sender=attacker)
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
    # Altered amount: the recovered signer is some other address.
    forged = (receipt[0], receipt[1], 10**6, *receipt[3:])
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
        {"Receipt": [{"name": "payer", "type": "address"}, {"name": "deviceId", "type": "bytes32"},
                     {"name": "relay", "type": "address"}, {"name": "cumulativeBytes", "type": "uint256"},
                     {"name": "maxPricePerByte", "type": "uint256"}]},
        {"payer": payer.address, "deviceId": DEVICE, "relay": relay.address, "cumulativeBytes": 200,
         "maxPricePerByte": PRICE},
    )
    with ape.reverts(token.ShadowMeshTokenInvalidSigner):
        token.claim((payer.address, DEVICE, 200, PRICE, *compact(wrong_chain.v, wrong_chain.r, wrong_chain.s)),
                    sender=relay)
    assert token.balanceOf(relay) == 100 * PRICE


def test_claim_price_reverts(token, funded_payer, relay, sign_receipt):
    payer = funded_payer
    receipt = sign_receipt(payer.private_key, payer, DEVICE, relay, 10, PRICE)
    with ape.reverts(token.ShadowMeshTokenRelayPriceNotSet, relay=relay.address):
        token.claim(receipt, sender=relay)
    token.setRelayPrice(PRICE, sender=relay)
    free = sign_receipt(payer.private_key, payer, DEVICE, relay, 10, 0)
    with ape.reverts(token.ShadowMeshTokenZeroPrice, relay=relay.address, payer=payer.address):
        token.claim(free, sender=relay)


def test_claim_batch(token, admin, accounts, relay, sign_receipt):
    token.setRelayPrice(PRICE, sender=relay)
    payers = [accounts[i] for i in range(10, 13)]
    receipts = []
    for n, p in enumerate(payers):
        token.mint(p, ONE_SMT, sender=admin)
        token.deposit(ONE_SMT, sender=p)
        receipts.append(sign_receipt(p.private_key, p, DEVICE, relay, 1_000 * (n + 1), PRICE))
    tx = token.claimBatch(receipts, sender=relay)
    events = tx.decode_logs(token.Claimed)
    assert [(e.payer, e.amount) for e in events] == [(p.address, 1_000 * (n + 1) * PRICE) for n, p in enumerate(payers)]
    assert len(tx.decode_logs(token.Transfer)) == 1  # one transfer for the whole batch
    assert token.balanceOf(relay) == 6_000 * PRICE
    with ape.reverts(token.ShadowMeshTokenEmptyBatch):
        token.claimBatch([], sender=relay)
    with ape.reverts(token.ShadowMeshTokenStaleReceipt):  # one stale receipt reverts the whole batch
        token.claimBatch(receipts, sender=relay)


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
