"""The mesh end to end (issue 5): real namespaces, real TUN devices, real anvil + deploy script, devices set
up with the real CLI, and each device its own `shadowmesh-client up` process (relay: `relay`).

Topology (lab.netns.mesh_topology): anvil, relay and A on the public segment; B behind
NAT 1, C behind NAT 2. A publishes an endpoint, B and C cannot be reached, so A<->B is direct (B dials A)
and B<->C goes through the relay. One chain and one mesh for the module (set-up ~15 s); tests run in file
order and the destructive ones (relay restart, failover, revocation, shutdown) come last.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.mesh import MeshLab
from lab.netns import list_namespaces, mesh_topology

XFER = str(Path(__file__).with_name("xfer.py"))
SIZE = 50 * 1000 * 1000
MARKER = b"SHADOWMESH-PLAINTEXT-MARKER-7d1e"
RELAY_URL = "ws://198.18.0.20:7443/api/v1/ws/relay-k3"
A_URL = "ws://198.18.0.30:7443/api/v1/ws/a-9x"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    topo = mesh_topology()
    prefix = topo.prefix
    try:
        topo.add_host("x", "public", "198.18.0.40")   # for the untrusted devices' handshake attempts
        lab = MeshLab(topo, tmp_path_factory.mktemp("mesh"))
        lab.start_chain()
        net = lab.create_network("relay")
        other_net = lab.create_network("x", "other", owner=2)
        lab.relay = lab.add_device("relay", net, endpoint=RELAY_URL, relay=True)
        lab.a = lab.add_device("a", net, endpoint=A_URL)
        lab.b = lab.add_device("b", net)
        lab.c = lab.add_device("c", net)
        lab.d = lab.add_device("d", net, ns="x")                            # registered, never started
        lab.stranger = lab.add_device("stranger", net, ns="x", register=False)
        lab.other = lab.add_device("other", other_net, ns="x", owner=2)     # registered in another network
        lab.net, lab.other_net = net, other_net
        lab.start_relay(lab.relay)
        for dev in (lab.a, lab.b, lab.c):
            lab.start_node(dev)
        lab.wait_for(lambda: all(lab.status(d).get("ready_at") for d in (lab.a, lab.b, lab.c)), 30, "nodes up")
        yield lab
    finally:
        logs = {d.name: lab.tail(d) for d in lab.devices.values()} if "lab" in locals() else {}
        topo.teardown()
    leftovers = [ns for ns in list_namespaces() if ns.startswith(prefix)]
    assert not leftovers, f"namespaces left behind: {leftovers}; logs: {json.dumps(logs)[:2000]}"


def ping(lab, ns: str, ip: str, count: int = 3, interval: float = 0.2,
         check: bool = True) -> subprocess.CompletedProcess:
    r = lab.topo.run(ns, ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", ip], check=False,
                     timeout=count * interval + 10)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def transfer(lab, src, dst, port: int, seed: int) -> tuple[dict, dict]:
    """SIZE bytes over TCP from src to dst's overlay address; returns (sent, received) summaries."""
    srv = lab.topo.spawn(dst.ns, [sys.executable, XFER, "serve", dst.overlay, str(port)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert srv.stdout.readline().strip() == "listening"
        sent = lab.topo.run(src.ns, [sys.executable, XFER, "send", dst.overlay, str(port), str(SIZE), str(seed),
                                     MARKER.decode()], timeout=120)
        received = json.loads(srv.stdout.readline())
    finally:
        lab.topo.stop(srv)
    return json.loads(sent.stdout), received


def both_ways(lab, x, y, port: int) -> None:
    for i, (src, dst) in enumerate(((x, y), (y, x))):
        sent, received = transfer(lab, src, dst, port + i, seed=port + i)
        assert received["bytes"] == sent["bytes"] == SIZE
        assert received["sha256"] == sent["sha256"]


def test_a_and_b_talk_over_a_direct_path(lab):
    ping(lab, "b", lab.a.overlay)
    ping(lab, "a", lab.b.overlay)
    lab.wait_for(lambda: lab.peer(lab.b, lab.a).get("path") == lab.peer(lab.a, lab.b).get("path") == "direct", 5,
                 "both ends to report the direct path")
    both_ways(lab, lab.a, lab.b, 5001)


def test_b_and_c_talk_through_the_relay_which_sees_only_ciphertext(lab):
    cap = lab.relay.dir / "relay.pcap"
    dump = lab.topo.spawn("relay", ["tcpdump", "-i", "eth0", "-n", "-U", "-w", str(cap), "tcp"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening" in dump.stderr.readline()
        ping(lab, "b", lab.c.overlay)
        ping(lab, "c", lab.b.overlay)
        lab.wait_for(lambda: all((lab.peer(x, y).get("path") or "").startswith("relay:")
                                 for x, y in ((lab.b, lab.c), (lab.c, lab.b))), 5, "both ends on the relay path")
        both_ways(lab, lab.b, lab.c, 5101)
        time.sleep(0.5)
    finally:
        lab.topo.stop(dump)
    captured = cap.read_bytes()
    assert len(captured) > 2 * SIZE          # both transfers crossed the relay's interface...
    assert MARKER not in captured            # ...and not one of the ~1,500 markers in them is readable
    # the relay metered both devices (per-device byte counts, for payment)
    lab.wait_for(lambda: all(lab.status(lab.relay)["usage"].get(d.public_key, {}).get("bytes_in", 0) > SIZE
                             for d in (lab.b, lab.c)), 5, "the relay's byte counts")


HANDSHAKE = r"""
import asyncio, sys, time
from shadowmesh_client.chain import load_deployment
from shadowmesh_client.identity import DeviceKeystore
from shadowmesh_client.protocol import NetworkBinding, ProtocolConfig, Session
from shadowmesh_client.transport import ClientConfig, HandshakeRejectedError
from shadowmesh_client.transport.ws import dial
key_file, passphrase, deployment, network, target, url = sys.argv[1:]
dep = load_deployment(deployment)
me = DeviceKeystore(key_file, backend="file").load(open(passphrase).read())
s = Session(me, bytes.fromhex(target), ProtocolConfig(NetworkBinding(dep.chain_id, dep.registry, int(network))),
            lambda k: True)
async def main():
    try:
        link = await dial(ClientConfig(url), s.initiate(time.time()))
    except HandshakeRejectedError:
        return "REJECTED"
    await link.close()
    return "ACCEPTED"
print(asyncio.run(main()))
"""


def try_handshake(lab, dev, network: int, target, url: str) -> str:
    r = lab.topo.run("x", [sys.executable, "-c", HANDSHAKE, str(dev.dir / "device.key"),
                           str(lab.workdir / "passphrase"), str(lab.deployment), str(network), target.public_key, url],
                     timeout=60)
    return r.stdout.strip()


def test_devices_outside_the_network_cannot_handshake(lab):
    # control: a registered member of the network gets in, with the same code path
    assert try_handshake(lab, lab.d, lab.net, lab.a, A_URL) == "ACCEPTED"
    assert try_handshake(lab, lab.d, lab.net, lab.relay, RELAY_URL) == "ACCEPTED"
    for dev in (lab.stranger, lab.other):
        for network in (lab.net, lab.other_net):
            assert try_handshake(lab, dev, network, lab.a, A_URL) == "REJECTED"
            assert try_handshake(lab, dev, network, lab.relay, RELAY_URL) == "REJECTED"
    lab.wait_for(lambda: lab.status(lab.a)["auth_refused"] >= 4 and lab.status(lab.relay)["refused"] >= 4, 5,
                 "the refusals to be counted")


def test_killing_the_relay_leaves_a_b_alone_and_b_c_resumes_when_it_is_back(lab):
    lab.relay.proc.kill()                     # a crash, not a clean stop
    lab.relay.proc.wait()
    lab.relay.proc = None
    r = ping(lab, "b", lab.a.overlay, count=20, interval=0.1)
    assert " 0% packet loss" in r.stdout      # the direct path did not notice
    lab.wait_for(lambda: not lab.peer(lab.b, lab.c).get("path"), 15, "B to see the relay gone")
    assert ping(lab, "b", lab.c.overlay, count=2, check=False).returncode != 0
    lab.start_relay(lab.relay)
    start = time.monotonic()
    lab.wait_for(lambda: ping(lab, "b", lab.c.overlay, count=1, check=False).returncode == 0, 30, "B<->C again")
    assert time.monotonic() - start < 30
    ping(lab, "c", lab.b.overlay)


def test_direct_path_fails_over_to_the_relay_and_comes_back(lab):
    block = "table ip smtblock {\n chain f {\n  type filter hook forward priority -10; policy accept;\n" \
            "  tcp dport 7443 ip daddr 198.18.0.30 drop\n  tcp sport 7443 ip saddr 198.18.0.30 drop\n }\n}\n"
    lab.topo.run("nat1", ["nft", "-f", "-"], input=block)
    try:
        # the heartbeat (5 s ping, 10 s timeout) declares the direct link dead; traffic moves to the relay
        lab.wait_for(lambda: (lab.peer(lab.b, lab.a).get("path") or "").startswith("relay:"), 30, "failover to relay")
        ping(lab, "b", lab.a.overlay)
    finally:
        lab.topo.run("nat1", ["nft", "delete", "table", "ip", "smtblock"])
    lab.wait_for(lambda: lab.peer(lab.b, lab.a).get("path") == "direct", 30, "back to the direct path")
    ping(lab, "b", lab.a.overlay)


def test_revoking_c_ends_its_sessions_within_10_s_and_it_cannot_reconnect(lab):
    ping(lab, "b", lab.c.overlay)
    lab.revoke(lab.c)
    revoked_at = time.monotonic()
    lab.wait_for(lambda: not lab.peer(lab.b, lab.c) and not lab.peer(lab.a, lab.c)
                 and lab.c.public_key not in _connected(lab), 10, "C's sessions to end")
    assert time.monotonic() - revoked_at <= 10
    time.sleep(3)   # C keeps trying (relay, A's endpoint): every attempt is refused
    assert ping(lab, "b", lab.c.overlay, count=2, check=False).returncode != 0
    assert ping(lab, "c", lab.b.overlay, count=2, check=False).returncode != 0
    assert lab.status(lab.relay)["refused"] >= 1
    ping(lab, "b", lab.a.overlay)             # everyone else is fine


def _connected(lab) -> set:
    st = lab.status(lab.relay)
    return set(st.get("connected_devices", []))


def test_sigterm_closes_sessions_and_removes_the_tun_device(lab):
    for dev in (lab.a, lab.b, lab.c):
        tun = f"sm{dev.name}"
        assert tun in lab.topo.ip(dev.ns, "-br", "link")
        code = lab.stop(dev, timeout=10)
        assert code == 0, lab.tail(dev)
        assert tun not in lab.topo.ip(dev.ns, "-br", "link")
        assert lab.status(dev)["stopped"] is True
    assert lab.stop(lab.relay) == 0
