// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IDeviceRegistry: ShadowMesh networks, devices and their overlay addresses
/// @notice The on-chain trust and peer directory of ShadowMesh (spec "Blockchain Smart Contract Architecture").
/// A client rebuilds its directory from this contract's events alone: every state-changing event carries
/// everything a client needs, so no extra contract call is required.
///
/// Trust model (docs/contracts.md "Trust model"):
/// - A network has an admin and a join policy (Open, or Approval by the admin).
/// - A device is (network, owner address, Ed25519 public key);
///   `deviceId = keccak256(abi.encode(uint64 networkId, address owner, bytes32 publicKey))`.
///   Including the owner means a squatter who registers someone else's key cannot block the real holder.
/// - Each registration carries a 64-byte Ed25519 signature by the device key over `proofMessage(...)`.
///   The EVM cannot cheaply verify Ed25519: the contract checks only its length and emits it in
///   `DeviceRegistered`; every client MUST verify it off chain and ignore devices whose proof fails.
/// - Each device gets an IPv4 overlay address allocated sequentially per network from 100.64.0.0/10
///   (stored as the big-endian numeric value, e.g. 0x64400001 = 100.64.0.1), never reused, skipping
///   addresses whose last octet is 0 or 255. It is allocated when the device becomes a member: at
///   registration in an Open network, at its first approval in an Approval network (a Pending device has
///   overlay address 0 and consumes nothing of the network's address space).
/// - Every registry event that concerns a network carries the network id as its FIRST indexed argument
///   (topic 1), so one `eth_getLogs` filter `topics[1] = networkId` selects exactly one network's history.
///   Only the three protocol-fee events (`RegistrationFeeUpdated`, `TreasuryUpdated`, `FeesWithdrawn`) concern
///   no network and carry none.
/// - Fees: a protocol fee (`registrationFee()`, to `treasury()`) and a per-network fee set by the network's
///   admin (`networkFee(networkId)`, collected per network and withdrawn by its admin), both paid per
///   registration and per renewal: `msg.value == registrationFee() + networkFee(networkId)`.
///
/// By design (docs/contracts.md "Audit notes"):
/// - `verifyDevice` cannot check the Ed25519 proof: a registration of someone else's key verifies on chain,
///   and only the off-chain proof check tells it apart. Contracts that call `verifyDevice` must know this.
/// - Every member (Active at registration, or approved once) takes an overlay address for good; one network
///   has 4,177,918. Pending registrations take none, so in an Approval network only the admin can consume
///   addresses. Filling an Open network costs an attacker ~5.4e11 gas plus the fees per registration; the
///   defence is the network's own fee (`setNetworkFee`) or closing registration (`setNetworkRegistration`).
///   A full network reverts with DeviceRegistryNetworkFull (at registration, or at approval).
/// - Revocation ends one registration (network, owner, key). In an Open network the same key can join again
///   from another owner account (another id and address); an Approval network keeps it Pending.
interface IDeviceRegistry {
    // ------------------------------------------------------------------ types

    /// @notice Who may join a network. Open: a registration is Active at once. Approval: it is Pending
    /// until the network admin approves it.
    enum JoinPolicy {
        Open,
        Approval
    }

    /// @notice Lifecycle of a device. `None` = never registered. `Revoked` is final for that deviceId.
    /// Expiry is not a status: a device is live when `status == Active && block.timestamp < expiresAt`.
    enum DeviceStatus {
        None,
        Pending,
        Active,
        Suspended,
        Revoked
    }

    /// @notice A network (a "tailnet"). Packed into one storage slot.
    /// @param admin may approve, suspend, revoke devices, set the network fee, close registration and transfer
    /// the admin role; never zero
    /// @param nextOverlay the overlay address the next member gets (0x64400001 at creation)
    /// @param policy join policy, fixed at creation
    /// @param registrationPeriod seconds a registration (or a renewal) is valid for
    /// @param closed true while the admin has closed registration (`registerDevice` reverts)
    struct Network {
        address admin;
        uint32 nextOverlay;
        JoinPolicy policy;
        uint32 registrationPeriod;
        bool closed;
    }

    /// @notice A device record. Three storage slots. The endpoint and the proof live only in events.
    /// @param owner the Ethereum account that registered it (may renew, update the endpoint, revoke)
    /// @param networkId the network it belongs to
    /// @param overlayAddress IPv4 overlay address, big-endian numeric (0x64400001 = 100.64.0.1); 0 until the
    /// device is first approved in an Approval network
    /// @param publicKey the device's raw 32-byte Ed25519 public key
    /// @param registeredAt block timestamp of the registration (seconds)
    /// @param expiresAt the registration is invalid from this timestamp on (seconds)
    /// @param status lifecycle status
    /// @param relay whether the device offers to relay traffic for others
    struct Device {
        address owner;
        uint64 networkId;
        uint32 overlayAddress;
        bytes32 publicKey;
        uint64 registeredAt;
        uint64 expiresAt;
        DeviceStatus status;
        bool relay;
    }

    // ------------------------------------------------------------------ events (past tense)

    /// @notice A network was created by `admin`.
    event NetworkCreated(
        uint64 indexed networkId, address indexed admin, JoinPolicy policy, uint32 registrationPeriod, string name
    );

    /// @notice The admin of `networkId` offered the role to `newAdmin`, who must call `acceptNetworkAdmin`
    /// (`newAdmin` zero: the offer was withdrawn).
    event NetworkAdminTransferStarted(uint64 indexed networkId, address indexed previousAdmin, address indexed newAdmin);

    /// @notice The admin of `networkId` changed from `previousAdmin` to `newAdmin` (who accepted it).
    event NetworkAdminTransferred(uint64 indexed networkId, address indexed previousAdmin, address indexed newAdmin);

    /// @notice The admin of `networkId` set its fee (wei, per registration and per renewal, on top of the
    /// protocol's `registrationFee()`).
    event NetworkFeeSet(uint64 indexed networkId, uint256 previousFee, uint256 newFee);

    /// @notice `amount` wei of `networkId`'s collected fees were sent to `to` by its admin.
    event NetworkFeesWithdrawn(uint64 indexed networkId, address indexed to, uint256 amount);

    /// @notice The admin of `networkId` opened (`open` true) or closed registration.
    event NetworkRegistrationSet(uint64 indexed networkId, bool open);

    /// @notice A device was registered. `status` is Active (open network) or Pending (approval network, with
    /// `overlayAddress` 0 until approved). `proof` is the 64-byte Ed25519 signature over
    /// `proofMessage(networkId, owner, publicKey)`: verify it before trusting the device. `endpoint` is a
    /// WebSocket URL, or empty when the device has none.
    event DeviceRegistered(
        uint64 indexed networkId,
        bytes32 indexed deviceId,
        address indexed owner,
        bytes32 publicKey,
        uint32 overlayAddress,
        uint64 expiresAt,
        DeviceStatus status,
        bool relay,
        string endpoint,
        bytes proof
    );

    /// @notice A device was revoked by `by` (its owner or the network admin). Final.
    event DeviceRevoked(uint64 indexed networkId, bytes32 indexed deviceId, address indexed by);

    /// @notice A device's registration was extended; it is now valid until `expiresAt`.
    event DeviceRenewed(uint64 indexed networkId, bytes32 indexed deviceId, uint64 expiresAt);

    /// @notice The network admin approved a Pending device or re-activated a Suspended one: it is Active, with
    /// overlay address `overlayAddress` (allocated now if the device had none).
    event DeviceApproved(uint64 indexed networkId, bytes32 indexed deviceId, address indexed by, uint32 overlayAddress);

    /// @notice The network admin suspended a device (Pending or Active): it is Suspended.
    event DeviceSuspended(uint64 indexed networkId, bytes32 indexed deviceId, address indexed by);

    /// @notice The owner changed the device's public endpoint (empty = none) and relay flag.
    event DeviceEndpointUpdated(uint64 indexed networkId, bytes32 indexed deviceId, string endpoint, bool relay);

    /// @notice The protocol's registration fee (wei, per registration and per renewal) changed. No network.
    event RegistrationFeeUpdated(uint256 previousFee, uint256 newFee);

    /// @notice The account that receives withdrawn protocol fees changed. No network.
    event TreasuryUpdated(address indexed previousTreasury, address indexed newTreasury);

    /// @notice `amount` wei of collected protocol fees were sent to `treasury`. No network.
    event FeesWithdrawn(address indexed treasury, uint256 amount);

    // ------------------------------------------------------------------ errors (EIP-6093 style)

    /// @notice No network has id `networkId`.
    error DeviceRegistryUnknownNetwork(uint64 networkId);
    /// @notice No device has id `deviceId`.
    error DeviceRegistryUnknownDevice(bytes32 deviceId);
    /// @notice `account` is not the admin of `networkId`.
    error DeviceRegistryNotNetworkAdmin(uint64 networkId, address account);
    /// @notice `account` is not the owner of `deviceId`.
    error DeviceRegistryNotDeviceOwner(bytes32 deviceId, address account);
    /// @notice `account` is neither the owner of `deviceId` nor the admin of its network.
    error DeviceRegistryNotOwnerOrAdmin(bytes32 deviceId, address account);
    /// @notice (network, owner, key) is already registered (also after revocation: revocation is final).
    error DeviceRegistryAlreadyRegistered(bytes32 deviceId);
    /// @notice The proof of possession must be exactly 64 bytes (an Ed25519 signature); got `length`.
    error DeviceRegistryInvalidProofLength(uint256 length);
    /// @notice The public key must not be zero.
    error DeviceRegistryInvalidPublicKey();
    /// @notice `msg.value` must equal `registrationFee() + networkFee(networkId)` exactly.
    error DeviceRegistryIncorrectFee(uint256 expected, uint256 received);
    /// @notice The admin of `networkId` has closed registration.
    error DeviceRegistryRegistrationClosed(uint64 networkId);
    /// @notice `account` is not the pending admin of `networkId` (nobody is, or someone else).
    error DeviceRegistryNotPendingAdmin(uint64 networkId, address account);
    /// @notice A fee above 2**128-1 wei.
    error DeviceRegistryFeeTooHigh(uint256 fee);
    /// @notice The network has no overlay address left in 100.64.0.0/10.
    error DeviceRegistryNetworkFull(uint64 networkId);
    /// @notice The operation is not allowed while the device is in `status`.
    error DeviceRegistryInvalidStatus(bytes32 deviceId, DeviceStatus status);
    /// @notice The registration period must be between 1 second and 2**32-1 seconds.
    error DeviceRegistryInvalidPeriod(uint32 period);
    /// @notice The endpoint is longer than `MAX_ENDPOINT_LENGTH` bytes.
    error DeviceRegistryEndpointTooLong(uint256 length, uint256 max);
    /// @notice The network name is longer than `MAX_NAME_LENGTH` bytes.
    error DeviceRegistryNameTooLong(uint256 length, uint256 max);
    /// @notice The zero address is not allowed here (admin, treasury).
    error DeviceRegistryZeroAddress();
    /// @notice `owner` has fewer than `index + 1` devices.
    error DeviceRegistryIndexOutOfRange(address owner, uint256 index);
    /// @notice There are no fees to withdraw (protocol fees, or `networkId`'s; 0 for the protocol).
    error DeviceRegistryNoFees();

    // ------------------------------------------------------------------ networks

    /// @notice Create a network administered by the caller. Ids are assigned sequentially from 1.
    /// @param name a human-readable label, at most MAX_NAME_LENGTH (64) bytes (only emitted, not stored)
    /// @param policy Open or Approval
    /// @param registrationPeriod seconds each registration/renewal is valid for (> 0)
    /// @return networkId the new network's id
    function createNetwork(string calldata name, JoinPolicy policy, uint32 registrationPeriod)
        external
        returns (uint64 networkId);

    /// @notice Step 1 of 2: offer the network's admin role to `newAdmin`. Only the current admin, who stays
    /// admin until `newAdmin` calls `acceptNetworkAdmin`. Replaces an earlier offer; zero withdraws it. A wrong
    /// address therefore loses nothing (the offer is simply never accepted).
    function transferNetworkAdmin(uint64 networkId, address newAdmin) external;

    /// @notice Step 2 of 2: the pending admin takes the network's admin role (and its collected fees).
    function acceptNetworkAdmin(uint64 networkId) external;

    /// @notice The account the admin role has been offered to (zero = none).
    function pendingNetworkAdmin(uint64 networkId) external view returns (address);

    /// @notice Network admin: set the network's fee in wei (< 2**128), paid per registration and per renewal
    /// on top of the protocol fee (anti-Sybil: joining costs what the admin decides). Zero allowed.
    function setNetworkFee(uint64 networkId, uint256 fee) external;

    /// @notice The network's fee (wei) and the fees it has collected and not yet withdrawn (wei).
    function networkFee(uint64 networkId) external view returns (uint256 fee, uint256 collected);

    /// @notice Network admin: send the network's collected fees to `to` (not zero; a push with all gas).
    function withdrawNetworkFees(uint64 networkId, address payable to) external;

    /// @notice Network admin: open (`open` true) or close registration, for either policy. Closing stops
    /// `registerDevice` only: renewals, approvals of Pending devices and revocations go on.
    function setNetworkRegistration(uint64 networkId, bool open) external;

    /// @notice The network record (admin is zero for an unknown id).
    function networks(uint64 networkId) external view returns (Network memory);

    /// @notice Number of networks created; the last id.
    function networkCount() external view returns (uint64);

    // ------------------------------------------------------------------ devices

    /// @notice Register the caller's device in `networkId` (registration must be open). Pays exactly
    /// `registrationFee() + networkFee(networkId).fee` wei. Open network: Active, with an overlay address.
    /// Approval network: Pending, without one (allocated by `approveDevice`).
    /// @param networkId the network to join
    /// @param publicKey the device's raw Ed25519 public key (non-zero)
    /// @param relay whether the device offers to relay traffic
    /// @param endpoint public WebSocket URL, or empty (at most MAX_ENDPOINT_LENGTH bytes)
    /// @param proof 64-byte Ed25519 signature by `publicKey` over `proofMessage(networkId, msg.sender, publicKey)`
    /// @return deviceId keccak256(abi.encode(networkId, msg.sender, publicKey))
    function registerDevice(
        uint64 networkId,
        bytes32 publicKey,
        bool relay,
        string calldata endpoint,
        bytes calldata proof
    ) external payable returns (bytes32 deviceId);

    /// @notice Revoke a device (any status but Revoked), by its owner or its network's admin. Final: the same
    /// (network, owner, key) can never be registered or approved again.
    function revokeDevice(bytes32 deviceId) external;

    /// @notice Extend a device's registration by its network's period, from max(now, expiresAt).
    /// Only the owner; pays exactly `registrationFee() + networkFee(networkId).fee` wei. Not for Revoked devices. Never changes the status:
    /// a Suspended or Pending device stays so (only the admin's `approveDevice` makes it Active). Renewals
    /// stack (each adds one period), so an owner may prepay several periods.
    function renewDevice(bytes32 deviceId) external payable;

    /// @notice Network admin: make a Pending or Suspended device Active; a device without an overlay address
    /// (never approved before) gets the network's next one now (DeviceRegistryNetworkFull if none is left).
    function approveDevice(bytes32 deviceId) external;

    /// @notice Network admin: suspend a Pending or Active device.
    function suspendDevice(bytes32 deviceId) external;

    /// @notice Owner: set the public endpoint (empty = none) and the relay flag. Not for Revoked devices.
    /// Allowed while Pending or Suspended (the status does not change; clients ignore such devices anyway).
    function updateEndpoint(bytes32 deviceId, string calldata endpoint, bool relay) external;

    /// @notice True iff the device exists, is Active and has not expired. Does NOT check the Ed25519 proof of
    /// possession (the EVM cannot): a client must also verify `DeviceRegistered.proof` before trusting the key.
    function verifyDevice(bytes32 deviceId) external view returns (bool);

    /// @notice The device record (status None for an unknown id).
    function devices(bytes32 deviceId) external view returns (Device memory);

    /// @notice The `index`-th device id registered by `owner` (all networks, registration order, revoked
    /// included). Reverts with DeviceRegistryIndexOutOfRange past the end. For off-chain reads (walks a list).
    function userDevices(address owner, uint256 index) external view returns (bytes32);

    /// @notice All device ids registered by `owner`.
    function getUserDevices(address owner) external view returns (bytes32[] memory);

    /// @notice keccak256(abi.encode(networkId, owner, publicKey)).
    function computeDeviceId(uint64 networkId, address owner, bytes32 publicKey) external pure returns (bytes32);

    /// @notice The exact bytes the device key signs (Ed25519) as proof of possession:
    /// abi.encodePacked(keccak256("ShadowMesh.DeviceRegistry.proof.v1"), block.chainid, address(this),
    /// networkId, owner, publicKey) = 32 + 32 + 20 + 8 + 20 + 32 = 144 bytes.
    function proofMessage(uint64 networkId, address owner, bytes32 publicKey) external view returns (bytes memory);

    // ------------------------------------------------------------------ fees

    /// @notice Protocol fee: wei to pay per registration and per renewal in every network (zero allowed), on
    /// top of the network's own fee.
    function registrationFee() external view returns (uint256);

    /// @notice Where `withdrawFees` sends collected fees.
    function treasury() external view returns (address);

    /// @notice FEE_MANAGER_ROLE: set the protocol's registration fee in wei (< 2**128).
    function setRegistrationFee(uint256 newFee) external;

    /// @notice DEFAULT_ADMIN_ROLE: set the treasury (not zero).
    function setTreasury(address newTreasury) external;

    /// @notice FEE_MANAGER_ROLE: send the collected protocol fees to the treasury (a push, with all remaining
    /// gas). Networks' fees are not touched (their admins withdraw them).
    /// If the treasury rejects ether the call reverts with the treasury's error (or OpenZeppelin's
    /// `FailedCall`) and the fees stay here; DEFAULT_ADMIN_ROLE then sets a treasury that accepts them.
    function withdrawFees() external;
}
