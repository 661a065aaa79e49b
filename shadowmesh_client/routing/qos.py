"""Application-aware QoS: a packet classifier and per-peer, per-class send queues for the pump (issue 14).

Without QoS (the default) the pump sends with ``send_nowait`` and, when a path is full, stops reading the
TUN device until that path drains: the kernel's TUN queue is the buffer, and one slow peer pauses the
reader for every peer. With QoS on (``QosSender`` installed as ``Pump.qos``), the reader never waits:

* a peer with no backlog is sent to exactly as before (seal, ``send_nowait``; no classification cost);
* once a peer's path is full, its packets go to that peer's own queues, one per class, drained by one
  task per backlogged peer: INTERACTIVE packets first, then frames already sealed, then BULK, one frame's
  worth at a time (so an interactive packet waits behind at most one bulk frame of ours);
* optionally (``link_cap``; off by default, see ``LINK_BULK_CAP`` for why), bulk is handed to a link only
  while the link's ``buffered_bytes`` is below the cap (the fast path too): what a link already holds is a
  FIFO we cannot reorder. A drain held by the cap looks again every ``LINK_POLL_SECONDS``, or at once when
  an interactive packet arrives; interactive packets go to the link at once, whatever it holds. (The
  kernel's unsent queue is bounded by TCP_NOTSENT_LOWAT, transport/ws/link.py, whatever the setting.)
* each peer's queued bytes are bounded (``QUEUE_BYTES`` bulk, ``INTERACTIVE_QUEUE_BYTES`` interactive):
  beyond that the packet is dropped and counted (tail drop: the inner TCP slows down for that peer
  only). A slow peer therefore costs other peers nothing.

Classes (``Classifier``): INTERACTIVE if the packet is small (<= ``SMALL_PACKET`` bytes: pings, TCP
ACKs, keystrokes, DNS, VoIP), carries an interactive DSCP (RFC 4594: EF, CS4-CS7, AF4x), or its TCP/UDP
port (source or destination) is in the configured set (default: SSH, DNS, SIP, STUN/TURN, RTP range);
else BULK.

Concurrency: one ``run()`` task (a TaskGroup) owns every drain task; ``send`` is called from the pump's
reader callback on the same loop. Not thread-safe.

May import: transport (LinkClosedError), asyncio. Paths are duck-typed: ``send_nowait``/``send``, and
``link`` (a direct path) or ``relay.link`` (a relay path) for ``buffered_bytes``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable

from shadowmesh_client.transport import LinkClosedError

log = logging.getLogger(__name__)

INTERACTIVE, BULK = 0, 1

SMALL_PACKET = 256
"""Bytes. A packet this small or smaller is interactive whatever its port (ICMP echo, TCP ACK, DNS)."""

INTERACTIVE_DSCP = frozenset({46, 32, 34, 36, 38, 40, 48, 56})
"""RFC 4594 / RFC 2474 code points treated as interactive: EF (46), CS4 (32), AF41-43 (34/36/38), CS5
(40), CS6 (48), CS7 (56)."""

DEFAULT_PORTS: frozenset[int] = frozenset({22, 53, 3478, 3479, 5060, 5061, 5349}
                                          | set(range(16384, 16484)))
"""Ports classed interactive by default: SSH, DNS, STUN/TURN, SIP(S), the first 100 RTP ports."""

QUEUE_BYTES = 4 * 1024 * 1024
"""Bytes of bulk packets one peer may have queued (a few frames at MTU 65,000); beyond: dropped."""
INTERACTIVE_QUEUE_BYTES = 256 * 1024
"""Bytes of interactive packets one peer may have queued."""
BULK_FRAME_BYTES = 60_000
"""Bytes of bulk packets sealed per drain step (about one frame): the most an interactive packet waits
behind in our queue."""
LINK_BULK_CAP = 64 * 1024
"""Bytes: with ``QosSender(link_cap=LINK_BULK_CAP)``, bulk is handed to a link only while its
``buffered_bytes`` is below this (an interactive packet then waits behind at most this plus one frame in the
process, ~0.5 ms at 1 Gbit/s). Not the default: in ``python -m bench qos --quick`` (paired runs, docs/routing.md
"QoS") it cut bulk with QoS on from ~1.9-3.1 to ~1.7 Gbit/s and did not lower the loaded ping/echo RTT: the
queue interactive packets wait in under load is not the sender's link buffer on this machine."""
LINK_POLL_SECONDS = 0.001
"""Seconds: how often a drain held by ``LINK_BULK_CAP`` looks at the link again (the link has no event
for "below the cap"; the kernel still holds up to TCP_NOTSENT_LOWAT = 128 KiB, ~1 ms at 1 Gbit/s)."""


def buffered(path) -> int:
    """Bytes the link under ``path`` holds unsent (0 if unknown: a path without a link with
    ``buffered_bytes``)."""
    link = getattr(path, "link", None)
    if link is None:
        relay = getattr(path, "relay", None)
        link = getattr(relay, "link", None)
    return getattr(link, "buffered_bytes", 0) if link is not None else 0


def parse_ports(spec: Iterable[str | int]) -> frozenset[int]:
    """Ports from ``[22, "5060-5061"]`` (ValueError on a bad item)."""
    out: set[int] = set()
    for item in spec:
        s = str(item)
        lo, _, hi = s.partition("-")
        a, b = int(lo), int(hi or lo)
        if not (0 < a <= b < 65536):
            raise ValueError(f"bad port or range {s!r}")
        out.update(range(a, b + 1))
    return frozenset(out)


class Classifier:
    """``classify(packet) -> INTERACTIVE | BULK`` (raw IPv4 or IPv6 packet bytes)."""

    def __init__(self, ports: frozenset[int] = DEFAULT_PORTS, small: int = SMALL_PACKET) -> None:
        self.ports, self.small = ports, small

    def __call__(self, p) -> int:
        n = len(p)
        if n <= self.small:
            return INTERACTIVE
        v = p[0] >> 4
        if v == 4:
            dscp, proto, l4 = p[1] >> 2, p[9], (p[0] & 0x0F) * 4
            if (p[6] & 0x1F) or p[7]:      # a non-first fragment has no ports
                return INTERACTIVE if dscp in INTERACTIVE_DSCP else BULK
        elif v == 6:
            dscp, proto, l4 = ((p[0] & 0x0F) << 2) | (p[1] >> 6), p[6], 40
        else:
            return BULK
        if dscp in INTERACTIVE_DSCP:
            return INTERACTIVE
        if (proto == 6 or proto == 17) and n >= l4 + 4:
            ports = self.ports
            if (p[l4] << 8 | p[l4 + 1]) in ports or (p[l4 + 2] << 8 | p[l4 + 3]) in ports:
                return INTERACTIVE
        return BULK


class _Queue:
    __slots__ = ("hi", "hi_bytes", "bulk", "bulk_bytes", "sealed", "task", "kick")

    def __init__(self) -> None:
        self.hi: deque = deque()
        self.bulk: deque = deque()
        self.sealed: deque = deque()     # frames sealed by the fast path that did not fit
        self.hi_bytes = self.bulk_bytes = 0
        self.task: asyncio.Task | None = None
        self.kick: asyncio.Event | None = None   # set while the drain waits for the link's cap

    def __bool__(self) -> bool:
        return bool(self.hi or self.bulk or self.sealed)


class QosSender:
    """Per-peer, per-class queues. ``seal(peer, packets) -> frames`` is the pump's sealing function."""

    def __init__(self, seal: Callable, classify: Callable[[bytes], int] | None = None, *,
                 queue_bytes: int = QUEUE_BYTES, interactive_bytes: int = INTERACTIVE_QUEUE_BYTES,
                 link_cap: int | None = None) -> None:
        self._seal = seal
        self.link_cap = link_cap
        self.classify = classify or Classifier()
        self.queue_bytes, self.interactive_bytes = queue_bytes, interactive_bytes
        self._queues: dict = {}          # PeerState -> _Queue, only while it has a backlog
        self._group: asyncio.TaskGroup | None = None
        self.dropped = 0                 # packets: queue full
        self.dropped_no_path = 0         # packets: the peer had no path
        self.queued = [0, 0]             # packets that went through a queue, per class
        self.send_errors = 0
        self.frames_out = 0
        self.cap_waits = 0               # times a drain waited for a link to go below link_cap

    def counters(self) -> dict:
        return {"qos_dropped": self.dropped, "qos_dropped_no_path": self.dropped_no_path,
                "qos_queued_interactive": self.queued[INTERACTIVE], "qos_queued_bulk": self.queued[BULK],
                "qos_backlogged_peers": len(self._queues), "qos_frames_out": self.frames_out,
                "qos_cap_waits": self.cap_waits}

    async def run(self) -> None:
        """Own the drain tasks until cancelled (then every drain task is cancelled and awaited)."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                await asyncio.Future()
            finally:
                self._group = None
                for q in self._queues.values():
                    if q.task is not None:
                        q.task.cancel()

    def send(self, peer, packets: list) -> None:
        """Send or queue ``packets`` for ``peer``; never waits. (The pump's ``_send_now`` with QoS on.)"""
        q = self._queues.get(peer)
        if q is None:
            path = peer.path
            if path is None:
                self.dropped_no_path += len(packets)
                return None
            frames = self._seal(peer, packets)
            nowait, cap = path.send_nowait, self.link_cap
            for i, frame in enumerate(frames):
                if (cap is not None and buffered(path) >= cap) or not nowait(frame):
                    q = self._backlog(peer)
                    if q is None:
                        return None
                    q.sealed.extend(frames[i:])
                    return None
                self.frames_out += 1
            return None
        classify = self.classify
        for p in packets:
            n = len(p)
            if classify(p) == INTERACTIVE:
                if q.hi_bytes + n > self.interactive_bytes:
                    self.dropped += 1
                    continue
                q.hi.append(p)
                q.hi_bytes += n
                self.queued[INTERACTIVE] += 1
                if q.kick is not None:
                    q.kick.set()
            else:
                if q.bulk_bytes + n > self.queue_bytes:
                    self.dropped += 1
                    continue
                q.bulk.append(p)
                q.bulk_bytes += n
                self.queued[BULK] += 1
        return None

    def _backlog(self, peer) -> _Queue | None:
        if self._group is None:    # not running (tests that drive the pump by hand, shutdown): drop
            return None
        q = self._queues[peer] = _Queue()
        q.task = self._group.create_task(self._drain(peer, q), name=f"qos {peer.key.hex()[:8]}")
        return q

    def _next(self, peer, q: _Queue) -> list:
        """The next frames to send: every interactive packet, else one sealed frame or one bulk frame."""
        if q.hi:
            batch = list(q.hi)
            q.hi.clear()
            q.hi_bytes = 0
            return self._seal(peer, batch)
        if q.sealed:
            return [q.sealed.popleft()]
        batch, size = [], 0
        while q.bulk and (not batch or size + len(q.bulk[0]) <= BULK_FRAME_BYTES):
            p = q.bulk.popleft()
            size += len(p)
            batch.append(p)
        q.bulk_bytes -= size
        return self._seal(peer, batch)

    async def _drain(self, peer, q: _Queue) -> None:
        try:
            while q:
                path = peer.path
                if path is None:
                    self.dropped_no_path += len(q.hi) + len(q.bulk) + len(q.sealed)
                    break
                if self.link_cap is not None and not q.hi and buffered(path) >= self.link_cap:
                    await self._cap_wait(q)      # bulk only: wait until the link holds less than the cap
                    continue
                for frame in self._next(peer, q):
                    if not path.send_nowait(frame):
                        await path.send(frame)
                    self.frames_out += 1
        except LinkClosedError:
            self.send_errors += 1
            peer.select()
        finally:
            if self._queues.get(peer) is q:
                del self._queues[peer]

    async def _cap_wait(self, q: _Queue) -> None:
        """Sleep ``LINK_POLL_SECONDS``, or less if an interactive packet is queued meanwhile."""
        self.cap_waits += 1
        kick = q.kick = asyncio.Event()
        handle = asyncio.get_running_loop().call_later(LINK_POLL_SECONDS, kick.set)
        try:
            await kick.wait()
        finally:
            handle.cancel()
            q.kick = None
