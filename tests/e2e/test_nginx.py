"""nginx as a TLS-terminating WebSocket reverse proxy (tests/e2e/nginx.py), with a websockets echo backend."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from lab.netns import Topology
from shadowmesh_client.tun.netns import enter_netns

from .nginx import Nginx, make_tls

PREFIX = "/api/v1/ws/"


def client_context(ca: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    return ctx


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def group_members(pgid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(d.name))
    return pids


def test_wss_through_nginx_reaches_the_websocket_backend(nginx_factory, tmp_path: Path) -> None:
    seen: list[tuple[str, str | None]] = []

    async def handler(ws: ServerConnection) -> None:
        seen.append((ws.request.path, ws.request.headers.get("X-Forwarded-For")))
        await _echo(ws)

    async def main() -> tuple[list[bytes], list[bytes]]:
        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=2**21) as server:
            port = server.sockets[0].getsockname()[1]
            nginx: Nginx = await asyncio.to_thread(nginx_factory, f"127.0.0.1:{port}", path_prefix=PREFIX)
            messages = [b"\x00" * 10, os.urandom(1 << 20), b"last"]
            async with connect(nginx.url(PREFIX + "r4nd0m"), ssl=client_context(nginx.tls.ca_cert),
                               server_hostname="localhost", compression=None, max_size=2**21) as ws:
                for m in messages:
                    await ws.send(m)
                got = [await ws.recv() for _ in messages]
                await ws.ping()
            return messages, got

    sent, got = asyncio.run(main())
    assert got == sent
    assert seen == [(PREFIX + "r4nd0m", "127.0.0.1")]


def test_client_that_does_not_trust_the_ca_is_refused(nginx_factory) -> None:
    nginx = nginx_factory("127.0.0.1:9", path_prefix=PREFIX)

    async def main() -> None:
        async with connect(nginx.url(PREFIX + "x"), ssl=client_context(None), server_hostname="localhost"):
            pass

    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(main())
    # ...while the CA file makes the same certificate acceptable to a plain HTTPS client.
    conn = http.client.HTTPSConnection(nginx.host, nginx.port, context=client_context(nginx.tls.ca_cert), timeout=5)
    conn.request("GET", "/elsewhere")
    assert conn.getresponse().status == 404  # outside the prefix: not proxied
    conn.close()


def test_stop_ends_master_and_workers(nginx_factory) -> None:
    nginx = nginx_factory("127.0.0.1:9")
    members = group_members(nginx.proc.pid)
    assert nginx.proc.pid in members and len(members) >= 2  # master + worker
    nginx.stop()
    nginx.stop()
    assert group_members(nginx.proc.pid) == []
    assert not nginx.workdir.exists()


ECHO_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from websockets.asyncio.server import serve
    async def echo(ws):
        async for m in ws:
            await ws.send(m)
    async def main():
        async with serve(echo, "127.0.0.1", int(sys.argv[1]), compression=None):
            print("ready", flush=True)
            await asyncio.Future()
    asyncio.run(main())
    """
)


def test_nginx_in_a_namespace_fronts_a_relay_for_another_host(mesh: Topology, nginx_factory, tmp_path: Path) -> None:
    relay, b = mesh.hosts["relay"], mesh.hosts["b"]
    backend = mesh.spawn("relay", [sys.executable, "-c", ECHO_SERVER, "8080"], stdout=subprocess.PIPE, text=True)
    assert backend.stdout.readline().strip() == "ready"
    tls = make_tls(tmp_path / "tls", ("relay.test",), (relay.ip,))
    nginx = nginx_factory("127.0.0.1:8080", listen=relay.ip, port=443, tls=tls, topology=mesh, netns="relay")
    assert nginx.url("/x") == f"wss://{relay.ip}:443/x"

    async def main() -> bytes:
        with enter_netns(b.netns):  # device B behind its NAT
            sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (relay.ip, 443))
        async with connect(nginx.url("/api/v1/ws/abc"), sock=sock, ssl=client_context(tls.ca_cert),
                           server_hostname="relay.test") as ws:
            await ws.send(b"through the proxy")
            return await ws.recv()

    assert asyncio.run(main()) == b"through the proxy"
