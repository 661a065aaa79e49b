// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IShadowMeshToken} from "./interfaces/IShadowMeshToken.sol";

/// @title ShadowMeshToken (SMT): ERC-20 + ERC-2612 permit, with relay payments from per-relay reserves
/// @notice See IShadowMeshToken and docs/contracts.md "Relay payments".
/// Deposited tokens (unallocated balances and reserves) are held by this contract in its own ERC-20 balance;
/// transfers to this contract other than through `deposit`/`depositToReserve` are refused, so
/// `balanceOf(address(this))` is exactly the sum of unallocated balances and reserves.
/// Re-entrancy: claims and withdrawals only call this contract's own ERC-20 `_update` (no hooks, no external
/// calls) and the ecrecover precompile, after all state is written.
contract ShadowMeshToken is IShadowMeshToken, ERC20, ERC20Permit, AccessControl {
    /// @notice Role that may mint.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
    /// @notice Role that may call `rewardRelayNode`.
    bytes32 public constant REWARDER_ROLE = keccak256("REWARDER_ROLE");

    /// @notice EIP-712 type hash of a relay receipt.
    bytes32 public constant RECEIPT_TYPEHASH = keccak256(
        "Receipt(address payer,bytes32 deviceId,address relay,uint256 cumulativeBytes,uint256 pricePerByte)"
    );

    /// @dev Longest withdrawal notice accepted by the constructor: 365 days. Bounds `now + delay` far below
    /// 2**64 (an unbounded delay would make `requestReserveWithdrawal` overflow and lock every reserve).
    uint64 private constant _MAX_WITHDRAWAL_DELAY = 365 days;

    uint64 private immutable _withdrawalDelay;

    uint256 private _rewardRatePerByte;

    mapping(address payer => uint256) private _deposits;
    mapping(address payer => mapping(address relay => Reserve)) private _reserves;
    mapping(address payer => mapping(address signer => mapping(bytes32 deviceId => SignerBinding))) private _signers;
    mapping(address relay => uint256) private _relayPrices;
    /// @dev Bytes paid per channel, keyed by keccak256(abi.encode(payer, deviceId, relay)).
    mapping(bytes32 channel => uint256) private _paidBytes;

    /// @param admin receives DEFAULT_ADMIN_ROLE, MINTER_ROLE and REWARDER_ROLE
    /// @param withdrawalDelay_ notice period of reserve withdrawals and signer revocations, seconds: 1 to 365
    /// days' worth
    constructor(address admin, uint64 withdrawalDelay_) ERC20("ShadowMesh", "SMT") ERC20Permit("ShadowMesh") {
        if (admin == address(0)) revert ShadowMeshTokenZeroAddress();
        if (withdrawalDelay_ == 0 || withdrawalDelay_ > _MAX_WITHDRAWAL_DELAY) {
            revert ShadowMeshTokenInvalidDelay(withdrawalDelay_, _MAX_WITHDRAWAL_DELAY);
        }
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
        _grantRole(REWARDER_ROLE, admin);
        _withdrawalDelay = withdrawalDelay_;
    }

    // ------------------------------------------------------------------ payers: balances and reserves

    /// @inheritdoc IShadowMeshToken
    function deposit(uint256 amount) external {
        if (amount == 0) revert ShadowMeshTokenZeroAmount();
        uint256 balance = _deposits[msg.sender] + amount;
        _deposits[msg.sender] = balance;
        // The only ways in (with depositToReserve): `_update` below refuses other transfers to this contract.
        super._update(msg.sender, address(this), amount);
        emit Deposited(msg.sender, amount, balance);
    }

    /// @inheritdoc IShadowMeshToken
    function withdraw(uint256 amount) external {
        if (amount == 0) revert ShadowMeshTokenZeroAmount();
        uint256 balance = _deposits[msg.sender];
        if (amount > balance) revert ShadowMeshTokenInsufficientDeposit(msg.sender, balance, amount);
        unchecked {
            balance -= amount; // checked just above
        }
        _deposits[msg.sender] = balance;
        super._update(address(this), msg.sender, amount);
        emit Withdrawn(msg.sender, amount, balance);
    }

    /// @inheritdoc IShadowMeshToken
    function fundReserve(address relay, uint256 amount) external {
        uint256 available = _deposits[msg.sender];
        if (amount > available) revert ShadowMeshTokenInsufficientDeposit(msg.sender, available, amount);
        unchecked {
            _deposits[msg.sender] = available - amount; // checked just above
        }
        _addToReserve(relay, amount);
    }

    /// @inheritdoc IShadowMeshToken
    function depositToReserve(address relay, uint256 amount) external {
        _addToReserve(relay, amount);
        super._update(msg.sender, address(this), amount);
    }

    /// @dev Adds `amount` to the caller's reserve for `relay` and emits ReserveFunded; the caller moves the tokens.
    function _addToReserve(address relay, uint256 amount) private {
        if (relay == address(0)) revert ShadowMeshTokenZeroAddress();
        if (amount == 0) revert ShadowMeshTokenZeroAmount();
        Reserve storage reserve = _reserves[msg.sender][relay];
        uint256 balance = uint256(reserve.balance) + amount;
        if (balance > type(uint96).max) revert ShadowMeshTokenEscrowOverflow(amount);
        reserve.balance = uint96(balance);
        emit ReserveFunded(msg.sender, relay, amount, balance);
    }

    /// @inheritdoc IShadowMeshToken
    function requestReserveWithdrawal(address relay, uint256 amount) external {
        if (amount == 0) revert ShadowMeshTokenZeroAmount();
        Reserve storage reserve = _reserves[msg.sender][relay];
        uint256 balance = reserve.balance;
        if (amount > balance) revert ShadowMeshTokenInsufficientReserve(msg.sender, relay, balance, amount);
        uint64 unlockAt = uint64(block.timestamp) + _withdrawalDelay;
        reserve.pendingWithdrawal = uint96(amount); // <= balance <= type(uint96).max
        reserve.unlockAt = unlockAt;
        emit ReserveWithdrawalRequested(msg.sender, relay, amount, unlockAt);
    }

    /// @inheritdoc IShadowMeshToken
    function cancelReserveWithdrawal(address relay) external {
        Reserve storage reserve = _reserves[msg.sender][relay];
        if (reserve.unlockAt == 0) revert ShadowMeshTokenNoWithdrawalRequested(msg.sender, relay);
        reserve.pendingWithdrawal = 0;
        reserve.unlockAt = 0;
        emit ReserveWithdrawalCancelled(msg.sender, relay);
    }

    /// @inheritdoc IShadowMeshToken
    function withdrawReserve(address relay) external {
        Reserve memory reserve = _reserves[msg.sender][relay];
        // slither-disable-next-line incorrect-equality (0 is the "no request" sentinel, set only by this contract)
        if (reserve.unlockAt == 0) revert ShadowMeshTokenNoWithdrawalRequested(msg.sender, relay);
        // slither-disable-next-line timestamp (the notice period is hours or days; miner drift of seconds is harmless)
        if (block.timestamp < reserve.unlockAt) {
            revert ShadowMeshTokenWithdrawalLocked(msg.sender, relay, reserve.unlockAt);
        }
        // Claims during the notice may have reduced the balance below the request: pay what is left. Never more
        // than the request, so balance - pending (what the reserve guaranteed the relay) stays in the reserve.
        uint96 amount = reserve.pendingWithdrawal < reserve.balance ? reserve.pendingWithdrawal : reserve.balance;
        uint96 balance = reserve.balance - amount;
        _reserves[msg.sender][relay] = Reserve({balance: balance, pendingWithdrawal: 0, unlockAt: 0});
        super._update(address(this), msg.sender, amount);
        emit ReserveWithdrawn(msg.sender, relay, amount, balance);
    }

    /// @inheritdoc IShadowMeshToken
    function depositOf(address payer) external view returns (uint256) {
        return _deposits[payer];
    }

    /// @inheritdoc IShadowMeshToken
    function reserveOf(address payer, address relay) external view returns (Reserve memory) {
        return _reserves[payer][relay];
    }

    /// @inheritdoc IShadowMeshToken
    function guaranteedAmount(address payer, address relay) external view returns (uint256) {
        Reserve memory reserve = _reserves[payer][relay];
        return reserve.pendingWithdrawal < reserve.balance ? reserve.balance - reserve.pendingWithdrawal : 0;
    }

    /// @inheritdoc IShadowMeshToken
    function withdrawalDelay() external view returns (uint64) {
        return _withdrawalDelay;
    }

    /// @inheritdoc IShadowMeshToken
    function totalEscrowed() external view returns (uint256) {
        return balanceOf(address(this));
    }

    // ------------------------------------------------------------------ payers: receipt signers

    /// @inheritdoc IShadowMeshToken
    function authorizeSigner(address signer, bytes32 deviceId, uint256 capPerPeriod, uint32 period) external {
        if (signer == address(0)) revert ShadowMeshTokenZeroAddress();
        if (capPerPeriod == 0) revert ShadowMeshTokenZeroAmount();
        if (capPerPeriod > type(uint80).max) revert ShadowMeshTokenCapOverflow(capPerPeriod);
        if (period == 0) revert ShadowMeshTokenInvalidPeriod();
        SignerBinding storage binding = _signers[msg.sender][signer][deviceId];
        SignerBinding memory current = binding;
        if (_live(current)) {
            // Relays extend credit on the current terms: only a raise is immediate (a lower cap or another
            // period would void receipts they acknowledged, like an immediate revocation).
            if (capPerPeriod < current.capPerPeriod || period != current.period) {
                revert ShadowMeshTokenSignerTermsLowered(signer, deviceId, current.capPerPeriod, current.period);
            }
            binding.capPerPeriod = uint80(capPerPeriod); // checked above
            binding.validUntil = 0;
        } else {
            _signers[msg.sender][signer][deviceId] = SignerBinding({
                capPerPeriod: uint80(capPerPeriod), // checked above
                spent: 0,
                period: period,
                epoch: 0,
                validUntil: 0
            });
        }
        emit SignerAuthorized(msg.sender, signer, deviceId, capPerPeriod, period);
    }

    /// @inheritdoc IShadowMeshToken
    function revokeSigner(address signer, bytes32 deviceId) external {
        SignerBinding storage binding = _signers[msg.sender][signer][deviceId];
        SignerBinding memory current = binding;
        if (!_live(current)) revert ShadowMeshTokenSignerNotBound(signer, deviceId);
        if (current.validUntil != 0) {
            revert ShadowMeshTokenSignerRevoked(signer, msg.sender, deviceId, current.validUntil);
        }
        // Fits 32 bits until the year 2106 (minus the notice): documented in the interface.
        uint32 validUntil = uint32(block.timestamp + _withdrawalDelay);
        binding.validUntil = validUntil;
        emit SignerRevoked(msg.sender, signer, deviceId, validUntil);
    }

    /// @inheritdoc IShadowMeshToken
    function signerBinding(address payer, address signer, bytes32 deviceId)
        external
        view
        returns (SignerBinding memory)
    {
        return _signers[payer][signer][deviceId];
    }

    /// @inheritdoc IShadowMeshToken
    function signerAllowance(address payer, address signer, bytes32 deviceId) external view returns (uint256) {
        if (signer == payer) return type(uint256).max;
        SignerBinding memory binding = _signers[payer][signer][deviceId];
        if (!_live(binding)) return 0;
        return _capLeft(binding);
    }

    /// @inheritdoc IShadowMeshToken
    function isReceiptSigner(address payer, address signer, bytes32 deviceId) external view returns (bool) {
        return signer != address(0) && (signer == payer || _live(_signers[payer][signer][deviceId]));
    }

    /// @dev A binding exists (cap > 0) and has not ended.
    function _live(SignerBinding memory binding) private view returns (bool) {
        // 0 is the "unbound" / "no end" sentinel, set only by this contract; the notice is hours or days, so
        // miner drift of seconds is harmless.
        // slither-disable-next-line incorrect-equality,timestamp
        return binding.capPerPeriod != 0 && (binding.validUntil == 0 || block.timestamp < binding.validUntil);
    }

    /// @dev What a binding's receipts can still pay in the current period.
    function _capLeft(SignerBinding memory binding) private view returns (uint256) {
        // spent <= capPerPeriod always (a payment never exceeds what is left), so no underflow. The period index
        // is compared exactly on purpose (same window or not); drift of seconds only moves a window edge.
        // slither-disable-next-line incorrect-equality,timestamp
        return block.timestamp / binding.period == binding.epoch
            ? binding.capPerPeriod - binding.spent
            : binding.capPerPeriod;
    }

    // ------------------------------------------------------------------ relays

    /// @inheritdoc IShadowMeshToken
    function setRelayPrice(uint256 pricePerByte) external {
        _relayPrices[msg.sender] = pricePerByte;
        emit RelayPriceSet(msg.sender, pricePerByte);
    }

    /// @inheritdoc IShadowMeshToken
    function relayPrice(address relay) external view returns (uint256) {
        return _relayPrices[relay];
    }

    /// @inheritdoc IShadowMeshToken
    function paidBytes(address payer, bytes32 deviceId, address relay) external view returns (uint256) {
        return _paidBytes[_channelKey(payer, deviceId, relay)];
    }

    /// @inheritdoc IShadowMeshToken
    function claim(SignedReceipt calldata receipt) external {
        _payRelay(msg.sender, _settle(msg.sender, receipt, true));
    }

    /// @inheritdoc IShadowMeshToken
    function claimBatch(SignedReceipt[] calldata receipts) external returns (uint256 total) {
        uint256 count = receipts.length;
        if (count == 0) revert ShadowMeshTokenEmptyBatch();
        for (uint256 i = 0; i < count; ++i) {
            total += _settle(msg.sender, receipts[i], false);
        }
        if (total != 0) _payRelay(msg.sender, total);
    }

    /// @inheritdoc IShadowMeshToken
    function receiptDigest(
        address payer,
        bytes32 deviceId,
        address relay,
        uint256 cumulativeBytes,
        uint256 pricePerByte
    ) public view returns (bytes32) {
        return _hashTypedDataV4(_receiptStructHash(payer, deviceId, relay, cumulativeBytes, pricePerByte));
    }

    /// @dev keccak256(abi.encode(RECEIPT_TYPEHASH, payer, deviceId, relay, cumulativeBytes, pricePerByte)),
    /// hashed in place in free memory without moving the free-memory pointer (saves ~150 gas per receipt).
    function _receiptStructHash(
        address payer,
        bytes32 deviceId,
        address relay,
        uint256 cumulativeBytes,
        uint256 pricePerByte
    ) private pure returns (bytes32 structHash) {
        bytes32 typeHash = RECEIPT_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typeHash)
            mstore(add(ptr, 0x20), and(payer, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(ptr, 0x40), deviceId)
            mstore(add(ptr, 0x60), and(relay, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(ptr, 0x80), cumulativeBytes)
            mstore(add(ptr, 0xa0), pricePerByte)
            structHash := keccak256(ptr, 0xc0)
        }
    }

    /// @dev Checks one receipt and moves its amount out of the payer's reserve for `relay` (not yet to the
    /// relay). When nothing can be paid: `strict` (claim) reverts with the specific error; otherwise
    /// (claimBatch) emits ClaimSkipped and returns 0, leaving all state as it was.
    function _settle(address relay, SignedReceipt calldata receipt, bool strict) private returns (uint256 amount) {
        bytes memory err;
        (amount, err) = _pay(relay, receipt);
        if (err.length != 0) _fail(strict, relay, receipt, err);
    }

    /// @dev Pays the receipt from the reserve at the receipt's price: only whole bytes that both the reserve and
    /// (for a signer) the signer's cap left in this period cover, so paidBytes advances by exactly the bytes paid
    /// for. Returns a non-empty ABI-encoded custom error (and changes nothing) when not a single byte can be paid.
    function _pay(address relay, SignedReceipt calldata receipt) private returns (uint256 amount, bytes memory err) {
        address signer = _recover(
            receiptDigest(receipt.payer, receipt.deviceId, relay, receipt.cumulativeBytes, receipt.pricePerByte),
            receipt.r,
            receipt.vs
        );
        SignerBinding storage binding = _signers[receipt.payer][signer][receipt.deviceId];
        uint256 limit = type(uint256).max; // what the signer may still pay this period (the payer: no limit)
        if (signer != receipt.payer || signer == address(0)) {
            (limit, err) = _signerLimit(binding, signer, receipt);
            if (err.length != 0) return (0, err);
        }
        bytes32 channel = _channelKey(receipt.payer, receipt.deviceId, relay);
        uint256 paid = _paidBytes[channel];
        uint256 due = receipt.cumulativeBytes;
        if (due <= paid) return (0, abi.encodeWithSelector(ShadowMeshTokenStaleReceipt.selector, due, paid));
        unchecked {
            due -= paid; // checked just above
        }
        Reserve storage reserve = _reserves[receipt.payer][relay];
        uint256 balance = reserve.balance;
        uint256 affordable;
        (affordable, err) = _affordable(relay, receipt, signer, balance, limit);
        // slither-disable-next-line incorrect-equality (0 = nothing payable, with its error: a sentinel)
        if (affordable == 0) return (0, err);
        if (due > affordable) due = affordable;
        unchecked {
            // due <= balance / price, so amount <= balance <= type(uint96).max; paid + due <= cumulativeBytes
            amount = due * receipt.pricePerByte;
            reserve.balance = uint96(balance - amount);
            paid += due;
        }
        _paidBytes[channel] = paid;
        if (limit != type(uint256).max) _spend(binding, limit, amount);
        emit Claimed(relay, receipt.payer, receipt.deviceId, paid, amount);
    }

    /// @dev For a receipt not signed by its payer: what `signer`'s binding to the receipt's device can still
    /// pay in this period, or the error when it cannot sign for it at all (zero signer = invalid signature; no
    /// binding = not bound to this device; ended binding = revoked).
    function _signerLimit(SignerBinding storage binding, address signer, SignedReceipt calldata receipt)
        private
        view
        returns (uint256 limit, bytes memory err)
    {
        SignerBinding memory bound = binding;
        // An invalid signature recovers to zero (refused explicitly, so a receipt "from" the zero payer never
        // passes) or to an unrelated address, which has no binding.
        if (signer == address(0) || bound.capPerPeriod == 0) {
            return (0, abi.encodeWithSelector(ShadowMeshTokenInvalidSigner.selector, signer, receipt.payer));
        }
        // slither-disable-next-line timestamp (the notice is hours or days; miner drift of seconds is harmless)
        if (bound.validUntil != 0 && block.timestamp >= bound.validUntil) {
            return (0, abi.encodeWithSelector(ShadowMeshTokenSignerRevoked.selector, signer, receipt.payer,
                receipt.deviceId, uint64(bound.validUntil)));
        }
        limit = _capLeft(bound);
    }

    /// @dev Whole bytes at the receipt's price that both the reserve `balance` and `limit` cover; when 0, also the
    /// error saying why (zero price, then an exhausted reserve, then an exhausted cap).
    function _affordable(address relay, SignedReceipt calldata receipt, address signer, uint256 balance, uint256 limit)
        private
        pure
        returns (uint256 affordable, bytes memory err)
    {
        uint256 price = receipt.pricePerByte;
        if (price == 0) return (0, abi.encodeWithSelector(ShadowMeshTokenZeroPrice.selector, relay, receipt.payer));
        affordable = balance / price;
        // slither-disable-next-line incorrect-equality ("not one whole byte": the exact test is the intended one)
        if (affordable == 0) {
            return (0, abi.encodeWithSelector(ShadowMeshTokenReserveEmpty.selector, receipt.payer, relay, price));
        }
        if (limit / price < affordable) {
            affordable = limit / price;
            // slither-disable-next-line incorrect-equality ("not one whole byte": the exact test is the intended one)
            if (affordable == 0) {
                err = abi.encodeWithSelector(ShadowMeshTokenSignerCapReached.selector, signer, receipt.deviceId, limit);
            }
        }
    }

    /// @dev Books `amount` (<= `left`, what the binding could still pay this period) against a signer's cap.
    function _spend(SignerBinding storage binding, uint256 left, uint256 amount) private {
        unchecked {
            // amount <= left <= capPerPeriod < 2**80, so capPerPeriod - left + amount <= capPerPeriod fits uint80;
            // spent in this period was capPerPeriod - left (0 in a new period, where left = capPerPeriod).
            binding.spent = uint80(binding.capPerPeriod - left + amount);
            // block.timestamp / period < 2**32 until the year 2106 (period >= 1): documented in the interface.
            binding.epoch = uint32(block.timestamp / binding.period);
        }
    }

    /// @dev A receipt that cannot pay: `strict` reverts with `err` (an ABI-encoded custom error declared in
    /// IShadowMeshToken); otherwise emits ClaimSkipped with the reason that error stands for (claimBatch goes on).
    function _fail(bool strict, address relay, SignedReceipt calldata receipt, bytes memory err) private {
        if (strict) {
            assembly ("memory-safe") {
                revert(add(err, 0x20), mload(err))
            }
        }
        // slither-disable-start incorrect-equality (maps our own error selectors to reasons; no balance involved)
        bytes4 selector = bytes4(err[0]) | (bytes4(err[1]) >> 8) | (bytes4(err[2]) >> 16) | (bytes4(err[3]) >> 24);
        ClaimFailure reason = ClaimFailure.InvalidSigner;
        if (selector == ShadowMeshTokenSignerRevoked.selector) reason = ClaimFailure.SignerRevoked;
        else if (selector == ShadowMeshTokenZeroPrice.selector) reason = ClaimFailure.ZeroPrice;
        else if (selector == ShadowMeshTokenStaleReceipt.selector) reason = ClaimFailure.StaleReceipt;
        else if (selector == ShadowMeshTokenReserveEmpty.selector) reason = ClaimFailure.ReserveEmpty;
        else if (selector == ShadowMeshTokenSignerCapReached.selector) reason = ClaimFailure.SignerCapReached;
        // slither-disable-end incorrect-equality
        emit ClaimSkipped(relay, receipt.payer, receipt.deviceId, receipt.cumulativeBytes, reason);
    }

    /// @dev ecrecover of an EIP-2098 compact signature (v = 27 + top bit of vs, s = vs without it), calling the
    /// precompile from assembly: no checked uint8 addition, no memory allocation (the four words go above the
    /// free-memory pointer, which does not move). Returns zero for an invalid signature (the precompile then
    /// returns nothing and the zeroed scratch word stays zero) or if the call fails. Malleability does not
    /// matter here (a receipt is identified by its content, not its signature; and the compact form cannot
    /// carry a high s, whose top bit is v's), so the precompile is called directly instead of ECDSA.recover.
    function _recover(bytes32 digest, bytes32 r, bytes32 vs) private view returns (address signer) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, digest)
            mstore(add(ptr, 0x20), add(shr(255, vs), 27))
            mstore(add(ptr, 0x40), r)
            mstore(add(ptr, 0x60), and(vs, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff))
            mstore(0x00, 0)
            pop(staticcall(gas(), 0x01, ptr, 0x80, 0x00, 0x20))
            signer := mload(0x00)
        }
    }

    /// @dev keccak256(abi.encode(payer, deviceId, relay)), hashed in scratch/free memory like _receiptStructHash.
    function _channelKey(address payer, bytes32 deviceId, address relay) private pure returns (bytes32 key) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, and(payer, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(ptr, 0x20), deviceId)
            mstore(add(ptr, 0x40), and(relay, 0xffffffffffffffffffffffffffffffffffffffff))
            key := keccak256(ptr, 0x60)
        }
    }

    /// @dev Straight to ERC20._update: the sender is this contract and `relay` is msg.sender (never zero).
    function _payRelay(address relay, uint256 amount) private {
        super._update(address(this), relay, amount);
    }

    /// @dev Refuses transfers and mints to this contract except through `deposit` and `depositToReserve`
    /// (which call ERC20._update directly), so this contract's balance is exactly the sum of unallocated
    /// balances and reserves.
    function _update(address from, address to, uint256 value) internal override {
        if (to == address(this)) revert ERC20InvalidReceiver(to);
        super._update(from, to, value);
    }

    // ------------------------------------------------------------------ minting and bonus

    /// @inheritdoc IShadowMeshToken
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }

    /// @inheritdoc IShadowMeshToken
    function rewardRelayNode(address relayNode, uint256 dataTransferred) external onlyRole(REWARDER_ROLE) {
        if (relayNode == address(0)) revert ShadowMeshTokenZeroAddress();
        uint256 amount = dataTransferred * _rewardRatePerByte;
        if (amount == 0) revert ShadowMeshTokenZeroAmount();
        _mint(relayNode, amount);
        emit RelayRewarded(relayNode, dataTransferred, amount);
    }

    /// @inheritdoc IShadowMeshToken
    function setRewardRate(uint256 newRate) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint256 previous = _rewardRatePerByte;
        _rewardRatePerByte = newRate;
        emit RewardRateSet(previous, newRate);
    }

    /// @inheritdoc IShadowMeshToken
    function rewardRatePerByte() external view returns (uint256) {
        return _rewardRatePerByte;
    }
}
