// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IShadowMeshToken} from "./interfaces/IShadowMeshToken.sol";

/// @title ShadowMeshToken (SMT): ERC-20 + ERC-2612 permit, with escrowed relay payments by EIP-712 receipts
/// @notice See IShadowMeshToken and docs/contracts.md "Relay payments".
/// Escrowed tokens are held by this contract in its own ERC-20 balance; transfers to this contract other than
/// `deposit` are refused, so `balanceOf(address(this))` is exactly the sum of escrow balances.
/// Re-entrancy: claims and withdrawals only call this contract's own ERC-20 `_update` (no hooks, no external
/// calls), after all state is written.
contract ShadowMeshToken is IShadowMeshToken, ERC20, ERC20Permit, AccessControl {
    /// @notice Role that may mint.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
    /// @notice Role that may call `rewardRelayNode`.
    bytes32 public constant REWARDER_ROLE = keccak256("REWARDER_ROLE");

    /// @notice EIP-712 type hash of a relay receipt.
    bytes32 public constant RECEIPT_TYPEHASH = keccak256(
        "Receipt(address payer,bytes32 deviceId,address relay,uint256 cumulativeBytes,uint256 maxPricePerByte)"
    );

    /// @dev Longest withdrawal notice accepted by the constructor: 365 days. Bounds `now + delay` far below
    /// 2**64 (an unbounded delay would make `requestWithdrawal` overflow and lock every escrow for good).
    uint64 private constant _MAX_WITHDRAWAL_DELAY = 365 days;

    uint64 private immutable _withdrawalDelay;

    uint256 private _rewardRatePerByte;

    mapping(address payer => Escrow) private _escrows;
    mapping(address payer => mapping(address signer => bool)) private _receiptSigners;
    mapping(address relay => uint256) private _relayPrices;
    /// @dev Bytes paid per channel, keyed by keccak256(abi.encode(payer, deviceId, relay)).
    mapping(bytes32 channel => uint256) private _paidBytes;

    /// @param admin receives DEFAULT_ADMIN_ROLE, MINTER_ROLE and REWARDER_ROLE
    /// @param withdrawalDelay_ notice period of escrow withdrawals, seconds: 1 to 365 days' worth
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

    // ------------------------------------------------------------------ escrow (payers)

    /// @inheritdoc IShadowMeshToken
    function deposit(uint256 amount) external {
        if (amount == 0) revert ShadowMeshTokenZeroAmount();
        Escrow storage escrow = _escrows[msg.sender];
        uint256 balance = uint256(escrow.balance) + amount;
        if (balance > type(uint96).max) revert ShadowMeshTokenEscrowOverflow(amount);
        escrow.balance = uint96(balance);
        // The only way in: `_update` below refuses other transfers to this contract.
        super._update(msg.sender, address(this), amount);
        emit Deposited(msg.sender, amount, balance);
    }

    /// @inheritdoc IShadowMeshToken
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert ShadowMeshTokenZeroAmount();
        Escrow storage escrow = _escrows[msg.sender];
        if (amount > escrow.balance) revert ShadowMeshTokenInsufficientEscrow(msg.sender, escrow.balance, amount);
        uint64 unlockAt = uint64(block.timestamp) + _withdrawalDelay;
        escrow.pendingWithdrawal = uint96(amount); // <= balance <= type(uint96).max
        escrow.unlockAt = unlockAt;
        emit WithdrawalRequested(msg.sender, amount, unlockAt);
    }

    /// @inheritdoc IShadowMeshToken
    function cancelWithdrawal() external {
        Escrow storage escrow = _escrows[msg.sender];
        if (escrow.unlockAt == 0) revert ShadowMeshTokenNoWithdrawalRequested(msg.sender);
        escrow.pendingWithdrawal = 0;
        escrow.unlockAt = 0;
        emit WithdrawalCancelled(msg.sender);
    }

    /// @inheritdoc IShadowMeshToken
    function withdraw() external {
        Escrow memory escrow = _escrows[msg.sender];
        // slither-disable-next-line incorrect-equality (0 is the "no request" sentinel, set only by this contract)
        if (escrow.unlockAt == 0) revert ShadowMeshTokenNoWithdrawalRequested(msg.sender);
        // slither-disable-next-line timestamp (the notice period is hours or days; miner drift of seconds is harmless)
        if (block.timestamp < escrow.unlockAt) revert ShadowMeshTokenWithdrawalLocked(msg.sender, escrow.unlockAt);
        // Claims during the notice may have reduced the balance below the request: pay what is left.
        uint96 amount = escrow.pendingWithdrawal < escrow.balance ? escrow.pendingWithdrawal : escrow.balance;
        uint96 balance = escrow.balance - amount;
        _escrows[msg.sender] = Escrow({balance: balance, pendingWithdrawal: 0, unlockAt: 0});
        super._update(address(this), msg.sender, amount);
        emit Withdrawn(msg.sender, amount, balance);
    }

    /// @inheritdoc IShadowMeshToken
    function setReceiptSigner(address signer, bool authorized) external {
        if (signer == address(0)) revert ShadowMeshTokenZeroAddress();
        _receiptSigners[msg.sender][signer] = authorized;
        emit ReceiptSignerSet(msg.sender, signer, authorized);
    }

    /// @inheritdoc IShadowMeshToken
    function escrowOf(address payer) external view returns (Escrow memory) {
        return _escrows[payer];
    }

    /// @inheritdoc IShadowMeshToken
    function isReceiptSigner(address payer, address signer) external view returns (bool) {
        return signer == payer || _receiptSigners[payer][signer];
    }

    /// @inheritdoc IShadowMeshToken
    function withdrawalDelay() external view returns (uint64) {
        return _withdrawalDelay;
    }

    /// @inheritdoc IShadowMeshToken
    function totalEscrowed() external view returns (uint256) {
        return balanceOf(address(this));
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
        _payRelay(msg.sender, _settle(msg.sender, _advertisedPrice(msg.sender), receipt));
    }

    /// @inheritdoc IShadowMeshToken
    function claimBatch(SignedReceipt[] calldata receipts) external returns (uint256 total) {
        uint256 count = receipts.length;
        if (count == 0) revert ShadowMeshTokenEmptyBatch();
        uint256 price = _advertisedPrice(msg.sender);
        for (uint256 i = 0; i < count; ++i) {
            total += _settle(msg.sender, price, receipts[i]);
        }
        _payRelay(msg.sender, total);
    }

    /// @inheritdoc IShadowMeshToken
    function receiptDigest(
        address payer,
        bytes32 deviceId,
        address relay,
        uint256 cumulativeBytes,
        uint256 maxPricePerByte
    ) public view returns (bytes32) {
        return _hashTypedDataV4(_receiptStructHash(payer, deviceId, relay, cumulativeBytes, maxPricePerByte));
    }

    /// @dev keccak256(abi.encode(RECEIPT_TYPEHASH, payer, deviceId, relay, cumulativeBytes, maxPricePerByte)),
    /// hashed in place in free memory without moving the free-memory pointer (saves ~150 gas per receipt).
    function _receiptStructHash(
        address payer,
        bytes32 deviceId,
        address relay,
        uint256 cumulativeBytes,
        uint256 maxPricePerByte
    ) private pure returns (bytes32 structHash) {
        bytes32 typeHash = RECEIPT_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typeHash)
            mstore(add(ptr, 0x20), and(payer, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(ptr, 0x40), deviceId)
            mstore(add(ptr, 0x60), and(relay, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(ptr, 0x80), cumulativeBytes)
            mstore(add(ptr, 0xa0), maxPricePerByte)
            structHash := keccak256(ptr, 0xc0)
        }
    }

    function _advertisedPrice(address relay) private view returns (uint256 price) {
        price = _relayPrices[relay];
        if (price == 0) revert ShadowMeshTokenRelayPriceNotSet(relay);
    }

    /// @dev Checks one receipt and moves its amount out of the payer's escrow (not yet to the relay).
    /// Pays only whole bytes the escrow covers: paidBytes advances by exactly the bytes paid for.
    function _settle(address relay, uint256 advertised, SignedReceipt calldata receipt)
        private
        returns (uint256 amount)
    {
        address payer = receipt.payer;
        _checkSignature(relay, receipt);
        uint256 price = advertised < receipt.maxPricePerByte ? advertised : receipt.maxPricePerByte;
        if (price == 0) revert ShadowMeshTokenZeroPrice(relay, payer);

        bytes32 channel = _channelKey(payer, receipt.deviceId, relay);
        uint256 paid = _paidBytes[channel];
        uint256 due = receipt.cumulativeBytes;
        if (due <= paid) revert ShadowMeshTokenStaleReceipt(due, paid);
        unchecked {
            due -= paid; // checked just above
        }
        Escrow storage escrow = _escrows[payer];
        uint256 balance = escrow.balance;
        uint256 affordable = balance / price;
        if (affordable == 0) revert ShadowMeshTokenEscrowEmpty(payer, price);
        if (due > affordable) due = affordable;
        unchecked {
            // due <= balance / price, so amount <= balance <= type(uint96).max; paid + due <= cumulativeBytes
            amount = due * price;
            escrow.balance = uint96(balance - amount);
            paid += due;
        }
        _paidBytes[channel] = paid;
        emit Claimed(relay, payer, receipt.deviceId, paid, amount);
    }

    /// @dev Reverts unless the receipt is signed by its payer or a signer the payer authorised, over the
    /// EIP-712 digest that binds chain id, this contract, the relay and every receipt field.
    function _checkSignature(address relay, SignedReceipt calldata receipt) private view {
        address payer = receipt.payer;
        bytes32 digest =
            receiptDigest(payer, receipt.deviceId, relay, receipt.cumulativeBytes, receipt.maxPricePerByte);
        // Malleability does not matter here (a receipt is identified by its content, not its signature; and
        // the compact form cannot carry a high s, whose top bit is v's), so the precompile is called directly
        // instead of ECDSA.recover. An invalid signature recovers to zero or to an unrelated address; both are
        // refused (zero explicitly, so a receipt "from" the zero payer can never pass the signer check).
        address signer = _recover(digest, receipt.r, receipt.vs);
        if (signer == address(0) || (signer != payer && !_receiptSigners[payer][signer])) {
            revert ShadowMeshTokenInvalidSigner(signer, payer);
        }
    }

    /// @dev ecrecover of an EIP-2098 compact signature (v = 27 + top bit of vs, s = vs without it), calling the
    /// precompile from assembly: no checked uint8 addition, no memory allocation (the four words go above the
    /// free-memory pointer, which does not move). Returns zero for an invalid signature (the precompile then
    /// returns nothing and the zeroed scratch word stays zero) or if the call fails.
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

    /// @dev Refuses transfers and mints to this contract except through `deposit` (which calls
    /// ERC20._update directly), so this contract's balance is exactly the sum of escrow balances.
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
