"""Relay side: whether to keep relaying for a device (docs/payments.md "Credit"). Pure; no I/O.

A relay extends credit of at most ``credit_bytes`` bytes it has counted for a device but holds no receipt for.
It stops relaying for the device when that credit is exceeded, or when the device's payer's escrow cannot pay
for what is already receipted and unpaid (the deposit is exhausted); it resumes when the device catches up:
unreceipted bytes back at or below ``resume_bytes`` (hysteresis, default half the credit) and the escrow
covering the receipted-but-unpaid bytes again. The escrow figure is the caller's latest chain read (other
relays draw on the same escrow, so it is an estimate; the contract caps every claim anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

from shadowmesh_client.rewards.errors import PaymentConfigError


@dataclass(frozen=True)
class CreditConfig:
    """``credit_bytes``: unreceipted bytes tolerated (default 64 MB; keep it at least twice the
    devices' ``every_bytes`` plus data in flight, or honest devices get cut off between receipts);
    ``resume_bytes``: stopped devices resume at or below this many unreceipted bytes (default credit_bytes // 2)."""

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
    reason: str  # "ok", "credit exceeded", "deposit exhausted"


@dataclass
class ChannelFigures:
    """What the relay knows about one device: bytes it counted, bytes receipted (latest stored receipt),
    bytes already paid on chain, the payer's escrow balance (SMT base units), and the price per byte."""

    counted: int
    receipted: int
    paid: int
    escrow: int
    price: int


class CreditPolicy:
    """Stop/resume decisions with hysteresis, per device key. Not thread-safe."""

    def __init__(self, config: CreditConfig) -> None:
        self.config = config
        self._stopped: set = set()

    def decide(self, key, f: ChannelFigures) -> Decision:
        unreceipted = max(0, f.counted - f.receipted)
        owed = max(0, f.receipted - f.paid) * f.price
        if f.escrow < owed + f.price:  # cannot pay for a single byte beyond what is receipted
            self._stopped.add(key)
            return Decision(False, "deposit exhausted")
        resume = self.config.resume_bytes
        limit = resume if key in self._stopped and resume is not None else self.config.credit_bytes
        if unreceipted > limit:
            self._stopped.add(key)
            return Decision(False, "credit exceeded")
        self._stopped.discard(key)
        return Decision(True, "ok")

    def forget(self, key) -> None:
        self._stopped.discard(key)
