"""`up --discovery` as a user runs it (issue 15): real `shadowmesh-client up` processes in the mesh lab's
namespaces (relay and A public, B and C behind two NATs). B and C first reach each other through the relay,
then on a direct link punched through both NATs with candidates exchanged through the relay, and each has
published its signed record. Root only."""

from __future__ import annotations

import os

import pytest

from bench.mesh import bench_mesh
from lab.netns import list_namespaces

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, TUN)")


def test_up_discovery_takes_two_devices_behind_nats_direct(tmp_path):
    lab = bench_mesh(str(tmp_path), lambda *_: None, node_args=("--discovery",))
    prefix = lab.topo.prefix
    try:
        def direct() -> bool:
            lab.topo.run("b", ["ping", "-n", "-c", "1", "-W", "1", lab.c.overlay], check=False)
            return lab.peer(lab.b, lab.c).get("path") == "direct" == lab.peer(lab.c, lab.b).get("path")

        lab.wait_for(direct, 60, "B and C on a direct path")
        for dev in (lab.b, lab.c):
            st = lab.status(dev)["discovery"]
            assert st["publishes"] >= 1 and st["seq"] > 0, st
        r = lab.topo.run("b", ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", lab.c.overlay], check=False)
        assert r.returncode == 0, r.stdout
    finally:
        lab.topo.teardown()
    assert not [ns for ns in list_namespaces() if ns.startswith(prefix)]
