"""The ShadowMeshToken events a relay acts on (docs/payments-v2-interface.md "What the relay client must do",
3. Watch): decoding of raw ``eth_getLogs`` entries and the two filters that select them. Pure; no I/O.

* reserve events with topic 2 = this relay (``ReserveWithdrawalRequested``: claim everything owed at once,
  before ``unlockAt``; ``ReserveFunded`` / ``ReserveWithdrawn`` / ``ReserveWithdrawalCancelled``: refresh
  the guarantee);
* signer events of any payer (the caller keeps those of payers it serves): ``SignerRevoked`` (claim that
  signer's receipts before ``validUntil``; refuse new ones that could land after it), ``SignerAuthorized``
  (refresh the allowance).

Topic layouts (topic 0 = keccak of the signature): ``Reserve*(payer*, relay*, ...)``,
``Signer*(payer*, signer*, deviceId*, ...)``. Logs come as web3 AttributeDicts (bytes topics) or JSON-RPC
dicts (hex strings); both decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import keccak, to_checksum_address

SIGNATURES = {
    "ReserveWithdrawalRequested": "ReserveWithdrawalRequested(address,address,uint256,uint64)",
    "ReserveFunded": "ReserveFunded(address,address,uint256,uint256)",
    "ReserveWithdrawn": "ReserveWithdrawn(address,address,uint256,uint256)",
    "ReserveWithdrawalCancelled": "ReserveWithdrawalCancelled(address,address)",
    "SignerRevoked": "SignerRevoked(address,address,bytes32,uint64)",
    "SignerAuthorized": "SignerAuthorized(address,address,bytes32,uint256,uint32)",
}
TOPICS = {name: "0x" + keccak(text=sig).hex() for name, sig in SIGNATURES.items()}
_NAMES = {v: k for k, v in TOPICS.items()}
RESERVE_EVENTS = ("ReserveWithdrawalRequested", "ReserveFunded", "ReserveWithdrawn", "ReserveWithdrawalCancelled")
SIGNER_EVENTS = ("SignerRevoked", "SignerAuthorized")


@dataclass(frozen=True)
class TokenEvent:
    name: str
    block: int
    payer: str
    relay: str | None = None        # reserve events
    signer: str | None = None       # signer events
    device_id: bytes | None = None  # signer events
    unlock_at: int = 0              # ReserveWithdrawalRequested (unix seconds)
    valid_until: int = 0            # SignerRevoked (unix seconds)


def _b(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith(("0x", "0X")) else text)


def _address(word: bytes) -> str:
    return to_checksum_address("0x" + word[-20:].hex())


def filters(token: str, relay: str, from_block: int, to_block: int) -> list[dict]:
    """The ``eth_getLogs`` parameter objects for the events this relay watches in [from_block, to_block]."""
    relay_topic = "0x" + bytes(12).hex() + relay.lower().removeprefix("0x")
    span = {"address": token, "fromBlock": from_block, "toBlock": to_block}
    return [dict(span, topics=[[TOPICS[n] for n in RESERVE_EVENTS], None, relay_topic]),
            dict(span, topics=[[TOPICS[n] for n in SIGNER_EVENTS]])]


def decode(log: Any) -> TokenEvent | None:
    """One raw log as a TokenEvent, or None if it is not one of the watched events (or malformed)."""
    topics = [_b(t) for t in (log.get("topics") or [])]
    if not topics:
        return None
    name = _NAMES.get("0x" + topics[0].hex())
    if name is None:
        return None
    block = log.get("blockNumber")
    block = int(block, 16) if isinstance(block, str) else int(block or 0)
    data = _b(log.get("data") or b"")
    try:
        if name in RESERVE_EVENTS:
            payer, relay = _address(topics[1]), _address(topics[2])
            unlock = int.from_bytes(data[32:64], "big") if name == "ReserveWithdrawalRequested" else 0
            return TokenEvent(name, block, payer, relay=relay, unlock_at=unlock)
        payer, signer, device = _address(topics[1]), _address(topics[2]), topics[3]
        valid = int.from_bytes(data[0:32], "big") if name == "SignerRevoked" else 0
        return TokenEvent(name, block, payer, signer=signer, device_id=device, valid_until=valid)
    except IndexError:
        return None
