"""The Linux TUN device in a real namespace: configure, read bursts, write, IPv6 off, clean close."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import select
import socket
import struct

import pytest

from lab.netns import Topology
from shadowmesh_client.errors import ConfigError, TunError
from shadowmesh_client.tun import configure, enter_netns, ipv4_dst, ipv4_src, open_tun

ME = "100.64.0.1"
PEER = "100.64.0.2"


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4/UDP packet with a valid header checksum (UDP checksum 0: allowed over IPv4)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + udp


@pytest.fixture
def ns(topology: Topology) -> str:
    return topology.add_namespace("tun")


def udp_socket(ns: str, port: int = 0) -> socket.socket:
    with enter_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    return s


def wait_readable(fd: int, timeout: float = 2.0) -> None:
    assert select.select([fd], [], [], timeout)[0], "nothing to read"


def test_configure_sets_address_mtu_routes_and_link_up_idempotently(topology: Topology, ns: str) -> None:
    with open_tun("smtun%d", netns=ns) as dev:
        for _ in range(2):
            configure(dev.name, f"{ME}/10", mtu=65000, routes=["10.99.0.0/16"], netns=ns)
        link = json.loads(topology.ip(ns, "-j", "addr", "show", "dev", dev.name))[0]
        assert link["mtu"] == 65000 == dev.mtu
        assert "UP" in link["flags"]
        assert [(a["family"], a["local"], a["prefixlen"]) for a in link["addr_info"]] == [("inet", ME, 10)]
        routes = topology.ip(ns, "-4", "route", "show", "dev", dev.name)
        assert "100.64.0.0/10" in routes and "10.99.0.0/16" in routes
        assert topology.run(ns, ["sysctl", "-n", f"net.ipv6.conf.{dev.name}.disable_ipv6"]).stdout.strip() == "1"
    # The device lives exactly as long as its file descriptor.
    assert dev.name not in topology.ip(ns, "link", "show")


def test_configure_errors_are_actionable(ns: str) -> None:
    with pytest.raises(TunError, match="open the tun device first"):
        configure("smtnone0", f"{ME}/10", netns=ns)
    with pytest.raises(ConfigError, match="IPv4"):
        configure("smtnone0", "fd00::1/64", netns=ns)
    with pytest.raises(ConfigError, match="100.64.0.1/10"):
        configure("smtnone0", "not-an-address", netns=ns)
    with pytest.raises(ConfigError, match="mtu"):
        configure("smtnone0", f"{ME}/10", mtu=70000, netns=ns)
    with pytest.raises(TunError, match="does not exist"):
        configure("smtnone0", f"{ME}/10", netns="smt-no-such-namespace")


@pytest.mark.parametrize("mtu,size", [(1400, 1372), (65000, 64972)])
def test_packets_sent_into_the_overlay_come_out_of_read_batch(ns: str, mtu: int, size: int) -> None:
    with open_tun("smtun%d", mtu=mtu, netns=ns) as dev:
        configure(dev.name, f"{ME}/10", netns=ns)
        s = udp_socket(ns)
        payloads = [bytes([i]) * size for i in range(10)]
        for p in payloads:
            s.sendto(p, (PEER, 9000))
        wait_readable(dev.fileno())
        first = dev.read_batch(4)
        rest = dev.read_batch(64)
        assert len(first) == 4
        got = first + rest
        assert [p[28:] for p in got] == payloads  # IPv4 (20) + UDP (8) headers, then the payload
        assert {ipv4_dst(p) for p in got} == {int(ipaddress.IPv4Address(PEER))}
        assert {ipv4_src(p) for p in got} == {int(ipaddress.IPv4Address(ME))}
        assert max(len(p) for p in got) == mtu
        assert dev.read_batch() == []
        assert dev.stats.rx_packets == 10 and dev.stats.rx_dropped_non_ipv4 == 0
        s.close()


def test_written_packets_reach_a_local_socket(ns: str) -> None:
    with open_tun("smtun%d", mtu=65000, netns=ns) as dev:
        configure(dev.name, f"{ME}/10", netns=ns)
        s = udp_socket(ns, 9001)
        small = udp_packet(PEER, ME, 5555, 9001, b"hello")
        big = udp_packet(PEER, ME, 5555, 9001, b"B" * 64000)
        # The kernel refuses a packet whose version nibble is neither 4 nor 6; one bad packet
        # does not stop the batch.
        assert dev.write_batch([small, b"\x00garbage", big]) == 2
        assert dev.stats.tx_errors == 1
        s.settimeout(2)
        assert s.recvfrom(70000) == (b"hello", (PEER, 5555))
        assert s.recvfrom(70000)[0] == b"B" * 64000
        s.close()


def test_fresh_link_sends_no_ipv6_and_non_ipv4_is_dropped(topology: Topology, ns: str) -> None:
    # IPv6 stays on in this namespace's defaults to show that configure() switches it off per device.
    topology.sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "0")
    with open_tun("smtun%d", netns=ns) as dev:
        configure(dev.name, f"{ME}/10", netns=ns)
        assert not select.select([dev.fileno()], [], [], 0.3)[0]
        assert dev.read_batch() == []
    # Without disable_ipv6 the kernel's IPv6 traffic (router solicitation, MLD) reaches the reader,
    # and ipv4_only drops it.
    with open_tun("smtun%d", netns=ns) as dev:
        configure(dev.name, f"{ME}/10", netns=ns, disable_ipv6=False)
        wait_readable(dev.fileno(), 3.0)
        assert dev.read_batch() == []
        assert dev.stats.rx_dropped_non_ipv4 >= 1


def test_read_batch_works_from_an_asyncio_reader(ns: str) -> None:
    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        done = asyncio.Event()
        with open_tun("smtun%d", netns=ns) as dev:
            configure(dev.name, f"{ME}/10", netns=ns)

            def on_readable() -> None:
                got.extend(dev.read_batch())
                if len(got) >= 3:
                    done.set()

            loop.add_reader(dev.fileno(), on_readable)
            s = udp_socket(ns)
            for i in range(3):
                s.sendto(b"%d" % i, (PEER, 9000))
            await asyncio.wait_for(done.wait(), 2)
            loop.remove_reader(dev.fileno())
            s.close()
        return got

    assert [p[28:] for p in asyncio.run(main())] == [b"0", b"1", b"2"]


def test_open_errors_are_tun_errors(ns: str) -> None:
    with open_tun("smtbusy0", netns=ns) as dev:
        with pytest.raises(TunError, match="pick another name"):
            open_tun("smtbusy0", netns=ns)
        dev.close()
        with pytest.raises(TunError, match="closed"):
            dev.read_batch()
    with pytest.raises(ConfigError):
        open_tun("name-far-too-long0", netns=ns)
    with pytest.raises(TunError, match="does not exist"):
        open_tun("smt0", netns="smt-no-such-namespace")


def test_multi_queue_devices_share_one_interface(topology: Topology, ns: str) -> None:
    with open_tun("smtmq0", netns=ns, multi_queue=True) as q1, open_tun("smtmq0", netns=ns, multi_queue=True) as q2:
        assert q1.name == q2.name == "smtmq0"
        assert topology.ip(ns, "link", "show", "smtmq0").count("smtmq0") == 1
