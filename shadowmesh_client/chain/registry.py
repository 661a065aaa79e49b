"""Owner and admin operations on the DeviceRegistry: what each `shadowmesh-client` command calls.

Each function takes a connected :class:`~shadowmesh_client.chain.Chain`, sends at most one transaction
(``Chain.transact``: gas estimated first, so a revert is reported before anything is sent) and returns a
small result the CLI prints (or dumps as JSON). Errors: ChainError / ConfigError with one clear line.

The device key signs the proof of possession (directory/proof.py) locally; the owner account signs the
transaction. Neither key leaves the process.

Registry v2 (issue 10): registering and renewing pay ``registrationFee() + networkFee(networkId).fee``
(:func:`fees`); a registration in an Approval network is Pending with no overlay address until the admin
approves it (the address comes in ``DeviceApproved``); the network's admin sets its fee, closes or re-opens
registration, withdraws the network's fees and hands the role over in two steps (offer, accept).
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

from shadowmesh_client.chain import STATUS_NAMES, Chain
from shadowmesh_client.config import check_endpoint
from shadowmesh_client.crypto import Identity
from shadowmesh_client.directory.events import JoinPolicy
from shadowmesh_client.directory.proof import device_id as compute_device_id
from shadowmesh_client.directory.proof import proof_message
from shadowmesh_client.errors import ChainError, ConfigError


@dataclass
class TxResult:
    action: str
    tx_hash: str
    block: int
    gas_used: int
    device_id: str | None = None
    network_id: int | None = None
    overlay_address: str | None = None
    expires_at: int | None = None
    status: str | None = None
    relay: bool | None = None
    endpoint: str | None = None
    fee_paid: int | None = None          # wei: protocol fee + network fee

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _receipt(action: str, receipt: Any, **kw) -> TxResult:
    return TxResult(action, "0x" + bytes(receipt["transactionHash"]).hex(), receipt["blockNumber"],
                    receipt["gasUsed"], **kw)


def _events(chain: Chain, receipt: Any, name: str) -> list:
    from web3.logs import DISCARD

    return list(getattr(chain.registry.events, name)().process_receipt(receipt, errors=DISCARD))


def device_id_hex(network_id: int, owner: str, public_key: bytes) -> str:
    return "0x" + compute_device_id(network_id, owner, public_key).hex()


def register(chain: Chain, account: Any, identity: Identity, network_id: int, *, endpoint: str | None = None,
             relay: bool = False) -> TxResult:
    """Sign the proof with the device key and register it in ``network_id`` from ``account``."""
    if endpoint:
        check_endpoint(endpoint)
    pk = identity.public_key
    proof = identity.sign(proof_message(chain.chain_id, chain.deployment.registry, network_id, account.address, pk))
    fee = sum(fees(chain, network_id))
    fn = chain.registry.functions.registerDevice(network_id, pk, relay, endpoint or "", proof)
    receipt = chain.transact(account, fn, value=fee)
    logs = _events(chain, receipt, "DeviceRegistered")
    if not logs:
        raise ChainError("the registration transaction succeeded but emitted no DeviceRegistered event")
    a = logs[0]["args"]
    return _receipt(
        "register", receipt, device_id="0x" + bytes(a["deviceId"]).hex(), network_id=network_id,
        overlay_address=_overlay(a["overlayAddress"]), expires_at=a["expiresAt"],
        status=STATUS_NAMES.get(a["status"], str(a["status"])), fee_paid=fee,
    )


def _overlay(value: int) -> str:
    return str(ipaddress.IPv4Address(value)) if value else "none yet (pending approval)"


def fees(chain: Chain, network_id: int) -> tuple[int, int]:
    """(protocol registrationFee, the network's fee) in wei: a registration or renewal pays their sum."""
    protocol = int(chain.call(chain.registry.functions.registrationFee()))
    network = int(chain.call(chain.registry.functions.networkFee(network_id))[0])
    return protocol, network


def _id(device_id: str) -> bytes:
    raw = device_id[2:] if device_id.startswith("0x") else device_id
    try:
        out = bytes.fromhex(raw)
    except ValueError:
        out = b""
    if len(out) != 32:
        raise ChainError(f"{device_id!r} is not a device id (0x followed by 64 hex digits)")
    return out


def revoke(chain: Chain, account: Any, device_id: str) -> TxResult:
    receipt = chain.transact(account, chain.registry.functions.revokeDevice(_id(device_id)))
    return _receipt("revoke", receipt, device_id=device_id, status="revoked")


def renew(chain: Chain, account: Any, device_id: str) -> TxResult:
    network_id = int(chain.call(chain.registry.functions.devices(_id(device_id)))[1])
    fee = sum(fees(chain, network_id))
    receipt = chain.transact(account, chain.registry.functions.renewDevice(_id(device_id)), value=fee)
    logs = _events(chain, receipt, "DeviceRenewed")
    return _receipt("renew", receipt, device_id=device_id, expires_at=logs[0]["args"]["expiresAt"] if logs else None)


def set_endpoint(chain: Chain, account: Any, device_id: str, endpoint: str | None,
                 relay: bool | None = None) -> TxResult:
    """Publish ``endpoint`` (None clears it). ``relay`` None keeps the device's current relay flag."""
    if endpoint:
        check_endpoint(endpoint)
    did = _id(device_id)
    if relay is None:
        rec = chain.call(chain.registry.functions.devices(did))
        if int(rec[6]) == 0:
            raise ChainError(f"no device has id {device_id}: register it first")
        relay = bool(rec[7])
    fn = chain.registry.functions.updateEndpoint(did, endpoint or "", relay)
    r = _receipt("set-endpoint", chain.transact(account, fn), device_id=device_id)
    r.relay = relay
    r.endpoint = endpoint or ""
    return r


def approve(chain: Chain, account: Any, device_id: str) -> TxResult:
    receipt = chain.transact(account, chain.registry.functions.approveDevice(_id(device_id)))
    logs = _events(chain, receipt, "DeviceApproved")
    overlay = _overlay(logs[0]["args"]["overlayAddress"]) if logs else None
    return _receipt("approve", receipt, device_id=device_id, status="active", overlay_address=overlay)


def set_network_fee(chain: Chain, account: Any, network_id: int, fee_wei: int) -> TxResult:
    """The network's own registration fee (anti-Sybil), on top of the protocol fee (network admin)."""
    receipt = chain.transact(account, chain.registry.functions.setNetworkFee(network_id, fee_wei))
    return _receipt("network-fee", receipt, network_id=network_id, fee_paid=fee_wei)


def set_network_registration(chain: Chain, account: Any, network_id: int, open_: bool) -> TxResult:
    """Close (or re-open) registration in the network; renewals and approvals go on (network admin)."""
    receipt = chain.transact(account, chain.registry.functions.setNetworkRegistration(network_id, open_))
    return _receipt("network-open" if open_ else "network-close", receipt, network_id=network_id)


def offer_network_admin(chain: Chain, account: Any, network_id: int, new_admin: str) -> TxResult:
    """Step 1 of handing the admin role over: an offer the new admin must accept (zero address withdraws it)."""
    receipt = chain.transact(account, chain.registry.functions.transferNetworkAdmin(network_id, new_admin))
    return _receipt("network-admin-offer", receipt, network_id=network_id)


def accept_network_admin(chain: Chain, account: Any, network_id: int) -> TxResult:
    """Step 2: the offered account takes the admin role (a mistyped address never can, so nothing is lost)."""
    receipt = chain.transact(account, chain.registry.functions.acceptNetworkAdmin(network_id))
    return _receipt("network-admin-accept", receipt, network_id=network_id)


def withdraw_network_fees(chain: Chain, account: Any, network_id: int, to: str | None = None) -> TxResult:
    """Send the network's collected fees (wei) to ``to`` (default: the sender) (network admin)."""
    fn = chain.registry.functions.withdrawNetworkFees(network_id, to or account.address)
    receipt = chain.transact(account, fn)
    logs = _events(chain, receipt, "NetworkFeesWithdrawn")
    r = _receipt("network-withdraw-fees", receipt, network_id=network_id)
    if logs:
        r.fee_paid = int(logs[0]["args"]["amount"])   # wei sent to ``to``
    return r


def network_info(chain: Chain, network_id: int) -> dict:
    """The network's record (view calls): admin, pending admin, policy, period, fee and collected fees (wei),
    and whether registration is open."""
    require_network(chain, network_id)
    f = chain.registry.functions
    # Network(admin, nextOverlay, policy, registrationPeriod, closed)
    rec = chain.call(f.networks(network_id))
    fee, collected = chain.call(f.networkFee(network_id))
    pending = chain.call(f.pendingNetworkAdmin(network_id))
    return {
        "network_id": network_id,
        "admin": rec[0],
        "pending_admin": None if int(pending, 16) == 0 else pending,
        "policy": "approval" if int(rec[2]) == int(JoinPolicy.APPROVAL) else "open",
        "registration_period": int(rec[3]),
        "registration": "closed" if rec[4] else "open",
        "network_fee_wei": int(fee),
        "protocol_fee_wei": int(chain.call(f.registrationFee())),
        "collected_fees_wei": int(collected),
    }


def suspend(chain: Chain, account: Any, device_id: str) -> TxResult:
    receipt = chain.transact(account, chain.registry.functions.suspendDevice(_id(device_id)))
    return _receipt("suspend", receipt, device_id=device_id, status="suspended")


def create_network(chain: Chain, account: Any, name: str, policy: str, period: int) -> TxResult:
    pol = {"open": JoinPolicy.OPEN, "approval": JoinPolicy.APPROVAL}[policy]
    receipt = chain.transact(account, chain.registry.functions.createNetwork(name, int(pol), period))
    logs = _events(chain, receipt, "NetworkCreated")
    return _receipt("network-create", receipt, network_id=logs[0]["args"]["networkId"] if logs else None)


def require_network(chain: Chain, network_id: int) -> None:
    """ConfigError unless ``network_id`` exists on this registry (a view call)."""
    count = int(chain.call(chain.registry.functions.networkCount()))
    if not 1 <= network_id <= count:
        have = f"networks 1 to {count}" if count else "no network yet"
        raise ConfigError(f"network {network_id} does not exist on the registry at {chain.deployment.registry} "
                          f"(chain {chain.chain_id} has {have}): check `network_id`, or create one with "
                          "`shadowmesh-client network create NAME`")


def device_status(chain: Chain, network_id: int, owner: str, public_key: bytes) -> dict:
    """This device's record on chain (view calls: no transaction). ``status`` says "expired" when the
    registration is active but past ``expires_at`` by the chain's clock (the latest block's timestamp)."""
    require_network(chain, network_id)
    did = compute_device_id(network_id, owner, public_key)
    rec = chain.call(chain.registry.functions.devices(did))
    # Device(owner, networkId, overlayAddress, publicKey, registeredAt, expiresAt, status, relay)
    status = int(rec[6])
    out: dict[str, Any] = {
        "device_id": "0x" + did.hex(),
        "network_id": network_id,
        "owner": owner,
        "public_key": public_key.hex(),
        "status": STATUS_NAMES.get(status, str(status)),
    }
    if status:
        chain_time = int(chain.w3.eth.get_block("latest")["timestamp"])
        expires_at = int(rec[5])
        if status == 2 and expires_at <= chain_time:
            out["status"] = "expired"
        out.update(
            overlay_address=_overlay(int(rec[2])), registered_at=int(rec[4]), expires_at=expires_at,
            chain_time=chain_time, relay=bool(rec[7]),
            valid_now=bool(chain.call(chain.registry.functions.verifyDevice(did))),
        )
    return out
