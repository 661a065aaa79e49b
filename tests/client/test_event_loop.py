"""The daemons' event loop (daemon_common.run_until_signalled): uvloop by default, asyncio's with
SHADOWMESH_EVENT_LOOP=asyncio, a clear error for anything else; signals stop the daemon on both; and the
WebSocket transport (server front, TLS detection, link fast paths) works on uvloop over real sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import sys
import time

import pytest
import uvloop

from shadowmesh_client.daemon_common import EVENT_LOOP_ENV, event_loop_factory, run_until_signalled
from shadowmesh_client.errors import ConfigError
from shadowmesh_client.transport import ClientConfig, LinkLimits, ServerConfig
from shadowmesh_client.transport.ws import LinkServer, dial
from shadowmesh_client.transport.ws import link as link_module
from tests.client.transport.transport_helpers import raw_http, without_date, write_test_pki


def _loop_of_daemon() -> asyncio.AbstractEventLoop:
    seen: list[asyncio.AbstractEventLoop] = []

    async def daemon(stop: asyncio.Event) -> None:
        seen.append(asyncio.get_running_loop())

    run_until_signalled(daemon)
    return seen[0]


def test_uvloop_is_the_default(monkeypatch):
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    assert isinstance(_loop_of_daemon(), uvloop.Loop)
    monkeypatch.setenv(EVENT_LOOP_ENV, "uvloop")
    assert isinstance(_loop_of_daemon(), uvloop.Loop)


def test_asyncio_loop_on_request(monkeypatch):
    monkeypatch.setenv(EVENT_LOOP_ENV, "asyncio")
    loop = _loop_of_daemon()
    assert isinstance(loop, asyncio.BaseEventLoop) and not isinstance(loop, uvloop.Loop)


@pytest.mark.parametrize("value", ["libuv", "uv loop", "trio"])
def test_another_value_is_a_config_error_naming_both(monkeypatch, value):
    monkeypatch.setenv(EVENT_LOOP_ENV, value)
    ran = []

    async def daemon(stop: asyncio.Event) -> None:
        ran.append(1)

    with pytest.raises(ConfigError) as err:
        run_until_signalled(daemon)
    message = str(err.value)
    assert EVENT_LOOP_ENV in message and value in message
    assert f"{EVENT_LOOP_ENV}=uvloop" in message and f"{EVENT_LOOP_ENV}=asyncio" in message
    assert ran == []


def test_without_uvloop_asyncio_is_used_and_said_once(monkeypatch, caplog):
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", None)   # import uvloop -> ImportError
    with caplog.at_level(logging.INFO, logger="shadowmesh_client.daemon_common"):
        loop = _loop_of_daemon()
    assert not isinstance(loop, uvloop.Loop)
    lines = [r for r in caplog.records if "uvloop not available" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO


def test_the_uvloop_clock_is_asyncios(monkeypatch):
    """loop.time() is time.monotonic() (websockets times heartbeat RTTs with it; uvloop's own clock counts
    whole milliseconds), and timers still fire on time."""
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    factory = event_loop_factory()
    assert factory is not None
    with asyncio.Runner(loop_factory=factory) as runner:
        async def check() -> tuple[float, float, float]:
            loop = asyncio.get_running_loop()
            for _ in range(20):   # sub-millisecond readings (a millisecond clock is off by 0.5 ms on average)
                end = time.monotonic() + 0.00037
                while time.monotonic() < end:
                    pass
                assert abs(loop.time() - time.monotonic()) < 0.0001
            t0, m0 = loop.time(), time.monotonic()
            fired = loop.create_future()
            loop.call_at(t0 + 0.05, fired.set_result, None)
            await asyncio.wait_for(fired, 1.0)
            return t0 - m0, time.monotonic() - m0, loop.time() - t0
        skew, waited, elapsed = runner.run(check())
    assert abs(skew) < 0.001
    assert 0.045 <= waited < 0.5 and 0.045 <= elapsed < 0.5


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("loop_name", ["uvloop", "asyncio"])
def test_signals_stop_the_daemon(monkeypatch, loop_name, sig):
    monkeypatch.setenv(EVENT_LOOP_ENV, loop_name)
    stopped = []

    async def daemon(stop: asyncio.Event) -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), sig)
        await asyncio.wait_for(stop.wait(), 5.0)
        stopped.append(True)

    run_until_signalled(daemon)
    assert stopped == [True]


def _accept(hello: bytes):
    return b"welcome", hello


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_a_websocket_link_exchanges_frames_on_uvloop(monkeypatch, tmp_path, tls):
    """Real loopback sockets, run as a daemon runs (default loop: uvloop): a decoy page, a hello, frames of
    every length class both ways through recv/send and through deliver_to/send_nowait (the link's fast
    paths: link.py wraps data_received, which uvloop's transports look up once), and heartbeat RTTs."""
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    fast = []
    at_frame_start = link_module._at_frame_start

    def counted(parser) -> bool:   # called by the fast-path data_received wrapper only
        fast.append(1)
        return at_frame_start(parser)

    monkeypatch.setattr(link_module, "_at_frame_start", counted)
    cert, key, ca = write_test_pki(str(tmp_path)) if tls else (None, None, None)
    sizes = [1, 84, 125, 126, 1_400, 65_535, 65_536, 200_000]
    out: dict = {}

    async def daemon(stop: asyncio.Event) -> None:
        out["loop"] = asyncio.get_running_loop()
        limits = LinkLimits(max_message_bytes=300_000, ping_interval=0.05, ping_timeout=2.0)
        server_links = []

        async def on_link(link) -> None:
            server_links.append(link)
            for size in sizes:                       # recv / send
                message = await link.recv()
                assert len(message) == size
                await link.send(message[::-1])
            link.deliver_to(link.send_nowait)        # then echo on the fast paths
            await link.wait_closed()

        async with LinkServer(ServerConfig(tls_cert=cert, tls_key=key, limits=limits), _accept, on_link) as server:
            ctx = ssl.create_default_context(cafile=ca) if tls else None
            request = b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            page = await raw_http(server.port, request, ssl_context=ctx, server_hostname="localhost" if tls else None)
            out["decoy"] = without_date(page)
            link = await dial(ClientConfig(server.url, ca_file=ca, limits=limits), b"hello")
            out["welcome"] = await link.recv()
            for size in sizes:
                message = os.urandom(size)
                await link.send(message)
                assert await asyncio.wait_for(link.recv(), 5) == message[::-1]
            loop = asyncio.get_running_loop()
            box: list[asyncio.Future] = []
            link.deliver_to(lambda m: box[-1].set_result(m))
            echoed = []
            for size in sizes * 3:
                message = os.urandom(size)
                box.append(loop.create_future())
                if not link.send_nowait(message):
                    await link.send(message)
                echoed.append(await asyncio.wait_for(box[-1], 5) == message)
            out["echoed"] = echoed
            await asyncio.sleep(0.2)                 # a few heartbeats
            out["latency"] = (link.latency, server_links[0].latency)
            await link.close()

    run_until_signalled(daemon)
    assert isinstance(out["loop"], uvloop.Loop)
    assert out["decoy"].startswith(b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\n")
    assert out["welcome"] == b"welcome"
    assert out["echoed"] == [True] * (3 * len(sizes))
    assert len(fast) >= 2 * 3 * len(sizes)           # both ends' wrappers ran: one call per message at least
    client_rtt, server_rtt = out["latency"]
    assert 0 < client_rtt < 0.5 and 0 < server_rtt < 0.5   # sub-ms RTTs measured, not rounded to 0


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
def test_relay_workers_loops_share_a_port(monkeypatch, choice):
    """relay --workers N: every worker's loop (uvloop's too) binds with SO_REUSEPORT, so two servers of the
    same process family accept on one port; without it the second bind fails."""
    import shadowmesh_client.daemon_common as dc

    monkeypatch.setenv(EVENT_LOOP_ENV, choice)

    async def two_servers() -> bool:
        first = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = first.sockets[0].getsockname()[1]
        try:
            second = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", port)
        except OSError:
            return False
        finally:
            first.close()
        second.close()
        return True

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        assert runner.run(two_servers()) is False
    monkeypatch.setattr(dc, "_reuse_port", False)
    dc.bind_with_reuse_port()
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop) == (choice == "uvloop")
        assert runner.run(two_servers()) is True
