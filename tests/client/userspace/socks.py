"""A minimal SOCKS5 client for the tests (RFC 1928, no authentication): CONNECT and one UDP query."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct


async def socks_connect(port: int, host: str, dport: int, *, expect: int = 0):
    """CONNECT through the proxy on 127.0.0.1:``port``; (reader, writer) on success. With ``expect`` (a
    SOCKS reply code other than 0) the reply must be that code; returns None."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    name = host.encode()
    writer.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", dport))
    reply = await reader.readexactly(10)
    assert reply[1] == expect, f"SOCKS reply {reply[1]}, expected {expect}"
    if expect:
        assert await reader.read() == b""   # the proxy closes after a refusal
        writer.close()
        return None
    return reader, writer


async def socks_udp_query(port: int, host: str, dport: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """One datagram to ``host:dport`` through a UDP ASSOCIATE; returns the reply's payload."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    writer.write(b"\x05\x03\x00\x01" + bytes(4) + bytes(2))
    reply = await reader.readexactly(10)
    assert reply[1] == 0, f"UDP ASSOCIATE refused: {reply[1]}"
    relay = (str(ipaddress.IPv4Address(reply[4:8])), struct.unpack(">H", reply[8:10])[0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    loop = asyncio.get_running_loop()
    try:
        header = b"\x00\x00\x00\x01" + ipaddress.IPv4Address(host).packed + struct.pack(">H", dport)
        await loop.sock_sendto(sock, header + payload, relay)
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), timeout)
        assert data[:4] == b"\x00\x00\x00\x01" and data[4:8] == ipaddress.IPv4Address(host).packed
        return data[10:]
    finally:
        sock.close()
        writer.close()
