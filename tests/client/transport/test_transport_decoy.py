"""What a scanner sees: nginx's answers (ws/http.py) for everything but a valid hello, nginx's timeouts,
constant-time refusal, TLS peeking (ALPN, plain HTTP to the TLS port). The byte-for-byte comparison with a
real nginx is tests/e2e/test_camouflage.py; these run without it."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import re
import ssl
import statistics
import time

import pytest
from transport_helpers import upgrade_request, write_test_pki

from shadowmesh_client.transport import ClientConfig, ServerConfig
from shadowmesh_client.transport.ws import LinkServer, dial
from shadowmesh_client.transport.ws.decoy import encode_hello
from shadowmesh_client.transport.ws.http import WELCOME_PAGE, HttpConnection, Site

GOOD_HELLO = b"\x01good-hello" + bytes(100)
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def accept_good(hello: bytes):
    return (b"welcome", "peer") if hello == GOOD_HELLO else None


async def idle(link):
    async for _ in link:
        pass


async def exchange(port: int, data: bytes, quiet: float = 0.3, ssl_context=None) -> bytes:
    """Send ``data``; collect the answer until EOF (+"<EOF>") or ``quiet`` seconds of silence (+"<OPEN>")."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl_context,
                                                   server_hostname="localhost" if ssl_context else None)
    writer.write(data)
    out = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), quiet)
        except TimeoutError:
            out += b"<OPEN>"
            break
        if not chunk:
            out += b"<EOF>"
            break
        out += chunk
    writer.transport.abort()
    return out


def without_date(response: bytes) -> bytes:
    return b"\r\n".join(line for line in response.split(b"\r\n") if not line.startswith(b"Date: "))


async def test_wrong_path_and_failed_auth_get_identical_pages_and_keep_the_connection():
    async with LinkServer(ServerConfig(), accept_good, idle) as server:
        path = server.config.path
        answers = [
            await exchange(server.port, b"GET /api/v1/ws/guess HTTP/1.1\r\nHost: x\r\n\r\n"),
            await exchange(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
            await exchange(server.port, upgrade_request("/api/v1/ws/guess")),
            await exchange(server.port, upgrade_request(path)),
            await exchange(server.port, upgrade_request(path, f"Cookie: sid={encode_hello(b'forged')}\r\n")),
            await exchange(server.port, upgrade_request(path, "Cookie: sid=!!!\r\n")),
        ]
        assert server.auth_failures == 1 and server.links_opened == 0
    reference = without_date(answers[0])
    assert reference.startswith(b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Type: text/html\r\n")
    assert b"Connection: keep-alive" in reference and reference.endswith(b"</html>\r\n<OPEN>")
    assert all(without_date(a) == reference for a in answers)


async def test_welcome_page_paths_validators_and_revalidation():
    site = Site("nginx", 1_700_000_000)
    async with LinkServer(ServerConfig(site_mtime=site.mtime), accept_good, idle) as server:
        root = await exchange(server.port, GET)
        index = await exchange(server.port, b"GET /index.nginx-debian.html HTTP/1.1\r\nHost: x\r\n\r\n")
        index_html = await exchange(server.port, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
        revalidate = await exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: " +
                                    site.etag.encode() + b"\r\n\r\n")
        ranged = await exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n")
        zipped = await exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
    assert root.startswith(b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: ")  # Server before Date, as nginx
    assert without_date(root) == without_date(index)
    assert b'ETag: "6553f100-267"\r\nAccept-Ranges: bytes\r\n\r\n' + WELCOME_PAGE in root
    assert b"Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT" in root
    assert index_html.startswith(b"HTTP/1.1 404 Not Found")
    assert revalidate.startswith(b"HTTP/1.1 304 Not Modified") and revalidate.endswith(b"\r\n\r\n<OPEN>")
    assert b"Content-Range: bytes 0-9/615\r\n\r\n" + WELCOME_PAGE[:10] + b"<OPEN>" in ranged
    body = zipped.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[1]
    assert b'ETag: W/"6553f100-267"' in zipped and gzip.decompress(body.split(b"\r\n0\r\n\r\n")[0]) == WELCOME_PAGE


async def test_pipelined_and_malformed_requests_are_answered_in_order_without_error_logs(caplog):
    caplog.set_level(logging.DEBUG)
    async with LinkServer(ServerConfig(), accept_good, idle) as server:
        pipelined = await exchange(server.port, GET + b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x16\x03\x01junk\r\n")
        for probe in (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", b"SSH-2.0-x\r\n",
                      b"GET / HTTP/1.1\r\n\r\n", b"get / HTTP/1.1\r\n\r\n", os.urandom(100)):
            assert (await exchange(server.port, probe)).startswith(b"HTTP/1.1 4")
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", pipelined)
    assert statuses == [b"200", b"404", b"400"]
    assert pipelined.endswith(b"<EOF>")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_hook_exception_and_oversized_hello_are_refused_like_anything_else():
    calls = []

    def exploding(hello):
        calls.append(hello)
        raise RuntimeError("node bug")

    cfg = ServerConfig(max_hello_bytes=512)
    async with LinkServer(cfg, exploding, idle) as server:
        reference = without_date(await exchange(server.port, upgrade_request("/nope")))
        crashed = await exchange(server.port, upgrade_request(cfg.path, f"Cookie: sid={encode_hello(b'x')}\r\n"))
        huge = await exchange(server.port, upgrade_request(cfg.path, f"Cookie: sid={encode_hello(bytes(513))}\r\n"))
        again = await exchange(server.port, upgrade_request("/nope"))
    assert without_date(crashed) == reference == without_date(huge) == without_date(again)
    assert calls == [b"x"]  # the oversized hello never reached the hook


async def test_a_refused_hello_leaves_a_keepalive_connection_like_nginx_and_a_good_one_then_upgrades():
    """After a refusal the same connection is served again (pipelined GET answered after the 404)."""
    async with LinkServer(ServerConfig(), accept_good, idle) as server:
        path = server.config.path
        both = await exchange(server.port, upgrade_request(path, "Cookie: sid=AAAA\r\n") + GET)
        link = await dial(ClientConfig(server.url), GOOD_HELLO)
        assert await asyncio.wait_for(link.recv(), 5) == b"welcome"
        await link.close()
    assert both.startswith(b"HTTP/1.1 404 Not Found") and b"HTTP/1.1 200 OK" in both


async def test_authenticate_receives_the_hello_and_the_response_is_the_first_message():
    seen = []

    async def auth(hello):
        seen.append(hello)
        await asyncio.sleep(0)  # coroutine hooks are awaited
        return [b"resp-1", b"resp-2"], ("peer", len(hello))

    peers = []

    async def on_link(link):
        peers.append(link.peer)
        await idle(link)

    async with LinkServer(ServerConfig(), auth, on_link) as server:
        hello = os.urandom(3000)
        link = await dial(ClientConfig(server.url), hello)
        assert [await link.recv(), await link.recv()] == [b"resp-1", b"resp-2"]
        await link.close()
    assert seen == [hello] and peers == [("peer", 3000)]


async def test_header_and_keepalive_timeouts_close_silently():
    cfg = ServerConfig(header_timeout=0.4, keepalive_timeout=0.8)
    async with LinkServer(cfg, accept_good, idle) as server:
        t0 = time.monotonic()
        partial = await exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n", quiet=3)
        t_partial = time.monotonic() - t0
        t0 = time.monotonic()
        kept = await exchange(server.port, GET, quiet=3)
        t_kept = time.monotonic() - t0
    assert partial == b"<EOF>" and 0.35 < t_partial < 1.5                 # no 408 page: nginx sends none
    assert kept.startswith(b"HTTP/1.1 200 OK") and kept.endswith(b"</html>\n<EOF>") and 0.75 < t_kept < 2


def test_default_timeouts_are_nginx_defaults():
    cfg = ServerConfig()
    assert (cfg.header_timeout, cfg.keepalive_timeout) == (60.0, 65.0)


async def _refusal_times(floor: float, n: int = 25) -> tuple[float, float]:
    """Median seconds to the refusal of an unregistered key (cheap hook) and of a registered key with a
    bad signature (hook busy for 2 ms), probes interleaved."""

    def hook(hello: bytes):
        if hello.startswith(b"registered"):
            end = time.perf_counter() + 0.002      # the signature check of a known key
            while time.perf_counter() < end:
                pass
        return None

    times: dict[bytes, list[float]] = {b"registered": [], b"stranger": []}
    async with LinkServer(ServerConfig(refusal_floor=floor), hook, idle) as server:
        request = {k: upgrade_request(server.config.path, f"Cookie: sid={encode_hello(k + bytes(64))}\r\n")
                   for k in times}
        for _ in range(n):
            for kind in times:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                t0 = time.perf_counter()
                writer.write(request[kind])
                await reader.readuntil(b"</html>\r\n")
                times[kind].append(time.perf_counter() - t0)
                writer.close()
    return statistics.median(times[b"registered"]), statistics.median(times[b"stranger"])


async def test_refusals_take_the_same_time_whatever_the_hook_costs():
    registered, stranger = await _refusal_times(floor=0.010)
    assert registered >= 0.010 and stranger >= 0.010
    assert abs(registered - stranger) < 0.0015, (registered, stranger)
    # the same measurement without the floor does see the hook's 2 ms (so the test can fail)
    registered, stranger = await _refusal_times(floor=0.0, n=15)
    assert registered - stranger > 0.0015, (registered, stranger)


async def test_tls_port_offers_alpn_http11_and_answers_plain_http_like_nginx(tmp_path):
    cert, key, ca = write_test_pki(str(tmp_path))
    cfg = ServerConfig(tls_cert=str(cert), tls_key=str(key))
    async with LinkServer(cfg, accept_good, idle) as server:
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx,
                                                       server_hostname="localhost")
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        writer.write(GET)
        over_tls = await reader.readuntil(b"</html>\n")
        writer.close()
        plain = await exchange(server.port, GET)
        link = await dial(ClientConfig(server.url.replace("127.0.0.1", "localhost"), ca_file=str(ca)), GOOD_HELLO)
        assert await asyncio.wait_for(link.recv(), 5) == b"welcome"
        await link.close()
    assert alpn == "http/1.1" and over_tls.startswith(b"HTTP/1.1 200 OK")
    assert plain.startswith(b"HTTP/1.1 400 Bad Request") and plain.endswith(b"<EOF>")
    assert b"<title>400 The plain HTTP request was sent to HTTPS port</title>" in plain


def test_http_front_sans_io_answers_and_stops_at_a_candidate():
    conn = HttpConnection(Site(), is_candidate=lambda r: r.path == "/secret")
    replies = conn.receive(GET + b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n" + GET)
    assert len(replies) == 1 and replies[0].data.startswith(b"HTTP/1.1 200 OK") and not replies[0].close
    assert conn.upgrade is not None and conn.upgrade.raw.startswith(b"GET /secret ") and bytes(conn.buffer) == GET
    refused = conn.refuse()
    assert [r.data.split(b"\r\n", 1)[0] for r in refused] == [b"HTTP/1.1 404 Not Found", b"HTTP/1.1 200 OK"]
    assert conn.waiting_for == "keepalive"


@pytest.mark.parametrize(("data", "status"), [
    (b"GET /" + b"a" * 9000, b"414"),                                   # no line end needed to refuse
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000, b"400"),       # header line too large
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", b"413"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", b"501"),
    (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", b"505"),
])
def test_http_front_limits(data, status):
    replies = HttpConnection(Site()).receive(data)
    assert replies[-1].close and replies[-1].data.startswith(b"HTTP/1.1 " + status)
