"""DeviceRegistry: every external function, revert (by custom error) and event (decoded)."""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak, to_bytes
from nacl.signing import VerifyKey

from .conftest import DAY, network_id_of, new_device_key, proof_for

ZERO = "0x" + "00" * 20

OPEN, APPROVAL = 0, 1
NONE, PENDING, ACTIVE, SUSPENDED, REVOKED = range(5)


def ip(value: int) -> str:
    return ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))


# ---------------------------------------------------------------- networks


def test_create_network_assigns_sequential_ids_and_emits(registry, other):
    first = registry.networkCount()
    tx = registry.createNetwork("lab", APPROVAL, 7 * DAY, sender=other)
    [event] = tx.decode_logs(registry.NetworkCreated)
    assert (event.networkId, event.admin, event.policy, event.registrationPeriod, event.name) == (
        first + 1, other.address, APPROVAL, 7 * DAY, "lab")
    net = registry.networks(first + 1)
    assert (net.admin, net.nextOverlay, net.policy, net.registrationPeriod, net.closed) == (
        other.address, 0x64400001, APPROVAL, 7 * DAY, False)
    assert network_id_of(registry, registry.createNetwork("lab2", OPEN, 1, sender=other)) == first + 2
    assert registry.networkCount() == first + 2


def test_create_network_rejects_zero_period(registry, other):
    with ape.reverts(registry.DeviceRegistryInvalidPeriod, period=0):
        registry.createNetwork("x", OPEN, 0, sender=other)


def test_transfer_network_admin_is_two_step(registry, open_network, netadmin, other, attacker, create_device):
    tx = registry.transferNetworkAdmin(open_network, other, sender=netadmin)
    [event] = tx.decode_logs(registry.NetworkAdminTransferStarted)
    assert (event.networkId, event.previousAdmin, event.newAdmin) == (open_network, netadmin.address, other.address)
    assert registry.networks(open_network).admin == netadmin.address  # nothing changes until accepted
    assert registry.pendingNetworkAdmin(open_network) == other.address
    with ape.reverts(registry.DeviceRegistryNotPendingAdmin, networkId=open_network, account=attacker.address):
        registry.acceptNetworkAdmin(open_network, sender=attacker)
    tx = registry.acceptNetworkAdmin(open_network, sender=other)
    [event] = tx.decode_logs(registry.NetworkAdminTransferred)
    assert (event.networkId, event.previousAdmin, event.newAdmin) == (open_network, netadmin.address, other.address)
    assert registry.networks(open_network).admin == other.address
    assert registry.pendingNetworkAdmin(open_network) == ZERO
    device_id, _, _ = create_device()
    with ape.reverts(registry.DeviceRegistryNotNetworkAdmin, networkId=open_network, account=netadmin.address):
        registry.suspendDevice(device_id, sender=netadmin)
    registry.suspendDevice(device_id, sender=other)


def test_a_mistyped_admin_transfer_loses_nothing(registry, open_network, netadmin, other):
    typo = "0x000000000000000000000000000000000000dEaD"
    registry.transferNetworkAdmin(open_network, typo, sender=netadmin)
    registry.transferNetworkAdmin(open_network, other, sender=netadmin)  # replaces the offer
    registry.transferNetworkAdmin(open_network, ZERO, sender=netadmin)  # or withdraws it
    with ape.reverts(registry.DeviceRegistryNotPendingAdmin, networkId=open_network, account=other.address):
        registry.acceptNetworkAdmin(open_network, sender=other)
    assert registry.networks(open_network).admin == netadmin.address


def test_transfer_network_admin_reverts(registry, open_network, netadmin, attacker):
    with ape.reverts(registry.DeviceRegistryNotNetworkAdmin, networkId=open_network, account=attacker.address):
        registry.transferNetworkAdmin(open_network, attacker, sender=attacker)
    with ape.reverts(registry.DeviceRegistryUnknownNetwork, networkId=999):
        registry.transferNetworkAdmin(999, attacker, sender=attacker)
    with ape.reverts(registry.DeviceRegistryUnknownNetwork, networkId=999):
        registry.acceptNetworkAdmin(999, sender=attacker)


def test_closed_network_refuses_registrations(registry, open_network, approval_network, netadmin, owner, attacker,
                                              create_device):
    member, _, _ = create_device()
    for network_id in (open_network, approval_network):  # open networks can be closed too
        tx = registry.setNetworkRegistration(network_id, False, sender=netadmin)
        [event] = tx.decode_logs(registry.NetworkRegistrationSet)
        assert (event.networkId, event.open) == (network_id, False)
        assert registry.networks(network_id).closed is True
        with ape.reverts(registry.DeviceRegistryRegistrationClosed, networkId=network_id):
            create_device(network_id=network_id)
    registry.renewDevice(member, sender=owner)  # members go on
    with ape.reverts(registry.DeviceRegistryNotNetworkAdmin, networkId=open_network, account=attacker.address):
        registry.setNetworkRegistration(open_network, True, sender=attacker)
    registry.setNetworkRegistration(open_network, True, sender=netadmin)
    create_device()


def test_per_network_fee(registry, open_network, netadmin, owner, other, attacker, admin, treasury, create_device):
    tx = registry.setNetworkFee(open_network, 10**16, sender=netadmin)
    [event] = tx.decode_logs(registry.NetworkFeeSet)
    assert (event.networkId, event.previousFee, event.newFee) == (open_network, 0, 10**16)
    with ape.reverts(registry.DeviceRegistryNotNetworkAdmin, networkId=open_network, account=attacker.address):
        registry.setNetworkFee(open_network, 0, sender=attacker)
    with ape.reverts(registry.DeviceRegistryIncorrectFee, expected=10**16, received=0):
        create_device()
    registry.setRegistrationFee(10**15, sender=admin)  # the protocol fee comes on top
    with ape.reverts(registry.DeviceRegistryIncorrectFee, expected=11 * 10**15, received=10**16):
        create_device(value=10**16)
    device_id, _, _ = create_device(value=11 * 10**15)
    registry.renewDevice(device_id, sender=owner, value=11 * 10**15)
    assert tuple(registry.networkFee(open_network)) == (10**16, 2 * 10**16)
    # Each side withdraws its own: the protocol's share to the treasury, the network's by its admin.
    before = treasury.balance
    assert registry.withdrawFees(sender=admin).decode_logs(registry.FeesWithdrawn)[0].amount == 2 * 10**15
    assert treasury.balance == before + 2 * 10**15
    with ape.reverts(registry.DeviceRegistryNotNetworkAdmin, networkId=open_network, account=attacker.address):
        registry.withdrawNetworkFees(open_network, attacker, sender=attacker)
    with ape.reverts(registry.DeviceRegistryZeroAddress):
        registry.withdrawNetworkFees(open_network, ZERO, sender=netadmin)
    before = other.balance
    tx = registry.withdrawNetworkFees(open_network, other, sender=netadmin)
    [event] = tx.decode_logs(registry.NetworkFeesWithdrawn)
    assert (event.networkId, event.to, event.amount) == (open_network, other.address, 2 * 10**16)
    assert other.balance == before + 2 * 10**16 and registry.balance == 0
    with ape.reverts(registry.DeviceRegistryNoFees):
        registry.withdrawNetworkFees(open_network, other, sender=netadmin)
    with ape.reverts(registry.DeviceRegistryFeeTooHigh, fee=2**128):
        registry.setNetworkFee(open_network, 2**128, sender=netadmin)


def test_pending_registrations_take_no_address(registry, approval_network, netadmin, attacker, create_device):
    """v1: a stranger moved an approval network's next address by 100 without the admin's consent."""
    before = registry.networks(approval_network).nextOverlay
    registered = [create_device(network_id=approval_network, sender=attacker) for _ in range(5)]
    pending = [device_id for device_id, _, _ in registered]
    assert registry.networks(approval_network).nextOverlay == before
    assert all(registry.devices(d).overlayAddress == 0 for d in pending)
    assert all(tx.decode_logs(registry.DeviceRegistered)[0].overlayAddress == 0 for _, _, tx in registered)
    tx = registry.approveDevice(pending[3], sender=netadmin)
    [event] = tx.decode_logs(registry.DeviceApproved)
    assert (event.networkId, event.deviceId, event.by, event.overlayAddress) == (
        approval_network, pending[3], netadmin.address, before)
    assert registry.devices(pending[3]).overlayAddress == before
    registry.suspendDevice(pending[3], sender=netadmin)
    tx = registry.approveDevice(pending[3], sender=netadmin)  # un-suspending keeps its address
    assert tx.decode_logs(registry.DeviceApproved)[0].overlayAddress == before
    registry.suspendDevice(pending[4], sender=netadmin)  # suspended while Pending: no address yet
    tx = registry.approveDevice(pending[4], sender=netadmin)
    assert tx.decode_logs(registry.DeviceApproved)[0].overlayAddress == before + 1


def test_network_id_is_topic_1_of_every_network_event(registry, open_network, netadmin, owner, other, create_device,
                                                       chain):
    """One eth_getLogs filter (topics[1] = networkId) selects one network's whole history."""
    start = chain.blocks.head.number
    device_id, _, _ = create_device()
    registry.renewDevice(device_id, sender=owner)
    registry.updateEndpoint(device_id, "", False, sender=owner)
    registry.suspendDevice(device_id, sender=netadmin)
    registry.approveDevice(device_id, sender=netadmin)
    registry.revokeDevice(device_id, sender=owner)
    registry.setNetworkFee(open_network, 1, sender=netadmin)
    registry.setNetworkRegistration(open_network, True, sender=netadmin)
    registry.transferNetworkAdmin(open_network, other, sender=netadmin)
    registry.acceptNetworkAdmin(open_network, sender=other)
    topic = "0x" + open_network.to_bytes(32, "big").hex()
    logs = chain.provider.web3.eth.get_logs({"address": str(registry.address), "fromBlock": start + 1,
                                             "topics": [None, topic]})
    assert len(logs) == 10
    for abi in registry.contract_type.events:
        if abi.name in ("RegistrationFeeUpdated", "TreasuryUpdated", "FeesWithdrawn", "RoleGranted", "RoleRevoked",
                        "RoleAdminChanged"):
            continue  # protocol-wide: no network
        first = next(i for i in abi.inputs if i.indexed)
        assert (first.name, first.type) == ("networkId", "uint64"), abi.name


# ---------------------------------------------------------------- registration


def test_register_emits_everything_a_directory_needs(registry, open_network, owner, create_device, chain):
    device_id, key, tx = create_device(relay=True, endpoint="wss://relay.example/mesh")
    [event] = tx.decode_logs(registry.DeviceRegistered)
    assert event.deviceId == device_id
    assert event.owner == owner.address
    assert event.networkId == open_network
    assert event.publicKey == bytes(key.verify_key)
    assert event.overlayAddress == 0x64400001 and ip(event.overlayAddress) == "100.64.0.1"
    assert event.status == ACTIVE
    assert event.relay == 1  # Ape decodes event bools as ints
    assert event.endpoint == "wss://relay.example/mesh"
    block_time = chain.provider.get_block(tx.block_number).timestamp
    assert event.expiresAt == block_time + 30 * DAY
    # A client verifies the emitted proof against the documented message, rebuilt locally.
    message = (keccak(text="ShadowMesh.DeviceRegistry.proof.v1") + chain.chain_id.to_bytes(32, "big")
               + to_bytes(hexstr=str(registry.address)) + open_network.to_bytes(8, "big")
               + to_bytes(hexstr=owner.address) + bytes(key.verify_key))
    assert len(message) == 144
    VerifyKey(event.publicKey).verify(message, bytes(event.proof))


def test_register_stores_record_and_indexes(registry, open_network, owner, create_device, chain):
    device_id, key, tx = create_device()
    assert device_id == registry.computeDeviceId(open_network, owner, bytes(key.verify_key))
    assert device_id == keccak(open_network.to_bytes(32, "big") + bytes(12) + to_bytes(hexstr=owner.address)
                               + bytes(key.verify_key))
    record = registry.devices(device_id)
    assert record.owner == owner.address
    assert record.networkId == open_network
    assert record.overlayAddress == 0x64400001
    assert record.publicKey == bytes(key.verify_key)
    assert record.registeredAt == chain.provider.get_block(tx.block_number).timestamp
    assert record.expiresAt == record.registeredAt + 30 * DAY
    assert record.status == ACTIVE and record.relay is False
    assert registry.verifyDevice(device_id) is True
    assert registry.userDevices(owner, 0) == device_id
    assert registry.getUserDevices(owner) == [device_id]


def test_overlay_addresses_are_sequential_per_network(registry, open_network, approval_network, create_device, other,
                                                      netadmin):
    a, _, _ = create_device()
    b, _, _ = create_device(sender=other)
    c, _, _ = create_device(network_id=approval_network)
    registry.approveDevice(c, sender=netadmin)
    assert [registry.devices(d).overlayAddress for d in (a, b, c)] == [0x64400001, 0x64400002, 0x64400001]


def test_overlay_skips_255_and_0_and_reports_full(project, admin, treasury, netadmin, owner):
    harness = admin.deploy(project.TestDeviceRegistry, admin, treasury, 0)
    network_id = network_id_of(harness, harness.createNetwork("tiny", OPEN, DAY, sender=netadmin))

    def register():
        key = new_device_key()
        proof = proof_for(harness, key, network_id, owner.address)
        return harness.registerDevice(network_id, bytes(key.verify_key), False, "", proof, sender=owner)

    harness.setNextOverlay(network_id, 0x644000FE, sender=admin)  # 100.64.0.254
    first = register().decode_logs(harness.DeviceRegistered)[0].overlayAddress
    second = register().decode_logs(harness.DeviceRegistered)[0].overlayAddress
    assert (ip(first), ip(second)) == ("100.64.0.254", "100.64.1.1")
    harness.setNextOverlay(network_id, 0x647FFFFE, sender=admin)  # the last usable address
    assert register().decode_logs(harness.DeviceRegistered)[0].overlayAddress == 0x647FFFFE
    with ape.reverts(harness.DeviceRegistryNetworkFull, networkId=network_id):
        register()


def test_approval_network_registers_pending(registry, approval_network, create_device):
    device_id, _, tx = create_device(network_id=approval_network)
    assert tx.decode_logs(registry.DeviceRegistered)[0].status == PENDING
    assert registry.verifyDevice(device_id) is False


def test_same_key_in_several_networks_and_squatter_cannot_block(
    registry, open_network, approval_network, owner, attacker, create_device
):
    key = new_device_key()
    squatted, _, _ = create_device(sender=attacker, key=key)  # attacker registers owner's public key first
    mine, _, _ = create_device(key=key)
    other_net, _, _ = create_device(network_id=approval_network, key=key)
    assert len({squatted, mine, other_net}) == 3
    assert registry.devices(mine).owner == owner.address
    assert registry.verifyDevice(mine) is True


def test_register_reverts(registry, open_network, owner, create_device):
    key = new_device_key()
    good = proof_for(registry, key, open_network, owner.address)
    pub = bytes(key.verify_key)
    with ape.reverts(registry.DeviceRegistryUnknownNetwork, networkId=77):
        registry.registerDevice(77, pub, False, "", good, sender=owner)
    with ape.reverts(registry.DeviceRegistryInvalidPublicKey):
        registry.registerDevice(open_network, bytes(32), False, "", good, sender=owner)
    with ape.reverts(registry.DeviceRegistryInvalidProofLength, length=63):
        registry.registerDevice(open_network, pub, False, "", good[:63], sender=owner)
    with ape.reverts(registry.DeviceRegistryEndpointTooLong, length=257, max=256):
        registry.registerDevice(open_network, pub, False, "w" * 257, good, sender=owner)
    with ape.reverts(registry.DeviceRegistryIncorrectFee, expected=0, received=1):
        registry.registerDevice(open_network, pub, False, "", good, sender=owner, value=1)
    device_id, _, _ = create_device(key=key)
    with ape.reverts(registry.DeviceRegistryAlreadyRegistered, deviceId=device_id):
        registry.registerDevice(open_network, pub, False, "", good, sender=owner)
    registry.revokeDevice(device_id, sender=owner)
    with ape.reverts(registry.DeviceRegistryAlreadyRegistered, deviceId=device_id):
        registry.registerDevice(open_network, pub, False, "", good, sender=owner)


# ---------------------------------------------------------------- lifecycle


def test_revoke_by_owner_and_by_admin(registry, open_network, owner, netadmin, create_device):
    mine, _, _ = create_device()
    tx = registry.revokeDevice(mine, sender=owner)
    [event] = tx.decode_logs(registry.DeviceRevoked)
    assert (event.deviceId, event.networkId, event.by) == (mine, open_network, owner.address)
    assert registry.devices(mine).status == REVOKED and registry.verifyDevice(mine) is False
    theirs, _, _ = create_device()
    assert registry.revokeDevice(theirs, sender=netadmin).decode_logs(registry.DeviceRevoked)[0].by == netadmin.address


def test_revoke_reverts(registry, owner, attacker, create_device):
    device_id, _, _ = create_device()
    with ape.reverts(registry.DeviceRegistryNotOwnerOrAdmin, deviceId=device_id, account=attacker.address):
        registry.revokeDevice(device_id, sender=attacker)
    registry.revokeDevice(device_id, sender=owner)
    with ape.reverts(registry.DeviceRegistryInvalidStatus, deviceId=device_id, status=REVOKED):
        registry.revokeDevice(device_id, sender=owner)
    with ape.reverts(registry.DeviceRegistryUnknownDevice, deviceId=b"\x01" * 32):
        registry.revokeDevice(b"\x01" * 32, sender=owner)


def test_expiry_and_renewal(registry, open_network, owner, create_device, chain):
    device_id, _, _ = create_device()
    expires = registry.devices(device_id).expiresAt
    tx = registry.renewDevice(device_id, sender=owner)  # before expiry: extends from expiresAt
    [event] = tx.decode_logs(registry.DeviceRenewed)
    assert (event.deviceId, event.networkId, event.expiresAt) == (device_id, open_network, expires + 30 * DAY)
    chain.pending_timestamp = expires + 30 * DAY
    chain.mine()
    assert registry.verifyDevice(device_id) is False  # expired at exactly expiresAt
    tx = registry.renewDevice(device_id, sender=owner)  # after expiry: extends from now
    now = chain.provider.get_block(tx.block_number).timestamp
    assert registry.devices(device_id).expiresAt == now + 30 * DAY
    assert registry.verifyDevice(device_id) is True


def test_renew_reverts(registry, owner, attacker, create_device):
    device_id, _, _ = create_device()
    with ape.reverts(registry.DeviceRegistryNotDeviceOwner, deviceId=device_id, account=attacker.address):
        registry.renewDevice(device_id, sender=attacker)
    with ape.reverts(registry.DeviceRegistryIncorrectFee, expected=0, received=5):
        registry.renewDevice(device_id, sender=owner, value=5)
    with ape.reverts(registry.DeviceRegistryUnknownDevice, deviceId=b"\x02" * 32):
        registry.renewDevice(b"\x02" * 32, sender=owner)
    registry.revokeDevice(device_id, sender=owner)
    with ape.reverts(registry.DeviceRegistryInvalidStatus, deviceId=device_id, status=REVOKED):
        registry.renewDevice(device_id, sender=owner)


def test_approve_suspend_cycle(registry, approval_network, netadmin, create_device):
    device_id, _, _ = create_device(network_id=approval_network)
    tx = registry.approveDevice(device_id, sender=netadmin)
    [event] = tx.decode_logs(registry.DeviceApproved)
    assert (event.deviceId, event.networkId, event.by) == (device_id, approval_network, netadmin.address)
    assert registry.verifyDevice(device_id) is True
    tx = registry.suspendDevice(device_id, sender=netadmin)
    [event] = tx.decode_logs(registry.DeviceSuspended)
    assert (event.deviceId, event.networkId, event.by) == (device_id, approval_network, netadmin.address)
    assert registry.devices(device_id).status == SUSPENDED and registry.verifyDevice(device_id) is False
    registry.approveDevice(device_id, sender=netadmin)  # approve also un-suspends
    assert registry.verifyDevice(device_id) is True


def test_approve_suspend_reverts(registry, approval_network, netadmin, owner, attacker, create_device):
    device_id, _, _ = create_device(network_id=approval_network)
    for call in (registry.approveDevice, registry.suspendDevice):
        with ape.reverts(registry.DeviceRegistryNotNetworkAdmin, networkId=approval_network, account=attacker.address):
            call(device_id, sender=attacker)
        with ape.reverts(registry.DeviceRegistryUnknownDevice, deviceId=b"\x03" * 32):
            call(b"\x03" * 32, sender=netadmin)
    registry.approveDevice(device_id, sender=netadmin)
    with ape.reverts(registry.DeviceRegistryInvalidStatus, deviceId=device_id, status=ACTIVE):
        registry.approveDevice(device_id, sender=netadmin)
    registry.suspendDevice(device_id, sender=netadmin)
    with ape.reverts(registry.DeviceRegistryInvalidStatus, deviceId=device_id, status=SUSPENDED):
        registry.suspendDevice(device_id, sender=netadmin)
    registry.revokeDevice(device_id, sender=owner)
    with ape.reverts(registry.DeviceRegistryInvalidStatus, deviceId=device_id, status=REVOKED):
        registry.approveDevice(device_id, sender=netadmin)


def test_update_endpoint(registry, open_network, owner, attacker, create_device):
    device_id, _, _ = create_device()
    tx = registry.updateEndpoint(device_id, "wss://new.example/", True, sender=owner)
    [event] = tx.decode_logs(registry.DeviceEndpointUpdated)
    assert (event.deviceId, event.networkId, event.endpoint, event.relay) == (
        device_id, open_network, "wss://new.example/", True)
    assert registry.devices(device_id).relay is True
    with ape.reverts(registry.DeviceRegistryNotDeviceOwner, deviceId=device_id, account=attacker.address):
        registry.updateEndpoint(device_id, "", False, sender=attacker)
    with ape.reverts(registry.DeviceRegistryEndpointTooLong, length=300, max=256):
        registry.updateEndpoint(device_id, "x" * 300, False, sender=owner)
    with ape.reverts(registry.DeviceRegistryUnknownDevice, deviceId=b"\x04" * 32):
        registry.updateEndpoint(b"\x04" * 32, "", False, sender=owner)
    registry.revokeDevice(device_id, sender=owner)
    with ape.reverts(registry.DeviceRegistryInvalidStatus, deviceId=device_id, status=REVOKED):
        registry.updateEndpoint(device_id, "", False, sender=owner)


def test_unknown_device_reads(registry, owner):
    assert registry.verifyDevice(b"\x05" * 32) is False
    assert registry.devices(b"\x05" * 32).status == NONE
    assert registry.networks(12345).admin == "0x" + "00" * 20
    assert registry.getUserDevices(owner) == []


# ---------------------------------------------------------------- fees


def test_fee_lifecycle(registry, admin, treasury, open_network, owner, create_device):
    tx = registry.setRegistrationFee(10**15, sender=admin)
    [event] = tx.decode_logs(registry.RegistrationFeeUpdated)
    assert (event.previousFee, event.newFee) == (0, 10**15)
    assert registry.registrationFee() == 10**15
    with ape.reverts(registry.DeviceRegistryIncorrectFee, expected=10**15, received=0):
        create_device()
    device_id, _, _ = create_device(value=10**15)
    registry.renewDevice(device_id, sender=owner, value=10**15)
    before = treasury.balance
    tx = registry.withdrawFees(sender=admin)
    [event] = tx.decode_logs(registry.FeesWithdrawn)
    assert (event.treasury, event.amount) == (treasury.address, 2 * 10**15)
    assert treasury.balance == before + 2 * 10**15
    with ape.reverts(registry.DeviceRegistryNoFees):
        registry.withdrawFees(sender=admin)


def test_treasury_and_role_checks(registry, admin, other, attacker):
    assert registry.treasury() != other.address
    tx = registry.setTreasury(other, sender=admin)
    [event] = tx.decode_logs(registry.TreasuryUpdated)
    assert event.newTreasury == other.address and registry.treasury() == other.address
    with ape.reverts(registry.DeviceRegistryZeroAddress):
        registry.setTreasury("0x" + "00" * 20, sender=admin)
    fee_role = registry.FEE_MANAGER_ROLE()
    admin_role = registry.DEFAULT_ADMIN_ROLE()
    with ape.reverts(registry.AccessControlUnauthorizedAccount, account=attacker.address, neededRole=fee_role):
        registry.setRegistrationFee(1, sender=attacker)
    with ape.reverts(registry.AccessControlUnauthorizedAccount, account=attacker.address, neededRole=fee_role):
        registry.withdrawFees(sender=attacker)
    with ape.reverts(registry.AccessControlUnauthorizedAccount, account=attacker.address, neededRole=admin_role):
        registry.setTreasury(attacker, sender=attacker)


def test_constructor_rejects_zero_addresses(project, admin):
    zero = "0x" + "00" * 20
    with ape.reverts(project.DeviceRegistry.DeviceRegistryZeroAddress):
        admin.deploy(project.DeviceRegistry, zero, admin, 0)


def test_proof_message_layout(registry, owner, chain):
    key = bytes(range(32))
    message = bytes(registry.proofMessage(7, owner, key))
    assert message == (keccak(text="ShadowMesh.DeviceRegistry.proof.v1") + chain.chain_id.to_bytes(32, "big")
                       + to_bytes(hexstr=str(registry.address)) + (7).to_bytes(8, "big")
                       + to_bytes(hexstr=owner.address) + key)
    assert registry.PROOF_TAG() == keccak(text="ShadowMesh.DeviceRegistry.proof.v1")


@pytest.mark.parametrize("constant,value", [("OVERLAY_FIRST", 0x64400001), ("OVERLAY_LAST", 0x647FFFFE),
                                            ("MAX_ENDPOINT_LENGTH", 256)])
def test_constants(registry, constant, value):
    assert getattr(registry, constant)() == value
