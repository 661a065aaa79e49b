"""Links over real loopback sockets: binary only, size limit, heartbeat, reconnect, WSS."""

from __future__ import annotations

import asyncio
import itertools
import ssl

import pytest
from transport_helpers import TcpProxy, raw_http, without_date

from shadowmesh_client.transport import (
    Backoff,
    ClientConfig,
    HandshakeRejectedError,
    LinkClosedError,
    LinkLimits,
    ReconnectingClient,
    ServerConfig,
    TransportConfigError,
    TransportError,
)
from shadowmesh_client.transport.ws import LinkServer, dial


def accept_all(hello: bytes):
    return b"", hello


class Recorder:
    """on_link that records every server-side link and what it received, and how it ended."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.links = []
        self.received = []
        self.ended = asyncio.Event()
        self.errors = []

    async def __call__(self, link) -> None:
        self.links.append(link)
        try:
            while True:
                message = await link.recv()
                self.received.append(message)
                if self.echo:
                    await link.send(message)
        except LinkClosedError as exc:
            self.errors.append(str(exc))
        finally:
            self.ended.set()


async def test_binary_round_trip_counters_and_buffer_types():
    rec = Recorder(echo=True)
    async with LinkServer(ServerConfig(), accept_all, rec) as server:
        link = await dial(ClientConfig(server.url), b"me")
        payload = bytes(range(256)) * 10
        await link.send(memoryview(payload))          # views and bytearrays are sent as they are
        await link.send(bytearray(b"second"))
        assert await link.recv() == payload
        assert await link.recv() == b"second"
        assert (link.messages_out, link.bytes_out, link.messages_in) == (2, 2566, 2)
        assert rec.links[0].peer == b"me" and server.links == {rec.links[0]}
        await link.close()
        await asyncio.wait_for(rec.ended.wait(), 5)
        assert server.links == set()


async def test_text_message_closes_the_link_with_1003():
    rec = Recorder()
    async with LinkServer(ServerConfig(), accept_all, rec) as server:
        link = await dial(ClientConfig(server.url), b"me")
        await link._conn.send("a text frame")  # bypass Link.send, which only takes bytes-like objects
        await asyncio.wait_for(rec.ended.wait(), 5)
        assert "text message" in rec.errors[0]
        with pytest.raises(LinkClosedError, match="1003"):
            await asyncio.wait_for(link.recv(), 5)
        assert rec.received == []


async def test_oversized_message_closes_the_link_with_1009():
    limits = LinkLimits(max_message_bytes=4096)
    rec = Recorder()
    async with LinkServer(ServerConfig(limits=limits), accept_all, rec) as server:
        link = await dial(ClientConfig(server.url), b"me")   # client default limit is larger
        await link.send(bytes(4096))                          # exactly the limit passes
        await link.send(bytes(4097))
        await asyncio.wait_for(rec.ended.wait(), 5)
        assert [len(m) for m in rec.received] == [4096]
        with pytest.raises(LinkClosedError, match="1009"):
            await asyncio.wait_for(link.recv(), 5)


@pytest.mark.parametrize("heartbeat", [True, False])
async def test_heartbeat_keeps_an_idle_link_alive_through_an_idle_timeout(heartbeat):
    """A middlebox that kills connections idle for 0.5 s: with a 0.15 s heartbeat the link survives
    2 s of silence; without one it dies."""
    limits = LinkLimits(ping_interval=0.15 if heartbeat else None, ping_timeout=1.0)
    rec = Recorder(echo=True)
    async with LinkServer(ServerConfig(limits=limits), accept_all, rec) as server:
        proxy = TcpProxy(server.port, idle_timeout=0.5)
        await proxy.start()
        try:
            link = await dial(ClientConfig(f"ws://127.0.0.1:{proxy.port}{server.config.path}", limits=limits), b"me")
            await asyncio.sleep(2.0)
            if heartbeat:
                await link.send(b"still here")
                assert await asyncio.wait_for(link.recv(), 2) == b"still here"
                assert proxy.idle_kills == 0 and link.latency > 0
            else:
                with pytest.raises(LinkClosedError):
                    await link.send(b"anyone?")
                    await asyncio.wait_for(link.recv(), 2)
                assert proxy.idle_kills == 1
            await link.close()
        finally:
            await proxy.close()


async def test_heartbeat_detects_a_dead_peer_on_both_sides():
    limits = LinkLimits(ping_interval=0.2, ping_timeout=0.4, close_timeout=0.3)
    rec = Recorder()
    async with LinkServer(ServerConfig(limits=limits), accept_all, rec) as server:
        proxy = TcpProxy(server.port)
        await proxy.start()
        try:
            link = await dial(ClientConfig(f"ws://127.0.0.1:{proxy.port}{server.config.path}", limits=limits), b"me")
            proxy.freeze()  # packets stop flowing; no FIN, no RST: only the heartbeat can notice
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(LinkClosedError):
                await asyncio.wait_for(link.recv(), 5)
            await asyncio.wait_for(rec.ended.wait(), 5)
            assert loop.time() - started < 2.5
            assert link.closed and server.links == set()
        finally:
            await proxy.close()


def test_backoff_grows_exponentially_is_capped_jittered_and_resets():
    b = Backoff(initial=0.5, maximum=4.0, multiplier=2.0, jitter=0.5, rng=lambda: 0.0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next_delay() == 0.5
    draws = itertools.cycle([1.0, 0.5])
    j = Backoff(initial=1.0, maximum=8.0, jitter=0.5, rng=lambda: next(draws))
    assert [j.next_delay() for _ in range(4)] == [0.5, 1.5, 2.0, 6.0]


async def test_client_reconnects_with_backoff_after_server_restart():
    rec = Recorder(echo=True)
    config = ServerConfig(limits=LinkLimits(close_timeout=0.2))
    server = LinkServer(config, accept_all, rec)
    await server.start()
    port = server.port
    hellos = itertools.count()
    links_seen = []

    async def on_link(link):
        links_seen.append(link)
        async for _ in link:
            pass

    url = f"ws://127.0.0.1:{port}{config.path}"
    client = ReconnectingClient(ClientConfig(url, backoff_initial=0.05, backoff_max=0.4),
                                lambda: b"hello-%d" % next(hellos), on_link, dial=dial)
    client.start()
    try:
        await asyncio.wait_for(client.connected.wait(), 5)
        await server.close()                       # server goes away: link dies, dialling fails
        await asyncio.sleep(1.0)
        assert not client.connected.is_set()
        assert client.failures >= 3                # kept trying...
        assert client.attempts < 12                # ...with growing delays (0.05, 0.1, 0.2, 0.4, 0.4 ...)
        server = LinkServer(ServerConfig(port=port, path=config.path), accept_all, rec)
        await server.start()
        await asyncio.wait_for(client.connected.wait(), 5)
        await client.link.send(b"back")
        assert len(links_seen) == 2 and client.connects == 2
        # every attempt presented a fresh hello (handshakes must not be replayed)
        assert [link.peer for link in rec.links] == [b"hello-0", b"hello-%d" % (client.attempts - 1)]
    finally:
        await client.close()
        await server.close()


async def test_rejected_hello_is_reported_and_retried():
    async with LinkServer(ServerConfig(), lambda hello: None, Recorder()) as server:
        with pytest.raises(HandshakeRejectedError, match="HTTP 404"):
            await dial(ClientConfig(server.url), b"not trusted")
        client = ReconnectingClient(ClientConfig(server.url, backoff_initial=0.02, backoff_max=0.05),
                                    lambda: b"not trusted", Recorder(), dial=dial)
        client.start()
        await asyncio.sleep(0.3)
        await client.close()
        assert client.connects == 0 and client.failures >= 3 and "HTTP 404" in client.last_error
        assert server.config.path not in client.last_error   # the secret path stays out of logs


async def test_wss_with_a_self_signed_ca(pki):
    cert, key, ca = pki
    rec = Recorder(echo=True)
    async with LinkServer(ServerConfig(tls_cert=cert, tls_key=key), accept_all, rec) as server:
        assert server.url.startswith("wss://")
        link = await dial(ClientConfig(server.url, ca_file=ca), b"me")
        await link.send(b"over tls")
        assert await link.recv() == b"over tls"
        await link.close()
        with pytest.raises(TransportError, match="not trusted.*ca_file"):
            await dial(ClientConfig(server.url), b"me")          # system store doesn't know our CA
        # decoys are served over TLS too
        ctx = ssl.create_default_context(cafile=ca)
        page = await raw_http(server.port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", ssl_context=ctx,
                              server_hostname="localhost")
        assert without_date(page).startswith(b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\n")


def test_config_errors_name_the_setting(tmp_path):
    with pytest.raises(TransportConfigError, match="tls_cert and transport.tls_key"):
        ServerConfig(tls_cert="a.pem")
    with pytest.raises(TransportConfigError, match="transport.path"):
        ServerConfig(path="api/v1/ws/x")
    with pytest.raises(TransportConfigError, match="wss://"):
        ClientConfig("http://example.com/")
    with pytest.raises(TransportConfigError, match="max_queue"):
        LinkLimits(max_queue=0)
    with pytest.raises(TransportConfigError, match="cannot load TLS certificate"):
        ServerConfig(tls_cert=str(tmp_path / "missing.pem"), tls_key=str(tmp_path / "missing.key")).ssl_context()
    with pytest.raises(ValueError):   # TransportConfigError is a ConfigError is a ValueError
        ClientConfig("wss://h/", backoff_jitter=2)


async def test_deliver_to_callback_and_send_nowait_keep_order_backpressure_and_binary_only():
    """The node's hot path: messages handed to a callback from data_received (no recv()), sends without
    awaiting while there is room; send_nowait refuses (False) once the write buffer is over the limit."""
    got, ready = [], asyncio.Event()
    server_links = []

    async def on_link(link) -> None:
        server_links.append(link)
        link.deliver_to(lambda m: (got.append(m), ready.set()))
        await link.wait_closed()

    async with LinkServer(ServerConfig(), accept_all, on_link) as server:
        link = await dial(ClientConfig(server.url, limits=LinkLimits(write_limit=64 * 1024)), b"me")
        sent, n = [], 0
        while link.send_nowait(bytes([n % 256]) * 16_000):  # 16 KB each: stops once 64 KiB are buffered
            sent.append(bytes([n % 256]) * 16_000)
            n += 1
        assert 1 <= n < 10_000 and link.messages_out == n  # refused once the buffer was over the limit
        await link.send(b"after the refusal")                # send() waits for room, then goes out in order
        sent.append(b"after the refusal")
        await link._conn.send([b"frag", b"mented"])                # fragmented: reassembled
        sent.append(b"fragmented")
        while len(got) < len(sent):
            ready.clear()
            await asyncio.wait_for(ready.wait(), 5)
        assert got == sent and server_links[0].messages_in == len(sent)
        await link._conn.send("a text frame")                 # text: the server side closes with 1003
        with pytest.raises(LinkClosedError, match="1003"):
            await asyncio.wait_for(link.recv(), 5)
        assert not link.send_nowait(b"closed")                # closed link: refused, nothing sent
