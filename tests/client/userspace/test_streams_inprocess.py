"""The stream layer in whole nodes over MemoryTransport (no root, no TUN): SOCKS5 CONNECT and UDP
ASSOCIATE, HTTP CONNECT, forwards, exposed ports, refusals, half-close, 50 MB with matching SHA-256,
1,000 concurrent streams without leaks, and the packet sink answering TUN peers. Targets are real
loopback sockets (the node connects to them as it would in production)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import socket
import struct

from shadowmesh_client.userspace.policy import Expose, Forward
from shadowmesh_client.userspace.settings import StreamSettings
from shadowmesh_client.userspace.sink import PacketSink
from tests.client.node.helpers import Mesh, ipv4, wait_for
from tests.client.userspace.socks import socks_connect, socks_udp_query


def node(mesh: Mesh, name: str, *, userspace: bool = True, **settings):
    """``mesh.node`` for a userspace node: no TUN device is given, so the node makes its PacketSink."""
    m = mesh.node(name, userspace=userspace, **settings)
    if userspace:
        m.daemon._given_tun = None
        m.tun = None
    return m


def run(coro, timeout: float = 90):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def _echo_server():
    """A TCP echo server on 127.0.0.1 that echoes until EOF, then half-closes (like ssh's shell)."""
    async def handle(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=2048)  # 1,000 concurrent streams
    return server, server.sockets[0].getsockname()[1]


async def _pair(mesh: Mesh, expose_port: int, *, b_userspace: bool = True, relay_only: bool = False, **a_streams):
    """Node a (userspace, SOCKS on a free port) and node b (exposing ``expose_port`` as overlay port 80)."""
    if relay_only:
        mesh.relay()
    a = node(mesh, "a", endpoint=not relay_only,
             streams=StreamSettings(socks="127.0.0.1:0", http="127.0.0.1:0", **a_streams))
    b = node(mesh, "b", endpoint=not relay_only, userspace=b_userspace,
             streams=StreamSettings(expose=(Expose(80, "127.0.0.1", expose_port),
                                            Expose(53, "127.0.0.1", expose_port))))
    mesh.start()
    await mesh.ready()
    await wait_for(lambda: a.path(b) is not None and b.path(a) is not None, 10, "a path between a and b")
    return a, b


def test_socks5_echo_session_with_half_close_both_directly_and_through_the_relay():
    async def scenario(relay_only):
        server, port = await _echo_server()
        mesh = Mesh()
        try:
            a, b = await _pair(mesh, port, relay_only=relay_only)
            if relay_only:
                assert a.path(b).startswith("relay:")
            reader, writer = await socks_connect(a.daemon.streams.ports["socks"], b.overlay, 80)
            for line in (b"SSH-2.0-test\r\n", b"ls -l\n", os.urandom(100_000)):
                writer.write(line)
                await writer.drain()
                assert await reader.readexactly(len(line)) == line
            writer.write_eof()   # half-close: the echo server sees EOF, answers with its own
            assert await reader.read() == b""
            writer.close()
            await wait_for(lambda: a.daemon.streams.mux.count() == 0 and b.daemon.streams.mux.count() == 0, 5,
                           "streams forgotten on both sides")
        finally:
            await mesh.stop()
            server.close()

    run(scenario(False))
    run(scenario(True))


def test_50_megabytes_through_the_proxy_keep_their_sha256():
    async def scenario():
        digest_at_server = asyncio.get_running_loop().create_future()

        async def sink(reader, writer):
            h, n = hashlib.sha256(), 0
            while data := await reader.read(1 << 20):
                h.update(data)
                n += len(data)
            digest_at_server.set_result((n, h.hexdigest()))
            writer.close()

        server = await asyncio.start_server(sink, "127.0.0.1", 0)
        mesh = Mesh()
        try:
            a, b = await _pair(mesh, server.sockets[0].getsockname()[1])
            reader, writer = await socks_connect(a.daemon.streams.ports["socks"], b.overlay, 80)
            h = hashlib.sha256()
            block = os.urandom(1 << 20)
            for i in range(50):
                chunk = block[i:] + block[:i]
                h.update(chunk)
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()
            assert await digest_at_server == (50 << 20, h.hexdigest())
            writer.close()
        finally:
            await mesh.stop()
            server.close()

    run(scenario())


def test_refused_targets_get_socks_and_http_errors_and_nothing_is_connected():
    async def scenario():
        server, port = await _echo_server()
        mesh = Mesh()
        try:
            a, b = await _pair(mesh, port)
            socks = a.daemon.streams.ports["socks"]
            # b exposes 80 and 53 only: 22 is refused by b's policy (SOCKS reply 2: not allowed)
            assert await socks_connect(socks, b.overlay, 22, expect=2) is None
            # an address that no peer owns: host unreachable (4), refused before anything is sent
            assert await socks_connect(socks, "100.64.99.99", 80, expect=4) is None
            # a LAN address through b without b allowing it
            assert await socks_connect(socks, "10.1.2.3", 80, expect=4) is None
            r, w = await asyncio.open_connection("127.0.0.1", a.daemon.streams.ports["http"])
            w.write(f"CONNECT {b.overlay}:22 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert (await r.readline()).startswith(b"HTTP/1.1 403")
            w.close()
            assert b.daemon.streams.mux.refused == 2 and b.daemon.streams.mux.accepted == 0
        finally:
            await mesh.stop()
            server.close()

    run(scenario())


def test_http_connect_opens_a_stream():
    async def scenario():
        server, port = await _echo_server()
        mesh = Mesh()
        try:
            a, b = await _pair(mesh, port)
            r, w = await asyncio.open_connection("127.0.0.1", a.daemon.streams.ports["http"])
            w.write(f"CONNECT {b.overlay}:80 HTTP/1.1\r\nHost: {b.overlay}\r\n\r\n".encode())
            assert await r.readuntil(b"\r\n\r\n") == b"HTTP/1.1 200 Connection established\r\n\r\n"
            w.write(b"over http connect")
            assert await r.readexactly(17) == b"over http connect"
            w.close()
        finally:
            await mesh.stop()
            server.close()

    run(scenario())


def test_forward_from_the_config_and_expose_reach_the_other_side():
    async def scenario():
        server, port = await _echo_server()
        mesh = Mesh()
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        local = free.getsockname()[1]
        free.close()
        try:
            a = node(mesh, "a")
            b = node(mesh, "b", streams=StreamSettings(expose=(Expose(2222, "127.0.0.1", port),)))
            a.daemon.settings = _with_streams(a.daemon.settings, StreamSettings(
                forwards=(Forward("127.0.0.1", local, b.overlay, 2222),)))
            mesh.start()
            await mesh.ready()
            r, w = await asyncio.open_connection("127.0.0.1", local)
            request = b"GET / HTTP/1.1\r\n\r\n"   # spoken at once: a forward must never parse it as a proxy
            w.write(request)
            assert await r.readexactly(len(request)) == request
            w.close()
        finally:
            await mesh.stop()
            server.close()

    run(scenario())


def _with_streams(settings, streams):
    from dataclasses import replace

    return replace(settings, streams=streams)


def test_dns_over_socks5_udp_associate():
    async def scenario():
        loop = asyncio.get_running_loop()

        class Dns(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):   # answer every query with A 100.64.1.2
                answer = data[:2] + b"\x81\x80" + data[4:6] + b"\x00\x01\x00\x00\x00\x00" + data[12:] \
                    + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([100, 64, 1, 2])
                self.transport.sendto(answer, addr)

        transport, _ = await loop.create_datagram_endpoint(Dns, local_addr=("127.0.0.1", 0))
        dns_port = transport.get_extra_info("sockname")[1]
        mesh = Mesh()
        try:
            a, b = await _pair(mesh, dns_port)
            query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04host\x04mesh\x00\x00\x01\x00\x01"
            answer = await socks_udp_query(a.daemon.streams.ports["socks"], b.overlay, 53, query)
            assert answer[:2] == b"\x12\x34" and answer[-4:] == bytes([100, 64, 1, 2])
        finally:
            await mesh.stop()
            transport.close()

    run(scenario())


def test_a_thousand_concurrent_streams_and_no_leak():
    async def scenario():
        server, port = await _echo_server()
        mesh = Mesh()
        try:
            a, b = await _pair(mesh, port)
            socks = a.daemon.streams.ports["socks"]

            async def one(i):
                r, w = await socks_connect(socks, b.overlay, 80)
                msg = struct.pack(">I", i) * 64
                w.write(msg)
                await w.drain()
                assert await r.readexactly(len(msg)) == msg
                return r, w

            async def round_():
                pairs = await asyncio.gather(*(one(i) for i in range(1000)))
                assert a.daemon.streams.mux.count() == 1000 and b.daemon.streams.mux.count() == 1000
                for _, w in pairs:
                    w.close()
                await wait_for(lambda: a.daemon.streams.mux.count() == 0 and b.daemon.streams.mux.count() == 0,
                               20, "every stream forgotten")

            await round_()
            baseline = await _settled_streams()
            await round_()
            # a closed socket's transport lets go of its Stream in connection_lost, a loop turn after the
            # close (the count above can reach 0 first); a leak is what is still alive after that
            await wait_for(lambda: _live_streams() <= baseline, 5, "the second round's streams collected")
            assert len(a.daemon.streams.mux.entries) == 0
        finally:
            await mesh.stop()
            server.close()

    run(scenario(), timeout=180)


def _live_streams() -> int:
    """Stream objects alive after a full collection."""
    from shadowmesh_client.userspace.streams import Stream

    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Stream))


async def _settled_streams() -> int:
    """``_live_streams()`` once the transports closed last have run their connection_lost (it stops falling)."""
    count = _live_streams()
    for _ in range(50):
        await asyncio.sleep(0.02)
        now = _live_streams()
        if now >= count:
            return now
        count = now
    return count


def test_the_packet_sink_answers_a_tun_peer_with_ping_replies_and_tcp_resets():
    async def scenario():
        mesh = Mesh()
        try:
            tun_node = mesh.node("t")
            user = node(mesh, "u")
            mesh.start()
            await mesh.ready()
            await wait_for(lambda: tun_node.path(user) is not None, 10, "a path")
            assert isinstance(user.daemon.tun, PacketSink)   # no TUN device was opened
            echo = ipv4(tun_node.overlay, user.overlay, b"\x08\x00\xf7\xfe\x00\x01\x00\x00", proto=1)
            tun_node.tun.inject(echo)
            reply = await wait_for(lambda: next((p for p in tun_node.tun.written if p[9] == 1), None), 5, "reply")
            assert reply[12:16] == echo[16:20] and reply[20] == 0   # echo reply from the userspace node
            syn = ipv4(tun_node.overlay, user.overlay,
                       struct.pack(">HHIIBBHHH", 40000, 22, 1000, 0, 5 << 4, 0x02, 65535, 0, 0), proto=6)
            tun_node.tun.inject(syn)
            rst = await wait_for(lambda: next((p for p in tun_node.tun.written if p[9] == 6), None), 5, "rst")
            sport, dport, seq, ack, _, flags = struct.unpack_from(">HHIIBB", rst, 20)
            assert (sport, dport, ack, flags) == (22, 40000, 1001, 0x14)   # RST+ACK for the SYN
        finally:
            await mesh.stop()

    run(scenario())


def test_a_revoked_peers_streams_are_reset_at_once():
    """Revocation closes the peer (node/reconcile.py) and, through ``on_peer_gone``, resets its streams
    immediately instead of on the next send."""
    async def scenario():
        server, port = await _echo_server()
        mesh = Mesh()
        try:
            a, b = await _pair(mesh, port)
            reader, writer = await socks_connect(a.daemon.streams.ports["socks"], b.overlay, 80)
            writer.write(b"hello")
            await writer.drain()
            assert await reader.readexactly(5) == b"hello"
            assert a.daemon.streams.mux.count() == 1
            mesh.registry.revoke(b.device)
            mesh.registry.sync()
            await wait_for(lambda: a.daemon.streams.mux.count() == 0, 5, "a's stream to the revoked peer reset")
            assert await asyncio.wait_for(reader.read(), 5) == b""   # the SOCKS client sees the stream end
            writer.close()
        finally:
            await mesh.stop()
            server.close()

    run(scenario())
