"""What a scanner sees: every refused request gets the same static nginx-like page."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
from transport_helpers import raw_http, upgrade_request, without_date

from shadowmesh_client.transport import ClientConfig, ServerConfig
from shadowmesh_client.transport.ws import LinkServer, dial
from shadowmesh_client.transport.ws.decoy import encode_hello

GOOD_HELLO = b"\x01good-hello" + bytes(100)


def accept_good(hello: bytes):
    return (b"welcome", "peer") if hello == GOOD_HELLO else None


async def idle(link):
    async for _ in link:
        pass


async def test_wrong_path_and_failed_auth_get_identical_pages():
    async with LinkServer(ServerConfig(), accept_good, idle) as server:
        path = server.config.path
        plain_wrong = await raw_http(server.port, b"GET /api/v1/ws/guess HTTP/1.1\r\nHost: x\r\n\r\n")
        plain_secret = await raw_http(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        upgrade_wrong = await raw_http(server.port, upgrade_request("/api/v1/ws/guess"))
        upgrade_no_hello = await raw_http(server.port, upgrade_request(path))
        upgrade_bad_hello = await raw_http(
            server.port, upgrade_request(path, f"Cookie: sid={encode_hello(b'forged')}\r\n"))
        upgrade_garbage_cookie = await raw_http(server.port, upgrade_request(path, "Cookie: sid=!!!\r\n"))
        assert server.auth_failures == 1 and server.links_opened == 0

    assert plain_wrong.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"\r\nServer: nginx\r\n" in plain_wrong and b"websockets" not in plain_wrong.lower()
    assert plain_wrong.endswith(b"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
    reference = without_date(plain_wrong)
    for other in (plain_secret, upgrade_wrong, upgrade_no_hello, upgrade_bad_hello, upgrade_garbage_cookie):
        assert without_date(other) == reference


async def test_root_is_a_welcome_page_and_query_strings_are_ignored():
    async with LinkServer(ServerConfig(), accept_good, idle) as server:
        root = await raw_http(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        queried = await raw_http(server.port, f"GET {server.config.path}?a=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert root.startswith(b"HTTP/1.1 200 OK\r\n") and b"<title>Welcome to nginx!</title>" in root
    assert queried.startswith(b"HTTP/1.1 404 Not Found\r\n")


async def test_hook_exception_and_oversized_hello_are_refused_like_anything_else():
    calls = []

    def exploding(hello):
        calls.append(hello)
        raise RuntimeError("node bug")

    cfg = ServerConfig(max_hello_bytes=512)
    async with LinkServer(cfg, exploding, idle) as server:
        reference = without_date(await raw_http(server.port, upgrade_request("/nope")))
        crashed = await raw_http(server.port, upgrade_request(cfg.path, f"Cookie: sid={encode_hello(b'x')}\r\n"))
        huge = await raw_http(server.port, upgrade_request(cfg.path, f"Cookie: sid={encode_hello(bytes(513))}\r\n"))
        # the server still serves after the hook raised
        again = await raw_http(server.port, upgrade_request("/nope"))
    assert without_date(crashed) == reference == without_date(huge) == without_date(again)
    assert calls == [b"x"]  # the oversized hello never reached the hook


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


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx (Debian nginx-light) not installed")
async def test_decoy_matches_a_real_nginx(tmp_path):
    """Against a stock nginx with server_tokens off and keep-alive off: same status line, same header
    names in the same order, same 404 body."""
    with socket.socket() as probe:   # a free port for nginx
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off; pid {tmp_path}/pid; error_log {tmp_path}/err.log;\nevents {{}}\n"
        f"http {{ access_log off; server_tokens off; keepalive_timeout 0; default_type text/html;\n"
        f"  server {{ listen 127.0.0.1:{port}; root /nonexistent-shadowmesh-www; }} }}\n")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        real = b""
        while time.monotonic() < deadline and not real.startswith(b"HTTP/1.1"):
            try:
                real = await raw_http(port, b"GET /api/v1/ws/x HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                pass
            await asyncio.sleep(0.05)
        assert real.startswith(b"HTTP/1.1"), (tmp_path / "err.log").read_text()
        async with LinkServer(ServerConfig(), accept_good, idle) as server:
            ours = await raw_http(server.port, b"GET /api/v1/ws/x HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)

    def shape(response: bytes):
        head, _, body = response.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        return lines[0], [line.split(b":")[0] for line in lines[1:]], body

    assert shape(ours) == shape(real)
