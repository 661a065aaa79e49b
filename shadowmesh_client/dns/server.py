"""The node's DNS server: device names from the directory and signed records, on the overlay addresses.

Issue 14 "Names". Uses dnslib (0.9.26: pure Python, maintained, parses and builds DNS messages only,
no resolver or threads of its own: the asyncio loop stays in charge; dnspython's async resolver would
bring a second I/O model for a server that answers a handful of names). Behaviour:

* a query inside the zone ``NETWORK.SUFFIX``: A -> the device's overlay IPv4, AAAA -> its overlay IPv6,
  authoritative (AA); an unknown name -> NXDOMAIN; a known name with another type -> NOERROR, no
  answer (RFC 2308 NODATA); TTL ``TTL`` seconds, short so that a revocation is seen quickly;
* any other name: forwarded to ``forward`` (the system's resolvers, or one given address) and the answer
  relayed unchanged, or REFUSED when forwarding is off. At most ``MAX_FORWARDS`` forwards are in flight;
  beyond that, and when the upstream does not answer within ``FORWARD_TIMEOUT``, SERVFAIL.

Only UDP (device names fit in 512 bytes; a forwarded answer larger than that comes back truncated and
the client retries over TCP to its other resolvers).

Concurrency: ``run()`` owns the sockets and every forwarding task (a TaskGroup); cancel it to stop: the
sockets close after the tasks are done. ``names`` is read at each query (the owner replaces it).
May import: routing.names, dnslib, asyncio.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from pathlib import Path

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord  # type: ignore[import-untyped]

from shadowmesh_client.routing.names import NameTable

log = logging.getLogger(__name__)

TTL = 5
"""Seconds answers may be cached (a revoked device's name is gone from caches after this)."""
FORWARD_TIMEOUT = 2.0
"""Seconds to wait for the upstream resolver."""
MAX_FORWARDS = 64
"""Forwarded queries in flight at once."""
MAX_QUERY_BYTES = 512


def answer(names: NameTable, data: bytes) -> bytes | None | DNSRecord:
    """The reply to query ``data``: bytes (answered here), a parsed DNSRecord (not ours: forward it), or
    None (not a DNS query: no reply at all, as a server does with garbage)."""
    try:
        q = DNSRecord.parse(data)
    except Exception:  # dnslib raises DNSError and others on garbage
        return None
    if q.header.qr or not q.questions:
        return None
    qname = str(q.q.qname)
    if not names.in_zone(qname):
        return q
    reply = q.reply()   # QR, AA (dnslib sets aa=1), RD copied
    entry = names.lookup(qname)
    if entry is None:
        reply.header.rcode = RCODE.NXDOMAIN
        return bytes(reply.pack())
    qtype = q.q.qtype
    if qtype in (QTYPE.A, QTYPE.ANY):
        reply.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(str(entry.v4)), ttl=TTL))
    if qtype in (QTYPE.AAAA, QTYPE.ANY) and entry.v6 is not None:
        reply.add_answer(RR(q.q.qname, QTYPE.AAAA, rdata=AAAA(str(entry.v6)), ttl=TTL))
    return bytes(reply.pack())


def system_resolvers(path: str = "/etc/resolv.conf", exclude: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """``nameserver`` lines of resolv.conf (minus ``exclude``: our own addresses, so we never loop)."""
    out = []
    try:
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver" and parts[1] not in exclude:
                out.append((parts[1], 53))
    except OSError:
        pass
    return out


def parse_forward(spec: str | None, own: tuple[str, ...]) -> list[tuple[str, int]]:
    """``"system"`` -> resolv.conf's servers; ``"IP"``/``"IP:PORT"``/``"[IPv6]:PORT"`` -> that one; None -> []."""
    if not spec:
        return []
    if spec == "system":
        return system_resolvers(exclude=own)
    if spec.startswith("["):
        host, _, port = spec[1:].partition("]:")
        return [(host.rstrip("]"), int(port or 53))]
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return [(host, int(port))]
    return [(spec, 53)]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.server.on_query(self, data, addr)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, done: asyncio.Future) -> None:
        self.done = done

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class DnsServer:
    """Serves ``names()`` on each of ``addresses`` (IPs) at ``port``."""

    def __init__(self, names: Callable[[], NameTable], addresses: list[str], port: int = 53, *,
                 forward: list[tuple[str, int]] | None = None) -> None:
        self._names, self.addresses, self.port = names, addresses, port
        self.forward = forward or []
        self._group: asyncio.TaskGroup | None = None
        self._in_flight = 0
        self.bound: list[tuple[str, int]] = []
        self.ready = asyncio.Event()
        self.queries = self.answered = self.forwarded = self.refused = self.failed = 0

    def counters(self) -> dict:
        return {"dns_queries": self.queries, "dns_answered": self.answered, "dns_forwarded": self.forwarded,
                "dns_refused": self.refused, "dns_failed": self.failed}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        transports = []
        try:
            for addr in self.addresses:
                t, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=(addr, self.port))
                transports.append(t)
                self.bound.append(t.get_extra_info("sockname")[:2])
            self.ready.set()
            async with asyncio.TaskGroup() as group:
                self._group = group
                try:
                    await asyncio.Future()
                finally:
                    self._group = None
        finally:
            for t in transports:
                t.close()

    def on_query(self, proto: _Protocol, data: bytes, addr) -> None:
        self.queries += 1
        if len(data) > MAX_QUERY_BYTES or proto.transport is None:
            return
        out = answer(self._names(), data)
        if out is None:
            return
        if isinstance(out, bytes):
            self.answered += 1
            proto.transport.sendto(out, addr)
            return
        if not self.forward or self._group is None:
            self.refused += 1
            reply = out.reply()
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
            proto.transport.sendto(reply.pack(), addr)
            return
        if self._in_flight >= MAX_FORWARDS:
            self._fail(proto, out, addr)
            return
        self._in_flight += 1
        self._group.create_task(self._forward(proto, out, data, addr))

    def _fail(self, proto: _Protocol, q: DNSRecord, addr) -> None:
        self.failed += 1
        reply = q.reply()
        reply.header.aa = 0
        reply.header.rcode = RCODE.SERVFAIL
        if proto.transport is not None:
            proto.transport.sendto(reply.pack(), addr)

    async def _forward(self, proto: _Protocol, q: DNSRecord, data: bytes, addr) -> None:
        loop = asyncio.get_running_loop()
        try:
            for upstream in self.forward:
                done: asyncio.Future = loop.create_future()
                try:
                    t, _ = await loop.create_datagram_endpoint(functools.partial(_Upstream, done),
                                                               remote_addr=upstream)
                except OSError:
                    continue
                try:
                    t.sendto(data)
                    reply = await asyncio.wait_for(done, FORWARD_TIMEOUT)
                except (TimeoutError, OSError):
                    continue
                finally:
                    t.close()
                if proto.transport is not None:
                    self.forwarded += 1
                    proto.transport.sendto(reply, addr)
                return
            self._fail(proto, q, addr)
        finally:
            self._in_flight -= 1
