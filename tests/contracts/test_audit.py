"""Regression tests of the contract review (docs/contracts.md "Audit notes").

Two kinds: tests of the fixes (each failed before its fix: a missing custom error, or the wrong one) and tests
that pin behaviour the notes call "by design" (status transitions, replay, malleability, permit/receipt
separation, duplicate entries in a batch, a rejecting treasury), so a change to it is noticed.
"""

from __future__ import annotations

import ape
import pytest
from eth_account import Account
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from .conftest import DAY, ONE_SMT, compact, new_device_key, proof_for

OPEN, APPROVAL = 0, 1
PENDING, ACTIVE, SUSPENDED, REVOKED = 1, 2, 3, 4
DEVICE = b"\xa7" * 32
PRICE = 10**9
ZERO = "0x" + "00" * 20
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
UINT96_MAX = 2**96 - 1


# ---------------------------------------------------------------- DeviceRegistry


def test_network_name_is_capped(registry, other):
    """Fix: an unbounded name was emitted into a log every client downloads during a directory sync."""
    assert registry.MAX_NAME_LENGTH() == 64
    tx = registry.createNetwork("n" * 64, OPEN, DAY, sender=other)
    assert tx.decode_logs(registry.NetworkCreated)[0].name == "n" * 64
    with ape.reverts(registry.DeviceRegistryNameTooLong, length=65, max=64):
        registry.createNetwork("n" * 65, OPEN, DAY, sender=other)
    with ape.reverts(registry.DeviceRegistryNameTooLong, length=66, max=64):  # bytes, not characters
        registry.createNetwork("é" * 33, OPEN, DAY, sender=other)


def test_owner_cannot_unsuspend_by_renewing_or_updating(registry, open_network, owner, netadmin, create_device):
    device_id, _, _ = create_device()
    registry.suspendDevice(device_id, sender=netadmin)
    registry.renewDevice(device_id, sender=owner)
    registry.updateEndpoint(device_id, "wss://elsewhere.example/", True, sender=owner)
    assert registry.devices(device_id).status == SUSPENDED
    assert registry.verifyDevice(device_id) is False
    registry.approveDevice(device_id, sender=netadmin)  # only the admin re-activates
    assert registry.verifyDevice(device_id) is True


def test_pending_device_stays_pending_when_renewed(registry, approval_network, owner, create_device):
    device_id, _, _ = create_device(network_id=approval_network)
    registry.renewDevice(device_id, sender=owner)
    assert registry.devices(device_id).status == PENDING and registry.verifyDevice(device_id) is False


def test_revoked_is_final_for_every_transition(registry, approval_network, owner, netadmin, create_device):
    device_id, _, _ = create_device(network_id=approval_network)
    registry.revokeDevice(device_id, sender=netadmin)
    for call in (registry.approveDevice, registry.suspendDevice, registry.revokeDevice):
        with ape.reverts(registry.DeviceRegistryInvalidStatus, deviceId=device_id, status=REVOKED):
            call(device_id, sender=netadmin)
    with ape.reverts(registry.DeviceRegistryInvalidStatus, deviceId=device_id, status=REVOKED):
        registry.renewDevice(device_id, sender=owner)


def test_revoked_key_rejoins_an_approval_network_only_as_pending(
    registry, approval_network, owner, other, netadmin, create_device
):
    key = new_device_key()
    first, _, _ = create_device(network_id=approval_network, key=key)
    registry.approveDevice(first, sender=netadmin)
    registry.revokeDevice(first, sender=netadmin)
    again, _, _ = create_device(network_id=approval_network, key=key, sender=other)  # another owner account
    assert again != first
    assert registry.devices(again).status == PENDING and registry.verifyDevice(again) is False


def test_front_run_registration_gets_a_useless_record(registry, open_network, owner, attacker, create_device):
    """The proof message includes the owner: a proof copied from the mempool does not verify for the copier,
    and the copier's record (another id) does not stop the real owner."""
    key = new_device_key()
    public_key = bytes(key.verify_key)
    proof = proof_for(registry, key, open_network, owner.address)
    copied = registry.registerDevice(open_network, public_key, False, "", proof, sender=attacker)
    copied_id = copied.decode_logs(registry.DeviceRegistered)[0].deviceId
    with pytest.raises(BadSignatureError):
        VerifyKey(public_key).verify(bytes(registry.proofMessage(open_network, attacker.address, public_key)), proof)
    mine = registry.registerDevice(open_network, public_key, False, "", proof, sender=owner)
    mine_id = mine.decode_logs(registry.DeviceRegistered)[0].deviceId
    assert mine_id != copied_id and registry.devices(mine_id).owner == owner.address
    VerifyKey(public_key).verify(bytes(registry.proofMessage(open_network, owner.address, public_key)), proof)


def test_rejecting_treasury_keeps_the_fees(registry, token, admin, treasury, owner, create_device):
    """withdrawFees pushes ether; a treasury that refuses it makes the call revert, and nothing is lost."""
    registry.setRegistrationFee(10**15, sender=admin)
    create_device(value=10**15)
    registry.setTreasury(token, sender=admin)  # a contract without receive(): refuses ether
    with ape.reverts(registry.FailedCall):
        registry.withdrawFees(sender=admin)
    assert registry.balance == 10**15
    registry.setTreasury(treasury, sender=admin)
    before = treasury.balance
    registry.withdrawFees(sender=admin)
    assert treasury.balance == before + 10**15 and registry.balance == 0


# ---------------------------------------------------------------- ShadowMeshToken


@pytest.mark.parametrize("delay", [0, 365 * DAY + 1, 2**64 - 1])
def test_withdrawal_delay_is_bounded(project, admin, delay):
    """Fix: a delay near 2**64 made `now + delay` overflow in requestWithdrawal, locking every escrow."""
    with ape.reverts(project.ShadowMeshToken.ShadowMeshTokenInvalidDelay, delay=delay, max=365 * DAY):
        admin.deploy(project.ShadowMeshToken, admin, delay)


def test_longest_withdrawal_delay_still_works(project, admin, payer, relay, chain):
    token = admin.deploy(project.ShadowMeshToken, admin, 365 * DAY)
    token.mint(payer, 10, sender=admin)
    token.depositToReserve(relay, 10, sender=payer)
    tx = token.requestReserveWithdrawal(relay, 10, sender=payer)
    now = chain.provider.get_block(tx.block_number).timestamp
    assert token.reserveOf(payer, relay).unlockAt == now + 365 * DAY
    tx = token.authorizeSigner(payer, DEVICE, 1, 1, sender=relay)  # signer revocation uses the same notice
    tx = token.revokeSigner(payer, DEVICE, sender=relay)
    assert token.signerBinding(relay, payer, DEVICE).validUntil == chain.provider.get_block(
        tx.block_number).timestamp + 365 * DAY


def test_invalid_signature_recovering_to_zero_is_refused(token, funded_payer, relay):
    """Fix: ecrecover returns 0 for an invalid signature; with payer 0 that passed the signer check (the
    claim then failed later, on the empty escrow). It is now refused as a signer outright."""
    garbage = (ZERO, DEVICE, 10, PRICE, bytes(32), bytes(32))
    with ape.reverts(token.ShadowMeshTokenInvalidSigner, signer=ZERO, payer=ZERO):
        token.claim(garbage, sender=relay)
    with ape.reverts(token.ShadowMeshTokenInvalidSigner, signer=ZERO, payer=funded_payer.address):
        token.claim((funded_payer.address, DEVICE, 10, PRICE, bytes(32), bytes(32)), sender=relay)


def test_malleated_signatures_are_refused_and_replay_is_by_content(token, funded_payer, relay, sign_receipt):
    """EIP-2098 keeps s in 255 bits: the high-s twin (r, n - s, flipped v) has s >= 2**255 (for all but a
    2**-128 share of signatures) and cannot be written in compact form; flipping only v recovers someone else.
    Either way a paid receipt stays paid: replay protection is by content (paidBytes), not by signature."""
    payer = funded_payer
    receipt = sign_receipt(payer.private_key, payer, DEVICE, relay, 1_000, PRICE)
    r, vs = int.from_bytes(receipt[4], "big"), int.from_bytes(receipt[5], "big")
    v, s = 27 + (vs >> 255), vs & (2**255 - 1)
    assert SECP256K1_N - s >= 2**255
    high_s = (*receipt[:4], r.to_bytes(32, "big"), (SECP256K1_N - s).to_bytes(32, "big"))
    flipped_v = (*receipt[:4], *compact(55 - v, r, s))
    for forged in (high_s, flipped_v):
        with ape.reverts(token.ShadowMeshTokenInvalidSigner):
            token.claim(forged, sender=relay)
    token.claim(receipt, sender=relay)
    with ape.reverts(token.ShadowMeshTokenStaleReceipt, cumulativeBytes=1_000, paidBytes=1_000):
        token.claim(receipt, sender=relay)
    assert token.balanceOf(relay) == 1_000 * PRICE


def test_duplicate_channel_entries_in_one_batch(token, funded_payer, relay, sign_receipt):
    payer = funded_payer
    r100 = sign_receipt(payer.private_key, payer, DEVICE, relay, 100, PRICE)
    r150 = sign_receipt(payer.private_key, payer, DEVICE, relay, 150, PRICE)
    tx = token.claimBatch([r100, r100], sender=relay)  # the second is stale after the first: skipped
    assert [e.amount for e in tx.decode_logs(token.Claimed)] == [100 * PRICE]
    assert [e.reason for e in tx.decode_logs(token.ClaimSkipped)] == [3]  # StaleReceipt
    tx = token.claimBatch([r150, r150], sender=relay)
    assert [e.amount for e in tx.decode_logs(token.Claimed)] == [50 * PRICE]
    assert token.paidBytes(payer, DEVICE, relay) == 150
    assert token.balanceOf(relay) == 150 * PRICE
    assert token.reserveOf(payer, relay).balance == 50 * ONE_SMT - 150 * PRICE


def test_all_skipped_batch_transfers_nothing(token, funded_payer, relay):
    """A batch where nothing pays returns 0 and makes no ERC-20 transfer (no zero-value Transfer event)."""
    garbage = (funded_payer.address, DEVICE, 10, PRICE, bytes(32), bytes(32))
    tx = token.claimBatch([garbage], sender=relay)
    assert tx.decode_logs(token.Transfer) == [] and len(tx.decode_logs(token.ClaimSkipped)) == 1


def _permit_types():
    return {"Permit": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"},
                       {"name": "value", "type": "uint256"}, {"name": "nonce", "type": "uint256"},
                       {"name": "deadline", "type": "uint256"}]}


def test_permit_and_receipt_signatures_never_cross(token, funded_payer, relay, other, sign_receipt, chain):
    """Same EIP-712 domain, and field values chosen so both structs encode to the same five words: only the
    type hash tells them apart, and it does."""
    payer = funded_payer
    deadline = chain.pending_timestamp + 3_600
    padded_spender = bytes(12) + bytes.fromhex(other.address[2:])
    domain = {"name": "ShadowMesh", "version": "1", "chainId": chain.chain_id, "verifyingContract": str(token.address)}
    # A permit signature submitted as a receipt (payer=owner, deviceId=spender, relay=value, bytes=nonce, max=deadline).
    permit = Account.sign_typed_data(payer.private_key, domain, _permit_types(), {
        "owner": payer.address, "spender": other.address, "value": int(relay.address, 16), "nonce": 1,
        "deadline": deadline})
    with ape.reverts(token.ShadowMeshTokenInvalidSigner):
        token.claim((payer.address, padded_spender, 1, deadline, *compact(permit.v, permit.r, permit.s)),
                    sender=relay)
    # A receipt signature submitted as a permit (nonce 0 = the payer's next permit nonce).
    receipt = sign_receipt(payer.private_key, payer, padded_spender, relay, 0, deadline)
    r, vs = int.from_bytes(receipt[4], "big"), int.from_bytes(receipt[5], "big")
    with ape.reverts(token.ERC2612InvalidSigner):
        token.permit(payer, other, int(relay.address, 16), deadline, 27 + (vs >> 255), r.to_bytes(32, "big"),
                     (vs & (2**255 - 1)).to_bytes(32, "big"), sender=other)
    assert token.allowance(payer, other) == 0 and token.paidBytes(payer, padded_spender, relay) == 0


def test_reserve_never_truncates_above_uint96(token, admin, payer, relay, other):
    """A reserve is a uint96: funding that would pass 2**96 - 1 reverts instead of being cut. The unallocated
    balance is a uint256 (bounded by the supply)."""
    token.mint(payer, 2**100, sender=admin)  # the supply itself may exceed 2**96
    token.depositToReserve(relay, UINT96_MAX - 1, sender=payer)
    token.deposit(2**97, sender=payer)
    token.fundReserve(relay, 1, sender=payer)
    assert token.reserveOf(payer, relay).balance == UINT96_MAX
    with ape.reverts(token.ShadowMeshTokenEscrowOverflow, amount=1):
        token.fundReserve(relay, 1, sender=payer)
    assert token.totalEscrowed() == UINT96_MAX + 2**97 - 1
    token.transfer(other, 2**98, sender=payer)
    assert token.balanceOf(other) == 2**98
    with ape.reverts(token.ShadowMeshTokenInsufficientReserve, payer=payer.address, relay=relay.address,
                     balance=UINT96_MAX, needed=2**96):
        token.requestReserveWithdrawal(relay, 2**96, sender=payer)


def test_signer_cap_resets_per_fixed_period(token, funded_payer, relay, accounts, sign_receipt, chain):
    """Periods are fixed windows [n * period, (n + 1) * period): at most the cap per window, so at most twice
    the cap across a window boundary (documented)."""
    payer, hot = funded_payer, accounts[8]
    token.authorizeSigner(hot, DEVICE, 10 * PRICE, DAY, sender=payer)
    start = (chain.pending_timestamp // DAY + 1) * DAY
    chain.pending_timestamp = start + DAY - 5
    receipt = sign_receipt(hot.private_key, payer, DEVICE, relay, 10**9, PRICE)
    assert token.claim(receipt, sender=relay).decode_logs(token.Claimed)[0].amount == 10 * PRICE
    chain.pending_timestamp = start + DAY
    assert token.claim(receipt, sender=relay).decode_logs(token.Claimed)[0].amount == 10 * PRICE
    binding = token.signerBinding(payer, hot, DEVICE)
    assert (binding.spent, binding.epoch) == (10 * PRICE, start // DAY + 1)
