"""Routing end to end (issue 14): exit node, kill switch, subnet route, names, IPv6, on real kernels.

Real namespaces, TUN devices, nftables, anvil + deploy script, devices set up with the real CLI and each
device its own ``shadowmesh-client up`` process with ``routing: {enabled: true}`` in its config
(``lab.set_routing``). Topology: the issue-5 mesh (lab.netns.mesh_topology: anvil, relay and A public, B
behind NAT 1, C behind NAT 2) plus two namespaces plugged into A only:

* ``inet``: the "internet" host 203.0.113.10 / 2001:db8:113::10, reachable only through A (nobody else
  has a route to it): A is the exit node (``gateway``), B (``laptop``) uses it with the kill switch on,
  C (``phone``) uses it too but is not in A's ``exit_allow``: refused;
* ``lan``: the LAN host 192.168.77.10 behind A; A advertises 192.168.77.0/24, the network admin approves.

One chain and one mesh for the module; tests run in file order, the destructive ones (revocation, the exit
going down) last. The records folder is shared by the lab (docs/routing.md: out of band between machines).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.mesh import MeshLab
from lab.netns import list_namespaces, mesh_topology

XFER = str(Path(__file__).with_name("xfer.py"))
SIZE = 50 * 1000 * 1000
RELAY_URL = "ws://198.18.0.20:7443/api/v1/ws/relay-k3"
A_URL = "ws://198.18.0.30:7443/api/v1/ws/a-9x"
INET4, INET6 = "203.0.113.10", "2001:db8:113::10"       # the "internet" host (behind A only)
A_INET4, A_INET6 = "203.0.113.1", "2001:db8:113::1"
LAN_HOST, LAN_PREFIX = "192.168.77.10", "192.168.77.0/24"  # the LAN host behind A (a subnet route)
ANVIL = "198.18.0.10"
ZONE = "lab.shadowmesh.internal"

pytestmark = pytest.mark.timeout(240)


def _plug_into_a(topo) -> None:
    topo.add_namespace("inet")
    topo.add_veth("a", "inet", name_a="wan1", name_b="eth0", cidr_a=f"{A_INET4}/24", cidr_b=f"{INET4}/24")
    for ns, dev, addr in (("a", "wan1", A_INET6), ("inet", "eth0", INET6)):
        topo.sysctl(ns, f"net.ipv6.conf.{dev}.disable_ipv6", "0")
        topo.ip(ns, "addr", "add", f"{addr}/64", "dev", dev, "nodad")
    topo.add_namespace("lan")
    topo.add_veth("a", "lan", name_a="lan1", name_b="eth0", cidr_a="192.168.77.1/24", cidr_b=f"{LAN_HOST}/24")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    topo = mesh_topology()
    prefix = topo.prefix
    netns_etc: list[Path] = []
    try:
        _plug_into_a(topo)
        lab = MeshLab(topo, tmp_path_factory.mktemp("routing"))
        lab.netns_etc = netns_etc
        lab.start_chain()
        net = lab.create_network("relay")
        lab.relay = lab.add_device("relay", net, endpoint=RELAY_URL, relay=True)
        lab.a = lab.add_device("a", net, endpoint=A_URL)
        lab.b = lab.add_device("b", net)
        lab.c = lab.add_device("c", net)
        for dev, name in ((lab.a, "gateway"), (lab.b, "laptop"), (lab.c, "phone")):
            dev.extra["name"] = name
        lab.set_routing(lab.a, name="gateway", advertise_exit=True, advertise_routes=[LAN_PREFIX],
                        exit_allow=["laptop"], dns_forward=None)
        lab.set_routing(lab.b, name="laptop", exit_node="gateway", dns_forward=None)
        lab.set_routing(lab.c, name="phone", exit_node="gateway", dns_forward=None)
        lab.start_relay(lab.relay)
        lab.start_node(lab.a)
        lab.start_node(lab.b, "--kill-switch")
        lab.start_node(lab.c)
        lab.wait_for(lambda: all(lab.status(d).get("ready_at") for d in (lab.a, lab.b, lab.c)), 40, "nodes up")
        yield lab
    finally:
        logs = {d.name: lab.tail(d) for d in lab.devices.values()} if "lab" in locals() else {}
        topo.teardown()
        for d in netns_etc:
            shutil.rmtree(d, ignore_errors=True)
    leftovers = [ns for ns in list_namespaces() if ns.startswith(prefix)]
    assert not leftovers, f"namespaces left behind: {leftovers}; logs: {json.dumps(logs)[:2000]}"


def ping(lab, ns: str, ip: str, count: int = 3, interval: float = 0.2) -> subprocess.CompletedProcess:
    return lab.topo.run(ns, ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", ip], check=False,
                        timeout=count * interval + 10)


def reaches(lab, ns: str, ip: str) -> bool:
    return ping(lab, ns, ip, count=1).returncode == 0


def v6(lab, dev) -> str:
    return lab.status(dev)["routing"]["names"][dev.extra["name"]][1]


def route_dev(lab, ns: str, ip: str) -> str:
    out = lab.topo.ip(ns, "route", "get", ip).split()
    return out[out.index("dev") + 1]


def transfer(lab, src, dst_ns: str, dst_ip: str, port: int, seed: int) -> None:
    srv = lab.topo.spawn(dst_ns, [sys.executable, XFER, "serve", dst_ip, str(port)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert srv.stdout.readline().strip() == "listening"
        sent = json.loads(lab.topo.run(src, [sys.executable, XFER, "send", dst_ip, str(port), str(SIZE),
                                             str(seed)], timeout=120).stdout)
        received = json.loads(srv.stdout.readline())
    finally:
        lab.topo.stop(srv)
    assert received["bytes"] == sent["bytes"] == SIZE
    assert received["sha256"] == sent["sha256"]


PEER = ("import socket,sys;s=socket.create_server((sys.argv[1],int(sys.argv[2])),family=socket.AF_INET6 "
        "if ':' in sys.argv[1] else socket.AF_INET);print('listening',flush=True);c,a=s.accept();print(a[0])")


def who_connects(lab, src: str, ip: str, port: int) -> str:
    """The source address the internet host sees for a TCP connection from ``src``."""
    srv = lab.topo.spawn("inet", [sys.executable, "-c", PEER, ip, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "listening"
        lab.topo.run(src, [sys.executable, "-c", "import socket,sys;socket.create_connection((sys.argv[1],"
                           "int(sys.argv[2])),timeout=5).close()", ip, str(port)], timeout=20)
        return srv.stdout.readline().strip()
    finally:
        lab.topo.stop(srv)


def dig(lab, ns: str, server: str, name: str, qtype: str) -> subprocess.CompletedProcess:
    return lab.topo.run(ns, ["dig", f"@{server}", name, qtype, "+time=1", "+tries=2"], check=False, timeout=15)


def test_exit_node_carries_v4_and_v6_and_the_underlay_stays_outside(lab):
    a, b = lab.a, lab.b
    assert not reaches(lab, "relay", INET4)                  # only A reaches the internet host
    lab.wait_for(lambda: reaches(lab, "b", INET4), 30, "B to reach the internet host through its exit")
    assert ping(lab, "b", INET4).returncode == 0
    r = ping(lab, "b", INET6)
    assert r.returncode == 0, r.stdout + r.stderr
    assert route_dev(lab, "b", INET4) == "smb" and route_dev(lab, "b", "8.8.8.8") == "smb"
    # the underlay the node needs (peers' endpoints, relay, RPC) is pinned outside the tunnel: no loop
    for ip in ("198.18.0.30", "198.18.0.20", ANVIL):
        assert route_dev(lab, "b", ip) == "eth0"
    assert reaches(lab, "b", ANVIL)
    assert reaches(lab, "b", a.overlay) and reaches(lab, "b", lab.c.overlay)
    assert lab.peer(b, a).get("path") == "direct"
    assert (lab.peer(b, lab.c).get("path") or "").startswith("relay:")
    st = lab.status(b)["routing"]
    assert st["exit_node"] == a.public_key[:len(st["exit_node"])]
    # the exit NATs to its uplink: the internet host sees A's address, not B's overlay address
    assert who_connects(lab, "b", INET4, 7001) == A_INET4
    assert who_connects(lab, "b", INET6, 7002) == A_INET6


def test_a_device_not_allowed_is_refused_by_the_exit(lab):
    # C chose the exit, its packets go to A... (C may have started before A wrote its record to the shared
    # folder: then C picks it up on its next look at the folder; one fresh-clone run asserted too early)
    lab.wait_for(lambda: (lab.status(lab.c).get("routing") or {}).get("exit_node"), 20, "C's exit chosen")
    assert not reaches(lab, "c", INET4)                          # ...which refuses them (exit_allow: laptop)
    counter = lab.topo.run("a", ["nft", "list", "counter", "inet", "shadowmesh_fwd", "refused"]).stdout
    packets = int(counter.split("packets")[1].split()[0])
    assert packets >= 1, counter
    assert reaches(lab, "c", lab.a.overlay)                     # the mesh itself is fine for C


def test_subnet_route_works_only_after_the_admin_approves(lab):
    assert LAN_PREFIX not in lab.status(lab.c)["routing"]["plan"]["tun_routes"]
    assert not reaches(lab, "c", LAN_HOST)
    approved = lab.approve_record(lab.a)
    assert approved["routes"] == [LAN_PREFIX]
    lab.wait_for(lambda: LAN_PREFIX in lab.status(lab.c)["routing"]["plan"]["tun_routes"], 15,
                 "C to honour the approved route")
    lab.wait_for(lambda: reaches(lab, "c", LAN_HOST), 15, "C to reach the LAN host behind A")
    assert route_dev(lab, "c", LAN_HOST) == "smc"


def test_names_resolve_with_dig_and_getent(lab):
    b = lab.b
    a6, c6 = v6(lab, lab.a), v6(lab, lab.c)
    r = dig(lab, "b", b.overlay, f"gateway.{ZONE}", "A")
    assert r.returncode == 0 and lab.a.overlay in r.stdout and "NOERROR" in r.stdout, r.stdout
    r = dig(lab, "b", a6, f"phone.{ZONE}", "AAAA")              # A's server, over IPv6 through the tunnel
    assert c6 in r.stdout and "NOERROR" in r.stdout, r.stdout
    assert "NXDOMAIN" in dig(lab, "b", b.overlay, f"nobody.{ZONE}", "A").stdout
    # getent through the system resolver: /etc/netns/<ns>/resolv.conf is bind-mounted by `ip netns exec`
    etc = Path("/etc/netns") / lab.topo.ns("b")
    etc.mkdir(parents=True, exist_ok=True)
    lab.netns_etc.append(etc)
    (etc / "resolv.conf").write_text(f"nameserver {b.overlay}\n")
    r = lab.topo.run("b", ["getent", "ahostsv4", f"gateway.{ZONE}"], check=False)
    assert lab.a.overlay in r.stdout, r.stdout + r.stderr
    r = lab.topo.run("b", ["getent", "ahostsv6", f"gateway.{ZONE}"], check=False)
    assert a6 in r.stdout, r.stdout + r.stderr


def test_ipv6_ping_and_50_mb_direct_and_relayed(lab):
    a6, c6 = v6(lab, lab.a), v6(lab, lab.c)
    for ip in (a6, c6):
        r = ping(lab, "b", ip)
        assert r.returncode == 0, r.stdout + r.stderr
    transfer(lab, "b", "a", a6, 6001, seed=1)                    # direct (B dialled A)
    transfer(lab, "b", "c", c6, 6002, seed=2)                    # relayed (both behind NATs)
    assert (lab.peer(lab.b, lab.c).get("path") or "").startswith("relay:")


def test_revocation_removes_the_name_within_the_deadline(lab):
    b = lab.b
    assert "NOERROR" in dig(lab, "b", b.overlay, f"phone.{ZONE}", "A").stdout
    lab.revoke(lab.c)
    revoked_at = time.monotonic()
    lab.wait_for(lambda: "NXDOMAIN" in dig(lab, "b", b.overlay, f"phone.{ZONE}", "A").stdout, 10,
                 "phone's name to go")
    assert time.monotonic() - revoked_at <= 10
    assert "NOERROR" in dig(lab, "b", b.overlay, f"gateway.{ZONE}", "A").stdout


def test_kill_switch_leaks_nothing_while_the_exit_is_down(lab):
    b = lab.b
    cap = b.dir / "uplink.pcap"
    dump = lab.topo.spawn("b", ["tcpdump", "-i", "eth0", "-n", "-U", "-w", str(cap),
                                f"host {INET4} or host {ANVIL}"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    try:
        assert "listening" in dump.stderr.readline()
        assert lab.stop(lab.a) == 0                               # the exit goes down
        assert not reaches(lab, "b", INET4)                       # into the TUN, dropped by the pump
        # worse: the routes into the tunnel vanish (someone flushes them): the kill switch still holds
        for half in ("0.0.0.0/1", "128.0.0.0/1"):
            lab.topo.ip("b", "route", "del", half, "dev", "smb")
        assert route_dev(lab, "b", INET4) == "eth0"
        assert not reaches(lab, "b", INET4)
        assert reaches(lab, "b", ANVIL)                           # control: the capture sees allowed traffic
        time.sleep(0.5)
    finally:
        lab.topo.stop(dump)
    seen = subprocess.run(["tcpdump", "-r", str(cap), "-n"], capture_output=True, text=True).stdout
    assert f"> {ANVIL}" in seen, seen
    assert INET4 not in seen, seen
    counter = lab.topo.run("b", ["nft", "list", "counter", "inet", "shadowmesh_killswitch", "leaked"]).stdout
    assert int(counter.split("packets")[1].split()[0]) >= 1, counter
    # a clean stop removes the kill switch (after a crash it stays: docs/routing.md)
    assert lab.stop(b) == 0, lab.tail(b)
    assert "shadowmesh_killswitch" not in lab.topo.run("b", ["nft", "list", "tables"]).stdout
