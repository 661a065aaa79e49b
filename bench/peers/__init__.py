"""The tunnels ShadowMesh is compared with, each brought up between two namespaces of one topology.

Every peer module has ``up(topo, a, b, a_ip, b_ip, workdir, **options)``: a context manager that starts
the peer's daemons in namespaces ``a`` (the side that listens: public) and ``b`` (the side that dials:
may be behind a NAT), waits until a packet (or a connection) gets through, yields a ``Tunnel`` and stops
both daemons on exit (by PID). They all use ChaCha20-Poly1305 for the data, as ShadowMesh does
(XChaCha20-Poly1305), so the CPU figures compare like with like.

* ``wireguard``  wireguard-go (Debian), MTU 1,420;
* ``nebula``     Nebula 1.6.1 (``cipher: chachapoly``), A is the lighthouse; MTU 1,300 (its default) or
                 8,900 (the outer UDP then fragments on the 1,500-byte veths);
* ``openvpn``    OpenVPN 2.6 userspace (no DCO here), UDP or TCP, p2p TLS with pinned self-signed
                 certificates (``peer-fingerprint``), ``CHACHA20-POLY1305``;
* ``v2ray``      v2ray 4.34 VMess over WebSocket (``chacha20-poly1305``): a TCP-STREAM proxy, not a packet
                 tunnel (dokodemo-door on B -> vmess/ws -> freedom on A): no ICMP, so no ping figure.

May import: the standard library only (the binaries are Debian packages: the Makefile's DEBIAN_PACKAGES).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tunnel:
    """A running tunnel as seen from B: ``target`` is A's address through it (for a stream proxy, B's
    local listener, and ``ports`` maps A's service port to the port to dial on B); ``pids``: the
    tunnel's processes on both sides (for the CPU meter)."""

    name: str
    target: str
    pids: list[int]
    packet: bool = True
    ports: dict[int, int] = field(default_factory=dict)
    mtu: int | None = None


def wait_ping(topo: Any, ns: str, ip: str, procs: list[subprocess.Popen], what: str, timeout: float = 20.0) -> None:
    """Ping ``ip`` from ``ns`` until it answers (the tunnel is up) or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"{what}: a daemon exited with {[p.poll() for p in procs]}")
        if topo.run(ns, ["ping", "-n", "-c", "1", "-W", "0.3", ip], check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: no echo reply from {ip} within {timeout} s")
