"""Userspace mode end to end (issue 18): real namespaces, chain and CLI; B runs `up --userspace` as the
unprivileged user ``nobody`` (setpriv), A and C are TUN nodes (root).

Topology (lab.netns.mesh_topology): A public with an endpoint; B behind NAT 1 (userspace), C behind NAT 2.
A<->B is direct (B dials A), B<->C goes through the relay. Checked:

* curl through B's SOCKS5 proxy to an HTTP server on A (TUN, direct) and on C (TUN, through the relay);
* curl through A's and C's SOCKS5 proxies to the HTTP server B exposes (userspace peer, direct / relay);
* an ssh-like echo session through `shadowmesh-client nc` run as nobody;
* DNS over SOCKS5 UDP ASSOCIATE from B to a DNS responder on A;
* a forward each way: B's `forward:` to A's HTTP server, A's `forward:` to B's exposed echo port;
* refused targets: B's unexposed port, C's LAN address, a port nothing listens on;
* what a TUN node's kernel gets from a userspace node: ping replies, and an immediate RST for TCP;
* B never opens /dev/net/tun, never imports pyroute2, and runs with no capabilities.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from lab.mesh import MeshLab
from lab.netns import mesh_topology

pytestmark = pytest.mark.timeout(300)

RELAY_URL = "ws://198.18.0.20:7443/api/v1/ws/relay-k3"
A_URL = "ws://198.18.0.30:7443/api/v1/ws/a-9x"
HTTP_PORT, ECHO_PORT, DNS_PORT = 8000, 7777, 5353
HERE = Path(__file__).parent

_ECHO = ("import socket,threading\n"
         "s=socket.create_server((HOST,PORT))\n"
         "def h(c):\n"
         "    while d:=c.recv(65536): c.sendall(d)\n"
         "    c.shutdown(socket.SHUT_WR); c.close()\n"
         "while True:\n"
         "    c,_=s.accept(); threading.Thread(target=h,args=(c,),daemon=True).start()\n")
_DNS = ("import socket\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((HOST,PORT))\n"
        "while True:\n"
        "    q,a=s.recvfrom(512)\n"
        "    s.sendto(q[:2]+b'\\x81\\x80'+q[4:6]+b'\\x00\\x01\\x00\\x00\\x00\\x00'+q[12:]"
        "+b'\\xc0\\x0c\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x3c\\x00\\x04'+bytes([100,64,9,9]),a)\n")
_SOCKS_PROBE = ("import socket,struct,sys,ipaddress\n"
                "p,host,port=int(sys.argv[1]),sys.argv[2],int(sys.argv[3])\n"
                "s=socket.create_connection(('127.0.0.1',p)); s.sendall(b'\\x05\\x01\\x00'); s.recv(2)\n"
                "s.sendall(b'\\x05\\x01\\x00\\x01'+ipaddress.IPv4Address(host).packed+struct.pack('>H',port))\n"
                "print(s.recv(10)[1])\n")
_DNS_QUERY = ("import socket,struct,sys,ipaddress\n"
              "p,host,port=int(sys.argv[1]),sys.argv[2],int(sys.argv[3])\n"
              "t=socket.create_connection(('127.0.0.1',p)); t.sendall(b'\\x05\\x01\\x00'); t.recv(2)\n"
              "t.sendall(b'\\x05\\x03\\x00\\x01'+bytes(6)); r=t.recv(10)\n"
              "relay=(str(ipaddress.IPv4Address(r[4:8])),struct.unpack('>H',r[8:10])[0])\n"
              "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.settimeout(5)\n"
              "q=b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x04host\\x04mesh\\x00\\x00\\x01\\x00\\x01'\n"
              "u.sendto(b'\\x00\\x00\\x00\\x01'+ipaddress.IPv4Address(host).packed+struct.pack('>H',port)+q,relay)\n"
              "d,_=u.recvfrom(2048); print(d[10:12].hex(), '.'.join(map(str,d[-4:])))\n")
_TCP_PROBE = ("import socket,sys,time\n"
              "t=time.monotonic()\n"
              "try:\n"
              "    socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=5); print('connected')\n"
              "except ConnectionRefusedError: print('refused %.2f' % (time.monotonic()-t))\n"
              "except OSError as e: print('error', e)\n")

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"]


def _edit_config(dev, **keys) -> None:
    cfg = yaml.safe_load(dev.config.read_text())
    cfg.update(keys)
    dev.config.write_text(yaml.safe_dump(cfg))


def _python(script: str, host: str, port: int) -> list[str]:
    return [sys.executable, "-c", f"HOST={host!r};PORT={port}\n" + script]


@pytest.fixture(scope="module")
def lab():
    workdir = Path(tempfile.mkdtemp(prefix="sm-userspace-"))
    os.chmod(workdir, 0o755)   # nobody must reach B's folder and the deployment record
    topo = mesh_topology()
    try:
        lab = MeshLab(topo, workdir)
        lab.start_chain()
        os.chmod(lab.deployment, 0o644)
        net = lab.create_network("relay")
        lab.relay = lab.add_device("relay", net, endpoint=RELAY_URL, relay=True)
        lab.a = lab.add_device("a", net, endpoint=A_URL)
        lab.b = lab.add_device("b", net)
        lab.c = lab.add_device("c", net)
        a, b, c = lab.a, lab.b, lab.c
        _edit_config(a, forward=[f"127.0.0.1:9022 -> {b.overlay}:22"],
                     userspace={"socks": "127.0.0.1:1080"})
        _edit_config(c, userspace={"socks": "127.0.0.1:1080"})
        _edit_config(b, forward=[f"127.0.0.1:8080 -> {a.overlay}:{HTTP_PORT}"],
                     expose=[f"22 -> 127.0.0.1:{ECHO_PORT}", f"80 -> 127.0.0.1:{HTTP_PORT}"])
        # B's folder belongs to nobody, with its own copy of the passphrase
        shutil.copy(workdir / "passphrase", b.dir / "passphrase")
        subprocess.run(["chown", "-R", "nobody:nogroup", str(b.dir)], check=True)
        # services: HTTP + echo + DNS on A's and C's overlay addresses (TUN), HTTP + echo on B's loopback
        for dev in (a, c):
            (dev.dir / "www").mkdir()
            (dev.dir / "www" / "index.html").write_text(f"hello from {dev.name}\n")
        (b.dir / "index.html").write_text("hello from b (userspace)\n")
        lab.start_relay(lab.relay)
        lab.start_node(a)
        lab.start_node(c)
        lab.wait_for(lambda: all(lab.status(d).get("ready_at") for d in (a, c)), 30, "TUN nodes up")
        for dev in (a, c):
            topo.spawn(dev.ns, [sys.executable, "-m", "http.server", "--bind", dev.overlay, "-d",
                                str(dev.dir / "www"), str(HTTP_PORT)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
            topo.spawn(dev.ns, _python(_ECHO, dev.overlay, ECHO_PORT))
        topo.spawn(a.ns, _python(_DNS, a.overlay, DNS_PORT))
        topo.spawn(b.ns, [*NOBODY, sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "-d", str(b.dir),
                          str(HTTP_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        topo.spawn(b.ns, [*NOBODY, *_python(_ECHO, "127.0.0.1", ECHO_PORT)])
        for ns, host, port in ((a.ns, a.overlay, HTTP_PORT), (c.ns, c.overlay, HTTP_PORT), (a.ns, a.overlay, ECHO_PORT),
                               (b.ns, "127.0.0.1", HTTP_PORT), (b.ns, "127.0.0.1", ECHO_PORT)):
            lab.wait_for(lambda ns=ns, host=host, port=port: _listening(topo, ns, host, port), 15, f"{host}:{port}")
        b.log = b.dir / "node.log"
        argv = [*NOBODY, *lab.cli_argv(b.config, "up", "--userspace", "--status-file", str(b.status_file),
                                       "--api", "off")]
        argv[argv.index("--passphrase-file") + 1] = str(b.dir / "passphrase")
        b.proc = topo.spawn(b.ns, argv, stdout=open(b.log, "ab"), stderr=subprocess.STDOUT, cwd=str(workdir))
        lab.wait_for(lambda: lab.status(b).get("ready_at"), 30, "B (userspace) up")
        lab.wait_for(lambda: lab.peer(b, a).get("path") == "direct"
                     and str(lab.peer(b, c).get("path")).startswith("relay"), 30, "B's paths")
        yield lab
    finally:
        if "lab" in locals():
            for d in lab.devices.values():
                print(f"--- {d.name} ---\n{lab.tail(d)}")
        topo.teardown()
        shutil.rmtree(workdir, ignore_errors=True)


def _listening(topo, ns: str, host: str, port: int) -> bool:
    code = f"import socket; socket.create_connection(({host!r}, {port}), timeout=0.5).close()"
    return topo.run(ns, [sys.executable, "-c", code], check=False).returncode == 0


def _as_nobody(lab, ns: str, argv: list[str], input: str | None = None, timeout: float = 30):
    return lab.topo.run(ns, [*NOBODY, *argv], check=False, timeout=timeout, input=input)


def _curl(lab, ns: str, url: str, socks: int = 1080, nobody: bool = False) -> str:
    argv = ["curl", "-s", "-S", "-m", "15", "--socks5-hostname", f"127.0.0.1:{socks}", url]
    r = _as_nobody(lab, ns, argv) if nobody else lab.topo.run(ns, argv, check=False, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_b_runs_unprivileged_without_tun_or_pyroute2(lab):
    pid = lab.status(lab.b)["pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert "Uid:\t65534" in status and "CapEff:\t0000000000000000" in status
    fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert not any("net/tun" in f for f in fds), fds
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "pyroute2" not in maps
    r = lab.topo.run(lab.b.ns, ["ip", "-o", "link", "show", "type", "tun"], check=False)
    assert r.returncode == 0 and r.stdout.strip() == ""   # no TUN interface in B's namespace


def test_curl_from_userspace_to_tun_peers_direct_and_through_the_relay(lab):
    assert lab.peer(lab.b, lab.a)["path"] == "direct"
    assert lab.peer(lab.b, lab.c)["path"].startswith("relay")
    assert _curl(lab, lab.b.ns, f"http://{lab.a.overlay}:{HTTP_PORT}/", nobody=True) == "hello from a\n"
    assert _curl(lab, lab.b.ns, f"http://{lab.c.overlay}:{HTTP_PORT}/", nobody=True) == "hello from c\n"


def test_curl_from_tun_peers_to_the_userspace_peers_exposed_port(lab):
    assert _curl(lab, lab.a.ns, f"http://{lab.b.overlay}:80/index.html") == "hello from b (userspace)\n"
    assert _curl(lab, lab.c.ns, f"http://{lab.b.overlay}:80/index.html") == "hello from b (userspace)\n"


def test_ssh_like_echo_session_through_nc(lab):
    lines = "".join(f"line {i} " + "x" * 1000 + "\n" for i in range(200))
    argv = [*lab.cli_argv(lab.b.config, "nc", lab.a.overlay, str(ECHO_PORT))]
    r = _as_nobody(lab, lab.b.ns, argv, input=lines)
    assert r.returncode == 0, r.stderr
    assert r.stdout == lines


def test_dns_over_socks5_udp_associate(lab):
    r = _as_nobody(lab, lab.b.ns, [sys.executable, "-c", _DNS_QUERY, "1080", lab.a.overlay, str(DNS_PORT)])
    assert r.stdout.split() == ["1234", "100.64.9.9"], r.stderr


def test_a_forward_in_each_direction(lab):
    # B's forward: 127.0.0.1:8080 in B's namespace -> A's HTTP server
    r = _as_nobody(lab, lab.b.ns, ["curl", "-s", "-S", "-m", "15", "http://127.0.0.1:8080/"])
    assert r.stdout == "hello from a\n", (r.returncode, r.stderr)
    # A's forward: 127.0.0.1:9022 in A's namespace -> B's exposed port 22 (its echo server)
    r = lab.topo.run(lab.a.ns, [sys.executable, "-c",
                                "import socket;s=socket.create_connection(('127.0.0.1',9022),timeout=10);"
                                "s.sendall(b'ping over the forward');s.shutdown(socket.SHUT_WR);"
                                "print(s.makefile('rb').read().decode())"], check=False)
    assert r.stdout.strip() == "ping over the forward", r.stderr


def test_refused_targets(lab):
    def reply(host, port):
        r = _as_nobody(lab, lab.b.ns, [sys.executable, "-c", _SOCKS_PROBE, "1080", host, str(port)])
        return int(r.stdout.strip())

    assert reply(lab.b.overlay, 22) == 4            # ourselves: not a peer
    assert reply("198.19.2.2", 22) == 4             # C's LAN address: nobody routes it for us
    assert reply(lab.c.overlay, 4444) == 5          # C allows its overlay, but nothing listens there
    r = lab.topo.run(lab.a.ns, [sys.executable, "-c", _SOCKS_PROBE, "1080", lab.b.overlay, "25"], check=False)
    assert int(r.stdout.strip()) == 2               # B exposes 22 and 80 only: its policy says no


def test_a_tun_kernel_gets_ping_replies_and_immediate_resets_from_the_userspace_node(lab):
    r = lab.topo.run(lab.a.ns, ["ping", "-c", "2", "-W", "2", lab.b.overlay], check=False)
    if shutil.which("ping"):
        assert r.returncode == 0, r.stdout + r.stderr
    r = lab.topo.run(lab.a.ns, [sys.executable, "-c", _TCP_PROBE, lab.b.overlay, "80"], check=False)
    verdict, *rest = r.stdout.split()
    assert verdict == "refused" and float(rest[0]) < 1.0, r.stdout
    assert json.loads(lab.b.status_file.read_text())["counters"]["tun_tx_packets"] >= 1   # the sink answered
