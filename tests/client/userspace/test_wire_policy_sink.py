"""Pure parts of the userspace layer: stream messages both ways against byte literals, the policy's
decisions, config forms, the sink's replies, and the import rule (no pyroute2 in userspace mode)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from shadowmesh_client.errors import ConfigError
from shadowmesh_client.userspace import wire
from shadowmesh_client.userspace.policy import Expose, Forward, StreamPolicy
from shadowmesh_client.userspace.sink import _checksum, reply_to
from shadowmesh_client.userspace.wire import MessageType, StreamFormatError
from tests.client.node.helpers import ipv4

OVERLAY = "100.64.0.7"


@pytest.mark.parametrize(("encoded", "expected"), [
    (wire.open_(5, 4096, 80, bytes([100, 64, 0, 7])), bytes.fromhex("01" "00000005" "00001000" "0050" "64400007")),
    (wire.accept(5 | wire.THEIRS, 65536), bytes.fromhex("02" "80000005" "00010000")),
    (wire.refuse(5 | wire.THEIRS, 2), bytes.fromhex("03" "80000005" "02")),
    (wire.data(5, 7, b"hi"), bytes.fromhex("04" "00000005" "0000000000000007") + b"hi"),
    (wire.window(9, 1024), bytes.fromhex("05" "00000009" "00000400")),
    (wire.fin(9, 2), bytes.fromhex("06" "00000009" "0000000000000002")),
    (wire.rst(9, 1), bytes.fromhex("07" "00000009" "01")),
    (wire.dgram(3, 53, bytes(4), b"q"), bytes.fromhex("08" "00000003" "0035" "00000000") + b"q"),
])
def test_messages_encode_to_pinned_bytes_and_decode_back(encoded, expected):
    assert encoded == expected
    assert wire.is_stream_message(encoded) and not wire.is_stream_message(ipv4("1.1.1.1", "2.2.2.2"))
    m = wire.decode(encoded)
    assert m.type == MessageType(expected[0])


@pytest.mark.parametrize("bad", [b"", b"\x04\0\0\0\1", b"\x09" + bytes(8), wire.accept(1, 1) + b"x",
                                 wire.data(1, 0, b"x" * (wire.MAX_DATA + 1)), b"\x08\0\0\0\1\0"])
def test_malformed_messages_are_refused(bad):
    with pytest.raises(StreamFormatError):
        wire.decode(bad)


def test_policy_userspace_exposes_only_listed_ports_and_allowed_lans():
    p = StreamPolicy(OVERLAY, userspace=True, expose=(Expose.parse("22"), Expose.parse("80 -> 127.0.0.1:8080")),
                     allow_lan=("192.168.1.0/24",))
    me = ipaddress.IPv4Address(OVERLAY).packed
    assert p.target(me, 22) == ("127.0.0.1", 22)
    assert p.target(me, 80) == ("127.0.0.1", 8080)
    assert p.target(me, 443) is None
    assert p.target(bytes([192, 168, 1, 9]), 443) == ("192.168.1.9", 443)
    assert p.target(bytes([192, 168, 2, 9]), 443) is None
    assert p.target(bytes([127, 0, 0, 1]), 22) is None
    assert p.target(bytes([100, 64, 0, 8]), 22) is None   # another peer: never through us


def test_policy_tun_node_serves_its_overlay_address_unless_expose_narrows_it():
    me = ipaddress.IPv4Address(OVERLAY).packed
    assert StreamPolicy(OVERLAY, userspace=False).target(me, 5201) == (OVERLAY, 5201)
    assert StreamPolicy(OVERLAY, userspace=False, expose=(Expose.parse("22"),)).target(me, 5201) is None


def test_config_forms():
    assert Forward.parse("127.0.0.1:8022 -> 100.64.0.7:22") == Forward("127.0.0.1", 8022, "100.64.0.7", 22)
    assert Expose.parse("8080 -> [::1]:3000") == Expose(8080, "::1", 3000)
    for bad in ("8022", "x -> y:1", "1:2 -> :3"):
        with pytest.raises(ConfigError):
            Forward.parse(bad)
    with pytest.raises(ConfigError):
        Expose.parse("70000")


def test_sink_replies_ping_and_resets_tcp_with_valid_checksums():
    echo = ipv4("100.64.0.2", OVERLAY, b"\x08\x00\xf7\xfe\x00\x01\x00\x00", proto=1)
    r = reply_to(echo)
    assert r is not None and r[12:16] == echo[16:20] and r[20] == 0 and _checksum(r[:20]) == 0
    assert _checksum(r[20:]) == 0
    ack = ipv4("100.64.0.2", OVERLAY, bytes.fromhex("9c4000160000000100000064" "5010ffff00000000"), proto=6)
    r = reply_to(ack)
    assert r is not None and r[33] == 0x04 and r[24:28] == bytes.fromhex("00000064")   # RST, seq = their ack
    assert reply_to(ipv4("100.64.0.2", OVERLAY, b"udp payload", proto=17)) is None


def test_importing_the_node_and_the_userspace_layer_imports_no_pyroute2():
    code = ("import sys, shadowmesh_client.node, shadowmesh_client.cli\n"
            "from shadowmesh_client.userspace import service, sink, nc, proxy\n"
            "bad = [m for m in sys.modules if m.startswith('pyroute2')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
