"""v2ray 4.34 (Debian package): VMess over WebSocket, the closest "tunnel over WebSocket" peer.

It is a TCP-STREAM proxy, not a packet tunnel (labelled so in every table): on B a dokodemo-door inbound
per forwarded port (B 127.0.0.1:<local> -> A's service port) -> vmess over ws:// to A -> freedom on A.
No ICMP goes through it, so it has no ping figure; its latency figure is the TCP echo RTT.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.peers import Tunnel

PORT = 10086
"""A's VMess/WebSocket port."""
LOCAL_OFFSET = 10000
"""B dials 127.0.0.1:(port + LOCAL_OFFSET) to reach A's ``port``."""


@contextlib.contextmanager
def up(topo: Any, a: str, b: str, a_ip: str, b_ip: str, workdir: str, *,
       forward: tuple[int, ...] = (5201, 7007)) -> Iterator[Tunnel]:
    d = Path(workdir) / "v2ray"
    d.mkdir(parents=True, exist_ok=True)
    uid = str(uuid.uuid4())
    ws = {"network": "ws", "wsSettings": {"path": "/v2"}}
    server = {"log": {"loglevel": "none"},
              "inbounds": [{"port": PORT, "listen": a_ip, "protocol": "vmess",
                            "settings": {"clients": [{"id": uid, "alterId": 0}]}, "streamSettings": ws}],
              "outbounds": [{"protocol": "freedom"}]}
    client = {"log": {"loglevel": "none"},
              "inbounds": [{"port": p + LOCAL_OFFSET, "listen": "127.0.0.1", "protocol": "dokodemo-door",
                            "settings": {"address": a_ip, "port": p, "network": "tcp"}} for p in forward],
              "outbounds": [{"protocol": "vmess", "streamSettings": ws, "settings": {"vnext": [
                  {"address": a_ip, "port": PORT,
                   "users": [{"id": uid, "alterId": 0, "security": "chacha20-poly1305"}]}]}}]}
    procs = []
    try:
        for ns, name, conf in ((a, "server", server), (b, "client", client)):
            path = d / f"{name}.json"
            path.write_text(json.dumps(conf))
            procs.append(topo.spawn(ns, ["v2ray", "-config", str(path)], stdout=open(d / f"{name}.log", "wb"),
                                    stderr=subprocess.STDOUT))
        _wait_listening(topo, b, forward[0] + LOCAL_OFFSET, procs)
        yield Tunnel("v2ray-vmess-ws", "127.0.0.1", [p.pid for p in procs], packet=False,
                     ports={p: p + LOCAL_OFFSET for p in forward})
    finally:
        for p in procs:
            topo.stop(p)


def _wait_listening(topo: Any, ns: str, port: int, procs: list, timeout: float = 10.0) -> None:
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=0.5).close()"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"v2ray exited with {[p.poll() for p in procs]}")
        if topo.run(ns, [sys.executable, "-c", code], check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"v2ray: nothing listens on 127.0.0.1:{port} in {ns} within {timeout} s")

