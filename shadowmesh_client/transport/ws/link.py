"""A Link: one authenticated WebSocket connection carrying whole protocol frames.

Contract: one binary WebSocket message = one protocol frame (which may batch many IP packets). A text
message is a protocol violation: the link closes with code 1003 and ``recv`` raises LinkClosedError.
Messages larger than ``LinkLimits.max_message_bytes`` close the link with 1009 (websockets enforces it
while reading, before buffering the whole message).

Not task-safe for concurrent ``recv`` (one reader task per link); ``send`` may be called from several
tasks (websockets serialises whole messages).

Hot path (issue 5 performance): ``deliver_to(callback)`` hands each message to a callback straight from
the connection's ``data_received`` (no queue, no future, no task wake-up per message), and
``send_nowait`` writes a message without the ``send()`` coroutine's context manager and drain. Both save
one event-loop round per message; measured in docs/mesh.md.

websockets internals: THIS module is the only place in the project that touches websockets' private
state (``server.py``, ``client.py`` and ``decoy.py`` use its public API only). Every use is listed here
with what it buys, and ``tests/client/transport/test_websockets_internals.py`` fails naming the attribute
if an upgrade moves one. Checked against websockets 15.0.1; safe range ``>=15.0.1,<15.1`` until that test
has passed on a newer release.

* ``send_nowait``: ``Connection.paused`` (write buffer over ``write_limit``), ``.fragmented_send_waiter``
  (a fragmented send in progress), ``.protocol.state``, ``.protocol.send_binary()``, ``.send_data()``.
  Its frame fast path (issue 17 "Latency") writes the RFC 6455 frame itself (``_binary_frame``: the same
  bytes as ``Frame.serialize``, client frames masked with a fresh ``secrets`` key) straight to
  ``Connection.transport`` when websockets has nothing pending (``.protocol.writes`` empty, no
  ``.protocol.extensions``, no ``.protocol.debug``); websockets keeps no per-frame send state for
  unfragmented data frames. Saves the ``Frame`` object, ``BytesIO`` serialisation (two copies of the
  payload; this path makes one) and ``data_to_send``/``send_data`` per frame; measured in
  docs/performance.md.
* ``deliver_to``: replaces ``Connection.recv_messages`` (the receive ``Assembler``, fed by
  ``process_event`` -> ``put(frame)``, closed by ``connection_lost`` -> ``close()``, read by ``recv`` ->
  ``get(decode)``) and drains the old one (``.frames.queue``, ``.paused``, ``.resume()``, ``.closed``).
  Together with ``send_nowait``, measured in paired runs at MTU 1,400 (docs/mesh.md "What each
  data-path change did"): receiver 7.0-7.8 -> 5.6-6.5 CPU s/GB, sender 6.5-6.8 -> 4.9-5.7 s/GB, minimum
  ping RTT 0.37-0.48 -> 0.26-0.35 ms.
* frame fast path of ``deliver_to`` (issue 17 "Latency"): ``Connection.data_received`` is wrapped per
  connection; when websockets' parser waits at a frame boundary (``.protocol.parser`` suspended in
  ``StreamReader.at_eof``, found by walking ``gi_yieldfrom``; ``.protocol.reader.buffer`` empty; no
  fragmented message, ``.protocol.cur_size`` None), complete unfragmented binary frames at the start of
  the received bytes (``0x82``, the mask bit the side expects, at most ``.protocol.max_size``) are cut
  and unmasked here and handed to the callback; anything else (control frames, fragments, a partial
  frame, a masking or size error) and everything after it goes through websockets as before. websockets
  keeps no state for a whole data frame it would have queued (``recv_frame`` only checks ``cur_size``;
  ``process_event`` only ``put``s it). Saves the parser generator, ``Frame`` object and event list per
  message; measured in docs/performance.md.
* text refused under ``deliver_to``: ``.protocol.fail()`` + ``.send_data()`` (correctness: close 1003).
* ``abort`` / ``closed`` / ``pause_reading``: ``Connection.transport`` (``abort()``, ``is_closing()``,
  ``pause_reading()``, ``resume_reading()``; under ``deliver_to`` websockets itself never pauses reading).
* ``_drop_handshake``: replaces ``Connection.request`` / ``.response`` and empties the originals'
  headers, which websockets' parser generator keeps alive: 15.9 -> 14.0 KB per idle server link
  (docs/transport.md "Measured figures"), about 2.9 KB less per relay link (docs/mesh.md "Relay at
  scale", 17.2 -> 13.3 KB per session with the other changes listed there).

* ``ping_when_idle`` (issue 15 "5,000 peers"): ``Connection.ping`` is wrapped per connection (websockets'
  keepalive task calls ``self.ping()`` once a round and reads ``self.ping_interval`` before each sleep), so
  a link that carried no message for ``IDLE_ROUNDS`` rounds is pinged every ``idle_interval`` seconds
  instead. Measured (bench peers-netns): the pings were most of a node's idle CPU at 1,000 live sessions.

* abuse bounds (``_guard``, issue 12 "Resource bounds"): ``Connection.send_data`` and
  ``Connection.process_event`` are wrapped per connection (instance attributes; websockets calls both as
  ``self.<name>``, from ``data_received`` and its send paths):
  - write buffer: after every write, if the transport's buffer holds more than ``write_limit +
    WRITE_SLACK_MESSAGES * max_size`` bytes the peer is not reading (e.g. a ping flood whose pongs it never
    reads: websockets queues pongs outside ``write_limit``) and the link is aborted. Data sends stop at
    ``write_limit`` anyway, so only a peer that stopped reading reaches it; measured: relay RSS grew ~35 MB/s
    before, now the link is cut at ~2 MB of buffered pongs;
  - fragments: a message split into more than ``MAX_FRAGMENTS`` frames fails the link (1009; our peers
    never fragment), so a fragment flood costs at most that many frame parses per handshake;
  - pings: more than ``MAX_PINGS_PER_SECOND`` pings in one second fail the link (1008).
  Cost: one ``get_write_buffer_size()`` per write and one opcode test per frame.

May import: websockets, transport.errors. Nothing above the transport.
"""

from __future__ import annotations

import logging
import secrets
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode, Opcode, apply_mask
from websockets.http11 import Request, Response
from websockets.protocol import Side, State
from websockets.streams import StreamReader

from shadowmesh_client.transport.errors import LinkClosedError

log = logging.getLogger(__name__)
_OPEN = State.OPEN

WRITE_SLACK_MESSAGES = 8
"""Messages: how far past ``write_limit`` a link's write buffer may grow before the peer counts as not
reading (concurrent ``send()`` calls each write one message before waiting for the drain)."""
MAX_FRAGMENTS = 16
"""Frames per message at most (ours are never fragmented; a browser's would be few and large)."""
MAX_PINGS_PER_SECOND = 50
"""Pings a peer may send per second (ours: one per 5 s; the relay's one per 20 s)."""
_CONT, _PING = Opcode.CONT, Opcode.PING
_FIN_BINARY = 0x80 | Opcode.BINARY
"""First byte of a whole binary frame without RSV bits (RFC 6455 section 5.2): what both fast paths use."""

NOTSENT_LOWAT = 128 * 1024
"""Bytes: TCP_NOTSENT_LOWAT on every link socket (client and server end). The kernel keeps at most about
this much not-yet-sent data queued (the rest waits in the asyncio write buffer, which ``write_limit`` and
``buffered_bytes`` see), instead of up to ``tcp_wmem``'s 4 MiB: a frame sent now (an interactive packet,
routing/qos.py) waits behind ~1 ms of bulk at 1 Gbit/s, not ~30 ms. Issue 14 "QoS"."""
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)   # Linux's value; older Pythons lack the name


class Link:
    """Wraps a websockets connection. Create via LinkServer / dial / ReconnectingClient, not directly."""

    __slots__ = ("_conn", "peer", "is_client", "messages_in", "bytes_in", "messages_out", "bytes_out",
                 "_mask", "_write_cap", "__weakref__")

    def __init__(self, connection: Connection, peer: Any, *, is_client: bool) -> None:
        self._conn = connection
        _drop_handshake(connection)
        self._write_cap = _guard(connection)
        _set_notsent_lowat(connection)
        protocol = connection.protocol
        # frame fast path of send_nowait: None = through websockets (an extension would change the frames)
        self._mask: bool | None = None if protocol.extensions else protocol.side is Side.CLIENT
        self.peer = peer              # server side: what authenticate() returned; client side: the url
        self.is_client = is_client
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0

    # ---- sending ----------------------------------------------------------------------------------
    async def send(self, message: bytes | bytearray | memoryview) -> None:
        """Send one frame as one binary message. Waits while the write buffer is above
        ``write_limit`` (backpressure). The buffer is handed to websockets as is (no copy here).
        Raises LinkClosedError if the link is closed."""
        try:
            await self._conn.send(message)  # type: ignore[arg-type]  # any bytes-like is sent as binary
        except ConnectionClosed as exc:
            raise LinkClosedError(f"link closed while sending ({_describe(exc)})") from None
        self.messages_out += 1
        self.bytes_out += len(message)

    def send_nowait(self, message: bytes | bytearray | memoryview) -> bool:
        """Send one frame now if the link is open and its write buffer is below ``write_limit``; return
        False (nothing sent) otherwise, and the caller awaits ``send()`` instead (which waits for room,
        or raises LinkClosedError). Same bytes on the wire as ``send()``; ordering with it is kept."""
        # websockets internals (module docstring; with deliver_to: sender 6.5-6.8 -> 4.9-5.7 CPU s/GB at
        # MTU 1,400): ``send()`` minus its send_context/drain round, same checks in the same order.
        conn = self._conn
        protocol = conn.protocol
        if conn.paused or conn.fragmented_send_waiter is not None or protocol.state is not _OPEN:
            return False
        mask = self._mask
        if mask is None or protocol.writes or protocol.debug:
            protocol.send_binary(message)  # type: ignore[arg-type]  # any bytes-like (see send)
            conn.send_data()  # transport.write: socket errors are handled by asyncio (connection_lost)
        else:   # the same bytes as send_binary + send_data, without the Frame, BytesIO and queue (docstring)
            transport = conn.transport
            transport.write(_binary_frame(message, mask))
            if transport.get_write_buffer_size() > self._write_cap:
                _not_reading(conn, self._write_cap)
        self.messages_out += 1
        self.bytes_out += len(message)
        return True

    # ---- heartbeat --------------------------------------------------------------------------------
    def ping_when_idle(self, idle_interval: float) -> None:
        """Ping every ``idle_interval`` seconds (instead of the connection's ``ping_interval``) once the
        link has carried no message for ``IDLE_ROUNDS`` pings; the first message seen at a ping brings the
        short interval back. A link that dies while idle is found by its next ping; one that dies while
        carrying data is cut by the kernel (TCP_USER_TIMEOUT = ping_interval + ping_timeout: the bound the
        short pings gave) before the idle ping would notice. Memory links have no pings: nothing to do."""
        _adaptive_pings(self, idle_interval)

    # ---- receiving --------------------------------------------------------------------------------
    async def recv(self) -> bytes:
        """Next frame. Raises LinkClosedError when the link closes (cleanly or not)."""
        try:
            message = await self._conn.recv()
        except ConnectionClosed as exc:
            raise LinkClosedError(f"link closed ({_describe(exc)})") from None
        if isinstance(message, str):
            await self._conn.close(CloseCode.UNSUPPORTED_DATA, "binary only")
            raise LinkClosedError("peer sent a text message: link closed with 1003 (binary frames only)")
        self.messages_in += 1
        self.bytes_in += len(message)
        return message

    def deliver_to(self, callback: Callable[[bytes], None]) -> None:
        """From now on, hand every received message to ``callback(message)``, called synchronously from
        the connection's ``data_received``; ``recv()`` must no longer be used. Messages that were already
        queued are delivered first. ``callback`` must not block or raise (an exception is logged and the
        link aborted). Fragmented messages are reassembled; a text message closes the link with 1003.
        Await ``wait_closed()`` to learn when the link is gone. Backpressure: none from the callback
        (it is meant for work that never waits, such as writing to a TUN device)."""
        # websockets internals (module docstring; with send_nowait: receiver 7.0-7.8 -> 5.6-6.5 CPU s/GB
        # at MTU 1,400): swap the receive Assembler for _DirectDelivery, then drain the old one.
        conn = self._conn
        old = conn.recv_messages
        direct = _DirectDelivery(self, callback)
        conn.recv_messages = direct  # type: ignore[assignment]  # duck-typed Assembler (module docstring)
        pending = list(old.frames.queue)
        old.frames.queue.clear()
        for frame in pending:
            direct.put(frame)
        if old.paused:
            old.paused = False
            old.resume()
        if old.closed:
            direct.close()
        if self._mask is not None:   # no extension changes the frames: cut whole binary frames ourselves
            _fast_receive(conn, direct)

    def pause_reading(self) -> None:
        """Stop reading from the socket until ``resume_reading()`` (backpressure for ``deliver_to``: the
        peer's next messages wait in the kernel, then its sends block). Messages of the read being handled
        are still delivered. Idempotent; a no-op on a closing link."""
        transport = self._conn.transport   # websockets internal: Connection.transport (see abort)
        if not transport.is_closing():
            transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again after ``pause_reading()``. Idempotent; a no-op on a closing link."""
        transport = self._conn.transport
        if not transport.is_closing():
            transport.resume_reading()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            try:
                yield await self.recv()
            except LinkClosedError:
                return

    # ---- lifecycle --------------------------------------------------------------------------------
    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close (closing handshake, bounded by close_timeout). Idempotent."""
        await self._conn.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        self._conn.transport.abort()  # websockets internal: Connection.transport (the asyncio transport)

    async def wait_closed(self) -> None:
        await self._conn.wait_closed()

    @property
    def closed(self) -> bool:
        return self._conn.close_code is not None or self._conn.transport.is_closing()

    @property
    def close_code(self) -> int | None:
        return self._conn.close_code

    @property
    def remote_address(self) -> Any:
        return self._conn.remote_address

    @property
    def latency(self) -> float:
        """Seconds of the last heartbeat round trip (0 until the first pong)."""
        return self._conn.latency

    @property
    def buffered_bytes(self) -> int:
        """Bytes in the asyncio write buffer (websockets writes every frame straight to the transport;
        the kernel's unsent bytes, bounded by ``NOTSENT_LOWAT``, are not counted)."""
        return self._conn.transport.get_write_buffer_size()

    def __repr__(self) -> str:
        side = "client" if self.is_client else "server"
        return f"<Link {side} {self.remote_address} closed={self.closed}>"


class _DirectDelivery:
    """Stands in for websockets' receive ``Assembler`` (``put`` from ``data_received``, ``close`` from
    ``connection_lost``) and calls the link's callback instead of queueing."""

    __slots__ = ("_link", "_callback", "_parts", "closed", "paused")

    def __init__(self, link: Link, callback: Callable[[bytes], None]) -> None:
        self._link = link
        self._callback = callback
        self._parts: list | None = None
        self.closed = False
        self.paused = False

    def put(self, frame) -> None:
        if self.closed:
            raise EOFError("stream of frames ended")
        opcode = frame.opcode
        if opcode is Opcode.BINARY and frame.fin and self._parts is None:
            data = frame.data
        elif opcode is Opcode.TEXT:
            self._refuse_text()
            return
        elif opcode is Opcode.BINARY:  # first fragment
            self._parts = [frame.data]
            return
        else:  # CONT
            if self._parts is None:  # continuation of a text message we refused
                return
            self._parts.append(frame.data)
            if not frame.fin:
                return
            data = b"".join(self._parts)
            self._parts = None
        self.deliver(data)

    def deliver(self, data: bytes) -> None:
        """One whole message: count it, hand it to the callback."""
        link = self._link
        link.messages_in += 1
        link.bytes_in += len(data)
        try:
            self._callback(data)
        except Exception:
            log.exception("message handler failed; aborting the link")
            link.abort()

    def _refuse_text(self) -> None:
        conn = self._link._conn
        if conn.protocol.state is _OPEN:
            conn.protocol.fail(CloseCode.UNSUPPORTED_DATA, "binary only")
            conn.send_data()

    def close(self) -> None:
        self.closed = True

    async def get(self, decode=None):
        raise RuntimeError("this link delivers messages to a callback (deliver_to); recv() is not available")

    get_iter = get


_AT_EOF = StreamReader.at_eof.__code__


def _at_frame_start(parser) -> bool:
    """Whether websockets' parser generator waits between frames (suspended in ``StreamReader.at_eof``,
    under ``parse()`` or the client's handshake ``parse()`` delegating to it) rather than inside one."""
    gen = parser
    while True:
        inner = gen.gi_yieldfrom
        if inner is None:
            return gen.gi_code is _AT_EOF
        gen = inner


def _fast_receive(conn: Connection, direct: _DirectDelivery) -> None:
    """Wrap ``conn.data_received``: whole binary frames go straight to ``direct`` while websockets' parser
    is between frames (module docstring, "frame fast path of deliver_to"); the rest goes through
    websockets, in order."""
    protocol = conn.protocol
    reader = protocol.reader
    slow = conn.data_received
    masked = protocol.side is Side.SERVER        # RFC 6455 5.3: client-to-server frames are masked
    mask_bit = 0x80 if masked else 0
    max_size = protocol.max_size if protocol.max_size is not None else 1 << 63
    deliver = direct.deliver

    def data_received(data: bytes) -> None:
        if (protocol.state is not _OPEN or direct.closed or direct._parts is not None or reader.buffer
                or protocol.cur_size is not None or protocol.debug or not _at_frame_start(protocol.parser)):
            slow(data)
            return
        pos, end = 0, len(data)
        while end - pos >= 2:
            second = data[pos + 1]
            if data[pos] != _FIN_BINARY or second & 0x80 != mask_bit:
                break
            n = second & 0x7F
            head = pos + 2
            if n == 126:
                n = int.from_bytes(data[head:head + 2], "big")
                head += 2
            elif n == 127:
                n = int.from_bytes(data[head:head + 8], "big")
                head += 8
            if n > max_size:
                break
            if masked:
                start = head + 4
                if start + n > end:
                    break
                message = apply_mask(data[start:start + n], data[head:start])
            else:
                start = head
                if start + n > end:
                    break
                message = data[start:start + n]
            pos = start + n
            deliver(message)
            if protocol.state is not _OPEN or direct.closed:
                break
        if pos < end:
            slow(data[pos:] if pos else data)

    conn.data_received = data_received  # type: ignore[method-assign]
    # asyncio's transports look ``data_received`` up per call; uvloop's keep the bound method they were
    # given with the protocol: hand the same protocol over again so they pick up the wrapper too.
    conn.transport.set_protocol(conn)


# Shared placeholders: once open, a connection no longer needs the upgrade's request and response
# (about 2.7 KB of header objects per link). websockets tests ``request is None`` / ``response is None``
# to recognise the first event, so they are replaced, not cleared. The originals' headers are emptied
# as well: websockets' sans-I/O parser generator (``ServerProtocol.parse``, ``ClientProtocol.parse``)
# keeps the parsed Request/Response in a local variable for the whole life of the connection, so
# replacing the attribute alone freed nothing on the server side (measured: -2.9 KB per relay link).
_EMPTY_REQUEST = Request("/", Headers())
_EMPTY_RESPONSE = Response(101, "Switching Protocols", Headers())


def _drop_handshake(connection: Connection) -> None:
    request = getattr(connection, "request", None)
    if request is not None and request is not _EMPTY_REQUEST:
        request.headers.clear()
        connection.request = _EMPTY_REQUEST
    response = getattr(connection, "response", None)
    if response is not None and response is not _EMPTY_RESPONSE:
        response.headers.clear()
        connection.response = _EMPTY_RESPONSE


def _set_notsent_lowat(conn: Connection) -> None:
    """TCP_NOTSENT_LOWAT on the link's socket (see ``NOTSENT_LOWAT``); where unsupported (not Linux / not
    TCP) the kernel's queue stays as autotuned."""
    _set_tcp_option(conn, _TCP_NOTSENT_LOWAT, NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT")


def _set_tcp_option(conn: Connection, option: int, value: int, name: str) -> None:
    """``setsockopt(IPPROTO_TCP, option, value)`` on the link's socket; a no-op (logged at debug) where the
    link is not TCP over IP or the kernel does not know the option."""
    sock = conn.transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError as exc:
        log.debug("%s not set: %s", name, exc)


IDLE_ROUNDS = 2
"""Pings in a row with no message in between before a link counts as idle (``Link.ping_when_idle``)."""

_TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)   # Linux's value


def _adaptive_pings(link: Link, idle_interval: float) -> None:
    conn = link._conn
    active = conn.ping_interval
    if active is None or idle_interval <= active:
        return
    # where unsupported, a link that dies while busy waits for its next (possibly idle) ping
    bound_ms = int((active + (conn.ping_timeout or 0.0)) * 1000)
    _set_tcp_option(conn, _TCP_USER_TIMEOUT, bound_ms, "TCP_USER_TIMEOUT")
    ping = conn.ping
    state = [-1, 0]   # messages at the last ping, pings since the link last carried one

    async def ping_adaptively(data=None):
        seen = link.messages_in + link.messages_out
        if seen != state[0]:
            state[0], state[1] = seen, 0
            conn.ping_interval = active
        else:
            state[1] += 1
            if state[1] >= IDLE_ROUNDS:
                conn.ping_interval = idle_interval
        return await ping(data)

    conn.ping = ping_adaptively  # type: ignore[method-assign]


_HEAD = struct.Struct("!BB").pack
_HEAD16 = struct.Struct("!BBH").pack
_HEAD64 = struct.Struct("!BBQ").pack


def _binary_frame(message, mask: bool) -> bytes:
    """RFC 6455 section 5.2: ``message`` as one unfragmented binary frame (FIN, no RSV bits), masked with a
    fresh 4-byte key from ``secrets`` when ``mask`` (the client side, as websockets' ``Frame.serialize``)."""
    n = len(message)
    m = 0x80 if mask else 0
    if n < 126:
        head = _HEAD(_FIN_BINARY, m | n)
    elif n < 65536:
        head = _HEAD16(_FIN_BINARY, m | 126, n)
    else:
        head = _HEAD64(_FIN_BINARY, m | 127, n)
    if mask:
        key = secrets.token_bytes(4)
        return head + key + apply_mask(message, key)
    return head + message


def _not_reading(conn: Connection, limit: int) -> None:
    """The write buffer passed the ``_guard`` limit: the peer does not read; abort the link."""
    transport = conn.transport
    if not transport.is_closing():
        log.warning("link %s: peer does not read (write buffer over %d bytes); aborting", conn.remote_address, limit)
        transport.abort()


def _guard(conn: Connection) -> int:
    """Install the abuse bounds of the module docstring on ``conn`` (websockets internals, listed there);
    return the write-buffer limit in bytes (``send_nowait``'s fast path checks it too)."""
    transport = conn.transport
    high = transport.get_write_buffer_limits()[1]
    limit = high + WRITE_SLACK_MESSAGES * (conn.protocol.max_size or (1 << 20))
    send_data = conn.send_data
    process_event = conn.process_event
    state = [0, 0, 0.0]   # fragments of the message being received, pings this second, second start

    def guarded_send_data() -> None:
        send_data()
        if transport.get_write_buffer_size() > limit:
            _not_reading(conn, limit)

    def guarded_process_event(event) -> None:
        opcode = event.opcode
        if opcode is _CONT or (not event.fin and opcode.value < 3):   # a fragment of a data message
            state[0] = 0 if event.fin else state[0] + 1
            if state[0] > MAX_FRAGMENTS:
                _fail(conn, CloseCode.MESSAGE_TOO_BIG, "too many fragments")
                return
        elif opcode is _PING:
            t = time.monotonic()
            if t - state[2] >= 1.0:
                state[1], state[2] = 0, t
            state[1] += 1
            if state[1] > MAX_PINGS_PER_SECOND:
                _fail(conn, CloseCode.POLICY_VIOLATION, "too many pings")
                return
        process_event(event)

    conn.send_data = guarded_send_data  # type: ignore[method-assign]
    conn.process_event = guarded_process_event  # type: ignore[method-assign]
    return limit


def _fail(conn: Connection, code: CloseCode, reason: str) -> None:
    if conn.protocol.state is _OPEN:
        log.warning("link %s: %s; closing (%d)", conn.remote_address, reason, code)
        conn.protocol.fail(code, reason)
        conn.send_data()
        # websockets arms its close deadline in data_received before events are processed, so not for
        # this failure: cut the connection ourselves if the peer does not finish the closing handshake.
        conn.loop.call_later(conn.close_timeout or 2.0, conn.transport.abort)


def _describe(exc: ConnectionClosed) -> str:
    rcvd = exc.rcvd
    if rcvd is None:
        return "no close frame received"
    return f"code {rcvd.code}{' ' + rcvd.reason if rcvd.reason else ''}"
