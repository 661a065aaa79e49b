"""Sessions on demand on real parts (issue 15 "5,000 peers per node"): a real ``up`` daemon (real TUN,
WebSocket listener) in one namespace, 100 real client sessions from a load generator in another
(bench/peers_netns.py Lab). The node answers pings through its TUN to the first and last peer while the
others sit idle, and drops the idle ones after its idle timeout (a short one here), keeping the busy ones.

Root only. Run: .venv/bin/pytest tests/e2e/test_peers_netns.py -p no:ape_test -q
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from bench.peers_netns import Lab, overlay

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, TUN)")

LIVE = 100
FIRST, LAST = 3, 3 + LIVE - 1     # device indices of the first and last swarm peer (bench/peers_netns.py)
IDLE_TIMEOUT = 8.0
"""Seconds: the node's idle timeout here. The busy peers get a ping every 0.5 s, far inside it."""


def ping_until(lab: Lab, index: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.ping(index, 1, 5.0) is not None:
            return True
    return False


def test_busy_sessions_kept_idle_sessions_dropped(tmp_path):
    with Lab(2 * LIVE, idle_timeout=IDLE_TIMEOUT, workdir=str(tmp_path)) as lab:
        node = lab.start_node(2 * LIVE)
        swarm = lab.start_swarm()
        up = swarm.ask("up", FIRST, LAST + 1, timeout=300)
        assert up["up"] == LIVE, up
        node.wait_for(f"{LIVE} sessions at the node", lambda s: s["established"] >= LIVE, 120.0)
        assert ping_until(lab, FIRST) and ping_until(lab, LAST)

        busy = [lab.topo.spawn("node", ["ping", "-n", "-q", "-i", "0.5", overlay(i)], stdout=subprocess.DEVNULL)
                for i in (FIRST, LAST)]
        try:
            status = node.wait_for("the idle sessions to be dropped", lambda s: s["dropped"] >= LIVE - 2, 120.0)
            assert status["live"] == 2, status                  # the busy ones stay
            sw = swarm.wait_for("the node to close the idle links", lambda s: s["open"] <= 2, 60.0)
            assert sorted(sw["open_indices"]) == [FIRST, LAST], sw
            assert ping_until(lab, FIRST) and ping_until(lab, LAST)
        finally:
            for p in busy:
                lab.topo.stop(p)
