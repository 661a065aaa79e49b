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
- ``explain_error``: EVERY custom error of both contracts (and of the OpenZeppelin code they inherit) has a
  sentence in ``_MESSAGES``; tests/client/cli/test_errors_in_words.py walks both ABIs to keep it so. Token
  amounts are shown in SMT (``smt``), not base units.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from shadowmesh_client.errors import ChainError, ConfigError, KeystoreError

STATUS_NAMES = {0: "not registered", 1: "pending approval", 2: "active", 3: "suspended", 4: "revoked"}
UINT256_MAX = 2**256 - 1
SMT_DECIMALS = 18  # ERC-20 decimals of ShadowMeshToken
LOCAL_CHAIN_IDS = frozenset({31337, 1337})  # anvil / hardhat and ganache / geth --dev


def smt(base_units: int) -> str:
    """Token base units as an SMT decimal string ("1.5 SMT"); the one formatter of errors and prompts."""
    whole, frac = divmod(abs(int(base_units)), 10**SMT_DECIMALS)
    frac_text = f"{frac:0{SMT_DECIMALS}d}".rstrip("0")
    return ("-" if base_units < 0 else "") + f"{whole}" + (f".{frac_text}" if frac_text else "") + " SMT"


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
        raise KeystoreError(f"owner keystore {p} is not an eth-account keystore file (not JSON)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"cannot read the owner keystore {p}: {exc}") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("crypto") or blob.get("Crypto"), dict):
        raise KeystoreError(f"owner keystore {p} is not an eth-account keystore file (JSON v3 with `crypto`): "
                            "create one with `shadowmesh-client account new` or `account import`")
    try:
        key = Account.decrypt(blob, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc) or "password" in str(exc).lower():
            raise KeystoreError(f"wrong password for the owner keystore {p}") from None
        raise KeystoreError(f"owner keystore {p} is damaged or not a keystore file ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - eth-keyfile raises KeyError/TypeError/... on malformed files
        raise KeystoreError(f"owner keystore {p} is damaged or not a keystore file "
                            f"({type(exc).__name__}: {exc})") from None
    return Account.from_key(key)


# ---------------------------------------------------------------- custom errors in words


def _h(b: bytes) -> str:
    return "0x" + b.hex()


def _role(role: bytes) -> str:
    from eth_utils import keccak

    for name in ("DEFAULT_ADMIN_ROLE", "MINTER_ROLE", "REWARDER_ROLE", "PAUSER_ROLE"):
        if role == (b"\x00" * 32 if name == "DEFAULT_ADMIN_ROLE" else keccak(text=name)):
            return name
    return _h(role)


# Every custom error of DeviceRegistry and ShadowMeshToken (their own and those inherited from OpenZeppelin),
# in words. The arguments arrive decoded, addresses checksummed, in ABI order.
_MESSAGES: dict[str, Callable[[list[Any]], str]] = {
    # ---- DeviceRegistry
    "DeviceRegistryUnknownNetwork": lambda a: (
        f"network {a[0]} does not exist on this registry: check `network_id` (or create it with `network create`)"),
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
    "DeviceRegistryIndexOutOfRange": lambda a: f"{a[0]} owns fewer than {a[1] + 1} devices",
    "DeviceRegistryRegistrationClosed": lambda a: f"network {a[0]} is closed to new registrations (its admin decides)",
    "DeviceRegistryNotPendingAdmin": lambda a: f"{a[1]} has not been offered the admin role of network {a[0]}",
    "DeviceRegistryFeeTooHigh": lambda a: f"a fee of {a[0]} wei is too high (it must be below 2**128)",
    # ---- ShadowMeshToken
    "ShadowMeshTokenZeroAmount": lambda a: "the amount must be more than 0 SMT",
    "ShadowMeshTokenZeroAddress": lambda a: "the zero address is not allowed here",
    "ShadowMeshTokenEmptyBatch": lambda a: "the claim batch is empty: there is nothing to claim",
    "ShadowMeshTokenInsufficientEscrow": lambda a: (
        f"the escrow of {a[0]} holds {smt(a[1])}, less than the {smt(a[2])} needed"),
    "ShadowMeshTokenEscrowOverflow": lambda a: (
        f"depositing {smt(a[0])} would take the escrow over its maximum of {smt(2**96 - 1)}: deposit less"),
    "ShadowMeshTokenEscrowEmpty": lambda a: (
        f"the escrow of {a[0]} is empty (the relay's price is {a[1]} base units per byte): nothing to pay from"),
    "ShadowMeshTokenInvalidDelay": lambda a: f"a withdrawal delay of {a[0]} s is above the maximum of {a[1]} s",
    "ShadowMeshTokenInvalidSigner": lambda a: (
        f"{a[0]} may not sign receipts for {a[1]} (not bound to this device, or a bad signature): the payer must "
        f"run `authorize-signer {a[0]} --cap SMT`"),
    "ShadowMeshTokenNoWithdrawalRequested": lambda a: (
        f"no withdrawal is pending for {a[0]}'s reserve for relay {a[1]}: run `withdraw --relay R --amount X` "
        "first"),
    "ShadowMeshTokenWithdrawalLocked": lambda a: (
        f"the notice period of {a[0]}'s reserve for relay {a[1]} has not passed yet (it unlocks at block time "
        f"{a[2]}, {datetime.fromtimestamp(a[2], UTC).strftime(DATE_FORMAT)})"),
    # ---- ShadowMeshToken, payments v2 (issue 10)
    "ShadowMeshTokenInsufficientDeposit": lambda a: (
        f"the unallocated deposit of {a[0]} holds {smt(a[1])}, less than the {smt(a[2])} needed"),
    "ShadowMeshTokenInsufficientReserve": lambda a: (
        f"the reserve of {a[0]} for relay {a[1]} holds {smt(a[2])}, less than the {smt(a[3])} needed"),
    "ShadowMeshTokenReserveEmpty": lambda a: (
        f"the reserve of {a[0]} for relay {a[1]} cannot pay a single byte at {a[2]} base units per byte: the "
        "payer must fund it (`deposit --relay`)"),
    "ShadowMeshTokenSignerRevoked": lambda a: (
        f"signer {a[0]} of {a[1]} for device {_h(a[2])} was revoked; its receipts paid until block time {a[3]}"),
    "ShadowMeshTokenSignerCapReached": lambda a: (
        f"signer {a[0]} reached its cap for device {_h(a[1])} in this period ({smt(a[2])} left): the rest pays in "
        "the next period"),
    "ShadowMeshTokenSignerNotBound": lambda a: f"{a[0]} is not bound to device {_h(a[1])}: nothing to revoke",
    "ShadowMeshTokenSignerTermsLowered": lambda a: (
        f"signer {a[0]} for device {_h(a[1])} is live: its cap can only be raised ({smt(a[2])} per {a[3]} s is "
        "lower or another period); revoke it and wait for the notice first"),
    "ShadowMeshTokenCapOverflow": lambda a: f"a cap of {smt(a[0])} per period is above the maximum of {smt(2**80 - 1)}",
    "ShadowMeshTokenInvalidPeriod": lambda a: "the signer's period must be more than 0 seconds",
    "ShadowMeshTokenRelayPriceNotSet": lambda a: (
        f"relay {a[0]} has no price set: run `shadowmesh-client set-price PRICE` first"),
    "ShadowMeshTokenStaleReceipt": lambda a: (
        f"the receipt covers {a[0]} bytes but {a[1]} bytes are already paid: it is older than a claimed one"),
    "ShadowMeshTokenZeroPrice": lambda a: f"relay {a[0]} charges 0 per byte: there is nothing to claim from {a[1]}",
    # ---- OpenZeppelin, inherited
    "AccessControlUnauthorizedAccount": lambda a: f"{a[0]} lacks the role {_role(a[1])} this needs",
    "AccessControlBadConfirmation": lambda a: "an account can only renounce its own roles",
    "ERC20InsufficientBalance": lambda a: f"{a[0]} holds {smt(a[1])}, less than the {smt(a[2])} needed",
    "ERC20InsufficientAllowance": lambda a: f"{a[0]} may spend {smt(a[1])} only, less than the {smt(a[2])} needed",
    "ERC20InvalidApprover": lambda a: f"{a[0]} cannot approve spending (the zero address)",
    "ERC20InvalidReceiver": lambda a: f"{a[0]} cannot receive SMT (the zero address)",
    "ERC20InvalidSender": lambda a: f"{a[0]} cannot send SMT (the zero address)",
    "ERC20InvalidSpender": lambda a: f"{a[0]} cannot be approved as a spender (the zero address)",
    "ERC2612ExpiredSignature": lambda a: f"the permit signature expired at block time {a[0]}",
    "ERC2612InvalidSigner": lambda a: f"the permit is signed by {a[0]}, not by the owner {a[1]}",
    "InvalidAccountNonce": lambda a: f"the signature's nonce is stale: the next nonce of {a[0]} is {a[1]}",
    "ECDSAInvalidSignature": lambda a: "the signature is invalid",
    "ECDSAInvalidSignatureLength": lambda a: f"the signature is {a[0]} bytes long; it must be 65",
    "ECDSAInvalidSignatureS": lambda a: "the signature is malleable (its s value is too high)",
    "InvalidShortString": lambda a: "a name is too long for the contract's short-string encoding",
    "StringTooLong": lambda a: f"the text {a[0]!r} is too long for the contract",
    "FailedCall": lambda a: "an internal call of the contract failed",
    "InsufficientBalance": lambda a: f"the contract holds {a[0]} wei, less than the {a[1]} wei needed",
}

DATE_FORMAT = "%Y-%m-%d %H:%M:%S UTC"  # every date the CLI prints


def _plain(name: str, args: list) -> str:
    return f"{name}({', '.join(map(str, args))})"


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
    words = _MESSAGES.get(name)
    return words(args) if words is not None else f"the contract refused: {_plain(name, args)}"


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

    def __init__(self, rpc_url: str, deployment: Deployment, *, timeout: float = 10.0,
                 watch: Callable[[str, str], Any] | None = None) -> None:
        """``timeout``: seconds per HTTP request. ``watch(url, method)``: a context manager wrapped around every
        request (chain.deadline.Deadline.watch: the command's overall deadline and progress line)."""
        from web3 import Web3

        if not rpc_url.startswith(("http://", "https://")):
            raise ConfigError(f"rpc_url {rpc_url!r} must be an http:// or https:// URL")
        self.rpc_url = rpc_url
        self.deployment = deployment
        self.timeout = timeout
        provider = _WatchedProvider(rpc_url, request_kwargs={"timeout": timeout})
        provider.watch = watch
        self.w3 = Web3(provider)
        try:
            chain_id = self.w3.eth.chain_id
        except Exception as exc:  # noqa: BLE001 - requests/aiohttp/OS errors: all mean "unreachable"
            raise ChainError(
                f"cannot reach the RPC endpoint {rpc_url} ({_why(exc, timeout)}): is the node running? check rpc_url"
            ) from None
        if chain_id != deployment.chain_id:
            raise ChainError(
                f"wrong chain: {rpc_url} is chain {chain_id} but {deployment.path} is for chain "
                f"{deployment.chain_id}; point rpc_url and deployments at the same network"
            )
        self.chain_id = chain_id
        self.registry = self.w3.eth.contract(address=to_checksum_address(deployment.registry),
                                             abi=deployment.registry_abi)
        self._checked_code: set[str] = set()

    def require_code(self, address: str, name: str) -> None:
        """ChainError unless a contract is deployed at ``address`` (a record from another chain instance, an
        anvil that was restarted, would otherwise read as empty: "0 peers")."""
        if address in self._checked_code:
            return
        try:
            code = self.w3.eth.get_code(to_checksum_address(address))
        except Exception as exc:  # noqa: BLE001 - web3 raises many unrelated types; all become ChainError
            raise ChainError(f"cannot reach the RPC endpoint {self.rpc_url} ({_why(exc, self.timeout)})") from None
        if not code:
            local = (" (a local chain restarted since? run `make chain` again)"
                     if self.chain_id in LOCAL_CHAIN_IDS else "")
            raise ChainError(f"there is no {name} contract at {address} on chain {self.chain_id}{local}: "
                             f"{self.deployment.path} does not describe this chain's contracts")
        self._checked_code.add(address)

    def explain(self, exc: BaseException) -> str:
        """A failed call or transaction in words: the custom errors of both contracts, Error(string), Panic."""
        data = _revert_data(exc)
        if data is not None:
            return explain_error(data, list(self.deployment.registry_abi) + list(self.deployment.token_abi or []))
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def call(self, fn: Any) -> Any:
        """A view call; reverts become ChainError in words."""
        self.require_code(fn.address, _contract_name(self, fn.address))
        try:
            return fn.call()
        except Exception as exc:  # noqa: BLE001 - web3 raises many unrelated types; all become ChainError
            raise ChainError(self.explain(exc)) from None

    def transact(self, account: Any, fn: Any, *, value: int = 0, timeout: float = 120.0) -> Any:
        """Send ``fn`` (a bound contract function) from ``account``; return the receipt (status 1)."""
        w3 = self.w3
        sender = account.address
        self.require_code(fn.address, _contract_name(self, fn.address))
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
            raise ChainError(f"cannot reach the RPC endpoint {self.rpc_url} ({_why(exc, self.timeout)})") from None
        if base_fee:
            max_fee = 2 * base_fee + tip
            fees = {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip}
        else:
            max_fee = int(w3.eth.gas_price)
            fees = {"gasPrice": max_fee}
        cost = gas * max_fee + value
        if balance < cost:
            faucet = (" (on this local chain: `shadowmesh-client dev faucet`)" if self.chain_id in LOCAL_CHAIN_IDS
                      else "")
            raise ChainError(
                f"account {sender} has {_eth(balance)} on chain {self.chain_id} but this transaction may cost up to "
                f"{_eth(cost)}: fund the owner account{faucet}"
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


def _eth(wei: int) -> str:
    """Wei as the chain's native coin, readable ("0.0021 ETH/POL (2100000000000000 wei)")."""
    return f"{wei / 10**18:.6g} ETH/POL ({wei} wei)"


def _why(exc: BaseException, timeout: float) -> str:
    """Why a request failed, in words (requests' exception class names mean little to a user)."""
    name = type(exc).__name__
    if "Timeout" in name:
        return f"no answer in {timeout:g} s"
    if "Connection" in name:
        return "connection refused or no route"
    return name


def _contract_name(chain: Chain, address: str) -> str:
    return "DeviceRegistry" if address == chain.deployment.registry else "ShadowMeshToken"


def _make_watched_provider() -> type:
    from web3 import HTTPProvider

    class WatchedProvider(HTTPProvider):
        """web3's HTTPProvider with every request wrapped in ``watch(url, method)`` when set."""

        watch: Callable[[str, str], Any] | None = None

        def make_request(self, method: Any, params: Any) -> Any:
            if self.watch is None:
                return super().make_request(method, params)
            with self.watch(str(self.endpoint_uri), str(method)):
                return super().make_request(method, params)

    return WatchedProvider


class _LazyProvider:
    """Build the provider class on first use: importing web3 costs ~0.5 s, and the CLI imports this module."""

    _cls: type | None = None

    def __call__(self, *args: Any, **kw: Any) -> Any:
        if _LazyProvider._cls is None:
            _LazyProvider._cls = _make_watched_provider()
        return _LazyProvider._cls(*args, **kw)


_WatchedProvider = _LazyProvider()
