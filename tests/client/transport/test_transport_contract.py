"""One contract, two transports: every case runs against ``transport.memory.MemoryTransport`` and
``transport.ws.WebSocketTransport`` (real sockets on 127.0.0.1, port 0). The contract is the one stated
in ``transport/base.py``; where the in-memory fake used to differ from the WebSocket behaviour (who
enforces max_message_bytes, send's order with send_nowait, server.close() cancelling handlers, an
on_link that raises), the fake was fixed and a case here pins it."""

from __future__ import annotations

import asyncio
import itertools
import socket

import pytest

from shadowmesh_client.transport import (
    CLOSE_REPLACED,
    CLOSE_REVOKED,
    ClientConfig,
    HandshakeRejectedError,
    LinkClosedError,
    LinkLimits,
    ReconnectingClient,
    ServerConfig,
    TransportError,
)
from shadowmesh_client.transport.base import CLOSE_INTERNAL_ERROR, CLOSE_NORMAL
from shadowmesh_client.transport.memory import MemoryTransport
from shadowmesh_client.transport.ws import WebSocketTransport

CLOSE_GOING_AWAY = 1001      # RFC 6455
CLOSE_ABNORMAL = 1006        # RFC 6455: no close frame
CLOSE_MESSAGE_TOO_BIG = 1009  # RFC 6455


@pytest.fixture(params=["memory", "ws"])
def transport(request):
    return MemoryTransport() if request.param == "memory" else WebSocketTransport()


def accept(hello: bytes):
    """authenticate: two response frames (and an empty one, which is skipped); peer = the hello."""
    return [b"resp-1", b"", b"resp-2"], hello


async def eventually(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Echo:
    """on_link: echo every message back until the link closes; keeps the server-side links."""

    def __init__(self) -> None:
        self.links = []

    async def __call__(self, link) -> None:
        self.links.append(link)
        try:
            while True:
                await link.send(await link.recv())
        except LinkClosedError:
            pass


async def test_response_frames_arrive_first_then_send_and_recv_keep_order(transport):
    echo = Echo()
    async with transport.server(ServerConfig(), accept, echo) as server:
        link = await transport.dial(ClientConfig(server.url), b"hello-a")
        messages = [bytes([i]) * (1 + i * 100) for i in range(20)]
        for m in messages[:10]:
            await link.send(m)
        for m in messages[10:]:
            assert link.send_nowait(memoryview(m))
        received = [await asyncio.wait_for(link.recv(), 5) for _ in range(2 + len(messages))]
        assert received[:2] == [b"resp-1", b"resp-2"]          # the handshake response comes first
        assert received[2:] == messages and all(type(m) is bytes for m in received)
        assert (link.messages_out, link.bytes_out) == (20, sum(map(len, messages)))
        assert (link.messages_in, link.is_client) == (22, True)
        (theirs,) = echo.links
        assert theirs.peer == b"hello-a" and not theirs.is_client and server.links == {theirs}
        assert (server.links_opened, server.auth_failures, server.decoys_served) == (1, 0, 0)
        await link.close()
        await eventually(lambda: not server.links)


async def test_send_nowait_refuses_under_backpressure_and_send_waits_for_room(transport):
    go, received, done = asyncio.Event(), [], asyncio.Event()

    async def slow_reader(link) -> None:
        await go.wait()                                     # not reading: the sender's buffer fills up
        try:
            while True:
                received.append(await link.recv())
        except LinkClosedError:
            done.set()

    async with transport.server(ServerConfig(), lambda h: (b"", h), slow_reader) as server:
        link = await transport.dial(ClientConfig(server.url, limits=LinkLimits(write_limit=4096)), b"me")
        sent = []
        while len(sent) < 100_000:
            m = len(sent).to_bytes(4, "big") * 2048         # 8 KiB, numbered
            if not link.send_nowait(m):
                # refused; with TCP_NOTSENT_LOWAT (ws/link.py) the kernel may still move bytes to the
                # reader's buffers: full only once still refused after a pause
                await asyncio.sleep(0.05)
                if not link.send_nowait(m):
                    break
            sent.append(m)
        assert 1 <= len(sent) < 100_000, "send_nowait never refused"
        assert not link.send_nowait(b"x")                   # still no room: refused again, nothing sent
        pending = asyncio.ensure_future(link.send(b"last"))
        await asyncio.sleep(0.2)
        assert not pending.done()                           # send waits while the reader does not read
        go.set()
        await asyncio.wait_for(pending, 5)
        await link.close()
        await asyncio.wait_for(done.wait(), 5)
        assert received == sent + [b"last"]                 # order kept across send_nowait and send


async def test_deliver_to_hands_over_queued_messages_first_then_pushes(transport):
    go, got, ready = asyncio.Event(), [], asyncio.Event()
    at_switch = []

    async def on_link(link) -> None:
        await go.wait()
        link.deliver_to(lambda m: (got.append(m), ready.set()))
        at_switch.extend(got)                               # what deliver_to handed over at once
        with pytest.raises(RuntimeError, match="deliver_to"):
            await link.recv()
        await link.wait_closed()

    async with transport.server(ServerConfig(), lambda h: (b"", h), on_link) as server:
        link = await transport.dial(ClientConfig(server.url), b"me")
        for m in (b"q1", b"q2", b"q3"):
            await link.send(m)
        await asyncio.sleep(0.1)                            # they are queued at the server by now
        go.set()
        await eventually(lambda: len(got) >= 3)
        assert at_switch == [b"q1", b"q2", b"q3"]
        for m in (b"p1", b"p2"):
            assert link.send_nowait(m)
        await eventually(lambda: len(got) == 5)
        assert got == [b"q1", b"q2", b"q3", b"p1", b"p2"]
        await link.close()


async def test_a_callback_that_raises_aborts_the_link(transport):
    got, server_links = [], []

    def callback(m: bytes) -> None:
        if m == b"boom":
            raise ValueError("handler bug")
        got.append(m)

    async def on_link(link) -> None:
        server_links.append(link)
        link.deliver_to(callback)
        await link.wait_closed()

    async with transport.server(ServerConfig(), lambda h: (b"", h), on_link) as server:
        link = await transport.dial(ClientConfig(server.url), b"me")
        await link.send(b"ok")
        await link.send(b"boom")
        await asyncio.wait_for(link.wait_closed(), 5)
        assert got == [b"ok"]
        assert link.close_code == CLOSE_ABNORMAL            # aborted: no close frame
        await asyncio.wait_for(server_links[0].wait_closed(), 5)
        assert server_links[0].close_code == CLOSE_ABNORMAL
        with pytest.raises(LinkClosedError):
            await link.send(b"after")
        assert not link.send_nowait(b"after")


async def test_pause_reading_holds_the_sender_back_and_resume_delivers_the_rest_in_order(transport):
    got, server_links = [], []

    async def on_link(link) -> None:
        server_links.append(link)
        link.deliver_to(got.append)
        await link.wait_closed()

    async with transport.server(ServerConfig(), lambda h: (b"", h), on_link) as server:
        link = await transport.dial(ClientConfig(server.url), b"me")
        await eventually(lambda: server_links)
        server_links[0].pause_reading()
        chunk, sent = bytes(60_000), 0
        while sent < 2_000 and link.send_nowait(chunk):     # 120 MB: far more than any buffer holds
            sent += 1
            await asyncio.sleep(0)
        assert sent < 2_000                                 # the sender ran out of room: backpressure
        assert len(got) < sent                              # the rest waits (kernel / inbox), unread
        server_links[0].resume_reading()
        await link.send(b"last")
        await eventually(lambda: len(got) == sent + 1)
        assert got[-1] == b"last" and all(m == chunk for m in got[:-1])
        await link.close()


@pytest.mark.parametrize("code", [CLOSE_REPLACED, CLOSE_REVOKED])
@pytest.mark.parametrize("closer", ["server", "client"])
async def test_close_codes_are_seen_on_both_ends(transport, code, closer):
    server_links = []

    async def on_link(link) -> None:
        server_links.append(link)
        if closer == "server":
            await link.close(code, "replaced or revoked")
        await link.wait_closed()

    async with transport.server(ServerConfig(), lambda h: (b"", h), on_link) as server:
        link = await transport.dial(ClientConfig(server.url), b"me")
        await eventually(lambda: server_links)
        if closer == "client":
            await link.close(code, "bye")
        await asyncio.wait_for(link.wait_closed(), 5)
        await asyncio.wait_for(server_links[0].wait_closed(), 5)
        assert link.closed and server_links[0].closed
        assert (link.close_code, server_links[0].close_code) == (code, code)
        with pytest.raises(LinkClosedError):
            await link.recv()
        await link.close(code)                              # idempotent


async def test_refused_hello_is_rejected_and_counted(transport):
    calls = []

    def refuse(hello: bytes):
        calls.append(hello)
        if hello == b"raise":
            raise RuntimeError("hook bug")                  # a failing hook refuses like None
        return None

    async def on_link(link) -> None:  # pragma: no cover - never reached
        raise AssertionError("a refused hello must not open a link")

    async with transport.server(ServerConfig(), refuse, on_link) as server:
        for hello in (b"not trusted", b"raise"):
            with pytest.raises(HandshakeRejectedError, match="HTTP 404") as info:
                await transport.dial(ClientConfig(server.url), hello)
            assert server.config.path not in str(info.value)  # the secret path stays out of logs
        assert calls == [b"not trusted", b"raise"]
        assert (server.auth_failures, server.decoys_served, server.links_opened) == (2, 2, 0)


async def test_async_authenticate_is_awaited(transport):
    async def authenticate(hello: bytes):
        await asyncio.sleep(0)
        return b"welcome", hello.upper()

    echo = Echo()
    async with transport.server(ServerConfig(), authenticate, echo) as server:
        link = await transport.dial(ClientConfig(server.url), b"abc")
        assert await asyncio.wait_for(link.recv(), 5) == b"welcome"
        await eventually(lambda: echo.links)
        assert echo.links[0].peer == b"ABC"
        await link.close()


async def test_wrong_path_or_no_hello_is_rejected_as_a_decoy_without_authenticating(transport):
    calls = []
    async with transport.server(ServerConfig(), lambda h: calls.append(h), Echo()) as server:
        with pytest.raises(HandshakeRejectedError):
            await transport.dial(ClientConfig(server.url + "x"), b"me")
        with pytest.raises(HandshakeRejectedError):              # right path, but no hello at all
            await transport.dial(ClientConfig(server.url), b"")
        assert calls == [] and (server.decoys_served, server.auth_failures) == (2, 0)


async def test_unknown_address_raises_transport_error(transport):
    with socket.socket() as s:                               # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError) as info:
        await transport.dial(ClientConfig(f"ws://127.0.0.1:{port}/api/v1/ws/x"), b"me")
    assert not isinstance(info.value, HandshakeRejectedError)


async def test_message_over_the_receivers_limit_closes_the_link_with_1009(transport):
    received, server_links = [], []

    async def on_link(link) -> None:
        server_links.append(link)
        try:
            while True:
                received.append(await link.recv())
        except LinkClosedError:
            pass

    limits = LinkLimits(max_message_bytes=4096)
    async with transport.server(ServerConfig(limits=limits), lambda h: (b"", h), on_link) as server:
        link = await transport.dial(ClientConfig(server.url), b"me")   # the client's own limit is larger
        await link.send(bytes(4096))                                   # exactly the limit passes
        await link.send(bytes(4097))                                   # the sender's call succeeds...
        with pytest.raises(LinkClosedError, match="1009"):             # ...then the link closes
            await asyncio.wait_for(link.recv(), 5)
        assert [len(m) for m in received] == [4096]
        assert link.close_code == CLOSE_MESSAGE_TOO_BIG
        await eventually(lambda: not server.links)
        # The receiving end is closed too; its own close_code is not part of the contract (websockets
        # drops the TCP connection after failing it, so that end reports 1006; the fake reports 1009).
        assert server_links[0].closed


@pytest.mark.parametrize("ending", ["returns", "raises"])
async def test_on_link_is_awaited_and_the_link_closed_when_it_returns(transport, ending):
    seen = []

    async def on_link(link) -> None:
        seen.append(await link.recv())
        if ending == "raises":
            raise ValueError("bug in on_link")

    async with transport.server(ServerConfig(), lambda h: (b"", h), on_link) as server:
        link = await transport.dial(ClientConfig(server.url), b"me")
        await link.send(b"one")
        with pytest.raises(LinkClosedError):
            await asyncio.wait_for(link.recv(), 5)
        assert seen == [b"one"]
        assert link.close_code == (CLOSE_NORMAL if ending == "returns" else CLOSE_INTERNAL_ERROR)
        await eventually(lambda: not server.links)


async def test_server_close_closes_every_link_and_waits_for_the_handlers(transport):
    ended, cancelled, started = [], [], []

    async def on_link(link) -> None:
        started.append(link)
        try:
            async for _ in link:
                pass
            await asyncio.sleep(0.1)                    # cleanup after the link closed: close() waits
            ended.append(link.close_code)
        except asyncio.CancelledError:                  # pragma: no cover - the failure being tested
            cancelled.append(link)
            raise

    server = transport.server(ServerConfig(), lambda h: (b"", h), on_link)
    await server.start()
    url = server.url
    links = [await transport.dial(ClientConfig(url), b"me-%d" % i) for i in range(3)]
    await eventually(lambda: len(started) == 3)
    await server.close()
    assert (ended, cancelled, server.links) == ([CLOSE_GOING_AWAY] * 3, [], set())
    for link in links:
        await asyncio.wait_for(link.wait_closed(), 5)
        assert link.close_code == CLOSE_GOING_AWAY
    with pytest.raises(TransportError):                  # no longer listening
        await transport.dial(ClientConfig(url), b"late")


async def test_reconnecting_client_reconnects_after_a_server_restart(transport):
    echo = Echo()
    first = transport.server(ServerConfig(), lambda h: (b"", h), echo)
    await first.start()
    port, path, url = first.port, first.config.path, first.url
    hellos = itertools.count()
    links = []

    async def on_link(link) -> None:
        links.append(link)
        async for _ in link:
            pass

    client = ReconnectingClient(ClientConfig(url, backoff_initial=0.02, backoff_max=0.1),
                                lambda: b"hello-%d" % next(hellos), on_link, dial=transport.dial)
    client.start()
    second = None
    try:
        await asyncio.wait_for(client.connected.wait(), 5)
        await first.close()                              # the link dies, dialling fails for a while
        await eventually(lambda: not client.connected.is_set() and client.failures >= 2)
        second = transport.server(ServerConfig(port=port, path=path), lambda h: (b"", h), echo)
        await second.start()
        await asyncio.wait_for(client.connected.wait(), 5)
        await client.link.send(b"back")
        await eventually(lambda: len(echo.links) == 2)
        assert client.connects == 2 and len(links) == 2
        # every attempt presented a fresh hello (handshakes must not be replayed)
        assert [link.peer for link in echo.links] == [b"hello-0", b"hello-%d" % (client.attempts - 1)]
    finally:
        await client.close()
        if second is not None:
            await second.close()
