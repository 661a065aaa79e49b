// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IShadowMeshToken: SMT relay payments by per-relay reserves and capped receipt signers (payments v2)
/// @notice Relays are paid by the devices they serve (docs/contracts.md "Relay payments"):
/// 1. A payer funds a **reserve** per relay (payer, relay): a one-way payment channel only that relay can
///    claim from (`depositToReserve`, or `deposit` into the payer's unallocated balance, then `fundReserve`).
///    The unallocated balance is nobody's collateral and is withdrawn at once (`withdraw`); a reserve is
///    withdrawn with notice (`requestReserveWithdrawal`, then `withdrawReserve` after `withdrawalDelay()`),
///    and its relay can claim from all of it until the withdrawal is made.
/// 2. What a reserve guarantees its relay is `guaranteedAmount(payer, relay)` = balance - pending withdrawal:
///    no action of the payer can take that from the relay before the relay has had the whole notice period to
///    claim it (a withdrawal request restarts the notice; a withdrawal pays at most the pending amount).
/// 3. The payer signs receipts itself or binds hot **signers** to one device id each, with a spending cap per
///    period (`authorizeSigner`): a signer's receipts pay only for that device id and at most `capPerPeriod`
///    per period (periods are fixed windows of `period` seconds from timestamp 0). De-authorising
///    (`revokeSigner`) takes effect after the notice period, so receipts it signed stay claimable until then.
/// 4. A relay advertises its price in SMT base units (10**-18 SMT) per byte (`setRelayPrice`). A device that
///    accepts it writes it into every receipt of that session (`pricePerByte`): the claim pays exactly the
///    receipt's price, so the relay cannot raise it after the fact (a new price needs new receipts).
/// 5. The relay claims the latest receipt of a channel (payer, deviceId, relay) (`claim`, or `claimBatch`)
///    and is paid (cumulativeBytes - bytes already paid) * pricePerByte, capped by its reserve and, for a
///    signer, by the signer's cap left in the period (whole bytes only; the rest stays claimable later with
///    the same receipt). `claim` reverts with the specific error; `claimBatch` skips an entry that cannot pay,
///    emitting `ClaimSkipped` with the reason, and pays the others.
///
/// EIP-712 domain: name "ShadowMesh", version "1", chainId, verifyingContract = this token.
/// Receipt type: "Receipt(address payer,bytes32 deviceId,address relay,uint256 cumulativeBytes,uint256 pricePerByte)".
/// The domain is the ERC-2612 permit domain; the type hashes differ, so a permit signature never verifies as a
/// receipt nor a receipt as a permit.
///
/// Trust model (docs/contracts.md "Audit notes", docs/payments.md threat model):
/// - Payer: loses at most what it put in the reserves it funded, to those relays only, and through a signer at
///   most capPerPeriod per period per (signer, device) until the revocation takes effect.
/// - Relay: is owed by receipts; paid for sure up to `guaranteedAmount` (it must claim before a withdrawal's
///   `unlockAt` and before a revoked signer's `validUntil`, both announced by events).
/// - Timestamps are stored in 32 bits in signer bindings (valid until year 2106) and 64 bits in reserves.
/// - Malleability: the EIP-2098 compact form keeps s in 255 bits, so the high-s twin of a signature
///   (s' = n - s >= 2**255 for all but a 2**-128 share) cannot be expressed; and a receipt is identified by its
///   content (paidBytes), not its signature, so even a twin of a paid receipt would be stale.
interface IShadowMeshToken {
    // ------------------------------------------------------------------ types

    /// @notice A (payer, relay) reserve, packed in one slot. Amounts in SMT base units.
    /// @param balance tokens only this relay can claim (with the payer's receipts)
    /// @param pendingWithdrawal amount the payer asked to withdraw (0 = none)
    /// @param unlockAt timestamp from which `withdrawReserve` may be called (0 = no request)
    struct Reserve {
        uint96 balance;
        uint96 pendingWithdrawal;
        uint64 unlockAt;
    }

    /// @notice A hot signer's binding to one device id of a payer, packed in one slot.
    /// @param capPerPeriod most its receipts pay (all relays together) per period, SMT base units; 0 = unbound
    /// @param spent paid from its receipts in period `epoch`
    /// @param period length of a period, seconds; period n covers [n * period, (n + 1) * period)
    /// @param epoch the period `spent` belongs to (block.timestamp / period)
    /// @param validUntil 0 = no end; else its receipts pay only while block.timestamp < validUntil
    struct SignerBinding {
        uint80 capPerPeriod;
        uint80 spent;
        uint32 period;
        uint32 epoch;
        uint32 validUntil;
    }

    /// @notice A receipt as the relay submits it: the EIP-712 `Receipt` fields except `relay`
    /// (always msg.sender) plus the secp256k1 signature of its EIP-712 digest in EIP-2098 compact form:
    /// `r`, and `vs = s | ((v - 27) << 255)` (v in {27, 28}).
    struct SignedReceipt {
        address payer;
        bytes32 deviceId;
        uint256 cumulativeBytes;
        uint256 pricePerByte;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice Why `claimBatch` skipped an entry (`ClaimSkipped.reason`); `claim` reverts with the error named.
    enum ClaimFailure {
        InvalidSigner, // 0: ShadowMeshTokenInvalidSigner (bad signature, or a signer not bound to this device)
        SignerRevoked, // 1: ShadowMeshTokenSignerRevoked (the signer's binding has ended)
        ZeroPrice, // 2: ShadowMeshTokenZeroPrice
        StaleReceipt, // 3: ShadowMeshTokenStaleReceipt
        ReserveEmpty, // 4: ShadowMeshTokenReserveEmpty
        SignerCapReached // 5: ShadowMeshTokenSignerCapReached
    }

    // ------------------------------------------------------------------ events (past tense)

    /// @notice `payer` moved `amount` SMT into its unallocated balance, which is now `balance`.
    event Deposited(address indexed payer, uint256 amount, uint256 balance);

    /// @notice `amount` SMT left `payer`'s unallocated balance back to it; the balance is now `balance`.
    event Withdrawn(address indexed payer, uint256 amount, uint256 balance);

    /// @notice `payer` added `amount` to its reserve for `relay` (from its wallet or its unallocated balance);
    /// the reserve's balance is now `balance`.
    event ReserveFunded(address indexed payer, address indexed relay, uint256 amount, uint256 balance);

    /// @notice `payer` asked to withdraw `amount` from its reserve for `relay`; `withdrawReserve` is possible
    /// from `unlockAt` (timestamp). Until the withdrawal is made the relay can claim from the whole reserve.
    event ReserveWithdrawalRequested(address indexed payer, address indexed relay, uint256 amount, uint64 unlockAt);

    /// @notice `payer` cancelled its pending withdrawal from its reserve for `relay`.
    event ReserveWithdrawalCancelled(address indexed payer, address indexed relay);

    /// @notice `amount` SMT left `payer`'s reserve for `relay` back to `payer`; the reserve is now `balance`.
    event ReserveWithdrawn(address indexed payer, address indexed relay, uint256 amount, uint256 balance);

    /// @notice `payer` bound `signer` to `deviceId` with a cap of `capPerPeriod` per `period` seconds (a new
    /// binding, a raised cap, or a revocation withdrawn).
    event SignerAuthorized(
        address indexed payer, address indexed signer, bytes32 indexed deviceId, uint256 capPerPeriod, uint32 period
    );

    /// @notice `payer` de-authorised `signer` for `deviceId`: its receipts pay while block.timestamp < validUntil.
    event SignerRevoked(address indexed payer, address indexed signer, bytes32 indexed deviceId, uint64 validUntil);

    /// @notice `relay` advertised `pricePerByte` SMT base units per byte (information for devices).
    event RelayPriceSet(address indexed relay, uint256 pricePerByte);

    /// @notice `relay` was paid `amount` by `payer` for `deviceId`; bytes paid on this
    /// (payer, deviceId, relay) channel now total `cumulativeBytes` (less than the receipt's when capped).
    event Claimed(address indexed relay, address indexed payer, bytes32 deviceId, uint256 cumulativeBytes, uint256 amount);

    /// @notice `claimBatch` skipped the entry for (payer, deviceId) with `cumulativeBytes`: it could not pay
    /// anything, for `reason`. Nothing changed for that entry.
    event ClaimSkipped(
        address indexed relay, address indexed payer, bytes32 deviceId, uint256 cumulativeBytes, ClaimFailure reason
    );

    /// @notice REWARDER_ROLE minted a bonus of `amount` to `relay` for `dataTransferred` bytes.
    event RelayRewarded(address indexed relay, uint256 dataTransferred, uint256 amount);

    /// @notice The bonus rate of `rewardRelayNode` changed (SMT base units per byte).
    event RewardRateSet(uint256 previousRate, uint256 newRate);

    // ------------------------------------------------------------------ errors (EIP-6093 style)

    /// @notice Zero amount where a positive one is required (deposit, reserve, withdrawal, cap).
    error ShadowMeshTokenZeroAmount();
    /// @notice A reserve's balance would exceed 2**96-1 base units.
    error ShadowMeshTokenEscrowOverflow(uint256 amount);
    /// @notice `payer`'s unallocated balance is `balance`, less than `needed`.
    error ShadowMeshTokenInsufficientDeposit(address payer, uint256 balance, uint256 needed);
    /// @notice `payer`'s reserve for `relay` holds `balance`, less than `needed`.
    error ShadowMeshTokenInsufficientReserve(address payer, address relay, uint256 balance, uint256 needed);
    /// @notice No withdrawal request is pending on `payer`'s reserve for `relay`.
    error ShadowMeshTokenNoWithdrawalRequested(address payer, address relay);
    /// @notice The notice period has not passed: `withdrawReserve` is possible from `unlockAt`.
    error ShadowMeshTokenWithdrawalLocked(address payer, address relay, uint64 unlockAt);
    /// @notice The receipt's price is 0.
    error ShadowMeshTokenZeroPrice(address relay, address payer);
    /// @notice The receipt was signed by `signer`, who is neither `payer` nor a signer `payer` bound to the
    /// receipt's device id (also what a receipt for another chain, contract, relay or with altered fields
    /// looks like: it recovers to an unrelated address, or to zero).
    error ShadowMeshTokenInvalidSigner(address signer, address payer);
    /// @notice `signer`'s binding to (`payer`, `deviceId`) ended at `validUntil` (or ends then, when returned
    /// by `revokeSigner` for a revocation already scheduled).
    error ShadowMeshTokenSignerRevoked(address signer, address payer, bytes32 deviceId, uint64 validUntil);
    /// @notice `signer`'s cap for this period cannot pay a single byte at the receipt's price (`left` remains).
    error ShadowMeshTokenSignerCapReached(address signer, bytes32 deviceId, uint256 left);
    /// @notice `signer` is not bound to `deviceId` (never, or its binding has ended).
    error ShadowMeshTokenSignerNotBound(address signer, bytes32 deviceId);
    /// @notice A live binding can only be given a higher (or equal) cap with the same period; lower or
    /// re-period it by revoking (notice) and binding again, or bind a new signer key.
    error ShadowMeshTokenSignerTermsLowered(address signer, bytes32 deviceId, uint256 capPerPeriod, uint32 period);
    /// @notice A signer's cap per period must be below 2**80 base units (~1.2 million SMT).
    error ShadowMeshTokenCapOverflow(uint256 capPerPeriod);
    /// @notice A signer's period must be at least one second.
    error ShadowMeshTokenInvalidPeriod();
    /// @notice The reserve cannot pay for a single byte at `price`.
    error ShadowMeshTokenReserveEmpty(address payer, address relay, uint256 price);
    /// @notice The receipt's cumulative bytes do not exceed what this channel has already been paid for.
    error ShadowMeshTokenStaleReceipt(uint256 cumulativeBytes, uint256 paidBytes);
    /// @notice `claimBatch` was called with no receipts.
    error ShadowMeshTokenEmptyBatch();
    /// @notice The zero address is not allowed here.
    error ShadowMeshTokenZeroAddress();
    /// @notice The withdrawal notice must be between 1 second and `max` seconds (365 days).
    error ShadowMeshTokenInvalidDelay(uint64 delay, uint64 max);

    // ------------------------------------------------------------------ payers: balances and reserves

    /// @notice Move `amount` of the caller's SMT into its unallocated balance (nobody's collateral yet).
    function deposit(uint256 amount) external;

    /// @notice Move `amount` from the caller's unallocated balance back to its wallet, at once (no relay
    /// counts on it).
    function withdraw(uint256 amount) external;

    /// @notice Move `amount` from the caller's unallocated balance into its reserve for `relay`.
    function fundReserve(address relay, uint256 amount) external;

    /// @notice Move `amount` of the caller's SMT from its wallet straight into its reserve for `relay`
    /// (opens the reserve if new): one transaction.
    function depositToReserve(address relay, uint256 amount) external;

    /// @notice Ask to withdraw `amount` from the caller's reserve for `relay`; replaces any earlier request and
    /// restarts the notice. The relay can claim from the whole reserve until the withdrawal is made.
    function requestReserveWithdrawal(address relay, uint256 amount) external;

    /// @notice Cancel the pending withdrawal from the caller's reserve for `relay`.
    function cancelReserveWithdrawal(address relay) external;

    /// @notice After the notice period, pay min(requested, reserve balance) to the caller and clear the
    /// request. What the relay claimed during the notice is gone from the reserve, never taken back; what the
    /// reserve guaranteed the relay (balance - pending) stays in it.
    function withdrawReserve(address relay) external;

    /// @notice The payer's unallocated balance.
    function depositOf(address payer) external view returns (uint256);

    /// @notice The (payer, relay) reserve record.
    function reserveOf(address payer, address relay) external view returns (Reserve memory);

    /// @notice What the reserve guarantees `relay` whatever the payer does: balance - min(pending, balance).
    /// The relay's unclaimed receipts count against it (the relay client subtracts what it is owed).
    function guaranteedAmount(address payer, address relay) external view returns (uint256);

    /// @notice Notice period of reserve withdrawals and of signer revocations, seconds (fixed at deployment).
    function withdrawalDelay() external view returns (uint64);

    /// @notice Sum of all unallocated balances and reserves (SMT base units); = this contract's own balance.
    function totalEscrowed() external view returns (uint256);

    // ------------------------------------------------------------------ payers: receipt signers

    /// @notice Bind `signer` to the caller's device `deviceId`: its receipts for that device (for any relay the
    /// caller funded) pay at most `capPerPeriod` per `period` seconds, all relays together. A live binding can
    /// only have its cap raised (same period); re-authorising during a revocation's notice cancels it. An
    /// ended binding starts afresh. One signer may be bound to several device ids, each with its own cap.
    function authorizeSigner(address signer, bytes32 deviceId, uint256 capPerPeriod, uint32 period) external;

    /// @notice De-authorise `signer` for `deviceId` after the notice period: its receipts (signed before or
    /// after this call) pay while block.timestamp < now + withdrawalDelay(), then never.
    function revokeSigner(address signer, bytes32 deviceId) external;

    /// @notice The binding of `signer` to (`payer`, `deviceId`) (all zero if none).
    function signerBinding(address payer, address signer, bytes32 deviceId) external view returns (SignerBinding memory);

    /// @notice What receipts by `signer` for (`payer`, `deviceId`) can still pay in the current period (0 if it
    /// is not bound or its binding has ended; type(uint256).max for the payer itself).
    function signerAllowance(address payer, address signer, bytes32 deviceId) external view returns (uint256);

    /// @notice Whether receipts by `signer` for (`payer`, `deviceId`) pay now (the payer itself always may).
    function isReceiptSigner(address payer, address signer, bytes32 deviceId) external view returns (bool);

    // ------------------------------------------------------------------ relays

    /// @notice Advertise the caller's price in SMT base units per byte (0 = not serving paid sessions). The
    /// chain does not use it to pay: a claim pays the receipt's `pricePerByte`, the price the device accepted.
    function setRelayPrice(uint256 pricePerByte) external;

    /// @notice A relay's advertised price per byte.
    function relayPrice(address relay) external view returns (uint256);

    /// @notice Bytes already paid on the (payer, deviceId, relay) channel.
    function paidBytes(address payer, bytes32 deviceId, address relay) external view returns (uint256);

    /// @notice The caller (a relay) claims one receipt from the payer's reserve for it; the amount paid is in
    /// the `Claimed` event. Reverts with the specific error when it cannot pay a single byte.
    function claim(SignedReceipt calldata receipt) external;

    /// @notice The caller (a relay) claims many receipts (any payers/devices) in one transfer. An entry that
    /// cannot pay is skipped with `ClaimSkipped` (its reason), never reverting the batch, so a payer cannot
    /// void a relay's batch by front-running it. Entries are settled in order, so a second entry for the same
    /// channel pays only the bytes above the first (an equal or lower one is skipped as stale).
    /// Returns the total paid (0 if every entry was skipped). Reverts only on an empty batch.
    function claimBatch(SignedReceipt[] calldata receipts) external returns (uint256 total);

    /// @notice The EIP-712 digest a signer signs for a receipt (for clients and tests).
    function receiptDigest(
        address payer,
        bytes32 deviceId,
        address relay,
        uint256 cumulativeBytes,
        uint256 pricePerByte
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
