"""The client's web3 wrapper: deployment records, the owner account, transactions, custom errors in words.

- ``load_deployment(path)`` reads the record ``scripts/deploy.py`` writes (deployments/README.md): chain id,
  deploy block, each contract's address and ABI.
- ``Chain(rpc_url, deployment)`` connects, checks the node is reachable and on the record's chain id, and
  sends owner transactions (``transact``): gas estimated first so a revert is caught before anything is
  sent, the balance checked against the worst-case cost, then signed locally, sent, and its receipt
  awaited. Every failure is a :class:`~shadowmesh_client.errors.ChainError` with one line saying what to
  do; reverts name the contract's custom error in words (``explain_error``).
- ``load_owner_account(path, password)``: the owner's eth-account keystore (JSON v3). A raw private key is
  never accepted on the command line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from shadowmesh_client.errors import ChainError, ConfigError, KeystoreError

STATUS_NAMES = {0: "not registered", 1: "pending approval", 2: "active", 3: "suspended", 4: "revoked"}


@dataclass(frozen=True)
class Deployment:
    """What was deployed where (deployments/<ecosystem>-<network>.json)."""

    path: str
    chain_id: int
    deploy_block: int
    registry: str  # checksum address
    registry_abi: list
    token: str | None
    token_abi: list | None


def load_deployment(path: str | os.PathLike) -> Deployment:
    """Parse a deployment record; raise ConfigError naming the file and what is wrong."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(
            f"deployments file {p} not found: deploy with `ape run deploy --network ...` or set `deployments:` "
            "in the config to the record it wrote"
        )
    try:
        record = json.loads(p.read_text())
        contracts = record["contracts"]
        reg = contracts["DeviceRegistry"]
        tok = contracts.get("ShadowMeshToken") or {}
        return Deployment(
            path=str(p),
            chain_id=int(record["chainId"]),
            deploy_block=int(record.get("deployBlock", reg.get("blockNumber", 0))),
            registry=to_checksum_address(reg["address"]),
            registry_abi=reg["abi"],
            token=to_checksum_address(tok["address"]) if tok.get("address") else None,
            token_abi=tok.get("abi"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"deployments file {p} is not a deployment record (needs chainId, deployBlock and "
            f"contracts.DeviceRegistry.address/abi): {type(exc).__name__}: {exc}"
        ) from None


def load_owner_account(path: str | os.PathLike, password: str):
    """Decrypt the owner's eth-account keystore file; raise KeystoreError on a wrong password."""
    p = Path(path).expanduser()
    try:
        blob = json.loads(p.read_text())
    except FileNotFoundError:
        raise KeystoreError(
            f"owner keystore {p} not found: create one with `shadowmesh-client account new` or set owner_keystore"
        ) from None
    except ValueError:
        raise KeystoreError(f"owner keystore {p} is not a JSON keystore file") from None
    try:
        key = Account.decrypt(blob, password)
    except ValueError:
        raise KeystoreError(f"wrong password for the owner keystore {p} (or the file is corrupted)") from None
    return Account.from_key(key)


# ---------------------------------------------------------------- custom errors in words


def _h(b: bytes) -> str:
    return "0x" + b.hex()


_MESSAGES: dict[str, Callable[[list[Any]], str]] = {
    "DeviceRegistryUnknownNetwork": lambda a: f"network {a[0]} does not exist",
    "DeviceRegistryUnknownDevice": lambda a: f"no device has id {_h(a[0])}",
    "DeviceRegistryNotNetworkAdmin": lambda a: f"{a[1]} is not the admin of network {a[0]}",
    "DeviceRegistryNotDeviceOwner": lambda a: f"{a[1]} does not own device {_h(a[0])}",
    "DeviceRegistryNotOwnerOrAdmin": lambda a: (
        f"{a[1]} is neither the owner of device {_h(a[0])} nor the admin of its network"
    ),
    "DeviceRegistryAlreadyRegistered": lambda a: (
        f"this key is already registered in this network by this owner (device {_h(a[0])}): "
        "see `status`; if it was revoked, revocation is final: register a new device key"
    ),
    "DeviceRegistryInvalidProofLength": lambda a: f"the proof of possession must be 64 bytes, got {a[0]}",
    "DeviceRegistryInvalidPublicKey": lambda a: "the device public key must not be zero",
    "DeviceRegistryIncorrectFee": lambda a: f"the registration fee is {a[0]} wei but {a[1]} wei was sent",
    "DeviceRegistryNetworkFull": lambda a: f"network {a[0]} has no overlay address left",
    "DeviceRegistryInvalidStatus": lambda a: (
        f"device {_h(a[0])} is {STATUS_NAMES.get(a[1], a[1])}: that operation is not allowed in this status"
    ),
    "DeviceRegistryInvalidPeriod": lambda a: f"registration period {a[0]} s is invalid (must be > 0)",
    "DeviceRegistryEndpointTooLong": lambda a: f"the endpoint is {a[0]} bytes long; at most {a[1]} are allowed",
    "DeviceRegistryZeroAddress": lambda a: "the zero address is not allowed here",
    "DeviceRegistryNoFees": lambda a: "there are no fees to withdraw",
    "DeviceRegistryNameTooLong": lambda a: f"the network name is {a[0]} bytes long; at most {a[1]} are allowed",
}

# ShadowMeshToken's errors: the words, followed by the decoded error itself.
_TOKEN_WORDS = {
    "ShadowMeshTokenZeroAmount": "the amount must be positive",
    "ShadowMeshTokenInsufficientEscrow": "the escrow holds less than that amount",
    "ShadowMeshTokenNoWithdrawalRequested": "no withdrawal is pending: run `withdraw --amount X` first",
    "ShadowMeshTokenWithdrawalLocked": "the withdrawal notice period has not passed yet",
    "ShadowMeshTokenRelayPriceNotSet": "this relay has no price set: run `shadowmesh-client set-price PRICE` first",
    "ERC20InsufficientBalance": "the account holds fewer SMT than that amount",
}


def _plain(name: str, args: list) -> str:
    return f"{name}({', '.join(map(str, args))})"


def _token_message(name: str, words: str) -> Callable[[list[Any]], str]:
    return lambda a: f"{words} ({_plain(name, a)})"


for _name, _words in _TOKEN_WORDS.items():
    _MESSAGES[_name] = _token_message(_name, _words)


def _error_table(abi: list) -> dict[bytes, tuple[str, list[str]]]:
    table = {}
    for item in abi:
        if item.get("type") != "error":
            continue
        types = [i["type"] if i["type"] != "tuple" else "tuple" for i in item.get("inputs", [])]
        sig = f"{item['name']}({','.join(types)})"
        table[function_signature_to_4byte_selector(sig)] = (item["name"], types)
    return table


def explain_error(data: bytes | str | None, abi: list) -> str:
    """The revert data of a failed call, in words (custom errors of ``abi``, Error(string), Panic)."""
    if isinstance(data, str):
        data = bytes.fromhex(data[2:] if data.startswith("0x") else data)
    if not data or len(data) < 4:
        return "the transaction reverted without a reason"
    selector, body = data[:4], data[4:]
    if selector == bytes.fromhex("08c379a0"):
        return "reverted: " + abi_decode(["string"], body)[0]
    if selector == bytes.fromhex("4e487b71"):
        return f"reverted with panic code {abi_decode(['uint256'], body)[0]:#x}"
    entry = _error_table(abi).get(selector)
    if entry is None:
        return f"reverted with unknown error 0x{data.hex()[:8]}"
    name, types = entry
    try:
        args = list(abi_decode(types, body))
    except Exception:  # noqa: BLE001 - malformed revert data: still name the error
        return f"reverted with {name} (undecodable arguments)"
    args = [to_checksum_address(a) if t == "address" else a for t, a in zip(types, args, strict=True)]
    return _MESSAGES.get(name, lambda a: _plain(name, a))(args)


def _revert_data(exc: BaseException) -> bytes | None:
    """Dig the revert data out of the exceptions web3 raises for eth_call/eth_estimateGas."""
    for attr in ("data",):
        value = getattr(exc, attr, None)
        if isinstance(value, (str, bytes)) and value:
            return value if isinstance(value, bytes) else bytes.fromhex(value[2:] if value.startswith("0x") else value)
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, str) and arg.startswith("0x") and len(arg) >= 10:
            try:
                return bytes.fromhex(arg[2:])
            except ValueError:
                pass
        if isinstance(arg, dict) and isinstance(arg.get("data"), str):
            return bytes.fromhex(arg["data"][2:])
    return None


# ---------------------------------------------------------------- connection and transactions


class Chain:
    """A connection to the node at ``rpc_url`` for ``deployment``'s chain (checked on connect)."""

    def __init__(self, rpc_url: str, deployment: Deployment, *, timeout: float = 10.0) -> None:
        from web3 import HTTPProvider, Web3

        if not rpc_url.startswith(("http://", "https://")):
            raise ConfigError(f"rpc_url {rpc_url!r} must be an http:// or https:// URL")
        self.rpc_url = rpc_url
        self.deployment = deployment
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        try:
            chain_id = self.w3.eth.chain_id
        except Exception as exc:  # noqa: BLE001 - requests/aiohttp/OS errors: all mean "unreachable"
            raise ChainError(
                f"cannot reach the RPC endpoint {rpc_url} ({type(exc).__name__}): is the node running? check rpc_url"
            ) from None
        if chain_id != deployment.chain_id:
            raise ChainError(
                f"wrong chain: {rpc_url} is chain {chain_id} but {deployment.path} is for chain "
                f"{deployment.chain_id}; point rpc_url and deployments at the same network"
            )
        self.chain_id = chain_id
        self.registry = self.w3.eth.contract(address=to_checksum_address(deployment.registry),
                                             abi=deployment.registry_abi)

    def explain(self, exc: BaseException) -> str:
        """A failed call or transaction in words: the custom errors of both contracts, Error(string), Panic."""
        data = _revert_data(exc)
        if data is not None:
            return explain_error(data, list(self.deployment.registry_abi) + list(self.deployment.token_abi or []))
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def call(self, fn: Any) -> Any:
        """A view call; reverts become ChainError in words."""
        try:
            return fn.call()
        except Exception as exc:  # noqa: BLE001 - web3 raises many unrelated types; all become ChainError
            raise ChainError(self.explain(exc)) from None

    def transact(self, account: Any, fn: Any, *, value: int = 0, timeout: float = 120.0) -> Any:
        """Send ``fn`` (a bound contract function) from ``account``; return the receipt (status 1)."""
        w3 = self.w3
        sender = account.address
        try:
            gas = fn.estimate_gas({"from": sender, "value": value})
        except Exception as exc:  # noqa: BLE001 - web3 raises many unrelated types; all become ChainError
            raise ChainError(self.explain(exc)) from None
        gas = int(gas * 1.2) + 10_000
        try:
            block = w3.eth.get_block("latest")
            base_fee = int(block.get("baseFeePerGas") or 0)
            tip = int(w3.eth.max_priority_fee) if base_fee else 0
            nonce = w3.eth.get_transaction_count(sender, "pending")
            balance = w3.eth.get_balance(sender)
        except Exception as exc:  # noqa: BLE001 - web3 raises many unrelated types; all become ChainError
            raise ChainError(f"cannot reach the RPC endpoint {self.rpc_url} ({type(exc).__name__})") from None
        if base_fee:
            max_fee = 2 * base_fee + tip
            fees = {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip}
        else:
            max_fee = int(w3.eth.gas_price)
            fees = {"gasPrice": max_fee}
        cost = gas * max_fee + value
        if balance < cost:
            raise ChainError(
                f"account {sender} has {balance} wei on chain {self.chain_id} but this transaction may cost up to "
                f"{cost} wei: fund the owner account"
            )
        tx = fn.build_transaction(
            {"from": sender, "value": value, "gas": gas, "nonce": nonce, "chainId": self.chain_id, **fees}
        )
        signed = account.sign_transaction(tx)
        try:
            tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - web3 raises many unrelated types; all become ChainError
            msg = str(exc)
            if "insufficient funds" in msg.lower():
                raise ChainError(f"account {sender} has too little to pay for this transaction: fund it") from None
            first = msg.splitlines()[0] if msg else type(exc).__name__
            raise ChainError(f"sending the transaction failed: {first}") from None
        if receipt["status"] != 1:
            try:
                fn.call({"from": sender, "value": value}, block_identifier=receipt["blockNumber"])
                reason = "the transaction reverted"
            except Exception as exc:  # noqa: BLE001 - web3 raises many unrelated types; all become ChainError
                reason = self.explain(exc)
            raise ChainError(f"{reason} (tx {receipt['transactionHash'].hex()})")
        return receipt
