"""The relay's forwarding logic, sans-I/O: routing table, byte counters, rate limit, bounded queues.

Spec: "Data Plane" (relay fallback), "Security Architecture" (relay tier: rate limiting, stateless),
issue 5 "Relay". No sockets, no asyncio, no clock: every time-dependent call takes ``now`` (seconds,
one monotonic clock chosen by the caller). NOT task- or thread-safe: one owner (the relay's event loop).

How the wrapper drives it::

    old = core.attach(key, link, now)        # after authentication; close ``old`` if not None
    result = core.on_message(key, message, now)
        Forwarded(destination)  -> make sure a writer for ``destination`` runs
        Local(frame)            -> a frame for the relay itself (its own session with the device)
        Dropped(reason)         -> nothing to do (already counted)
    writer loop:  while (m := core.pop(destination)) is not None: await link.send(m)
    core.detach(key, link)                   # when the link closes
    core.take_usage()                        # per-device byte counters for receipts (resets them)

Memory bound per attached device: its queue holds at most ``queue_max_bytes`` of envelopes (plus one
message), created lazily and released when empty; an idle device costs one small _Route object.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from shadowmesh_client.relay.envelope import (
    KEY_BYTES,
    EnvelopeType,
    decode,
    encode_deliver,
    inner_sender,
)
from shadowmesh_client.relay.errors import EnvelopeError, RelayConfigError
from shadowmesh_client.relay.ratelimit import TokenBucket


class DropReason(Enum):
    MALFORMED = "malformed"          # not a valid envelope
    SPOOFED = "spoofed"              # inner sender is not the link's authenticated identity
    NO_ROUTE = "no_route"            # destination not connected to this relay
    TO_SELF = "to_self"              # destination is the sender
    RATE_LIMITED = "rate_limited"    # sender over its token bucket
    QUEUE_FULL = "queue_full"        # destination's queue at its bound (slow receiver)
    NOT_ATTACHED = "not_attached"    # message from a key with no route (raced with detach)
    UNPAID = "unpaid"                # sender or destination out of ``RelayCore.budgets`` (payments credit)


@dataclass(frozen=True)
class RelayConfig:
    """``rate_bytes_per_second=None`` disables rate limiting. Sizes in bytes."""

    rate_bytes_per_second: float | None = None
    burst_bytes: int = 1 << 20
    queue_max_bytes: int = 512 * 1024

    def __post_init__(self) -> None:
        if self.rate_bytes_per_second is not None and self.rate_bytes_per_second <= 0:
            raise RelayConfigError("relay.rate_bytes_per_second must be positive, or null for no limit")
        if self.burst_bytes < 70_000:
            raise RelayConfigError("relay.burst_bytes must hold one full message (at least 70000 bytes)")
        if self.queue_max_bytes < 70_000:
            raise RelayConfigError("relay.queue_max_bytes must hold one full message (at least 70000 bytes)")


@dataclass(slots=True)
class DeviceUsage:
    """Bytes/messages a device sent to the relay (in) and the relay wrote to it (out); drops by reason.
    Bytes are whole WebSocket message payloads (envelope included)."""

    bytes_in: int = 0
    messages_in: int = 0
    bytes_out: int = 0
    messages_out: int = 0
    dropped: Counter[DropReason] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Forwarded:
    destination: bytes


@dataclass(frozen=True, slots=True)
class Local:
    frame: memoryview


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: DropReason


class _Route:
    __slots__ = ("link", "queue", "queued_bytes", "bucket", "peak_queued_bytes")

    def __init__(self, link: Any, bucket: TokenBucket | None) -> None:
        self.link = link
        self.queue: deque[bytes] | None = None  # created on first enqueue, dropped when empty
        self.queued_bytes = 0
        self.bucket = bucket
        self.peak_queued_bytes = 0


class RelayCore:
    def __init__(self, config: RelayConfig | None = None) -> None:
        self.config = config or RelayConfig()
        self._routes: dict[bytes, _Route] = {}
        self._usage: dict[bytes, DeviceUsage] = {}
        self.drops: Counter[DropReason] = Counter()
        # Payments credit (relay_billing sets it): bytes each listed key may still have forwarded from or to
        # it. Every FORWARD spends its length from the sender's and the destination's budget; at <= 0 they
        # are dropped as UNPAID (still counted as received). LOCAL messages (receipts) always get through.
        # Keys not listed are not limited (empty dict: no payments, one truthiness check per message).
        self.budgets: dict[bytes, int] = {}

    # ---- routing table ----------------------------------------------------------------------------
    def attach(self, key: bytes, link: Any, now: float) -> Any | None:
        """Register ``link`` as the route to ``key`` (an AUTHENTICATED identity). The newest link wins:
        returns the link it replaces (the wrapper closes it) or None. Queued frames are kept."""
        if len(key) != KEY_BYTES:
            raise ValueError("relay routes are keyed by 32-byte Ed25519 public keys")
        route = self._routes.get(key)
        if route is not None:
            old, route.link = route.link, link
            return old if old is not link else None
        bucket = None
        if self.config.rate_bytes_per_second is not None:
            bucket = TokenBucket(self.config.rate_bytes_per_second, self.config.burst_bytes, now)
        self._routes[key] = _Route(link, bucket)
        self._usage.setdefault(key, DeviceUsage())
        return None

    def detach(self, key: bytes, link: Any) -> bool:
        """Forget the route if ``link`` is still the current one (a replaced link detaching later
        must not remove its successor). Drops its queue. Returns True if removed."""
        route = self._routes.get(key)
        if route is None or route.link is not link:
            return False
        del self._routes[key]
        return True

    def link_of(self, key: bytes) -> Any | None:
        route = self._routes.get(key)
        return None if route is None else route.link

    def __contains__(self, key: bytes) -> bool:
        return key in self._routes

    def __len__(self) -> int:
        return len(self._routes)

    # ---- forwarding -------------------------------------------------------------------------------
    def on_message(self, source: bytes, message: bytes, now: float) -> Forwarded | Local | Dropped:
        """A message arrived on the link authenticated as ``source``."""
        route = self._routes.get(source)
        if route is None:
            return self._drop(None, DropReason.NOT_ATTACHED)
        usage = self._usage[source]
        usage.bytes_in += len(message)
        usage.messages_in += 1
        if route.bucket is not None and not route.bucket.consume(len(message), now):
            return self._drop(usage, DropReason.RATE_LIMITED)
        try:
            env = decode(message)
            if env.type is EnvelopeType.LOCAL:
                return Local(env.inner)
            if env.type is not EnvelopeType.FORWARD:
                raise EnvelopeError("devices may only send FORWARD or LOCAL envelopes")
            sender = inner_sender(env.inner)
        except EnvelopeError:
            return self._drop(usage, DropReason.MALFORMED)
        if sender != source:
            return self._drop(usage, DropReason.SPOOFED)
        destination = env.key
        assert destination is not None  # decode() sets the key of every non-LOCAL envelope
        if destination == source:
            return self._drop(usage, DropReason.TO_SELF)
        budgets = self.budgets
        if budgets:
            n = len(message)
            left_src, left_dst = budgets.get(source), budgets.get(destination)
            if (left_src is not None and left_src <= 0) or (left_dst is not None and left_dst <= 0):
                return self._drop(usage, DropReason.UNPAID)
            if left_src is not None:
                budgets[source] = left_src - n
            if left_dst is not None:
                budgets[destination] = left_dst - n
        dest = self._routes.get(destination)
        if dest is None:
            return self._drop(usage, DropReason.NO_ROUTE)
        # The source written into DELIVER is the authenticated link identity, never a claimed one.
        out = encode_deliver(source, env.inner)
        if dest.queued_bytes + len(out) > self.config.queue_max_bytes:
            return self._drop(self._usage[destination], DropReason.QUEUE_FULL)
        if dest.queue is None:
            dest.queue = deque()
        dest.queue.append(out)
        dest.queued_bytes += len(out)
        dest.peak_queued_bytes = max(dest.peak_queued_bytes, dest.queued_bytes)
        return Forwarded(destination)

    def pop(self, destination: bytes) -> bytes | None:
        """Next message to write to ``destination`` (counted as sent), or None when its queue is empty
        or the route is gone."""
        route = self._routes.get(destination)
        if route is None or not route.queue:
            return None
        message = route.queue.popleft()
        route.queued_bytes -= len(message)
        if not route.queue:
            route.queue = None
        usage = self._usage[destination]
        usage.bytes_out += len(message)
        usage.messages_out += 1
        return message

    # ---- observation ------------------------------------------------------------------------------
    def queued_bytes(self, key: bytes) -> int:
        route = self._routes.get(key)
        return 0 if route is None else route.queued_bytes

    def peak_queued_bytes(self, key: bytes) -> int:
        route = self._routes.get(key)
        return 0 if route is None else route.peak_queued_bytes

    def usage(self, key: bytes) -> DeviceUsage:
        """Counters of ``key`` since the last take_usage() (a fresh zero object if unknown)."""
        return self._usage.get(key) or DeviceUsage()

    def take_usage(self) -> dict[bytes, DeviceUsage]:
        """All counters, reset to zero; devices no longer attached are forgotten (bounded memory)."""
        taken = self._usage
        self._usage = {key: DeviceUsage() for key in self._routes}
        return taken

    def _drop(self, usage: DeviceUsage | None, reason: DropReason) -> Dropped:
        self.drops[reason] += 1
        if usage is not None:
            usage.dropped[reason] += 1
        return Dropped(reason)
