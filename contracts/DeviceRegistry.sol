// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {IDeviceRegistry} from "./interfaces/IDeviceRegistry.sol";

/// @title DeviceRegistry: ShadowMesh networks, devices, overlay addresses (spec "Blockchain Smart Contract
/// Architecture"; docs/contracts.md)
/// @notice See IDeviceRegistry for the model. Storage is packed for gas: a network is one slot
/// (admin|nextOverlay|policy|period|closed) plus one for its fee (fee|collected), a device three
/// (owner|networkId|overlay, publicKey, registeredAt|expiresAt|status|relay), the protocol fee one (fee|collected).
/// Endpoints and proofs are only emitted.
/// Roles: DEFAULT_ADMIN_ROLE sets the treasury and grants roles; FEE_MANAGER_ROLE sets the protocol fee and
/// withdraws protocol fees. Neither has any power over networks, their fees or their devices.
contract DeviceRegistry is IDeviceRegistry, AccessControl {
    /// @notice Role that may change the registration fee and withdraw fees.
    bytes32 public constant FEE_MANAGER_ROLE = keccak256("FEE_MANAGER_ROLE");

    /// @notice Domain tag of the Ed25519 proof-of-possession message.
    bytes32 public constant PROOF_TAG = keccak256("ShadowMesh.DeviceRegistry.proof.v1");

    /// @notice First overlay address handed out in every network: 100.64.0.1.
    uint32 public constant OVERLAY_FIRST = 0x64400001;
    /// @notice Last usable overlay address of 100.64.0.0/10: 100.127.255.254.
    uint32 public constant OVERLAY_LAST = 0x647FFFFE;

    /// @notice Longest endpoint URL accepted, bytes.
    uint256 public constant MAX_ENDPOINT_LENGTH = 256;

    /// @notice Longest network name accepted, bytes. Every client downloads every NetworkCreated log during a
    /// directory sync, so an unbounded name would let anyone bloat everyone's sync for the price of calldata.
    uint256 public constant MAX_NAME_LENGTH = 64;

    /// @notice Length of an Ed25519 signature, bytes.
    uint256 private constant _PROOF_LENGTH = 64;

    /// @dev A fee and what it has collected, in one slot (wei; 2**128 is far above any supply of ether).
    struct Fees {
        uint128 fee;
        uint128 collected;
    }

    uint64 private _networkCount;
    Fees private _protocolFees;
    address private _treasury;

    mapping(uint64 networkId => Network) internal _networks;
    mapping(uint64 networkId => Fees) private _networkFees;
    mapping(uint64 networkId => address) private _pendingAdmins;
    mapping(bytes32 deviceId => Device) private _devices;
    /// @dev Each owner's devices as a linked list, newest first: head per owner, previous per device. Cheaper
    /// than an array for the common case of an owner's first device (no length slot to create: ~22k gas).
    mapping(address owner => bytes32) private _latestDevice;
    mapping(bytes32 deviceId => bytes32) private _previousDevice;

    /// @param admin receives DEFAULT_ADMIN_ROLE and FEE_MANAGER_ROLE
    /// @param treasury_ receives withdrawn fees
    /// @param registrationFee_ initial fee in wei (zero allowed)
    constructor(address admin, address treasury_, uint256 registrationFee_) {
        if (admin == address(0) || treasury_ == address(0)) revert DeviceRegistryZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(FEE_MANAGER_ROLE, admin);
        _treasury = treasury_;
        _protocolFees.fee = _toFee(registrationFee_);
        emit TreasuryUpdated(address(0), treasury_);
        emit RegistrationFeeUpdated(0, registrationFee_);
    }

    // ------------------------------------------------------------------ modifiers-as-functions

    function _existingDevice(bytes32 deviceId) private view returns (Device storage device) {
        device = _devices[deviceId];
        if (device.status == DeviceStatus.None) revert DeviceRegistryUnknownDevice(deviceId);
    }

    function _checkNetworkAdmin(uint64 networkId) private view {
        if (_networks[networkId].admin != msg.sender) revert DeviceRegistryNotNetworkAdmin(networkId, msg.sender);
    }

    function _checkNetworkAdmin(uint64 networkId, address admin) private view {
        if (admin != msg.sender) revert DeviceRegistryNotNetworkAdmin(networkId, msg.sender);
    }

    /// @dev Checks `msg.value == protocol fee + network fee` and books each part. A slot is written only when its
    /// fee is non-zero (the common free case reads two slots and writes none).
    function _collectFees(uint64 networkId) private {
        Fees memory protocol = _protocolFees;
        Fees memory network = _networkFees[networkId];
        uint256 expected = uint256(protocol.fee) + network.fee;
        if (msg.value != expected) revert DeviceRegistryIncorrectFee(expected, msg.value);
        // Collected sums are checked: an overflow of 2**128 wei reverts rather than wraps (never in practice).
        if (protocol.fee != 0) _protocolFees.collected = protocol.collected + protocol.fee;
        if (network.fee != 0) _networkFees[networkId].collected = network.collected + network.fee;
    }

    function _toFee(uint256 fee) private pure returns (uint128) {
        if (fee > type(uint128).max) revert DeviceRegistryFeeTooHigh(fee);
        return uint128(fee);
    }

    // ------------------------------------------------------------------ networks

    /// @inheritdoc IDeviceRegistry
    function createNetwork(string calldata name, JoinPolicy policy, uint32 registrationPeriod)
        external
        returns (uint64 networkId)
    {
        if (registrationPeriod == 0) revert DeviceRegistryInvalidPeriod(registrationPeriod);
        if (bytes(name).length > MAX_NAME_LENGTH) revert DeviceRegistryNameTooLong(bytes(name).length, MAX_NAME_LENGTH);
        networkId = ++_networkCount;
        _networks[networkId] = Network({
            admin: msg.sender,
            nextOverlay: OVERLAY_FIRST,
            policy: policy,
            registrationPeriod: registrationPeriod,
            closed: false
        });
        emit NetworkCreated(networkId, msg.sender, policy, registrationPeriod, name);
    }

    /// @inheritdoc IDeviceRegistry
    function transferNetworkAdmin(uint64 networkId, address newAdmin) external {
        _checkNetworkAdmin(networkId, _knownNetwork(networkId).admin);
        _pendingAdmins[networkId] = newAdmin;
        emit NetworkAdminTransferStarted(networkId, msg.sender, newAdmin);
    }

    /// @inheritdoc IDeviceRegistry
    function acceptNetworkAdmin(uint64 networkId) external {
        Network storage network = _knownNetwork(networkId);
        // A zero pending admin never matches: msg.sender is never zero.
        if (_pendingAdmins[networkId] != msg.sender) revert DeviceRegistryNotPendingAdmin(networkId, msg.sender);
        address previous = network.admin;
        network.admin = msg.sender;
        delete _pendingAdmins[networkId];
        emit NetworkAdminTransferred(networkId, previous, msg.sender);
    }

    /// @inheritdoc IDeviceRegistry
    function pendingNetworkAdmin(uint64 networkId) external view returns (address) {
        return _pendingAdmins[networkId];
    }

    /// @inheritdoc IDeviceRegistry
    function setNetworkFee(uint64 networkId, uint256 fee) external {
        _checkNetworkAdmin(networkId, _knownNetwork(networkId).admin);
        Fees storage fees = _networkFees[networkId];
        uint256 previous = fees.fee;
        fees.fee = _toFee(fee);
        emit NetworkFeeSet(networkId, previous, fee);
    }

    /// @inheritdoc IDeviceRegistry
    function networkFee(uint64 networkId) external view returns (uint256 fee, uint256 collected) {
        Fees memory fees = _networkFees[networkId];
        return (fees.fee, fees.collected);
    }

    /// @inheritdoc IDeviceRegistry
    function withdrawNetworkFees(uint64 networkId, address payable to) external {
        _checkNetworkAdmin(networkId, _knownNetwork(networkId).admin);
        if (to == address(0)) revert DeviceRegistryZeroAddress();
        uint256 amount = _networkFees[networkId].collected;
        // slither-disable-next-line incorrect-equality (only "nothing to send")
        if (amount == 0) revert DeviceRegistryNoFees();
        _networkFees[networkId].collected = 0;
        emit NetworkFeesWithdrawn(networkId, to, amount);
        // The admin chose `to`; state is final before the call (a re-entrant call finds nothing: NoFees).
        Address.sendValue(to, amount);
    }

    /// @inheritdoc IDeviceRegistry
    function setNetworkRegistration(uint64 networkId, bool open) external {
        Network storage network = _knownNetwork(networkId);
        _checkNetworkAdmin(networkId, network.admin);
        network.closed = !open;
        emit NetworkRegistrationSet(networkId, open);
    }

    function _knownNetwork(uint64 networkId) private view returns (Network storage network) {
        network = _networks[networkId];
        if (network.admin == address(0)) revert DeviceRegistryUnknownNetwork(networkId);
    }

    /// @inheritdoc IDeviceRegistry
    function networks(uint64 networkId) external view returns (Network memory) {
        return _networks[networkId];
    }

    /// @inheritdoc IDeviceRegistry
    function networkCount() external view returns (uint64) {
        return _networkCount;
    }

    // ------------------------------------------------------------------ devices

    /// @inheritdoc IDeviceRegistry
    function registerDevice(
        uint64 networkId,
        bytes32 publicKey,
        bool relay,
        string calldata endpoint,
        bytes calldata proof
    ) external payable returns (bytes32 deviceId) {
        _collectFees(networkId);
        if (publicKey == bytes32(0)) revert DeviceRegistryInvalidPublicKey();
        if (proof.length != _PROOF_LENGTH) revert DeviceRegistryInvalidProofLength(proof.length);
        _checkEndpoint(endpoint);
        deviceId = keccak256(abi.encode(networkId, msg.sender, publicKey));
        _store(deviceId, networkId, publicKey, relay);
        _emitRegistered(deviceId, endpoint, proof);
    }

    /// @dev Emits DeviceRegistered from the stored record (its slots are warm: ~200 gas), which keeps the
    /// stack of `registerDevice` shallow enough for the legacy code generator.
    function _emitRegistered(bytes32 deviceId, string calldata endpoint, bytes calldata proof) private {
        Device storage d = _devices[deviceId];
        emit DeviceRegistered(
            d.networkId, deviceId, d.owner, d.publicKey, d.overlayAddress, d.expiresAt, d.status, d.relay, endpoint, proof
        );
    }

    function _checkEndpoint(string calldata endpoint) private pure {
        if (bytes(endpoint).length > MAX_ENDPOINT_LENGTH) {
            revert DeviceRegistryEndpointTooLong(bytes(endpoint).length, MAX_ENDPOINT_LENGTH);
        }
    }

    /// @dev Writes the new device record (3 slots) and the owner's list; in an Open network also allocates the
    /// overlay address (an Approval network's device gets one at its first approval: `_allocate`).
    function _store(bytes32 deviceId, uint64 networkId, bytes32 publicKey, bool relay) private {
        Network storage network = _networks[networkId];
        Network memory net = network;
        if (net.admin == address(0)) revert DeviceRegistryUnknownNetwork(networkId);
        if (net.closed) revert DeviceRegistryRegistrationClosed(networkId);
        Device storage device = _devices[deviceId];
        if (device.status != DeviceStatus.None) revert DeviceRegistryAlreadyRegistered(deviceId);

        DeviceStatus status = DeviceStatus.Pending;
        if (net.policy == JoinPolicy.Open) {
            status = DeviceStatus.Active;
            device.overlayAddress = _allocate(network, net.nextOverlay, networkId);
        }
        uint64 expiresAt = uint64(block.timestamp) + net.registrationPeriod;
        device.owner = msg.sender;
        device.networkId = networkId;
        device.publicKey = publicKey;
        device.registeredAt = uint64(block.timestamp);
        device.expiresAt = expiresAt;
        device.status = status;
        device.relay = relay;
        bytes32 latest = _latestDevice[msg.sender];
        if (latest != bytes32(0)) _previousDevice[deviceId] = latest;
        _latestDevice[msg.sender] = deviceId;
    }

    /// @dev Hands out `overlay` (the network's next address) and advances the allocator; reverts when full.
    function _allocate(Network storage network, uint32 overlay, uint64 networkId) private returns (uint32) {
        if (overlay > OVERLAY_LAST) revert DeviceRegistryNetworkFull(networkId);
        network.nextOverlay = _nextOverlay(overlay);
        return overlay;
    }

    /// @dev The address after `overlay`, skipping those ending in .255 and .0. May return OVERLAY_LAST + 1 or
    /// more, which the next registration treats as "full". Cannot overflow: overlay <= 0x647FFFFE.
    function _nextOverlay(uint32 overlay) private pure returns (uint32 next) {
        unchecked {
            next = overlay + 1;
            if (next & 0xFF == 0xFF) next += 2;
        }
    }

    /// @inheritdoc IDeviceRegistry
    function revokeDevice(bytes32 deviceId) external {
        Device storage device = _existingDevice(deviceId);
        uint64 networkId = device.networkId;
        if (msg.sender != device.owner && msg.sender != _networks[networkId].admin) {
            revert DeviceRegistryNotOwnerOrAdmin(deviceId, msg.sender);
        }
        if (device.status == DeviceStatus.Revoked) revert DeviceRegistryInvalidStatus(deviceId, DeviceStatus.Revoked);
        device.status = DeviceStatus.Revoked;
        emit DeviceRevoked(networkId, deviceId, msg.sender);
    }

    /// @inheritdoc IDeviceRegistry
    function renewDevice(bytes32 deviceId) external payable {
        Device storage device = _existingDevice(deviceId);
        _collectFees(device.networkId);
        if (msg.sender != device.owner) revert DeviceRegistryNotDeviceOwner(deviceId, msg.sender);
        if (device.status == DeviceStatus.Revoked) revert DeviceRegistryInvalidStatus(deviceId, DeviceStatus.Revoked);
        uint64 from = device.expiresAt > block.timestamp ? device.expiresAt : uint64(block.timestamp);
        uint64 expiresAt = from + _networks[device.networkId].registrationPeriod;
        device.expiresAt = expiresAt;
        emit DeviceRenewed(device.networkId, deviceId, expiresAt);
    }

    /// @inheritdoc IDeviceRegistry
    function approveDevice(bytes32 deviceId) external {
        Device storage device = _existingDevice(deviceId);
        uint64 networkId = device.networkId;
        _checkNetworkAdmin(networkId);
        DeviceStatus status = device.status;
        if (status != DeviceStatus.Pending && status != DeviceStatus.Suspended) {
            revert DeviceRegistryInvalidStatus(deviceId, status);
        }
        device.status = DeviceStatus.Active;
        uint32 overlay = device.overlayAddress;
        if (overlay == 0) {
            Network storage network = _networks[networkId];
            overlay = _allocate(network, network.nextOverlay, networkId);
            device.overlayAddress = overlay;
        }
        emit DeviceApproved(networkId, deviceId, msg.sender, overlay);
    }

    /// @inheritdoc IDeviceRegistry
    function suspendDevice(bytes32 deviceId) external {
        Device storage device = _existingDevice(deviceId);
        uint64 networkId = device.networkId;
        _checkNetworkAdmin(networkId);
        DeviceStatus status = device.status;
        if (status != DeviceStatus.Pending && status != DeviceStatus.Active) {
            revert DeviceRegistryInvalidStatus(deviceId, status);
        }
        device.status = DeviceStatus.Suspended;
        emit DeviceSuspended(networkId, deviceId, msg.sender);
    }

    /// @inheritdoc IDeviceRegistry
    function updateEndpoint(bytes32 deviceId, string calldata endpoint, bool relay) external {
        Device storage device = _existingDevice(deviceId);
        if (msg.sender != device.owner) revert DeviceRegistryNotDeviceOwner(deviceId, msg.sender);
        if (device.status == DeviceStatus.Revoked) revert DeviceRegistryInvalidStatus(deviceId, DeviceStatus.Revoked);
        _checkEndpoint(endpoint);
        device.relay = relay;
        emit DeviceEndpointUpdated(device.networkId, deviceId, endpoint, relay);
    }

    /// @inheritdoc IDeviceRegistry
    function verifyDevice(bytes32 deviceId) external view returns (bool) {
        Device storage device = _devices[deviceId];
        return device.status == DeviceStatus.Active && block.timestamp < device.expiresAt;
    }

    /// @inheritdoc IDeviceRegistry
    function devices(bytes32 deviceId) external view returns (Device memory) {
        return _devices[deviceId];
    }

    /// @inheritdoc IDeviceRegistry
    function userDevices(address owner, uint256 index) external view returns (bytes32) {
        bytes32[] memory all = _listDevices(owner);
        if (index >= all.length) revert DeviceRegistryIndexOutOfRange(owner, index);
        return all[index];
    }

    /// @inheritdoc IDeviceRegistry
    function getUserDevices(address owner) external view returns (bytes32[] memory) {
        return _listDevices(owner);
    }

    /// @dev Walks the owner's list (newest first) and returns it in registration order. Off-chain reads only.
    function _listDevices(address owner) private view returns (bytes32[] memory list) {
        uint256 count = 0;
        for (bytes32 id = _latestDevice[owner]; id != bytes32(0); id = _previousDevice[id]) ++count;
        list = new bytes32[](count);
        for (bytes32 id = _latestDevice[owner]; id != bytes32(0); id = _previousDevice[id]) list[--count] = id;
    }

    /// @inheritdoc IDeviceRegistry
    function computeDeviceId(uint64 networkId, address owner, bytes32 publicKey) external pure returns (bytes32) {
        return keccak256(abi.encode(networkId, owner, publicKey));
    }

    /// @inheritdoc IDeviceRegistry
    function proofMessage(uint64 networkId, address owner, bytes32 publicKey) external view returns (bytes memory) {
        return abi.encodePacked(PROOF_TAG, block.chainid, address(this), networkId, owner, publicKey);
    }

    // ------------------------------------------------------------------ fees

    /// @inheritdoc IDeviceRegistry
    function registrationFee() external view returns (uint256) {
        return _protocolFees.fee;
    }

    /// @inheritdoc IDeviceRegistry
    function treasury() external view returns (address) {
        return _treasury;
    }

    /// @inheritdoc IDeviceRegistry
    function setRegistrationFee(uint256 newFee) external onlyRole(FEE_MANAGER_ROLE) {
        uint256 previous = _protocolFees.fee;
        _protocolFees.fee = _toFee(newFee);
        emit RegistrationFeeUpdated(previous, newFee);
    }

    /// @inheritdoc IDeviceRegistry
    function setTreasury(address newTreasury) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (newTreasury == address(0)) revert DeviceRegistryZeroAddress();
        address previous = _treasury;
        _treasury = newTreasury;
        emit TreasuryUpdated(previous, newTreasury);
    }

    /// @inheritdoc IDeviceRegistry
    function withdrawFees() external onlyRole(FEE_MANAGER_ROLE) {
        // Only the protocol's share: the networks' collected fees belong to their admins. Ether forced in
        // (selfdestruct, coinbase) is not booked anywhere and stays.
        uint256 amount = _protocolFees.collected;
        // slither-disable-next-line incorrect-equality (only "nothing to send")
        if (amount == 0) revert DeviceRegistryNoFees();
        _protocolFees.collected = 0;
        address to = _treasury;
        emit FeesWithdrawn(to, amount);
        // The treasury is set by DEFAULT_ADMIN_ROLE and the caller holds FEE_MANAGER_ROLE; no state follows.
        Address.sendValue(payable(to), amount);
    }
}
