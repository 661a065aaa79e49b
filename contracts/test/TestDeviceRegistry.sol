// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DeviceRegistry} from "../DeviceRegistry.sol";

/// @title TestDeviceRegistry: test-only harness (never deployed by scripts/deploy.py)
/// @notice Lets a test move a network's overlay allocator near the end of 100.64.0.0/10, so "network full"
/// can be reached without four million registrations.
contract TestDeviceRegistry is DeviceRegistry {
    constructor(address admin, address treasury_, uint256 fee) DeviceRegistry(admin, treasury_, fee) {}

    function setNextOverlay(uint64 networkId, uint32 nextOverlay) external {
        _networks[networkId].nextOverlay = nextOverlay;
    }
}
