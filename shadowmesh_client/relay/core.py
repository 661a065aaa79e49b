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
message) while one source sends, ``queue_max_bytes * (1 + source_share)`` with several; created lazily and
released when empty; an idle device costs one small _Route object.

Fairness (issue 12 "Resource bounds"): every device's messages pass a message-rate token bucket
(``messages_per_second``: counts messages, so 16-byte messages cost as much as 64 KiB ones) before any
parsing; a destination's queue is one sub-queue per source, served round-robin by ``pop`` and each
capped at ``source_share`` of the queue, so one source flooding a device cannot fill its queue and starve
the others' frames (their drops stay ``queue_full`` of that source only). ``block(destination, source,
seconds)`` (the destination's own sealed request, relay/control.py) drops that source's frames to it as
``blocked``. All of it O(1) per message.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from shadowmesh_client.relay.envelope import (
    ENVELOPE_HEADER_BYTES,
    ENVELOPE_SENDER,
    INNER_MIN_BYTES,
    KEY_BYTES,
    LOCAL_HEADER_BYTES,
    EnvelopeType,
)
from shadowmesh_client.relay.errors import RelayConfigError
from shadowmesh_client.relay.ratelimit import TokenBucket

_FORWARD = int(EnvelopeType.FORWARD)
_LOCAL = int(EnvelopeType.LOCAL)
_DELIVER_HEAD = bytes((EnvelopeType.DELIVER,))


class DropReason(Enum):
    MALFORMED = "malformed"          # not a valid envelope
    SPOOFED = "spoofed"              # inner sender is not the link's authenticated identity
    NO_ROUTE = "no_route"            # destination not connected to this relay
    TO_SELF = "to_self"              # destination is the sender
    RATE_LIMITED = "rate_limited"    # sender over its token bucket
    QUEUE_FULL = "queue_full"        # destination's queue at its bound (slow receiver)
    NOT_ATTACHED = "not_attached"    # message from a key with no route (raced with detach)
    UNPAID = "unpaid"                # sender or destination out of ``RelayCore.budgets`` (payments credit)
    MESSAGE_RATE = "message_rate"    # sender over its message-rate bucket (messages, not bytes)
    BLOCKED = "blocked"              # the destination asked the relay to stop forwarding from this source


@dataclass(frozen=True)
class RelayConfig:
    """``rate_bytes_per_second=None`` disables byte rate limiting; ``messages_per_second=None`` disables
    the message-rate limit. Sizes in bytes, rates per second, ``source_share`` a fraction of the queue."""

    rate_bytes_per_second: float | None = None
    burst_bytes: int = 1 << 20
    queue_max_bytes: int = 512 * 1024
    messages_per_second: float | None = 10_000.0   # per device; a relayed Gbit/s at 64 KiB frames is ~2,000
    burst_messages: int = 10_000
    source_share: float = 0.5                      # of a destination's queue one source may hold
    max_blocks: int = 1_024                        # (destination, source) blocks held at most

    def __post_init__(self) -> None:
        if self.rate_bytes_per_second is not None and self.rate_bytes_per_second <= 0:
            raise RelayConfigError("relay.rate_bytes_per_second must be positive, or null for no limit")
        if self.burst_bytes < 70_000:
            raise RelayConfigError("relay.burst_bytes must hold one full message (at least 70000 bytes)")
        if self.queue_max_bytes < 70_000:
            raise RelayConfigError("relay.queue_max_bytes must hold one full message (at least 70000 bytes)")
        if self.messages_per_second is not None and (self.messages_per_second <= 0 or self.burst_messages < 1):
            raise RelayConfigError("relay.messages_per_second must be positive (burst >= 1), or null for no limit")
        if not 0 < self.source_share <= 1:
            raise RelayConfigError("relay.source_share must be in (0, 1]")


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
    __slots__ = ("link", "queues", "order", "source_bytes", "queued_bytes", "bucket", "messages",
                 "peak_queued_bytes")

    def __init__(self, link: Any, bucket: TokenBucket | None, messages: TokenBucket | None) -> None:
        self.link = link
        # Per source: its queued envelopes and their bytes; ``order`` holds the sources with frames queued,
        # served round-robin. Created on first enqueue, dropped when empty.
        self.queues: dict[bytes, deque[bytes]] = {}
        self.order: deque[bytes] = deque()
        self.source_bytes: dict[bytes, int] = {}
        self.queued_bytes = 0
        self.bucket = bucket
        self.messages = messages
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
        # (destination, source) -> ``now`` until which that source's frames to that destination are dropped
        # (relay/control.py BLOCK, sent sealed by the destination). Empty: one truthiness check per message.
        self.blocks: dict[tuple[bytes, bytes], float] = {}
        self._share = int(self.config.queue_max_bytes * self.config.source_share)
        self._hard_max = self.config.queue_max_bytes + self._share   # bytes queued per destination at most

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
        bucket = messages = None
        c = self.config
        if c.rate_bytes_per_second is not None:
            bucket = TokenBucket(c.rate_bytes_per_second, c.burst_bytes, now)
        if c.messages_per_second is not None:
            messages = TokenBucket(c.messages_per_second, c.burst_messages, now)
        self._routes[key] = _Route(link, bucket, messages)
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
        """A message arrived on the link authenticated as ``source``: ``admit`` it, then ``enqueue`` a frame
        to forward for the writer (``pop``)."""
        result = self.admit(source, message, now)
        if isinstance(result, tuple):
            return self.enqueue(source, result[0], result[1])
        return result

    def admit(self, source: bytes, message: bytes, now: float) -> tuple[bytes, bytes] | Local | Dropped:
        """Every check and counter of ``on_message`` up to the DELIVER envelope, without queueing it:
        ``(destination, envelope)`` for a frame to forward, else ``Local`` / ``Dropped``. The caller then
        ``enqueue``s the envelope, or, only while ``idle_link(destination)`` says nothing is queued ahead of
        it, writes it to that link at once and counts it with ``sent`` (RelayServer's fast path, issue 17:
        the same accounting as ``pop``, without the queue round trip)."""
        route = self._routes.get(source)
        if route is None:
            return self._drop(None, DropReason.NOT_ATTACHED)
        n = len(message)
        usage = self._usage[source]
        usage.bytes_in += n
        usage.messages_in += 1
        if route.messages is not None and not route.messages.consume(1, now):
            return self._drop(usage, DropReason.MESSAGE_RATE)
        if route.bucket is not None and not route.bucket.consume(n, now):
            return self._drop(usage, DropReason.RATE_LIMITED)
        # The envelope (envelope.py) parsed in place: the same checks as ``decode`` + ``inner_sender``.
        kind = message[0] if n else 0
        if kind != _FORWARD:
            if kind == _LOCAL:
                return Local(memoryview(message)[LOCAL_HEADER_BYTES:])
            return self._drop(usage, DropReason.MALFORMED)   # empty, unknown type, or a DELIVER
        if n < ENVELOPE_HEADER_BYTES + INNER_MIN_BYTES:
            return self._drop(usage, DropReason.MALFORMED)
        if type(message) is not bytes:
            message = bytes(message)
        if message[ENVELOPE_SENDER] != source:
            return self._drop(usage, DropReason.SPOOFED)
        destination = message[1:ENVELOPE_HEADER_BYTES]
        if destination == source:
            return self._drop(usage, DropReason.TO_SELF)
        if self.blocks:
            until = self.blocks.get((destination, source))
            if until is not None:
                if now < until:
                    return self._drop(usage, DropReason.BLOCKED)
                del self.blocks[(destination, source)]
        budgets = self.budgets
        if budgets:
            left_src, left_dst = budgets.get(source), budgets.get(destination)
            if (left_src is not None and left_src <= 0) or (left_dst is not None and left_dst <= 0):
                return self._drop(usage, DropReason.UNPAID)
            if left_src is not None:
                budgets[source] = left_src - n
            if left_dst is not None:
                budgets[destination] = left_dst - n
        if destination not in self._routes:
            return self._drop(usage, DropReason.NO_ROUTE)
        # The source written into DELIVER is the authenticated link identity, never a claimed one
        # (encode_deliver's bytes, the inner frame copied once).
        return destination, b"".join((_DELIVER_HEAD, source, memoryview(message)[ENVELOPE_HEADER_BYTES:]))

    def enqueue(self, source: bytes, destination: bytes, out: bytes) -> Forwarded | Dropped:
        """Queue ``out`` (a DELIVER envelope from ``admit``) for ``destination``, within the queue bounds
        (else dropped as QUEUE_FULL, counted on the destination); NO_ROUTE if it detached meanwhile."""
        dest = self._routes.get(destination)
        if dest is None:
            return self._drop(self._usage.get(source), DropReason.NO_ROUTE)
        n = len(out)
        held = dest.source_bytes.get(source, 0)
        total = dest.queued_bytes + n
        # A source within its share always gets room (hard bound: queue_max + share); beyond its share
        # only while it is alone in the queue (one flow keeps the whole queue, as before).
        if held + n <= self._share:
            if total > self._hard_max:
                return self._drop(self._usage[destination], DropReason.QUEUE_FULL)
        elif total > self.config.queue_max_bytes or len(dest.order) > (1 if held else 0):
            return self._drop(self._usage[destination], DropReason.QUEUE_FULL)
        q = dest.queues.get(source)
        if q is None:
            q = dest.queues[source] = deque()
            dest.order.append(source)
        q.append(out)
        dest.source_bytes[source] = held + n
        dest.queued_bytes += n
        if dest.queued_bytes > dest.peak_queued_bytes:
            dest.peak_queued_bytes = dest.queued_bytes
        return Forwarded(destination)

    def idle_link(self, destination: bytes) -> Any | None:
        """``destination``'s link while nothing is queued for it (a frame written now keeps the order and
        bypasses no other source's frames: fairness and bounds are the queue's, and it is empty), else None."""
        route = self._routes.get(destination)
        if route is None or route.order:
            return None
        return route.link

    def sent(self, destination: bytes, n: int) -> None:
        """Count an ``n``-byte envelope written to ``destination`` without the queue (as ``pop`` does)."""
        usage = self._usage[destination]
        usage.bytes_out += n
        usage.messages_out += 1

    def block(self, destination: bytes, source: bytes, seconds: float, now: float) -> bool:
        """Drop ``source``'s frames to ``destination`` for ``seconds`` (the destination asked, sealed).
        At most ``max_blocks`` are held (expired ones are purged first); returns False when full."""
        blocks = self.blocks
        if (destination, source) not in blocks and len(blocks) >= self.config.max_blocks:
            for k in [k for k, until in blocks.items() if until <= now]:
                del blocks[k]
            if len(blocks) >= self.config.max_blocks:
                return False
        blocks[(destination, source)] = now + seconds
        return True

    def pop(self, destination: bytes) -> bytes | None:
        """Next message to write to ``destination`` (counted as sent), or None when its queue is empty
        or the route is gone."""
        route = self._routes.get(destination)
        if route is None or not route.order:
            return None
        order = route.order
        source = order[0]
        q = route.queues[source]
        message = q.popleft()
        n = len(message)
        if q:
            order.rotate(-1)          # round-robin: this source goes to the back of the line
            route.source_bytes[source] -= n
        else:
            order.popleft()
            del route.queues[source]
            del route.source_bytes[source]
        route.queued_bytes -= n
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
