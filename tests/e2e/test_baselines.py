"""The benchmark baselines run (shortened) between the namespaces of a veth pair and clean up after themselves."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.baselines import WG_SOCKET_DIR, iperf3_tcp, ping_rtt, tun_loop, wireguard_go
from lab.netns import Topology, netns_pids


def test_iperf3_and_ping_over_plain_veth(veth: Topology) -> None:
    if shutil.which("iperf3") is None:
        pytest.skip("needs iperf3 (make debs)")
    b = veth.hosts["b"].ip
    tcp = iperf3_tcp(veth, "a", "b", b, seconds=1)
    assert tcp["gbit_s"] > 0.1 and tcp["seconds"] == 1
    rtt = ping_rtt(veth, "a", b, count=20)
    assert rtt["loss"] == 0 and 0 < rtt["rtt_ms_min"] <= rtt["rtt_ms_median"] <= rtt["rtt_ms_max"]


def test_wireguard_go_tunnel_carries_traffic_and_is_removed(veth: Topology) -> None:
    if shutil.which("wireguard-go") is None or shutil.which("wg") is None:
        pytest.skip("needs wireguard-go and wireguard-tools (make debs)")
    a, b = veth.hosts["a"], veth.hosts["b"]
    with wireguard_go(veth, "a", "b", a.ip, b.ip) as wg:
        assert len(wg.iface_a) <= 15 and wg.iface_a != wg.iface_b
        assert ping_rtt(veth, "a", wg.ip_b, count=10, interval=0.02)["loss"] == 0
        assert "wireguard" not in veth.ip("a", "-d", "link", "show", wg.iface_a)  # userspace: a TUN
        sockets = [WG_SOCKET_DIR / f"{i}.sock" for i in (wg.iface_a, wg.iface_b)]
        assert all(s.exists() for s in sockets)
    assert not any(Path(s).exists() for s in sockets)
    assert netns_pids(a.netns) == [] and netns_pids(b.netns) == []
    assert wg.iface_a not in veth.ip("a", "link", "show")


def test_python_tun_loop_moves_packets(veth: Topology) -> None:
    result = tun_loop(veth, "a", mtu=1400, seconds=0.5)
    assert result["packets_per_s"] > 1000
    assert netns_pids(veth.hosts["a"].netns) == []
