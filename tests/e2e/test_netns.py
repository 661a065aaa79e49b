"""The topology builder: reachability and NAT behaviour of the mesh topology, and clean teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab.netns import Topology, list_namespaces, mesh_topology

PORT = 7000
TESTS = Path(__file__).resolve().parents[1]

# A one-shot TCP server that tells the client which source address it saw.
SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen()
    print("ready", flush=True)
    while True:
        c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
    """
)
CLIENT = textwrap.dedent(
    """
    import socket, sys
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print(s.recv(100).decode())
    """
)


def serve(topo: Topology, host: str, port: int = PORT) -> subprocess.Popen:
    proc = topo.spawn(host, [sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def connect(topo: Topology, host: str, ip: str, port: int = PORT, timeout: float = 0.5) -> str | None:
    """The source address the server saw, or None if the connection could not be opened."""
    res = topo.run(host, [sys.executable, "-c", CLIENT, ip, str(port), str(timeout)], check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def ping(topo: Topology, host: str, ip: str) -> bool:
    return topo.run(host, ["ping", "-c", "1", "-W", "1", ip], check=False).returncode == 0


def test_mesh_hosts_and_addresses(mesh: Topology) -> None:
    want = {"anvil": "198.18.0.10", "relay": "198.18.0.20", "a": "198.18.0.30",
            "nat1": "198.18.0.101", "nat2": "198.18.0.102", "b": "198.19.1.2", "c": "198.19.2.2"}
    assert {name: h.ip for name, h in mesh.hosts.items()} == want
    for h in mesh.hosts.values():
        assert h.netns.startswith(f"smt-{os.getpid()}-")
        assert h.netns in list_namespaces()
        assert f"inet {h.ip}/24" in mesh.ip(h.netns, "-4", "addr", "show", "dev", h.iface)


def test_public_host_reaches_relay(mesh: Topology) -> None:
    assert ping(mesh, "a", mesh.hosts["relay"].ip)
    serve(mesh, "relay")
    assert connect(mesh, "a", mesh.hosts["relay"].ip) == mesh.hosts["a"].ip


def test_device_behind_nat_reaches_public_host_but_not_the_reverse(mesh: Topology) -> None:
    a, b, nat1 = mesh.hosts["a"], mesh.hosts["b"], mesh.hosts["nat1"]
    serve(mesh, "a")
    # Outbound from B works, and A sees the NAT router's public address (masquerade).
    assert connect(mesh, "b", a.ip) == nat1.ip
    assert ping(mesh, "b", a.ip)
    serve(mesh, "b")
    # No port forwarding: A cannot open a connection to B through the router's public address...
    assert connect(mesh, "a", nat1.ip) is None
    # ...nor directly, even with a route to B's LAN through the router (stateful firewall drops it).
    mesh.ip("a", "route", "add", str(nat1.lan.subnet), "via", nat1.ip)
    assert ping(mesh, "a", nat1.ip)  # the router itself answers: the route works
    assert connect(mesh, "a", b.ip) is None
    assert not ping(mesh, "a", b.ip)
    # B's own connection still works afterwards (state is per connection).
    assert connect(mesh, "b", a.ip) == nat1.ip


def test_devices_behind_different_nats_cannot_reach_each_other_unsolicited(mesh: Topology) -> None:
    c, nat1, nat2 = mesh.hosts["c"], mesh.hosts["nat1"], mesh.hosts["nat2"]
    serve(mesh, "c")
    assert connect(mesh, "b", nat2.ip) is None
    # Route B's router towards C's LAN: the packets reach nat2, which drops them.
    mesh.ip("nat1", "route", "add", str(nat2.lan.subnet), "via", nat2.ip)
    assert ping(mesh, "b", nat2.ip)
    assert connect(mesh, "b", c.ip) is None
    # Both reach the relay, which is how they will meet.
    serve(mesh, "relay")
    assert connect(mesh, "b", mesh.hosts["relay"].ip) == nat1.ip
    assert connect(mesh, "c", mesh.hosts["relay"].ip) == nat2.ip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose, but only its parent (us) can reap it: check /proc.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_teardown_kills_everything_and_deletes_namespaces() -> None:
    topo = Topology(kill_timeout=0.5)
    pub = topo.add_switch("public")
    topo.add_host("h1", pub)
    router = topo.add_nat_router("r", pub)
    topo.add_host("h2", router.lan)
    plain = topo.spawn("h1", ["sleep", "300"])
    stubborn = topo.spawn("h2", ["sh", "-c", "trap '' TERM; sleep 300 & wait"])
    # A daemon in its own session, not tracked by us: found through `ip netns pids`.
    escaped = topo.spawn("h2", ["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"],
                         stdout=subprocess.PIPE, text=True)
    daemon_pid = int(escaped.stdout.readline())
    time.sleep(0.1)
    pids = [plain.pid, stubborn.pid, daemon_pid]
    assert all(_alive(p) for p in pids)
    names = list(topo.namespaces)
    assert len(names) == 4  # switch, h1, router, h2

    topo.teardown()
    topo.teardown()  # idempotent

    assert not any(_alive(p) for p in pids)
    assert plain.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL  # ignored SIGTERM
    assert not set(names) & set(list_namespaces())


def test_context_manager_tears_down_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with mesh_topology() as topo:
            proc = topo.spawn("relay", ["sleep", "300"])
            raise RuntimeError("boom")
    assert not _alive(proc.pid)
    assert not [n for n in list_namespaces() if n.startswith(topo.prefix)]


INNER_TEST = """
def test_fails(mesh):
    proc = mesh.spawn("b", ["sleep", "300"])
    with open({record!r}, "w") as f:
        f.write(mesh.prefix + " " + str(proc.pid))
    assert False, "the body fails"
"""

INNER_SCRIPT = """
import sys, time
sys.path.insert(0, {repo!r})
from lab.netns import mesh_topology
topo = mesh_topology()
proc = topo.spawn("c", ["sleep", "300"])
print(topo.prefix, proc.pid, flush=True)
if sys.argv[1] == "raise":
    raise RuntimeError("uncaught")
time.sleep(60)
"""


def _assert_gone(prefix: str, pid: int) -> None:
    assert prefix.startswith("smt-")
    assert not [n for n in list_namespaces() if n.startswith(prefix)]
    assert not _alive(pid)


def test_fixture_finalizer_cleans_up_a_failing_test(tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    (tmp_path / "conftest.py").write_text("from tests.e2e.conftest import mesh  # noqa: F401 - the fixture\n")
    (tmp_path / "test_inner.py").write_text(INNER_TEST.format(record=str(record)))
    env = dict(os.environ, PYTHONPATH=str(TESTS.parent))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:ape_test", "-p", "no:cacheprovider",
                          str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert "1 failed" in res.stdout, res.stdout + res.stderr
    prefix, pid = record.read_text().split()
    _assert_gone(prefix, int(pid))


@pytest.mark.parametrize("how", ["raise", "sigterm"])
def test_atexit_cleans_up_when_the_process_dies(how: str) -> None:
    script = INNER_SCRIPT.format(repo=str(TESTS.parent))
    proc = subprocess.Popen([sys.executable, "-c", script, how], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        prefix, pid = proc.stdout.readline().split()
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    _assert_gone(prefix, int(pid))


def test_offloads_can_be_switched_off_for_userspace_forwarders(veth: Topology) -> None:
    def features() -> str:
        return veth.run("a", ["ethtool", "-k", "veth0"]).stdout

    assert "generic-segmentation-offload: on" in features()
    veth.set_offloads("a", "veth0", on=False)
    out = features()
    for feature in ("tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload"):
        assert f"{feature}: off" in out
    assert ping(veth, "a", veth.hosts["b"].ip)
