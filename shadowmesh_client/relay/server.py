"""RelayServer: the asyncio wrapper that moves envelopes between links and the pure RelayCore.

Spec: "Data Plane" (relay fallback), "Security Architecture" (relay tier: rate limiting, stateless).
Envelope layout and trust argument: shadowmesh_client/relay/envelope.py and docs/transport.md.

``authenticate(first_message) -> (response, peer_key) | None`` is supplied by the relay daemon: it runs
the protocol handshake (device -> relay) and returns the handshake response frame(s) and the
AUTHENTICATED 32-byte Ed25519 key of the device. The routing table is keyed by that key only; nothing a
device sends later can change it. Response frames are sent as LOCAL envelopes, so every message after the
upgrade is an envelope.

Per link: no reader task: the link hands each message to ``_receive`` from its ``data_received``
(``Link.deliver_to``, issue 17: no task wake-up per forwarded frame), which forwards at once with
``send_nowait``: straight to the destination's link while nothing is queued for it (``_handle``: no queue
round trip), else through its queue (``_kick``); only while a device's link has no room for what is queued
for it, one writer task. Where the old reader task waited (a device over its message rate, LOCAL replies
waiting) the link stops reading (``Link.pause_reading``): the excess waits in the kernel, as it did.
A slow receiver backs up into its bounded core queue (then drops, counted), never into unbounded memory;
websockets' ``write_limit`` bounds what sits in the socket's user-space buffer.
Restart-safe: the relay keeps no state a device needs; devices simply reconnect.

Tasks: every task this server creates (writers, closers, LOCAL replies) is referenced until done and
cancelled and awaited by ``close()``. One event loop only.

May import: relay (pure core), transport (base, config, errors; ws only as the default transport).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from shadowmesh_client.protocol.cookie import CLOSE_COOKIE
from shadowmesh_client.relay import Dropped, DropReason, Forwarded, Local, RelayConfig, RelayCore, encode_local
from shadowmesh_client.relay.envelope import KEY_BYTES
from shadowmesh_client.relay.guard import Challenge
from shadowmesh_client.transport.base import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_REPLACED,
    CLOSE_REVOKED,
    Link,
    Server,
    Transport,
)
from shadowmesh_client.transport.config import ServerConfig
from shadowmesh_client.transport.errors import LinkClosedError

log = logging.getLogger(__name__)

RelayAuthResult = tuple[bytes | Sequence[bytes], bytes]
RelayAuthenticate = Callable[..., Awaitable[RelayAuthResult | Challenge | None] | RelayAuthResult | Challenge | None]
"""``authenticate(hello[, source]) -> (response frame(s), device key) | Challenge | None``."""
# on_local(device_key, frame) -> frames to send back to that device (each wrapped in a LOCAL envelope)
Replies = Sequence[bytes | bytearray]
OnLocal = Callable[[bytes, Any], Awaitable[Replies] | Awaitable[Replies | None] | Replies | None]
Presence = Callable[[bytes, bool], None]
"""``presence(device_key, attached)``: a device's LOCAL link attached / detached (relay clusters)."""

MAX_LOCAL_IN_FLIGHT = 8  # per link: awaitable on_local replies pending before the reader waits (backpressure)
RATE_PAUSE_SECONDS = 0.05
"""Seconds a link's reader stops after a message over the device's message rate (RelayConfig)."""


class _Reader:
    """One device link's receive state (``RelayServer._receive``, called from the link's data_received)."""

    __slots__ = ("link", "key", "held", "paused", "closed", "timer")

    def __init__(self, link: Link, key: bytes) -> None:
        self.link = link
        self.key = key
        self.held: deque[bytes] = deque()   # received while paused (the rest of one read at most)
        self.paused = False
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None   # end of a message-rate pause


async def _ready(value):
    return value


class RelayServer:
    """``async with RelayServer(server_config, relay_config, authenticate) as relay:``.
    ``relay.core`` exposes counters (``core.usage(key)``, ``core.take_usage()``, ``core.drops``)."""

    def __init__(self, config: ServerConfig, relay_config: RelayConfig | None, authenticate: RelayAuthenticate,
                 *, on_local: OnLocal | None = None, clock: Callable[[], float] = time.monotonic,
                 transport: Transport | None = None, presence: Presence | None = None) -> None:
        self.core = RelayCore(relay_config)
        # Cluster (relay/cluster/mesh.py): told when a device's local link attaches (True) or detaches.
        self.presence = presence
        self._authenticate = authenticate
        # ``authenticate(hello, source)`` when the hook takes the initiator's address (relay/guard.py);
        # the transport passes ``source`` to ``_auth`` when it knows it.
        self._with_source = _takes_source(authenticate)
        self._on_local = on_local
        self._clock = clock
        self._writers: dict[bytes, asyncio.Task] = {}
        self._closers: set[asyncio.Task] = set()
        self._repliers: dict[Link, list[asyncio.Task]] = {}   # per link: LOCAL replies in flight, in order
        self.rate_pauses = 0   # reader pauses of links over their message rate
        if transport is None:
            from shadowmesh_client.transport.ws import WebSocketTransport

            transport = WebSocketTransport()
        self._server: Server = transport.server(config, self._auth, self._on_link)

    # ---- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._server.start()

    async def close(self) -> None:
        """Stop accepting and close every link (the link server awaits its ``on_link`` handlers), then
        cancel the writer, closer and LOCAL-reply tasks and AWAIT them: when this returns no task of
        this server is left running, so the caller may close what they use (e.g. the billing ledger)."""
        await self._server.close()
        tasks = [*self._writers.values(), *self._closers, *(t for ts in self._repliers.values() for t in ts)]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> RelayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._server.port

    def now(self) -> float:
        """The core's clock (seconds): what ``core.on_message`` and ``core.block`` are given."""
        return self._clock()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def links(self) -> set[Link]:
        return self._server.links

    @property
    def server(self) -> Server:
        return self._server

    async def disconnect(self, key: bytes) -> bool:
        """Close the device's link (e.g. revoked in the directory). Returns False if not connected."""
        link = self.core.link_of(key)
        if link is None:
            return False
        if self.core.detach(key, link) and self.presence is not None:
            self.presence(key, False)
        await link.close(CLOSE_REVOKED, "")
        return True

    # ---- per link ---------------------------------------------------------------------------------
    async def _auth(self, hello: bytes, source: object = None) -> tuple[list[bytes], bytes | Challenge] | None:
        result = self._authenticate(hello, source) if self._with_source else self._authenticate(hello)
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            return None
        if isinstance(result, Challenge):   # under load, no valid cookie: the cookie reply, then close
            return [encode_local(result.reply)], result
        response, key = result
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
            raise TypeError("relay authenticate must return the device's 32-byte Ed25519 public key")
        frames = [response] if isinstance(response, (bytes, bytearray, memoryview)) else list(response)
        return [encode_local(f) for f in frames if len(f)], bytes(key)

    async def _on_link(self, link: Link) -> None:
        if isinstance(link.peer, Challenge):   # the cookie reply went out with the upgrade: nothing more
            await link.close(CLOSE_COOKIE, "")
            return
        key: bytes = link.peer
        old = self.core.attach(key, link, self._clock())
        if old is not None:
            self._spawn_close(old, CLOSE_REPLACED)
        if self.presence is not None:
            self.presence(key, True)
        if self.core.queued_bytes(key):
            self._kick(key)
        reader = _Reader(link, key)
        link.deliver_to(partial(self._receive, reader))
        try:
            await link.wait_closed()
        finally:
            reader.closed = True
            reader.held.clear()
            if reader.timer is not None:
                reader.timer.cancel()
            if self.core.detach(key, link) and self.presence is not None:
                self.presence(key, False)

    def _receive(self, reader: _Reader, message: bytes) -> None:
        """A message from ``reader``'s link, called from the link's ``data_received`` (``deliver_to``).
        While the reader is paused the link reads nothing more; what the last read already held (at most
        one read's worth) waits in ``reader.held`` and is handled in order on resume."""
        if reader.paused:
            reader.held.append(message)
            return
        self._handle(reader, message)

    def _handle(self, reader: _Reader, message: bytes) -> None:
        core = self.core
        result = core.admit(reader.key, message, self._clock())
        if type(result) is tuple:
            destination, out = result
            # Fast path (issue 17): nothing queued for the destination and no writer task for it, so a frame
            # written now overtakes nobody: straight to its link, counted as ``pop`` counts, without the
            # queue round trip. No room on the link: queued (bounded) and written by the writer task, as before.
            if destination not in self._writers:
                link = core.idle_link(destination)
                if link is not None and link.send_nowait(out):
                    core.sent(destination, len(out))
                    return
            if type(core.enqueue(reader.key, destination, out)) is Forwarded:
                self._kick(destination)
        elif type(result) is Local and self._on_local is not None:
            try:
                self._local(reader, result.frame)
            except Exception:   # a bug in on_local: as when it ended the reader task, the link closes (1011)
                log.exception("on_local failed: closing the link")
                reader.closed = True    # nothing more is handled on this link
                self._pause(reader)
                self._spawn_close(reader.link, CLOSE_INTERNAL_ERROR)
        elif type(result) is Dropped and result.reason is DropReason.MESSAGE_RATE:
            # Over its message rate: stop reading this link for a moment, so the excess waits in the
            # kernel (TCP backpressure), not in our CPU: the device's share, not everyone's.
            self.rate_pauses += 1
            self._pause(reader)
            reader.timer = asyncio.get_running_loop().call_later(RATE_PAUSE_SECONDS, self._resume, reader)

    def _pause(self, reader: _Reader) -> None:
        reader.paused = True
        reader.link.pause_reading()

    def _resume(self, reader: _Reader) -> None:
        """End a pause: handle what was held, in order (it may pause again), then read on."""
        reader.timer = None
        if reader.closed:
            return
        reader.paused = False
        held = reader.held
        while held:
            self._handle(reader, held.popleft())
            if reader.paused:
                return
        reader.link.resume_reading()

    def _local(self, reader: _Reader, frame: memoryview) -> None:
        """Hand a LOCAL frame to ``on_local``. Its replies go back in arrival order, but an awaitable
        ``on_local`` (a payments receipt: ledger commit on the billing thread, several ms) does not hold
        up the link: forwarding continues meanwhile (``bench mesh`` relayed). At most
        ``MAX_LOCAL_IN_FLIGHT`` per link are in flight; beyond that the link stops reading until the oldest
        is done (backpressure, bounded memory); so it does while a reply waits for room on the link."""
        assert self._on_local is not None, "only called when on_local is set"
        link = reader.link
        replies = self._on_local(reader.key, frame)
        inflight = self._repliers.get(link)
        blocked = False
        if not inspect.isawaitable(replies):
            if not replies:
                return
            if not inflight:
                replies = _send_now(link, replies)   # what found no room on the link
                if not replies:
                    return
                blocked = True
            replies = _ready(replies)
        if inflight is None:
            inflight = self._repliers[link] = []
        previous = inflight[-1] if inflight else None
        task = asyncio.get_running_loop().create_task(self._reply(link, previous, replies))
        inflight.append(task)
        task.add_done_callback(lambda t: self._reply_done(link, t))
        if blocked or len(inflight) > MAX_LOCAL_IN_FLIGHT:
            self._pause(reader)
            inflight[0].add_done_callback(lambda _: self._resume(reader))

    async def _send_local(self, link: Link, replies: Replies) -> None:
        for reply in replies:
            await link.send(encode_local(reply))

    async def _reply(self, link: Link, previous: asyncio.Task | None, replies: Awaitable) -> None:
        try:
            result = await replies
        except Exception as exc:  # noqa: BLE001 - a bug in on_local: as before, the link ends
            log.warning("on_local failed (%s: %s): closing the link", type(exc).__name__, exc)
            if previous is not None:
                await asyncio.wait([previous])
            await link.close(1011, "")
            return
        if previous is not None:
            await asyncio.wait([previous])   # replies leave in the order their frames arrived
        try:
            await self._send_local(link, result or ())
        except LinkClosedError:
            pass

    def _reply_done(self, link: Link, task: asyncio.Task) -> None:
        inflight = self._repliers.get(link)
        if inflight is not None:
            try:
                inflight.remove(task)
            except ValueError:
                pass
            if not inflight:
                del self._repliers[link]

    def kick(self, destination: bytes) -> None:
        """Make sure a writer drains ``destination``'s queue (after a frame was queued from outside the
        link readers: a cluster member's FORWARD, relay/cluster/mesh.py)."""
        self._kick(destination)

    def _kick(self, destination: bytes) -> None:
        """Send what is queued for ``destination``. Fast path (issue 17): while no writer task runs for it,
        the queue is drained right here with ``send_nowait`` (no task, no loop iteration per frame: a
        relayed ping no longer waits for a writer task to be scheduled); only a message that finds the
        link without room starts the writer task, which sends it first and waits for room (ordering is
        kept: while that task runs, every later message goes through it)."""
        if destination in self._writers:
            return
        core = self.core
        link = core.link_of(destination)
        if link is None:
            return
        nowait = link.send_nowait
        while True:
            message = core.pop(destination)
            if message is None:
                return
            if not nowait(message):
                break
        self._writers[destination] = asyncio.get_running_loop().create_task(self._write(destination, message))

    async def _write(self, destination: bytes, first: bytes | None = None) -> None:
        try:
            message = first
            while True:
                link = self.core.link_of(destination)
                if message is None:
                    message = self.core.pop(destination)
                if link is None or message is None:
                    return
                try:
                    await link.send(message)
                except LinkClosedError:
                    return  # the reader's detach drops the rest of the queue
                message = None
        finally:
            self._writers.pop(destination, None)

    def _spawn_close(self, link: Link, code: int) -> None:
        task = asyncio.get_running_loop().create_task(link.close(code, ""))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)


def _takes_source(hook: Callable) -> bool:
    try:
        return "source" in inspect.signature(hook).parameters
    except (TypeError, ValueError):
        return False


def _send_now(link: Link, replies: Replies) -> Replies:
    """Send ``replies`` as LOCAL envelopes while the link has room; return those left (in order)."""
    for i, reply in enumerate(replies):
        if not link.send_nowait(encode_local(reply)):
            return replies[i:]
    return ()
