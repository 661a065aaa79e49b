"""A relay behind nginx terminating TLS, as a CDN such as Cloudflare would front it (issue 5, spec "Cloudflare
Proxy Compatibility"): real namespaces, anvil + deploy script, the real CLI, nginx from the Debian package.

Set-up (lab.netns.mesh_topology, hosts relay/b/c used): in the relay's namespace nginx
listens with TLS on 198.18.0.20:8443 and proxies every path to the relay daemon, which listens on
127.0.0.1:7443 only, so nothing but nginx can reach it. The relay's PUBLISHED endpoint (on chain) is
nginx's wss:// URL. B and C sit behind two NAT routers and have no endpoint: their only path to each other
is B -> nginx -> relay -> nginx -> C. They trust the test CA with ``--ca-file``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lab.mesh import MeshLab
from lab.netns import list_namespaces, mesh_topology

from .nginx import make_tls, start_nginx

XFER = str(Path(__file__).with_name("xfer.py"))
SIZE = 20 * 1000 * 1000          # bytes per direction (keeps the module well under 2 minutes)
NGINX_IP, NGINX_PORT = "198.18.0.20", 8443
RELAY_PATH = "/api/v1/ws/relay-cdn-7q"
RELAY_URL = f"wss://{NGINX_IP}:{NGINX_PORT}{RELAY_PATH}"   # what the relay publishes: nginx, not itself
BACKEND = "127.0.0.1:7443"                                  # the relay daemon, reachable only from its host

pytestmark = pytest.mark.timeout(180)

# A plain HTTPS client (what a scanner or a browser sends), run inside a namespace.
PROBE = r"""
import http.client, json, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
c = http.client.HTTPSConnection(sys.argv[2], int(sys.argv[3]), context=ctx, timeout=10)
c.request("GET", sys.argv[4], headers={"User-Agent": "Mozilla/5.0", "Accept": "*/*"})
r = c.getresponse()
print(json.dumps({"status": r.status, "body": r.read().decode("utf-8", "replace")}))
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    topo = mesh_topology()
    prefix = topo.prefix
    nginx = None
    try:
        lab = MeshLab(topo, tmp_path_factory.mktemp("mesh-nginx"))
        lab.start_chain()
        net = lab.create_network("relay")
        lab.relay = lab.add_device("relay", net, endpoint=RELAY_URL, relay=True)
        lab.b = lab.add_device("b", net)
        lab.c = lab.add_device("c", net)
        lab.tls = make_tls(lab.workdir / "tls", ("localhost",), (NGINX_IP,))
        lab.start_relay(lab.relay, listen=BACKEND)
        nginx = lab.nginx = start_nginx(BACKEND, listen=NGINX_IP, port=NGINX_PORT, tls=lab.tls,
                                        workdir=lab.workdir / "nginx", topology=topo, netns="relay")
        for dev in (lab.b, lab.c):
            lab.start_node(dev, "--ca-file", str(lab.tls.ca_cert))
        lab.wait_for(lambda: all(lab.status(d).get("ready_at") for d in (lab.b, lab.c)), 30, "nodes up")
        yield lab
    finally:
        logs = {d.name: lab.tail(d) for d in lab.devices.values()} if "lab" in locals() else {}
        if nginx is not None:
            nginx.stop()
        topo.teardown()
    leftovers = [ns for ns in list_namespaces() if ns.startswith(prefix)]
    assert not leftovers, f"namespaces left behind: {leftovers}; logs: {json.dumps(logs)[:2000]}"


def ping(lab, ns: str, ip: str, count: int = 3) -> None:
    r = lab.topo.run(ns, ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", ip], check=False, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr


def transfer(lab, src, dst, port: int, seed: int) -> None:
    srv = lab.topo.spawn(dst.ns, [sys.executable, XFER, "serve", dst.overlay, str(port)], stdout=-1, text=True)
    try:
        assert srv.stdout.readline().strip() == "listening"
        sent = json.loads(lab.topo.run(src.ns, [sys.executable, XFER, "send", dst.overlay, str(port), str(SIZE),
                                                str(seed)], timeout=90).stdout)
        received = json.loads(srv.stdout.readline())
    finally:
        lab.topo.stop(srv)
    assert received["bytes"] == sent["bytes"] == SIZE
    assert received["sha256"] == sent["sha256"]


def probe(lab, path: str) -> dict:
    r = lab.topo.run("b", [sys.executable, "-c", PROBE, str(lab.tls.ca_cert), NGINX_IP, str(NGINX_PORT), path])
    return json.loads(r.stdout)


def test_b_and_c_talk_through_the_relay_behind_nginx(lab):
    lab.wait_for(lambda: all((lab.peer(x, y).get("path") or "").startswith("relay:")
                             for x, y in ((lab.b, lab.c), (lab.c, lab.b))), 30, "B and C on the relay path")
    ping(lab, "b", lab.c.overlay)
    ping(lab, "c", lab.b.overlay)
    transfer(lab, lab.b, lab.c, 5201, seed=1)
    transfer(lab, lab.c, lab.b, 5202, seed=2)
    # the relay saw both devices (it meters them), and their links come through nginx: in the relay's
    # namespace the NAT routers' public addresses are connected to nginx's TLS port, and only loopback
    # connections (nginx's) reach the relay daemon
    lab.wait_for(lambda: all(lab.status(lab.relay)["usage"].get(d.public_key, {}).get("bytes_in", 0) > SIZE
                             for d in (lab.b, lab.c)), 5, "the relay's byte counts (status written every second)")
    assert {lab.b.public_key, lab.c.public_key} <= set(lab.status(lab.relay)["connected_devices"])
    established = lab.topo.run("relay", ["ss", "-Htn", "state", "established"]).stdout
    conns = [line.split()[-2:] for line in established.splitlines()]
    to_nginx = {peer.rsplit(":", 1)[0] for local, peer in conns if local == f"{NGINX_IP}:{NGINX_PORT}"}
    to_relay = {peer.rsplit(":", 1)[0] for local, peer in conns if local == BACKEND}
    assert {"198.18.0.101", "198.18.0.102"} <= to_nginx, conns
    assert to_relay == {"127.0.0.1"}, conns


def test_plain_https_for_a_wrong_path_gets_the_decoy_page(lab):
    before = lab.status(lab.relay)["decoys_served"]
    wrong = probe(lab, "/wp-login.php")
    bare = probe(lab, RELAY_PATH)          # even the secret path, without a valid hello in an upgrade
    home = probe(lab, "/")
    assert wrong["status"] == bare["status"] == 404
    assert wrong["body"] == bare["body"]   # a scanner cannot tell the relay's path from any other
    assert "<title>404 Not Found</title>" in wrong["body"] and "<center>nginx" in wrong["body"]
    assert home["status"] == 200 and "Welcome to nginx!" in home["body"]
    for page in (wrong, bare, home):
        assert "websocket" not in page["body"].lower() and "shadowmesh" not in page["body"].lower()
    # the pages are the relay's decoys, passed through nginx (not an nginx error page)
    lab.wait_for(lambda: lab.status(lab.relay)["decoys_served"] >= before + 3, 5, "the relay to count its decoys")
