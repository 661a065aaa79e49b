"""The stream layer: TCP streams and UDP flows multiplexed inside the end-to-end sessions (issue 18).

``Mux`` sits beside the packet pump (node/pump.py): it sends stream messages (userspace/wire.py) to a peer
with ``pump.offer`` and gets the peer's through ``pump.on_stream``. Every node runs one, TUN or not: the
node that receives an OPEN asks its ``StreamPolicy`` (userspace/policy.py) for the real target, connects
to it with an ordinary socket and splices bytes both ways; the proxies and forwards (userspace/proxy.py)
open streams with ``Mux.open``.

Per stream (``Stream``, an ``asyncio.Protocol`` on the local TCP socket):

* flow control: each side grants a receive window (WINDOW bytes, in OPEN/ACCEPT) and tops it up with
  WINDOW messages once a quarter of it was written to the local socket and the socket is not paused
  (``pause_writing``): a slow local reader stops the remote sender after at most one window, and the
  memory a stream can hold is bounded by it;
* half-close: EOF from the local socket -> FIN (after the pending bytes); FIN from the peer ->
  ``write_eof`` on the local socket; both -> the socket is closed (after its buffer drains);
* a local socket closed or reset before both FINs -> RST; a gap in the offsets (frames lost on a
  reconnect) or a window overrun -> RST (a stream is never silently corrupted);
* a peer without a path, revoked or gone -> its streams are reset.

Backpressure towards the path: when ``pump.offer`` could not send everything, that peer's later messages
wait in a backlog (in order) that one drain task of the Mux's TaskGroup sends; streams of that peer stop
reading their sockets until it is empty.

May import: userspace.wire, userspace.policy, userspace.settings. Not task-safe beyond the event loop. Tasks: one
TaskGroup (``run``), cancelled by the node's shutdown; ``close`` aborts every socket.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Callable

from shadowmesh_client.userspace import settings, wire
from shadowmesh_client.userspace.policy import StreamPolicy
from shadowmesh_client.userspace.wire import THEIRS, MessageType, Reason

log = logging.getLogger(__name__)

WINDOW = settings.WINDOW
"""Bytes: the receive window each side grants per stream. At ~1 GB/s through Python and ~2 ms of
round trip through both daemons, the bandwidth-delay product is ~2 MB; 4 MiB keeps one stream from
waiting on WINDOW messages. It bounds what one stream can buffer on the receiving side."""

GRANT_FRACTION = 4
"""A WINDOW message is sent once WINDOW / GRANT_FRACTION bytes were consumed (fewer, larger updates)."""

OPEN_TIMEOUT = 10.0
"""Seconds an opener waits for ACCEPT or REFUSE (and for a path to the peer) before giving up."""

CONNECT_TIMEOUT = 8.0
"""Seconds the accepting side waits for its TCP connect to the target (< OPEN_TIMEOUT)."""

UDP_IDLE = 60.0
"""Seconds a UDP flow lives without datagrams (then its socket is closed)."""

MAX_STREAMS_PER_PEER = 4096
"""Streams a peer may have open with this node at once; more are refused (GENERAL)."""


class StreamRefused(Exception):
    """Opening a stream failed: ``reason`` is a ``wire.Reason`` (a SOCKS5 reply code)."""

    def __init__(self, reason: int, text: str) -> None:
        super().__init__(text)
        self.reason = reason


class Stream(asyncio.Protocol):
    """One TCP stream. ``key``: the local id (wire id as this side sends it)."""

    def __init__(self, mux: Mux, peer_key: bytes, key: int, send_window: int = 0) -> None:
        self.mux = mux
        self.peer_key = peer_key
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.send_window = send_window      # bytes we may still send
        self.sent = 0                       # offset of the next byte we send
        self.received = 0                   # offset of the next byte we expect
        self.recv_left = mux.window         # bytes the peer may still send us
        self.ungranted = 0                  # consumed bytes not granted back yet
        self.pending = bytearray()          # local bytes waiting for window
        self.inbox: list[bytes] = []        # peer bytes that arrived before the socket was attached
        self.local_eof = False
        self.fin_sent = False
        self.remote_fin = False
        self.write_paused = False
        self.read_paused = False
        self.closed = False
        self.accepted: asyncio.Future | None = None   # opener: result None (accepted) or a Reason

    # ---- local socket ------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:  # acceptor: the connect to the target succeeded
        self.transport = transport
        if self.closed:
            transport.abort()
            return
        self.mux.send(self.peer_key, [wire.accept(self.key, self.mux.window)])
        self._flush_inbox()

    def attach(self, transport, early: bytes = b"") -> None:
        """Opener: take over ``transport`` (already ``set_protocol(self)``) after ACCEPT."""
        self.transport = transport
        if self.closed:
            transport.abort()
            return
        self._flush_inbox()
        if early:
            self.data_received(early)

    def _flush_inbox(self) -> None:
        inbox, self.inbox = self.inbox, []
        for payload in inbox:
            self._deliver(payload)
        if self.remote_fin:
            self._remote_eof()

    def data_received(self, data) -> None:
        if self.closed or self.local_eof:
            return
        self.pending += data
        self._flush()

    def eof_received(self) -> bool:
        self.local_eof = True
        self._flush()
        return True   # keep the socket open for the other direction (half-close)

    def connection_lost(self, exc) -> None:
        if self.closed:
            return
        if not (self.fin_sent and self.remote_fin):
            self.mux.send(self.peer_key, [wire.rst(self.key, Reason.GENERAL)])
        self._forget()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.ungranted:
            self._grant(0)

    # ---- sending ----------------------------------------------------------------------------------
    def _flush(self) -> None:
        msgs = []
        pending = self.pending
        while pending and self.send_window > 0 and self.transport is not None:
            n = min(len(pending), self.send_window, wire.MAX_DATA)
            msgs.append(wire.data(self.key, self.sent, pending[:n]))
            del pending[:n]
            self.sent += n
            self.send_window -= n
        if self.local_eof and not pending and not self.fin_sent and self.transport is not None:
            msgs.append(wire.fin(self.key, self.sent))
            self.fin_sent = True
        if msgs:
            self.mux.send(self.peer_key, msgs)
        if self.closed:
            return
        if self.fin_sent and self.remote_fin:
            self._close_local()
            return
        want_pause = len(pending) > 0 or self.mux.blocked(self.peer_key)
        if want_pause and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
            self.mux.wait_drain(self.peer_key, self)

    def resume(self) -> None:
        """Called when the peer's backlog drained or the window grew: read the socket again."""
        if self.read_paused and not self.closed and self.transport is not None and not self.pending:
            self.read_paused = False
            self.transport.resume_reading()

    # ---- messages from the peer -------------------------------------------------------------------
    def on_message(self, m: wire.Message) -> None:
        t = m.type
        if t == MessageType.DATA:
            n = len(m.payload)
            if m.value != self.received or n > self.recv_left or self.remote_fin:
                self.reset(Reason.GENERAL, "out of order, beyond the window, or after FIN")
                return
            self.received += n
            self.recv_left -= n
            if self.transport is None:
                self.inbox.append(m.payload)
            else:
                self._deliver(m.payload)
        elif t == MessageType.WINDOW:
            self.send_window += m.value
            self._flush()
            if not self.pending:
                self.resume()
        elif t == MessageType.FIN:
            if m.value != self.received:
                self.reset(Reason.GENERAL, "FIN offset does not match the bytes received")
                return
            self.remote_fin = True
            if self.transport is not None:
                self._remote_eof()
        elif t == MessageType.RST:
            self._abort()
        elif t == MessageType.ACCEPT and self.accepted is not None and not self.accepted.done():
            self.send_window = m.value
            self.accepted.set_result(None)
        elif t == MessageType.REFUSE and self.accepted is not None and not self.accepted.done():
            self.accepted.set_result(m.value)
            self._forget()

    def _deliver(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(payload)
        if self.write_paused:
            self.ungranted += len(payload)
        else:
            self._grant(len(payload))

    def _grant(self, n: int) -> None:
        self.ungranted += n
        if self.ungranted >= self.mux.window // GRANT_FRACTION or (n == 0 and self.ungranted):
            self.recv_left += self.ungranted
            self.mux.send(self.peer_key, [wire.window(self.key, self.ungranted)])
            self.ungranted = 0

    def _remote_eof(self) -> None:
        assert self.transport is not None
        if self.fin_sent:
            self._close_local()
        elif self.transport.can_write_eof():
            self.transport.write_eof()

    # ---- ending -----------------------------------------------------------------------------------
    def _close_local(self) -> None:
        self._forget()
        if self.transport is not None:
            self.transport.close()   # flushes what is buffered, then closes

    def _abort(self) -> None:
        self._forget()
        if self.transport is not None:
            self.transport.abort()

    def reset(self, reason: int, why: str) -> None:
        """Abort the stream on both sides."""
        if self.closed:
            return
        log.debug("stream %x with %s reset: %s", self.key, self.peer_key.hex()[:8], why)
        self.mux.resets += 1
        self.mux.send(self.peer_key, [wire.rst(self.key, reason)])
        self._abort()

    def _forget(self) -> None:
        if not self.closed:
            self.closed = True
            self.pending.clear()
            self.inbox.clear()
            self.mux.forget(self)
            if self.accepted is not None and not self.accepted.done():
                self.accepted.set_result(Reason.GENERAL)   # reset before ACCEPT: the opener stops waiting


class Mux:
    """The node's stream multiplexer. ``pump``: has ``peers`` ({key: PeerState}) and ``offer(peer, packets)``."""

    def __init__(self, pump, policy: StreamPolicy, *, window: int = WINDOW) -> None:
        self.pump = pump
        self.policy = policy
        self.window = window
        self._streams: dict[bytes, dict[int, Stream]] = {}
        self._backlog: dict[bytes, list] = {}
        self._waiting: dict[bytes, set[Stream]] = {}
        self.entries: set = set()   # proxy connections not handed to a stream yet (proxy.py), aborted by close
        self._next = 0
        self._group: asyncio.TaskGroup | None = None
        self.opened = self.accepted = self.refused = self.resets = self.malformed = self.unreachable = 0
        self.udp_handler: Callable | None = None   # set by userspace.udp: handles DGRAM messages

    # ---- lifecycle --------------------------------------------------------------------------------
    async def run(self) -> None:
        """Own the stream tasks (connects, drains, UDP flows) until cancelled; then reset every stream."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                await asyncio.Future()   # until cancelled (the node's shutdown)
        finally:
            self._group = None
            self.close()

    def spawn(self, coro, name: str | None = None) -> asyncio.Task | None:
        if self._group is None:
            coro.close()
            return None
        try:
            return self._group.create_task(coro, name=name)
        except RuntimeError:   # the group is shutting down
            coro.close()
            return None

    def close(self) -> None:
        """Abort every stream's socket (no messages: the sessions are closing too)."""
        for streams in list(self._streams.values()):
            for s in list(streams.values()):
                s._abort()
        self._streams.clear()
        for entry in list(self.entries):
            if entry.transport is not None:
                entry.transport.abort()
        self.entries.clear()

    def count(self) -> int:
        return sum(len(s) for s in self._streams.values())

    def counters(self) -> dict:
        return {"streams_open": self.count(), "streams_opened": self.opened, "streams_accepted": self.accepted,
                "streams_refused": self.refused, "streams_reset": self.resets,
                "stream_messages_malformed": self.malformed, "streams_unreachable": self.unreachable}

    # ---- sending ----------------------------------------------------------------------------------
    def send(self, peer_key: bytes, msgs: list) -> None:
        """Send ``msgs`` to the peer in order; a peer without a path has its streams reset."""
        backlog = self._backlog.get(peer_key)
        if backlog is not None:
            backlog.extend(msgs)
            return
        peer = self.pump.peers.get(peer_key)
        if peer is None or peer.path is None:
            self._unreachable(peer_key)
            return
        rest = self.pump.offer(peer, msgs)
        if rest is not None:
            self._backlog[peer_key] = []
            if self.spawn(self._drain(peer_key, rest), "stream drain") is None:
                rest.close()
                self._backlog.pop(peer_key, None)

    async def _drain(self, peer_key: bytes, rest) -> None:
        try:
            await rest
            while True:
                backlog = self._backlog.get(peer_key)
                if not backlog:
                    break
                self._backlog[peer_key] = []
                peer = self.pump.peers.get(peer_key)
                if peer is None or peer.path is None:
                    break
                more = self.pump.offer(peer, backlog)
                if more is not None:
                    await more
        finally:
            self._backlog.pop(peer_key, None)
            for s in self._waiting.pop(peer_key, ()):
                s.resume()

    def blocked(self, peer_key: bytes) -> bool:
        return peer_key in self._backlog

    def wait_drain(self, peer_key: bytes, stream: Stream) -> None:
        self._waiting.setdefault(peer_key, set()).add(stream)

    def _unreachable(self, peer_key: bytes) -> None:
        self.unreachable += 1
        for s in list(self._streams.get(peer_key, {}).values()):
            s._abort()

    def peer_gone(self, peer_key: bytes) -> None:
        """The peer was removed (revoked, expired): its streams are aborted."""
        self._unreachable(peer_key)

    # ---- opening (proxies, forwards) -------------------------------------------------------------
    def _new_id(self, peer_key: bytes) -> int:
        streams = self._streams.get(peer_key, {})
        while True:
            self._next = (self._next + 1) % THEIRS or 1
            if self._next not in streams:
                return self._next

    async def wait_path(self, peer_key: bytes, timeout: float = OPEN_TIMEOUT):
        """The peer's PeerState once it has a path; StreamRefused(NETWORK_UNREACHABLE) after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            peer = self.pump.peers.get(peer_key)
            if peer is not None and peer.path is not None:
                return peer
            if time.monotonic() > deadline:
                raise StreamRefused(Reason.NETWORK_UNREACHABLE, "no path to the peer")
            await asyncio.sleep(0.05)

    async def open(self, peer_key: bytes, address: bytes, port: int) -> Stream:
        """Open a stream to ``address`` (4 bytes) ``port`` served by the peer; attach a transport to the
        returned stream with ``transport.set_protocol(s); s.attach(transport)``. Raises StreamRefused."""
        await self.wait_path(peer_key)
        key = self._new_id(peer_key)
        s = Stream(self, peer_key, key)
        s.accepted = asyncio.get_running_loop().create_future()
        self._streams.setdefault(peer_key, {})[key] = s
        self.opened += 1
        self.send(peer_key, [wire.open_(key, self.window, port, address)])
        try:
            reason = await asyncio.wait_for(asyncio.shield(s.accepted), OPEN_TIMEOUT)
        except TimeoutError:
            s.reset(Reason.TTL_EXPIRED, "no answer to OPEN")
            raise StreamRefused(Reason.TTL_EXPIRED, "the peer did not answer (does it run the stream layer?)") \
                from None
        except asyncio.CancelledError:
            s.reset(Reason.GENERAL, "cancelled")
            raise
        if reason is not None:
            raise StreamRefused(reason, f"refused by the peer: {Reason(reason).name.lower().replace('_', ' ')}")
        if s.closed:
            raise StreamRefused(Reason.GENERAL, "reset by the peer")
        return s

    # ---- messages from peers ----------------------------------------------------------------------
    def on_messages(self, peer, packets: list) -> None:
        """``pump.on_stream``: the stream messages of one frame from ``peer`` (a PeerState)."""
        peer_key = peer.session.peer_public_key
        for p in packets:
            try:
                m = wire.decode(p)
            except wire.StreamFormatError:
                self.malformed += 1
                continue
            if m.type == MessageType.DGRAM:
                if self.udp_handler is not None:
                    self.udp_handler(peer_key, m)
                continue
            key = m.id ^ THEIRS
            if m.type == MessageType.OPEN:
                if m.id & THEIRS:
                    self.malformed += 1
                else:
                    self._on_open(peer_key, key, m)
                continue
            s = self._streams.get(peer_key, {}).get(key)
            if s is not None:
                s.on_message(m)
            elif m.type in (MessageType.DATA, MessageType.FIN, MessageType.ACCEPT):
                self.send(peer_key, [wire.rst(key, Reason.GENERAL)])   # a stream we no longer know

    def _on_open(self, peer_key: bytes, key: int, m: wire.Message) -> None:
        streams = self._streams.setdefault(peer_key, {})
        if key in streams:
            self.malformed += 1
            return
        target = self.policy.target(m.address, m.port)
        if target is None or len(streams) >= MAX_STREAMS_PER_PEER:
            self.refused += 1
            self.send(peer_key, [wire.refuse(key, Reason.NOT_ALLOWED if target is None else Reason.GENERAL)])
            return
        s = Stream(self, peer_key, key, send_window=m.value)
        streams[key] = s
        if self.spawn(self._connect(s, *target), "stream connect") is None:
            s._forget()

    async def _connect(self, s: Stream, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: s, host, port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            reason = _reason(exc)
            if not s.closed:
                s._forget()
                self.refused += 1
                self.send(s.peer_key, [wire.refuse(s.key, reason)])
            return
        self.accepted += 1

    def forget(self, s: Stream) -> None:
        streams = self._streams.get(s.peer_key)
        if streams is not None and streams.get(s.key) is s:
            del streams[s.key]
            if not streams:
                del self._streams[s.peer_key]
        waiting = self._waiting.get(s.peer_key)
        if waiting is not None:
            waiting.discard(s)


def _reason(exc: BaseException) -> int:
    if isinstance(exc, TimeoutError):
        return Reason.TTL_EXPIRED
    if isinstance(exc, ConnectionRefusedError):
        return Reason.CONNECTION_REFUSED
    if isinstance(exc, OSError) and exc.errno == errno.ENETUNREACH:
        return Reason.NETWORK_UNREACHABLE
    if isinstance(exc, OSError) and exc.errno == errno.EHOSTUNREACH:
        return Reason.HOST_UNREACHABLE
    return Reason.GENERAL
