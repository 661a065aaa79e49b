"""OpenVPN 2.6 (Debian package, userspace: no DCO module here) between two namespaces, UDP or TCP.

Point-to-point TLS mode with two self-signed certificates pinned by fingerprint (``peer-fingerprint``,
OpenVPN 2.6: no CA needed), data cipher ``CHACHA20-POLY1305``. A listens, B connects (through its NAT).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.peers import Tunnel, wait_ping

PORT = 1194
"""OpenVPN's port on A (UDP or TCP)."""
NET = "172.31.0"
"""The tunnel's addresses: A .1, B .2."""
MTU = 1500
"""OpenVPN's default tun-mtu."""


def _cert(d: Path, name: str) -> str:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={name}", "-keyout", str(d / f"{name}.key"),
                    "-out", str(d / f"{name}.crt")], check=True, capture_output=True)
    out = subprocess.run(["openssl", "x509", "-in", str(d / f"{name}.crt"), "-noout", "-fingerprint", "-sha256"],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1]


@contextlib.contextmanager
def up(topo: Any, a: str, b: str, a_ip: str, b_ip: str, workdir: str, *, proto: str = "udp") -> Iterator[Tunnel]:
    d = Path(workdir) / f"openvpn-{proto}"
    d.mkdir(parents=True, exist_ok=True)
    fp = {name: _cert(d, name) for name in ("a", "b")}
    common = ["--dev-type", "tun", "--topology", "p2p", "--disable-dco", "--data-ciphers", "CHACHA20-POLY1305",
              "--cipher", "CHACHA20-POLY1305", "--verb", "1", "--port", str(PORT), "--dh", "none",
              "--ping", "10", "--tun-mtu", str(MTU)]
    sides = {
        "a": ["--dev", f"ovpna{proto}", "--tls-server", "--ifconfig", f"{NET}.1", f"{NET}.2",
              "--proto", "udp4" if proto == "udp" else "tcp4-server", "--local", a_ip,
              "--cert", str(d / "a.crt"), "--key", str(d / "a.key"), "--peer-fingerprint", fp["b"]],
        "b": ["--dev", f"ovpnb{proto}", "--tls-client", "--ifconfig", f"{NET}.2", f"{NET}.1",
              "--proto", "udp4" if proto == "udp" else "tcp4-client", "--remote", a_ip,
              "--cert", str(d / "b.crt"), "--key", str(d / "b.key"), "--peer-fingerprint", fp["a"]],
    }
    if proto == "udp":
        sides["a"].append("--float")
    else:  # as OpenVPN's manual advises for TCP mode: no Nagle delay on the tunnel's own socket
        common += ["--socket-flags", "TCP_NODELAY"]
    procs = []
    try:
        for ns, name in ((a, "a"), (b, "b")):
            procs.append(topo.spawn(ns, ["openvpn", *common, *sides[name]], stdout=open(d / f"{name}.log", "wb"),
                                    stderr=subprocess.STDOUT))
        wait_ping(topo, b, f"{NET}.1", procs, f"openvpn {proto}", timeout=30)
        yield Tunnel(f"openvpn-{proto}", f"{NET}.1", [p.pid for p in procs], mtu=MTU)
    finally:
        for p in procs:
            topo.stop(p)
