"""Relay side: whether to keep relaying for a payer's devices, and how many more bytes (docs/payments.md
"Credit"; payments v2, issue 10). Pure; no I/O.

Credit is per PAYER, summed over all its devices on this relay (N Sybil devices of one payer share one
credit), and bounded twice:

* by the reserve: what the payer owes this relay — unpaid receipted bytes at each receipt's price, plus
  the bytes counted but not yet receipted at the session price — plus one more byte must stay within
  ``guaranteedAmount(payer, relay)`` (reserve minus the pending withdrawal, read on chain). What is
  receipted is therefore always claimable in full (the contract pays a withdrawal at most the pending
  amount, and the relay claims before ``unlockAt``): "reserve exhausted" otherwise;
* by ``credit_bytes``: bytes carried for the payer's devices without a receipt. That is all a relay can
  lose to a payer (who stops signing, or drains the reserve): at most ``credit_bytes x price``;
  "credit exceeded" otherwise.

A device whose receipts come from a hot signer is further bounded by that signer's allowance for the
period (``signerAllowance``): "signer cap reached". Hysteresis: a stopped payer resumes at or below
``resume_bytes`` unreceipted bytes. Not thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass

from shadowmesh_client.rewards.errors import PaymentConfigError


@dataclass(frozen=True)
class CreditConfig:
    """``credit_bytes``: unreceipted bytes tolerated per payer (all its devices together; default 64 MB;
    keep it at least twice the devices' ``every_bytes`` plus data in flight, or honest devices get cut off
    between receipts); ``resume_bytes``: a stopped payer resumes at or below this many unreceipted bytes
    (default credit_bytes // 2)."""

    credit_bytes: int = 64_000_000
    resume_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.credit_bytes < 0:
            raise PaymentConfigError("payments.credit_bytes must be >= 0")
        if self.resume_bytes is None:
            object.__setattr__(self, "resume_bytes", self.credit_bytes // 2)
        resume = self.resume_bytes if self.resume_bytes is not None else self.credit_bytes // 2
        if not 0 <= resume <= self.credit_bytes:
            raise PaymentConfigError("payments.resume_bytes must be between 0 and payments.credit_bytes")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str           # "ok", "credit exceeded", "reserve exhausted", "signer cap reached"
    budget: int = 0       # bytes that may still be carried for the payer (all its devices together)


OK, CREDIT, RESERVE, SIGNER_CAP = "ok", "credit exceeded", "reserve exhausted", "signer cap reached"


@dataclass
class PayerFigures:
    """What the relay knows about one payer: ``guaranteed`` (guaranteedAmount, SMT base units), ``owed``
    (unpaid receipted bytes x their receipt's price, all devices), ``unreceipted`` (bytes counted without a
    receipt, all devices) and ``price`` (the session price new bytes are carried at, per byte)."""

    guaranteed: int
    owed: int
    unreceipted: int
    price: int

    @property
    def exposure(self) -> int:
        """SMT base units the payer owes, receipted or not."""
        return self.owed + self.unreceipted * self.price


@dataclass
class ChannelFigures:
    """One device of a hot signer: its channel's owed amount (receipted and not) and the signer's allowance."""

    owed: int
    allowance: int
    price: int


class CreditPolicy:
    """Stop/resume decisions with hysteresis, per payer. Not thread-safe."""

    def __init__(self, config: CreditConfig) -> None:
        self.config = config
        self._stopped: set = set()

    def decide(self, key, f: PayerFigures) -> Decision:
        """``key``: the payer. The budget is the bytes the payer's devices may still be carried for."""
        price = max(f.price, 1)
        room = f.guaranteed - f.exposure
        if room < price:   # cannot pay for a single byte more than it already owes
            self._stopped.add(key)
            return Decision(False, RESERVE)
        resume = self.config.resume_bytes
        limit = resume if key in self._stopped and resume is not None else self.config.credit_bytes
        if f.unreceipted > limit:
            self._stopped.add(key)
            return Decision(False, CREDIT)
        self._stopped.discard(key)
        return Decision(True, OK, min(self.config.credit_bytes - f.unreceipted, room // price))

    @staticmethod
    def signer_room(f: ChannelFigures) -> int:
        """Bytes a hot signer's device may still be carried for within the signer's allowance."""
        return max(0, f.allowance - f.owed) // max(f.price, 1)

    def forget(self, key) -> None:
        self._stopped.discard(key)
