"""Local entry points into the stream layer: SOCKS5 (RFC 1928: CONNECT and UDP ASSOCIATE, no
authentication), HTTP CONNECT (RFC 9110 section 9.3.6), and static port forwards (issue 18).

All listen on loopback by default (userspace/service.py); each accepted connection is an
``asyncio.Protocol`` that parses the request, resolves the target (``Resolver``), opens a stream with
``Mux.open`` in a task of the Mux's TaskGroup, answers, and hands its transport to the ``Stream``
(``set_protocol``): from then on bytes move in callbacks, without a task per connection.

Names (``Resolver.resolve``): an overlay IPv4 address always works (the peer that owns it); a LAN address
inside a ``lan_via`` network goes to the peer serving it; otherwise a peer's public key in hex (at least
8 leading digits). The routing issue's names plug in as ``Resolver.names`` (a callable name -> overlay
address text, or None).

May import: userspace.streams, userspace.udp, userspace.wire. Not task-safe beyond the event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
from collections.abc import Callable

from shadowmesh_client.userspace import wire
from shadowmesh_client.userspace.streams import Mux, StreamRefused
from shadowmesh_client.userspace.udp import UdpFlows
from shadowmesh_client.userspace.wire import Reason

log = logging.getLogger(__name__)

MAX_REQUEST = 8192
"""Bytes: the longest SOCKS or HTTP CONNECT request accepted (then the connection is closed)."""

_HTTP_STATUS = {Reason.NOT_ALLOWED: b"403 Forbidden", Reason.TTL_EXPIRED: b"504 Gateway Timeout",
                Reason.HOST_UNREACHABLE: b"502 Bad Gateway", Reason.NETWORK_UNREACHABLE: b"502 Bad Gateway",
                Reason.CONNECTION_REFUSED: b"502 Bad Gateway", Reason.GENERAL: b"502 Bad Gateway"}


class Resolver:
    """host text -> (peer key, 4-byte target address), or None. ``routes``: {4-byte overlay: PeerState}."""

    def __init__(self, pump, lan_via: tuple[tuple[str, str], ...] = (),
                 names: Callable[[str], str | None] | None = None) -> None:
        self.pump = pump
        self.lan_via = tuple((ipaddress.IPv4Network(n, strict=False), ipaddress.IPv4Address(v).packed)
                             for n, v in lan_via)
        self.names = names

    def resolve(self, host: str) -> tuple[bytes, bytes] | None:
        host = host.strip().lower().rstrip(".")
        if self.names is not None:
            host = self.names(host) or host
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            return self._by_key(host)
        peer = self.pump.routes.get(ip.packed)
        if peer is not None:
            return peer.key, ip.packed
        for net, via in self.lan_via:
            if ip in net:
                peer = self.pump.routes.get(via)
                return (peer.key, ip.packed) if peer is not None else None
        return None

    def _by_key(self, prefix: str) -> tuple[bytes, bytes] | None:
        if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix):
            return None
        found = [p for k, p in self.pump.peers.items() if k.hex().startswith(prefix)]
        if len(found) != 1:
            return None
        for address, peer in self.pump.routes.items():
            if peer is found[0]:
                return peer.key, address
        return None


class _Entry(asyncio.Protocol):
    """A local connection before its stream is open (SOCKS5, HTTP CONNECT or a forward)."""

    def __init__(self, mux: Mux, resolver: Resolver, kind: str, udp: UdpFlows | None = None,
                 forward: tuple[str, int] | None = None) -> None:
        self.mux, self.resolver, self.kind, self.udp = mux, resolver, kind, udp
        self.forward = forward
        self.buf = bytearray()
        self.stage = 0
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.assoc: _Association | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.mux.entries.add(self)
        if self.forward is not None:
            transport.pause_reading()
            self._start(*self.forward)

    def connection_lost(self, exc) -> None:
        self.lost = True
        self.mux.entries.discard(self)
        if self.assoc is not None:
            self.assoc.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.forward is not None:
            # Python 3.11 starts reading after connection_made even if it paused (the transport's deferred
            # _add_reader ignores the pause): keep these bytes for the stream and pause again.
            assert self.transport is not None
            self.transport.pause_reading()
            return
        if len(self.buf) > MAX_REQUEST:
            self._fail(None)
            return
        try:
            if self.kind == "socks":
                self._socks()
            else:
                self._http()
        except (ValueError, IndexError, struct.error):
            self._fail(Reason.GENERAL)

    # ---- SOCKS5 -----------------------------------------------------------------------------------
    def _socks(self) -> None:
        buf = self.buf
        if self.stage == 0:
            if len(buf) < 2 or len(buf) < 2 + buf[1]:
                return
            if buf[0] != 5:
                raise ValueError("not SOCKS5")
            methods = buf[2:2 + buf[1]]
            del buf[:2 + buf[1]]
            assert self.transport is not None
            if 0 not in methods:
                self.transport.write(b"\x05\xff")
                self.transport.close()
                return
            self.transport.write(b"\x05\x00")
            self.stage = 1
        if self.stage == 1:
            if len(buf) < 5:
                return
            ver, cmd, _, atyp = buf[0], buf[1], buf[2], buf[3]
            if ver != 5:
                raise ValueError("not SOCKS5")
            if atyp == 1:
                end, host = 10, str(ipaddress.IPv4Address(bytes(buf[4:8])))
            elif atyp == 3:
                end = 5 + buf[4] + 2
                host = bytes(buf[5:5 + buf[4]]).decode("ascii", "replace")
            elif atyp == 4:
                end, host = 22, str(ipaddress.IPv6Address(bytes(buf[4:20])))
            else:
                self._fail(8)   # address type not supported
                return
            if len(buf) < end:
                return
            (port,) = struct.unpack_from(">H", buf, end - 2)
            del buf[:end]
            self.stage = 2
            assert self.transport is not None
            if cmd == 1:
                self.transport.pause_reading()
                self._start(host, port)
            elif cmd == 3 and self.udp is not None:
                self._udp_associate()
            else:
                self._fail(7)   # command not supported

    def _udp_associate(self) -> None:
        self.assoc = _Association(self.mux, self.resolver, self.udp)  # type: ignore[arg-type]
        if self.mux.spawn(self._bind_udp(), "socks udp") is None:
            self._fail(Reason.GENERAL)

    async def _bind_udp(self) -> None:
        assert self.transport is not None and self.assoc is not None
        assoc = self.assoc
        host = self.transport.get_extra_info("sockname")[0]
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: assoc, local_addr=(host, 0))
        except OSError:
            self._fail(Reason.GENERAL)
            return
        if self.lost:
            self.assoc.close()
            return
        self.assoc.client_ip = self.transport.get_extra_info("peername")[0]
        bound = self.assoc.transport.get_extra_info("sockname")  # type: ignore[union-attr]
        self.transport.write(b"\x05\x00\x00\x01" + ipaddress.IPv4Address(bound[0]).packed
                             + struct.pack(">H", bound[1]))

    # ---- HTTP CONNECT -----------------------------------------------------------------------------
    def _http(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.stage:
            return
        line = bytes(self.buf[:self.buf.find(b"\r\n")]).decode("latin-1")
        del self.buf[:end + 4]
        parts = line.split()
        if len(parts) != 3 or parts[0] != "CONNECT" or not parts[2].startswith("HTTP/1."):
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
            self.transport.close()
            return
        host, _, port = parts[1].rpartition(":")
        self.stage = 1
        assert self.transport is not None
        self.transport.pause_reading()
        self._start(host.strip("[]"), int(port))

    # ---- opening --------------------------------------------------------------------------------
    def _start(self, host: str, port: int) -> None:
        target = self.resolver.resolve(host)
        if target is None or not 0 < port < 65536:
            self.mux.refused += 1
            self._fail(Reason.HOST_UNREACHABLE)
            return
        if self.mux.spawn(self._open(target[0], target[1], port), "stream open") is None:
            self._fail(Reason.GENERAL)

    async def _open(self, peer_key: bytes, address: bytes, port: int) -> None:
        try:
            s = await self.mux.open(peer_key, address, port)
        except StreamRefused as exc:
            log.debug("stream to %s:%d refused: %s", ipaddress.IPv4Address(address), port, exc)
            self._fail(exc.reason)
            return
        t = self.transport
        if self.lost or t is None or t.is_closing():
            s.reset(Reason.GENERAL, "the local client left")
            return
        if self.kind == "socks":
            t.write(b"\x05\x00\x00\x01" + address + struct.pack(">H", port))
        elif self.kind == "http":
            t.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        early, self.buf = bytes(self.buf), bytearray()
        self.mux.entries.discard(self)
        t.set_protocol(s)
        s.attach(t, early)
        t.resume_reading()

    def _fail(self, reason: int | None) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if reason is not None and self.kind == "socks":
            t.write(bytes([5, reason, 0, 1]) + bytes(6))
        elif reason is not None and self.kind == "http":
            status = _HTTP_STATUS.get(Reason(reason) if reason in Reason._value2member_map_ else Reason.GENERAL,
                                      b"502 Bad Gateway")
            t.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        t.close()


class _Association(asyncio.DatagramProtocol):
    """The UDP side of one SOCKS5 UDP ASSOCIATE (RFC 1928 section 7): datagrams with a SOCKS header from
    the client's address go to the peer serving the target, one flow per target; replies come back with
    the target as source. Fragmented datagrams (FRAG != 0) are dropped, as the RFC allows."""

    def __init__(self, mux: Mux, resolver: Resolver, udp: UdpFlows) -> None:
        self.mux, self.resolver, self.udp = mux, resolver, udp
        self.transport: asyncio.DatagramTransport | None = None
        self.client_ip: str | None = None
        self.client: tuple | None = None
        self.flows: dict[tuple[bytes, bytes, int], int] = {}

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if self.client_ip is None or addr[0] != self.client_ip or len(data) < 10 or data[2] != 0:
            return
        self.client = addr
        try:
            atyp = data[3]
            if atyp == 1:
                host, end = str(ipaddress.IPv4Address(data[4:8])), 8
            elif atyp == 3:
                end = 5 + data[4]
                host = data[5:end].decode("ascii", "replace")
            else:
                return
            (port,) = struct.unpack_from(">H", data, end)
        except (ValueError, IndexError, struct.error):
            return
        target = self.resolver.resolve(host)
        if target is None:
            return
        peer_key, address = target
        fid = self.flows.get((peer_key, address, port))
        if fid is None:
            fid = self.flows[(peer_key, address, port)] = self.udp.open(peer_key, self._reply)
        self.udp.send(peer_key, fid, address, port, data[end + 2:end + 2 + wire.MAX_DATAGRAM])

    def _reply(self, address: bytes, port: int, payload: bytes) -> None:
        if self.transport is not None and self.client is not None:
            self.transport.sendto(b"\x00\x00\x00\x01" + address + struct.pack(">H", port) + payload, self.client)

    def close(self) -> None:
        for (peer_key, _, _), fid in self.flows.items():
            self.udp.close(peer_key, fid)
        self.flows.clear()
        if self.transport is not None:
            self.transport.close()
