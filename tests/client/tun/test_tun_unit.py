"""Pure parts of shadowmesh_client.tun: IPv4 header helpers, MTU/name checks, the in-memory fake."""

from __future__ import annotations

import asyncio
import ipaddress
import struct

import pytest

from shadowmesh_client.errors import ConfigError, TunError
from shadowmesh_client.tun import MAX_MTU, MIN_MTU, FakeTun, check_ifname, check_mtu, ip_version, ipv4_dst, ipv4_src


def ipv4(src: str, dst: str, payload: bytes = b"", ihl: int = 5) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", (4 << 4) | ihl, 0, ihl * 4 + len(payload), 0, 0, 64, 17, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )
    return header + b"\0" * (ihl * 4 - 20) + payload


IPV6 = bytes([0x60]) + bytes(39)

# (case, packet, expected dst, expected src)
HEADER_CASES = [
    ("plain", ipv4("100.64.0.1", "100.64.3.9"), int(ipaddress.IPv4Address("100.64.3.9")),
     int(ipaddress.IPv4Address("100.64.0.1"))),
    ("with options", ipv4("100.64.0.1", "100.127.255.254", b"x", ihl=6), 0x647FFFFE, 0x64400001),
    ("top address", ipv4("255.255.255.255", "0.0.0.0"), 0, 0xFFFFFFFF),
    ("ipv6", IPV6, None, None),
    ("empty", b"", None, None),
    ("19 bytes", ipv4("1.2.3.4", "5.6.7.8")[:19], None, None),
    ("ihl below 5", bytes([0x44]) + ipv4("1.2.3.4", "5.6.7.8")[1:], None, None),
    ("ihl beyond packet", bytes([0x4F]) + ipv4("1.2.3.4", "5.6.7.8")[1:], None, None),
    ("version 0", bytes([0x05]) + ipv4("1.2.3.4", "5.6.7.8")[1:], None, None),
]


@pytest.mark.parametrize("case,packet,dst,src", HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_ipv4_header_fields(case: str, packet: bytes, dst: int | None, src: int | None) -> None:
    assert ipv4_dst(packet) == dst
    assert ipv4_src(packet) == src


def test_ip_version() -> None:
    assert ip_version(ipv4("1.2.3.4", "5.6.7.8")) == 4
    assert ip_version(IPV6) == 6
    assert ip_version(b"") is None


def test_ipv4_helpers_accept_memoryview() -> None:
    assert ipv4_dst(memoryview(ipv4("1.2.3.4", "100.64.0.2"))) == 0x64400002


@pytest.mark.parametrize("mtu", [MIN_MTU, 1400, 16384, 65000, MAX_MTU])
def test_check_mtu_accepts_the_legitimate_range(mtu: int) -> None:
    assert check_mtu(mtu) == mtu


@pytest.mark.parametrize("mtu", [MIN_MTU - 1, 0, -1, MAX_MTU + 1, 65536, "1400", 1400.0, True, None])
def test_check_mtu_rejects_with_a_config_error(mtu: object) -> None:
    with pytest.raises(ConfigError, match="tun mtu must be an integer from 576 to 65535"):
        check_mtu(mtu)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["smt0", "smt%d", "a", "x" * 15])
def test_check_ifname_accepts(name: str) -> None:
    assert check_ifname(name) == name


@pytest.mark.parametrize("name", ["", "x" * 16, "a/b", "a b", "a:1", ".", ".."])
def test_check_ifname_rejects(name: str) -> None:
    with pytest.raises(ConfigError, match="tun name"):
        check_ifname(name)


def test_fake_reads_what_was_injected_in_order_and_in_bounded_batches() -> None:
    dev = FakeTun("fake0", 1400)
    packets = [ipv4("100.64.0.1", f"100.64.0.{i}") for i in range(2, 12)]
    for p in packets:
        dev.inject(p)
    first = dev.read_batch(4)
    rest = dev.read_batch(64)
    assert first + rest == packets and len(first) == 4
    assert dev.read_batch() == []
    assert dev.stats.rx_packets == 10


def test_fake_drops_and_counts_non_ipv4() -> None:
    dev = FakeTun()
    dev.inject(IPV6)
    dev.inject(ipv4("100.64.0.1", "100.64.0.2"))
    assert [ipv4_dst(p) for p in dev.read_batch()] == [0x64400002]
    assert dev.stats.rx_dropped_non_ipv4 == 1


def test_fake_write_batch_keeps_good_packets_and_counts_refused_ones() -> None:
    dev = FakeTun(mtu=1400)
    good = ipv4("100.64.0.2", "100.64.0.1", b"x" * 100)
    assert dev.write_batch([good, b"\x45" * 1401, good]) == 2
    assert list(dev.written) == [good, good]
    assert dev.stats.tx_errors == 1 and dev.stats.tx_packets == 2
    with pytest.raises(TunError):
        dev.write(b"")


def test_fake_closed_device_raises_tun_error() -> None:
    dev = FakeTun()
    dev.close()
    dev.close()
    for call in (dev.read_batch, dev.fileno, lambda: dev.write(b"\x45"), lambda: dev.write_batch([b"\x45"])):
        with pytest.raises(TunError, match="closed"):
            call()
    with pytest.raises(ValueError):
        FakeTun().read_batch(0)


def test_fake_fileno_is_readable_exactly_while_packets_wait() -> None:
    async def main() -> list[list[bytes]]:
        loop = asyncio.get_running_loop()
        dev = FakeTun()
        batches: list[list[bytes]] = []
        got = asyncio.Event()

        def on_readable() -> None:
            batches.append(dev.read_batch())
            got.set()

        loop.add_reader(dev.fileno(), on_readable)
        loop.call_soon(dev.inject, ipv4("100.64.0.1", "100.64.0.2"))
        loop.call_soon(dev.inject, ipv4("100.64.0.1", "100.64.0.3"))
        await asyncio.wait_for(got.wait(), 1)
        await asyncio.sleep(0.05)  # no further wake-ups once drained
        loop.remove_reader(dev.fileno())
        dev.close()
        return batches

    batches = asyncio.run(main())
    assert [[ipv4_dst(p) for p in b] for b in batches] == [[0x64400002, 0x64400003]]
