"""The node's DNS server on real UDP sockets (127.0.0.1, a free port): A/AAAA, NXDOMAIN, NODATA, forward
to an upstream (another DnsServer standing in for the system resolver), REFUSED when forwarding is off,
garbage ignored, a name gone as soon as the table drops it (revocation)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from dnslib import QTYPE, RCODE, DNSRecord

from shadowmesh_client.dns.server import DnsServer, parse_forward, system_resolvers
from shadowmesh_client.routing.names import NameTable

ZONE = "lab.shadowmesh.internal"
KEY = b"\x01" * 32


def _table(present: bool = True) -> NameTable:
    devices = [(KEY, (1, 0), ipaddress.IPv4Address("100.64.0.1"), ipaddress.IPv6Address("fd12::6440:1"), "alpha")]
    return NameTable.build(ZONE, devices if present else [])


async def _ask(port: int, name: str, qtype: str = "A", raw: bytes | None = None) -> DNSRecord | None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, raw if raw is not None else DNSRecord.question(name, qtype).pack())
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 1.0)
        except TimeoutError:
            return None
        return DNSRecord.parse(data)
    finally:
        sock.close()


def test_answers_names_forwards_and_refuses():
    async def scenario():
        table = {"t": _table()}
        upstream_names = NameTable.build("example.org", [(b"\x02" * 32, (1, 0), ipaddress.IPv4Address("192.0.2.7"),
                                                           None, "www")])
        upstream = DnsServer(lambda: upstream_names, ["127.0.0.1"], 0)
        async with asyncio.TaskGroup() as g:
            tu = g.create_task(upstream.run())
            await upstream.ready.wait()
            server = DnsServer(lambda: table["t"], ["127.0.0.1"], 0, forward=[upstream.bound[0]])
            refusing = DnsServer(lambda: table["t"], ["127.0.0.1"], 0)
            ts, tr = g.create_task(server.run()), g.create_task(refusing.run())
            await server.ready.wait()
            await refusing.ready.wait()
            port, rport = server.bound[0][1], refusing.bound[0][1]

            a = await _ask(port, f"alpha.{ZONE}", "A")
            assert a.header.rcode == RCODE.NOERROR and a.header.aa and str(a.rr[0].rdata) == "100.64.0.1"
            aaaa = await _ask(port, f"ALPHA.{ZONE}.", "AAAA")
            assert str(aaaa.rr[0].rdata) == "fd12::6440:1" and aaaa.rr[0].rtype == QTYPE.AAAA
            nx = await _ask(port, f"nobody.{ZONE}")
            assert nx.header.rcode == RCODE.NXDOMAIN and not nx.rr
            nodata = await _ask(port, f"alpha.{ZONE}", "MX")
            assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr
            fwd = await _ask(port, "www.example.org", "A")
            assert str(fwd.rr[0].rdata) == "192.0.2.7" and server.forwarded == 1
            refused = await _ask(rport, "www.example.org", "A")
            assert refused.header.rcode == RCODE.REFUSED and refusing.refused == 1
            assert await _ask(port, "", raw=b"\x00garbage") is None          # no answer to garbage
            table["t"] = _table(present=False)                                # revoked: gone at once
            gone = await _ask(port, f"alpha.{ZONE}")
            assert gone.header.rcode == RCODE.NXDOMAIN
            for t in (tu, ts, tr):
                t.cancel()

    asyncio.run(scenario())


def test_forward_specs(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 10.0.0.53\nnameserver 100.64.0.1\nsearch lan\n")
    assert system_resolvers(str(conf), exclude=("100.64.0.1",)) == [("10.0.0.53", 53)]
    assert parse_forward(None, ()) == []
    assert parse_forward("9.9.9.9", ()) == [("9.9.9.9", 53)]
    assert parse_forward("9.9.9.9:5353", ()) == [("9.9.9.9", 5353)]
    assert parse_forward("[2001:db8::53]:5353", ()) == [("2001:db8::53", 5353)]
