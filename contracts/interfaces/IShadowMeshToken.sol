// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IShadowMeshToken: SMT escrow and relay payments (the part beyond ERC-20 / ERC-2612)
/// @notice Relays are paid by the devices they serve (docs/contracts.md "Relay payments"):
/// 1. A payer deposits SMT into escrow (`deposit`). Optionally it authorises hot signer addresses
///    (`setReceiptSigner`), e.g. one Ethereum key per device, so the owner's key stays cold.
/// 2. A relay advertises its price in SMT base units (10**-18 SMT) per byte (`setRelayPrice`).
/// 3. As the relay forwards a device's traffic, the device signs EIP-712 `Receipt`s stating the cumulative
///    bytes that relay has carried for it, and the highest price per byte it accepts.
/// 4. The relay claims with the latest receipt (`claim`, or `claimBatch` for many) and is paid
///    (cumulativeBytes - bytes already paid) * min(advertised price, receipt maxPricePerByte), capped by the
///    escrow balance (only whole bytes are paid; the rest stays claimable with the same receipt later).
/// 5. A payer withdraws with notice: `requestWithdrawal`, then `withdraw` after `withdrawalDelay()` seconds,
///    during which relays can still claim from the whole balance.
///
/// EIP-712 domain: name "ShadowMesh", version "1", chainId, verifyingContract = this token.
/// Receipt type: "Receipt(address payer,bytes32 deviceId,address relay,uint256 cumulativeBytes,uint256 maxPricePerByte)".
/// The domain is the ERC-2612 permit domain; the type hashes differ, so a permit signature never verifies as a
/// receipt nor a receipt as a permit.
///
/// Trust model, by design (docs/contracts.md "Audit notes"):
/// - A relay's exposure to a payer is the traffic it carried since its last claim. The withdrawal notice
///   protects relays from an honest payer's withdrawal, not from a dishonest one: a payer can sign receipts to
///   a relay address it controls and claim its own escrow at once. Relays claim as often as their risk
///   allows and count only `balance - pendingWithdrawal` of an escrow as credit.
/// - De-authorising a receipt signer takes effect at once: receipts it signed and nobody claimed yet no longer
///   pay (so a stolen hot key is stopped at once). Signers are per payer, not per device.
/// - Malleability: the EIP-2098 compact form keeps s in 255 bits, so the high-s twin of a signature
///   (s' = n - s >= 2**255 for all but a 2**-128 share) cannot be expressed; and a receipt is identified by its
///   content (paidBytes), not its signature, so even a twin of a paid receipt would be stale.
interface IShadowMeshToken {
    // ------------------------------------------------------------------ types

    /// @notice A payer's escrow, packed in one slot. Amounts in SMT base units.
    /// @param balance escrowed tokens available to relays
    /// @param pendingWithdrawal amount requested for withdrawal (0 = none)
    /// @param unlockAt timestamp from which `withdraw` may be called (0 = no request)
    struct Escrow {
        uint96 balance;
        uint96 pendingWithdrawal;
        uint64 unlockAt;
    }

    /// @notice A receipt as the relay submits it: the EIP-712 `Receipt` fields except `relay`
    /// (always msg.sender) plus the secp256k1 signature of its EIP-712 digest in EIP-2098 compact form:
    /// `r`, and `vs = s | ((v - 27) << 255)` (v in {27, 28}).
    struct SignedReceipt {
        address payer;
        bytes32 deviceId;
        uint256 cumulativeBytes;
        uint256 maxPricePerByte;
        bytes32 r;
        bytes32 vs;
    }

    // ------------------------------------------------------------------ events (past tense)

    /// @notice `payer` moved `amount` SMT into escrow; its escrow balance is now `balance`.
    event Deposited(address indexed payer, uint256 amount, uint256 balance);

    /// @notice `payer` asked to withdraw `amount`; `withdraw` is possible from `unlockAt` (timestamp).
    event WithdrawalRequested(address indexed payer, uint256 amount, uint64 unlockAt);

    /// @notice `payer` cancelled its pending withdrawal request.
    event WithdrawalCancelled(address indexed payer);

    /// @notice `amount` SMT left `payer`'s escrow back to it; its escrow balance is now `balance`.
    event Withdrawn(address indexed payer, uint256 amount, uint256 balance);

    /// @notice `payer` authorised (or de-authorised) `signer` to sign receipts on its behalf.
    event ReceiptSignerSet(address indexed payer, address indexed signer, bool authorized);

    /// @notice `relay` advertised `pricePerByte` SMT base units per byte (0 = not accepting claims).
    event RelayPriceSet(address indexed relay, uint256 pricePerByte);

    /// @notice `relay` was paid `amount` by `payer` for `deviceId`; bytes paid on this
    /// (payer, deviceId, relay) channel now total `cumulativeBytes` (less than the receipt's when capped).
    event Claimed(address indexed relay, address indexed payer, bytes32 deviceId, uint256 cumulativeBytes, uint256 amount);

    /// @notice REWARDER_ROLE minted a bonus of `amount` to `relay` for `dataTransferred` bytes.
    event RelayRewarded(address indexed relay, uint256 dataTransferred, uint256 amount);

    /// @notice The bonus rate of `rewardRelayNode` changed (SMT base units per byte).
    event RewardRateSet(uint256 previousRate, uint256 newRate);

    // ------------------------------------------------------------------ errors (EIP-6093 style)

    /// @notice Zero amount where a positive one is required.
    error ShadowMeshTokenZeroAmount();
    /// @notice The escrow balance would exceed 2**96-1 base units.
    error ShadowMeshTokenEscrowOverflow(uint256 amount);
    /// @notice Requested more than the escrow holds.
    error ShadowMeshTokenInsufficientEscrow(address payer, uint256 balance, uint256 needed);
    /// @notice No withdrawal request is pending for `payer`.
    error ShadowMeshTokenNoWithdrawalRequested(address payer);
    /// @notice The notice period has not passed: `withdraw` is possible from `unlockAt`.
    error ShadowMeshTokenWithdrawalLocked(address payer, uint64 unlockAt);
    /// @notice The relay has no advertised price (0): it cannot be paid.
    error ShadowMeshTokenRelayPriceNotSet(address relay);
    /// @notice The price to pay, min(relay price, receipt maxPricePerByte), is 0.
    error ShadowMeshTokenZeroPrice(address relay, address payer);
    /// @notice The receipt was signed by `signer`, who is neither `payer` nor a signer it authorised
    /// (also what a receipt for another chain, contract, relay or with altered fields looks like).
    error ShadowMeshTokenInvalidSigner(address signer, address payer);
    /// @notice The receipt's cumulative bytes do not exceed what this channel has already been paid for.
    error ShadowMeshTokenStaleReceipt(uint256 cumulativeBytes, uint256 paidBytes);
    /// @notice The escrow cannot pay for a single byte at `price`.
    error ShadowMeshTokenEscrowEmpty(address payer, uint256 price);
    /// @notice `claimBatch` was called with no receipts.
    error ShadowMeshTokenEmptyBatch();
    /// @notice The zero address is not allowed here.
    error ShadowMeshTokenZeroAddress();
    /// @notice The withdrawal notice must be between 1 second and `max` seconds (365 days).
    error ShadowMeshTokenInvalidDelay(uint64 delay, uint64 max);

    // ------------------------------------------------------------------ escrow (payers)

    /// @notice Move `amount` of the caller's SMT into its escrow.
    function deposit(uint256 amount) external;

    /// @notice Ask to withdraw `amount` from escrow; replaces any earlier request and restarts the notice.
    function requestWithdrawal(uint256 amount) external;

    /// @notice Cancel the pending withdrawal request.
    function cancelWithdrawal() external;

    /// @notice After the notice period, pay out min(requested, balance) to the caller and clear the request.
    function withdraw() external;

    /// @notice Authorise (or not) `signer` to sign receipts paid from the caller's escrow. Immediate: once
    /// de-authorised, receipts `signer` signed earlier and nobody claimed yet are refused (InvalidSigner).
    function setReceiptSigner(address signer, bool authorized) external;

    /// @notice The payer's escrow record.
    function escrowOf(address payer) external view returns (Escrow memory);

    /// @notice Whether `signer` may sign receipts for `payer` (the payer itself always may).
    function isReceiptSigner(address payer, address signer) external view returns (bool);

    /// @notice Notice period of withdrawals, seconds (fixed at deployment).
    function withdrawalDelay() external view returns (uint64);

    /// @notice Sum of all escrow balances (SMT base units); = this token contract's own balance.
    function totalEscrowed() external view returns (uint256);

    // ------------------------------------------------------------------ relays

    /// @notice Advertise the caller's price in SMT base units per byte (0 = stop accepting claims: the relay's
    /// own outstanding receipts cannot be claimed either until it sets a price again). A claim pays at the
    /// price in force when it is made, never above the receipt's maxPricePerByte.
    function setRelayPrice(uint256 pricePerByte) external;

    /// @notice A relay's advertised price per byte.
    function relayPrice(address relay) external view returns (uint256);

    /// @notice Bytes already paid on the (payer, deviceId, relay) channel.
    function paidBytes(address payer, bytes32 deviceId, address relay) external view returns (uint256);

    /// @notice The caller (a relay) claims one receipt; the amount paid is in the `Claimed` event.
    function claim(SignedReceipt calldata receipt) external;

    /// @notice The caller (a relay) claims many receipts (any payers/devices) in one transfer.
    /// Reverts as a whole if any receipt is invalid, stale or unfunded (simulate it first: a payer can empty
    /// its escrow between the simulation and the block). Entries are settled in order, so a second entry for
    /// the same channel pays only the bytes above the first (an equal or lower one reverts StaleReceipt).
    /// Returns the total paid.
    function claimBatch(SignedReceipt[] calldata receipts) external returns (uint256 total);

    /// @notice The EIP-712 digest a signer signs for a receipt (for clients and tests).
    function receiptDigest(
        address payer,
        bytes32 deviceId,
        address relay,
        uint256 cumulativeBytes,
        uint256 maxPricePerByte
    ) external view returns (bytes32);

    // ------------------------------------------------------------------ minting and bonus

    /// @notice MINTER_ROLE: mint `amount` to `to`.
    function mint(address to, uint256 amount) external;

    /// @notice REWARDER_ROLE: a bonus emission on top of what payers pay: mints
    /// dataTransferred * rewardRatePerByte() to `relayNode` (spec's `rewardRelayNode`). Does not touch escrows.
    /// The contract does not check `dataTransferred` (no receipt, no registry lookup) nor cap the supply: the
    /// REWARDER_ROLE holder (a metering oracle) is trusted with emission, as MINTER_ROLE is.
    function rewardRelayNode(address relayNode, uint256 dataTransferred) external;

    /// @notice DEFAULT_ADMIN_ROLE: set the bonus rate (SMT base units per byte; 0 disables bonuses).
    function setRewardRate(uint256 newRate) external;

    /// @notice Current bonus rate (SMT base units per byte).
    function rewardRatePerByte() external view returns (uint256);
}
