"""Pins every websockets internal that transport/ws/link.py relies on (its docstring lists them and what
each buys). After a websockets upgrade this file fails naming the attribute that moved, before the fast
paths silently misbehave: static checks on the real classes, then a real link's send_nowait and
deliver_to (including the queued-and-paused hand-over) over loopback."""

from __future__ import annotations

import asyncio
import collections
import inspect

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.connection import Connection
from websockets.asyncio.messages import Assembler, SimpleQueue
from websockets.asyncio.server import ServerConnection
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol

from shadowmesh_client.transport import ClientConfig, LinkLimits, ServerConfig
from shadowmesh_client.transport.ws import LinkServer, dial
from shadowmesh_client.transport.ws import link as ws_link

WHY = f"(websockets {websockets.version.version}; transport/ws/link.py's docstring says what it is used for)"


def source(obj) -> str:
    return inspect.getsource(obj)


def need(owner, name: str) -> None:
    assert hasattr(owner, name), f"websockets internal {owner.__name__}.{name} is gone {WHY}"


def assigns(func, *fragments: str) -> None:
    text = source(func)
    for fragment in fragments:
        assert fragment in text, f"websockets internal changed: {func.__qualname__} no longer has " \
                                 f"{fragment!r} {WHY}"


# ---- static: the classes -------------------------------------------------------------------------
def test_connection_attributes_used_by_send_nowait_and_abort():
    need(Connection, "send_data")
    assigns(Connection.__init__, "self.protocol = protocol", "self.paused", "self.fragmented_send_waiter")
    assigns(Connection.connection_made, "self.transport = transport")
    # send() = send_context (state check, then send_data + drain) around protocol.send_binary: the
    # sequence send_nowait reproduces without the drain.
    assigns(Connection.send, "self.fragmented_send_waiter", "self.protocol.send_binary")
    assigns(Connection.send_context, "self.protocol.state is expected_state", "self.send_data()")
    assigns(Connection.pause_writing, "self.paused = True")
    assigns(Connection.resume_writing, "self.paused = False")
    for name in ("send_binary", "fail", "state", "close_expected"):
        need(Protocol, name)
    assert isinstance(Protocol.state, property), f"websockets internal Protocol.state is no longer a property {WHY}"
    need(State, "OPEN")


def test_receive_assembler_that_deliver_to_replaces():
    assigns(Connection.connection_made, "self.recv_messages = Assembler(")
    assigns(Connection.process_event, "self.recv_messages.put(")
    assigns(Connection.connection_lost, "self.recv_messages.close()")
    assigns(Connection.recv, "self.recv_messages.get(")
    for name in ("put", "close", "get", "get_iter"):
        need(Assembler, name)
    assigns(Assembler.__init__, "self.frames", "SimpleQueue()", "self.resume = resume", "self.paused = False",
            "self.closed = False")
    assigns(SimpleQueue.__init__, "self.queue: collections.deque")
    assigns(Assembler.put, "self.closed", "EOFError")  # our stand-in raises the same on a closed stream
    for name in ("opcode", "fin", "data"):
        assert name in Frame.__dataclass_fields__, f"websockets internal Frame.{name} is gone {WHY}"
    for name in ("BINARY", "TEXT", "CONT"):
        need(Opcode, name)


def test_handshake_objects_that_drop_handshake_replaces():
    assigns(Connection.__init__, "self.request: Request | None = None", "self.response: Response | None = None")
    # websockets recognises the first event by ``request is None`` / ``response is None``: the
    # placeholders must stay non-None objects of the same types.
    assigns(ServerConnection.process_event, "self.request is None")
    assigns(ClientConnection.process_event, "self.response is None")
    # the sans-I/O parsers keep the parsed Request/Response in a generator local: why headers are emptied
    assigns(ServerProtocol.parse, "request = yield from Request.parse(")
    assigns(ClientProtocol.parse, "response = yield from Response.parse(")


# ---- behaviour: a real link -----------------------------------------------------------------------
async def test_real_link_uses_the_internals_and_its_fast_paths_work():
    got, ready, server_links = [], asyncio.Event(), []
    switch = asyncio.Event()

    async def on_link(link) -> None:
        server_links.append(link)
        await switch.wait()
        conn = link._conn
        assert isinstance(conn.recv_messages, Assembler), f"Connection.recv_messages is not an Assembler {WHY}"
        assert isinstance(conn.recv_messages.frames.queue, collections.deque), WHY
        assert conn.recv_messages.paused, f"Assembler.paused not set above max_queue {WHY}"
        link.deliver_to(lambda m: (got.append(m), ready.set()))   # queued + paused: must resume reading
        assert isinstance(conn.recv_messages, ws_link._DirectDelivery)
        await link.wait_closed()

    limits = LinkLimits(max_queue=2, write_limit=16 * 1024)
    async with LinkServer(ServerConfig(limits=limits), lambda h: (b"", h), on_link) as server:
        link = await dial(ClientConfig(server.url, limits=limits), b"me")
        conn = link._conn
        for name in ("paused", "fragmented_send_waiter", "protocol", "transport", "request", "response"):
            assert hasattr(conn, name), f"websockets internal Connection.{name} is gone {WHY}"
        assert conn.paused is False and conn.fragmented_send_waiter is None
        assert conn.protocol.state is State.OPEN
        assert callable(conn.transport.abort) and conn.transport.is_closing() is False
        # _drop_handshake ran: placeholders in, the originals' headers emptied
        assert conn.request is ws_link._EMPTY_REQUEST and conn.response is ws_link._EMPTY_RESPONSE
        sent = []
        for i in range(40):                                      # more than max_queue: reading pauses
            m = i.to_bytes(2, "big") * 4000
            if not link.send_nowait(m):
                await link.send(m)
            sent.append(m)
        await asyncio.sleep(0.2)
        assert conn.paused is True or len(sent) == link.messages_out  # buffer over write_limit at some point
        switch.set()
        while len(got) < len(sent):
            ready.clear()
            await asyncio.wait_for(ready.wait(), 5)
        assert got == sent
        assert server_links[0]._conn.request is ws_link._EMPTY_REQUEST
        assert link.send_nowait(b"pushed")
        await asyncio.wait_for(_until(lambda: got[-1] == b"pushed"), 5)
        await link.close()
        assert not link.send_nowait(b"closed")                   # protocol.state is no longer OPEN


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("cls", [ServerConnection, ClientConnection])
def test_connections_take_arbitrary_placeholders_for_request_and_response(cls):
    # _drop_handshake assigns these attributes; a __slots__ or read-only property would break it.
    for name in ("request", "response"):
        attr = inspect.getattr_static(cls, name, None)
        assert attr is None or not isinstance(attr, property) or attr.fset is not None, \
            f"websockets internal {cls.__name__}.{name} became read-only {WHY}"
