"""The pure parts of issue 14: IPv6 overlay addresses, signed records and approvals, names, the route table
and its overlap rules, the QoS classifier, the nftables rulesets (checked by nft itself when present)."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest
from eth_account import Account

from shadowmesh_client.crypto import Identity
from shadowmesh_client.errors import ConfigError
from shadowmesh_client.routing import nft, overlay6
from shadowmesh_client.routing.names import NameTable, default_name, network_label
from shadowmesh_client.routing.qos import BULK, INTERACTIVE, Classifier, parse_ports
from shadowmesh_client.routing.records import DeviceRecord, RecordSet, SignedRecord, check_name, check_prefix
from shadowmesh_client.routing.table import Route, RouteTable

REG = "0x" + "22" * 20


def test_ula_prefix_per_network_and_device_addresses_invert():
    p = overlay6.network_prefix(31337, REG, 1)
    assert p.prefixlen == 48 and str(p).startswith("fd") and p.subnet_of(ipaddress.IPv6Network("fc00::/7"))
    assert overlay6.network_prefix(31337, REG, 1) == p                 # every node derives the same
    others = {overlay6.network_prefix(31337, REG, 2), overlay6.network_prefix(1, REG, 1),
              overlay6.network_prefix(31337, "0x" + "23" * 20, 1)}
    assert p not in others and len(others) == 3
    a = overlay6.device_address(p, "100.64.0.7")
    assert a in p and str(a).endswith(":6440:7")
    assert overlay6.to_v4(p, a) == ipaddress.IPv4Address("100.64.0.7")
    assert overlay6.to_v4(p, "fd00::1") is None
    assert overlay6.to_v4(p, ipaddress.IPv6Address(int(a) | 1 << 40)) is None   # not a device address


def _rec(ident: Identity, seq: int = 1, **kw) -> DeviceRecord:
    return DeviceRecord(31337, REG, 1, ident.public_key, seq, **kw)


def test_records_signature_network_binding_seq_and_approval():
    dev, other = Identity.generate(), Identity.generate()
    admin, stranger = Account.create(), Account.create()
    rs = RecordSet(31337, REG, 1)
    signed = SignedRecord.sign(dev, _rec(dev, name="laptop", exit=True, routes=("192.168.7.0/24",)))
    assert SignedRecord.from_json(signed.to_json()) == signed
    assert rs.add(signed)
    acc = rs.accepted(dev.public_key, admin.address, approval_network=False)
    assert acc.name == "laptop" and acc.exit and acc.routes == () and acc.pending_routes == ("192.168.7.0/24",)
    assert not rs.accepted(dev.public_key, admin.address, approval_network=True).exit   # exit needs approval there
    # approved by a stranger: nothing changes; by the admin: routes and exit honoured
    assert rs.add(signed.approve(stranger.key))
    assert rs.accepted(dev.public_key, admin.address, True).routes == ()
    assert rs.add(signed.approve(admin.key))
    acc = rs.accepted(dev.public_key, admin.address, True)
    assert acc.routes == ("192.168.7.0/24",) and acc.exit
    # a forged record (signed by another key, or tampered), another network's, an older one: refused
    forged = SignedRecord(_rec(dev, 5, name="evil"), other.sign(_rec(dev, 5, name="evil").message()))
    tampered = SignedRecord(_rec(dev, 6, name="evil"), signed.signature)
    elsewhere = SignedRecord.sign(dev, DeviceRecord(31337, REG, 2, dev.public_key, 9, name="x"))
    older = SignedRecord.sign(dev, _rec(dev, 0, name="old"))
    assert not any(rs.add(s) for s in (forged, tampered, elsewhere, older))
    assert rs.rejected == 3 and rs.accepted(dev.public_key, admin.address, True).name == "laptop"
    # a newer record replaces the approved one (and needs approving again)
    assert rs.add(SignedRecord.sign(dev, _rec(dev, 2, name="laptop", routes=("10.1.0.0/16",))))
    assert rs.accepted(dev.public_key, admin.address, True).pending_routes == ("10.1.0.0/16",)
    with pytest.raises(ConfigError):
        SignedRecord.sign(other, _rec(dev))


@pytest.mark.parametrize("bad", ["", "-a", "a-", "a.b", "x" * 64, "é"])
def test_bad_names_are_refused(bad):
    with pytest.raises(ConfigError):
        check_name(bad)


def test_bad_prefixes_are_refused():
    assert check_prefix("fd00:7::/64") == "fd00:7::/64"
    with pytest.raises(ConfigError):
        check_prefix("10.0.0.1/24")


def test_names_are_unique_by_registration_order():
    k1, k2, k3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    v6 = ipaddress.IPv6Address("fd00::1")
    t = NameTable.build("lab.shadowmesh.internal", [
        (k2, (5, 0), ipaddress.IPv4Address("100.64.0.2"), v6, "db"),
        (k1, (3, 0), ipaddress.IPv4Address("100.64.0.1"), None, "db"),     # earlier: keeps "db"
        (k3, (7, 0), ipaddress.IPv4Address("100.64.0.3"), None, None)])
    assert t.lookup("DB.lab.shadowmesh.internal.").public_key == k1
    assert t.lookup(f"{default_name(k2)}.lab.shadowmesh.internal").public_key == k2
    assert t.lookup(f"{default_name(k3)}.lab.shadowmesh.internal").v4 == ipaddress.IPv4Address("100.64.0.3")
    assert len(t.conflicts) == 1 and "db" in t.conflicts[0]
    assert t.resolve_target("db").public_key == k1 and t.resolve_target("100.64.0.2").public_key == k2
    assert t.resolve_target("fd00::1").public_key == k2 and t.resolve_target(k3.hex()[:10]).public_key == k3
    assert t.in_zone("x.lab.shadowmesh.internal") and not t.in_zone("example.org")
    assert network_label("My Lab!", 4) == "my-lab" and network_label("", 4) == "net4"


def test_route_table_longest_prefix_ties_and_overlay():
    a, b, c = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32
    ula = overlay6.network_prefix(1, REG, 1)

    def r(prefix, key, pos, kind="subnet"):
        return Route(ipaddress.ip_network(prefix), key, kind, (pos, 0))

    t = RouteTable([r("10.0.0.0/16", a, 5), r("10.0.7.0/24", b, 9), r("10.0.0.0/16", c, 2),
                    r("100.64.5.0/24", a, 1), r(str(ula), b, 1), r("0.0.0.0/0", b, 9, "exit"),
                    r("::/0", b, 9, "exit"), r("fd99::/64", a, 3)], ula)
    cases = [  # (destination, expected carrier)
        ("10.0.7.9", b),       # 1. the longer prefix wins inside c's /16
        ("10.0.8.1", c),       # 2. equal prefixes: the earlier registration (c, block 2) over a (block 5)
        ("100.64.5.1", None),  # 3. the overlay prefix was refused; an unheld overlay address goes nowhere
        ("8.8.8.8", b),        # 4. exit default route
        ("fd99::5", a),        # 5. IPv6 subnet
        ("2001:db8::1", b),    # 6. IPv6 exit default
        (str(ula.network_address + 5), None),   # 7. unheld IPv6 overlay address: nowhere
    ]
    for i, (dst, key) in enumerate(cases, 1):
        assert t.lookup(ipaddress.ip_address(dst).packed) == key, i
        assert t.lookup(ipaddress.ip_address(dst).packed) == key, f"{i} (cached)"
    assert RouteTable([r("10.0.0.0/8", a, 1)]).lookup(bytes([11, 0, 0, 1])) is None
    text = "\n".join(t.conflicts)
    assert "10.0.0.0/16 of aaaaaaaa is shadowed by cccccccc" in text
    assert "100.64.5.0/24" in text and "overlaps the overlay" in text and str(ula) in text
    assert "10.0.7.0/24 of bbbbbbbb is inside 10.0.0.0/16" in text
    assert t.route_for("10.0.7.1").prefix == ipaddress.ip_network("10.0.7.0/24")


def _v4(size: int, proto: int = 6, tos: int = 0, sport: int = 40000, dport: int = 80) -> bytes:
    hdr = bytes([0x45, tos]) + size.to_bytes(2, "big") + bytes(4) + bytes([64, proto]) + bytes(10)
    return hdr + sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + bytes(size - 24)


def _v6(size: int, tclass: int = 0, dport: int = 80) -> bytes:
    first = bytes([0x60 | tclass >> 4, (tclass & 0xF) << 4, 0, 0])
    return first + (size - 40).to_bytes(2, "big") + bytes([6, 64]) + bytes(32) + (40000).to_bytes(2, "big") \
        + dport.to_bytes(2, "big") + bytes(size - 44)


def test_classifier_table():
    c = Classifier(parse_ports([22, "5060-5061"]))
    cases = [  # (packet, class)
        (_v4(84, proto=1), INTERACTIVE),                    # 1. ping: small
        (_v4(1400), BULK),                                  # 2. a bulk TCP segment
        (_v4(1400, tos=46 << 2), INTERACTIVE),              # 3. DSCP EF
        (_v4(1400, tos=10 << 2), BULK),                     # 4. DSCP AF11: bulk
        (_v4(1400, dport=22), INTERACTIVE),                 # 5. SSH by destination port
        (_v4(1400, sport=5061, proto=17), INTERACTIVE),     # 6. SIP by source port (UDP)
        (_v6(1400), BULK),                                  # 7. IPv6 bulk
        (_v6(1400, tclass=46 << 2), INTERACTIVE),           # 8. IPv6 traffic class EF
        (_v6(1400, dport=22), INTERACTIVE),                 # 9. IPv6 SSH
    ]
    for i, (p, cls) in enumerate(cases, 1):
        assert c(p) == cls, i
    with pytest.raises(ValueError):
        parse_ports(["9-3"])


def test_nft_rulesets():
    fwd = nft.forward_ruleset("sm0", overlay6="fd12::/48", exit_clients=["100.64.0.2", "fd12::6440:2"],
                              serve_exit=True, subnets=["192.168.7.0/24"])
    assert 'iifname "sm0" ip saddr { 100.64.0.2 } accept' in fwd
    assert 'iifname "sm0" ip6 saddr { fd12::6440:2 } accept' in fwd
    assert 'iifname "sm0" ip daddr { 192.168.7.0/24 } accept' in fwd
    assert fwd.index("saddr") < fwd.index("counter name refused drop")
    kill = nft.killswitch_ruleset("sm0", underlay=["10.0.0.1", "2001:db8::1"], lan=["192.168.1.0/24"])
    assert "ip daddr { 10.0.0.1 } accept" in kill and "ip6 daddr { 2001:db8::1 } accept" in kill
    assert kill.rstrip().endswith("}") and "counter name leaked drop" in kill
    if shutil.which("nft") is None:
        pytest.skip("nft not installed: syntax not checked by nftables")
    for ruleset in (fwd, kill):   # -c: parse and check only, nothing is loaded
        done = subprocess.run(["nft", "-c", "-f", "-"], input=ruleset.encode(), capture_output=True)
        if done.returncode and b"Operation not permitted" in done.stderr:
            pytest.skip("nft -c needs CAP_NET_ADMIN here")
        assert done.returncode == 0, done.stderr.decode()
