"""wireguard-go (Debian package) between two namespaces: bench/baselines.py ``wireguard_go`` as a peer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from bench.baselines import WG_MTU, wireguard_go
from bench.peers import Tunnel, wait_ping


@contextlib.contextmanager
def up(topo: Any, a: str, b: str, a_ip: str, b_ip: str, workdir: str) -> Iterator[Tunnel]:
    with wireguard_go(topo, a, b, a_ip, b_ip) as wg:
        procs = [p for p in topo.procs if p.args[-1] in (wg.iface_a, wg.iface_b) and p.poll() is None]
        wait_ping(topo, b, wg.ip_a, procs, "wireguard-go")  # B (behind the NAT) speaks first
        yield Tunnel("wireguard-go", wg.ip_a, [p.pid for p in procs], mtu=WG_MTU)
