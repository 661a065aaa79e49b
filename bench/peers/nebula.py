"""Nebula 1.6.1 (Debian package) between two namespaces: A is the lighthouse, B dials it.

Certificates come from ``nebula-cert`` (a throwaway CA in ``workdir``); ``cipher: chachapoly``; the
firewall lets everything through. ``mtu``: the tun MTU (1,300 is Nebula's default; 8,900 its largest
useful one here, the outer UDP datagrams then fragment on the 1,500-byte veths).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.peers import Tunnel, wait_ping

PORT = 4242
"""UDP port of both Nebula daemons."""
NET = "172.30.0"
"""Nebula's overlay /24 in the benchmark (A .1, B .2)."""


def _config(d: Path, name: str, ip: str, lighthouse: bool, a_ip: str, mtu: int, dev: str) -> Path:
    conf = {
        "pki": {"ca": str(d / "ca.crt"), "cert": str(d / f"{name}.crt"), "key": str(d / f"{name}.key")},
        "static_host_map": {} if lighthouse else {f"{NET}.1": [f"{a_ip}:{PORT}"]},
        "lighthouse": {"am_lighthouse": lighthouse, "interval": 60, "hosts": [] if lighthouse else [f"{NET}.1"]},
        "listen": {"host": "0.0.0.0", "port": PORT},
        "punchy": {"punch": True},
        "cipher": "chachapoly",
        "tun": {"dev": dev, "mtu": mtu, "drop_local_broadcast": True, "drop_multicast": True},
        "logging": {"level": "error"},
        "firewall": {"outbound": [{"port": "any", "proto": "any", "host": "any"}],
                     "inbound": [{"port": "any", "proto": "any", "host": "any"}]},
    }
    path = d / f"{name}.yml"
    path.write_text(json.dumps(conf))  # JSON is YAML
    return path


@contextlib.contextmanager
def up(topo: Any, a: str, b: str, a_ip: str, b_ip: str, workdir: str, *, mtu: int = 1300) -> Iterator[Tunnel]:
    d = Path(workdir) / f"nebula-{mtu}"
    d.mkdir(parents=True, exist_ok=True)
    run = lambda *argv: subprocess.run(argv, cwd=d, check=True, capture_output=True)  # noqa: E731
    run("nebula-cert", "ca", "-name", "bench", "-out-crt", "ca.crt", "-out-key", "ca.key")
    for name, host in (("a", 1), ("b", 2)):
        run("nebula-cert", "sign", "-name", name, "-ip", f"{NET}.{host}/24", "-out-crt", f"{name}.crt",
            "-out-key", f"{name}.key")
    procs = []
    try:
        for ns, name, lh in ((a, "a", True), (b, "b", False)):
            conf = _config(d, name, f"{NET}.{1 if lh else 2}", lh, a_ip, mtu, f"neb{name}{mtu}"[:15])
            procs.append(topo.spawn(ns, ["nebula", "-config", str(conf)], stdout=subprocess.DEVNULL,
                                    stderr=open(d / f"{name}.log", "wb")))
        wait_ping(topo, b, f"{NET}.1", procs, f"nebula (MTU {mtu})")
        yield Tunnel(f"nebula-{mtu}", f"{NET}.1", [p.pid for p in procs], mtu=mtu)
    finally:
        for p in procs:
            topo.stop(p)
