"""What the side-by-side benchmark measures through any tunnel, and the loss it can put on a link.

Every function takes a ``Topology`` (lab/netns.py: ``spawn``/``run``/``stop``/``ns``) and namespace names.

* ``iperf3``: one TCP stream, ``seconds`` long -> Gbit/s (receiver), retransmits, bytes moved. The client
  may dial another port than the server listens on (a TCP proxy such as v2ray's dokodemo-door).
* ``ping``: ICMP echo every 5 ms -> RTT p50 / p99 / min in ms, loss.
* ``tcp_echo``: request/response of 64 bytes on one TCP connection (TCP_NODELAY) -> RTT p50 / p99 in ms:
  the latency figure a stream proxy can be compared on (it carries no ICMP).
* ``CpuMeter``: CPU seconds (user + system, all threads, from ``/proc/<pid>/stat``) that a set of
  processes spent between ``start()`` and ``stop()``; ``per_gb(bytes)`` -> CPU s per GB (10^9 bytes).
  The figure that moves least on a shared machine (it does not count time spent waiting for a core).
* ``loss``: a context in which ``percent`` % of the packets arriving on each listed interface are
  dropped by nftables at the netdev ingress hook, with TSO/GSO/GRO and checksum offloads off on those
  interfaces and their veth peers, so each dropped unit is one <= 1,500-byte packet as on a wire
  (notes/real-parts.md: at inet hooks a "packet" may be a 64 KB GSO aggregate).

Units: seconds, ms for RTTs, Gbit/s = 10^9 bit/s. No timed assertions: these are figures, not tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterable, Iterator
from typing import Any

PING_INTERVAL = 0.005
"""Seconds between echo requests (root only below 0.2 s)."""
PING_COUNT = 400
"""Echo requests per RTT measurement (2 s at 5 ms): enough for a p99."""
ECHO_COUNT = 400
"""Round trips per TCP echo measurement."""
ECHO_PORT = 7007
"""TCP port of the echo server."""
IPERF_PORT = 5201
"""TCP port of the iperf3 server."""
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def iperf3(topo: Any, client: str, server: str, target: str, *, seconds: float, port: int = IPERF_PORT,
           client_port: int | None = None) -> dict[str, float]:
    """One iperf3 TCP stream from namespace ``client`` to ``target`` (served in namespace ``server``)."""
    srv = topo.spawn(server, ["iperf3", "-s", "-1", "-p", str(port), "--forceflush"],
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in srv.stdout:  # --forceflush: "Server listening on PORT" arrives at once
            if "listening" in line:
                break
        else:
            raise RuntimeError(f"iperf3 server in {server} exited with {srv.wait()}")
        res = topo.run(client, ["iperf3", "-c", target, "-p", str(client_port or port), "-t", str(seconds), "-J"],
                       timeout=seconds + 40, check=False)
    finally:
        topo.stop(srv)
    data = json.loads(res.stdout or "{}")
    if "end" not in data or "sum_received" not in data["end"]:
        raise RuntimeError(f"iperf3 to {target} failed: {data.get('error', res.stderr[-300:])}")
    end = data["end"]
    return {
        "gbit_s": round(end["sum_received"]["bits_per_second"] / 1e9, 3),
        "retransmits": end["sum_sent"].get("retransmits", 0),
        "bytes": int(end["sum_received"]["bytes"]),
        "seconds": seconds,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ping(topo: Any, src: str, dst_ip: str, *, count: int = PING_COUNT, interval: float = PING_INTERVAL) -> dict:
    """``count`` echo requests every ``interval`` s from namespace ``src``: RTT p50/p99/min (ms), loss."""
    res = topo.run(src, ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1",
                         dst_ip], check=False, timeout=count * interval + 30)
    rtts = [float(tok.split("=")[1]) for line in res.stdout.splitlines() for tok in line.split()
            if tok.startswith("time=")]
    if not rtts:
        raise RuntimeError(f"no echo replies from {dst_ip}: {res.stdout[-300:]} {res.stderr[-300:]}")
    return {"rtt_ms_p50": round(statistics.median(rtts), 4), "rtt_ms_p99": round(_percentile(rtts, 0.99), 4),
            "rtt_ms_min": min(rtts), "ping_loss": round(1 - len(rtts) / count, 4)}


_ECHO_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
"""

_ECHO_CLIENT = """
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection((host, port), timeout=5); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg, out = b"e" * 64, []
for i in range(n + 20):
    t = time.perf_counter(); c.sendall(msg); got = 0
    while got < 64:
        got += len(c.recv(64 - got))
    if i >= 20:
        out.append((time.perf_counter() - t) * 1e3)
    time.sleep(0.002)
print(json.dumps(out))
"""


def tcp_echo(topo: Any, client: str, server: str, target: str, *, port: int = ECHO_PORT,
             client_port: int | None = None, count: int = ECHO_COUNT) -> dict:
    """RTT of 64-byte request/response on one TCP connection (20 warm-up rounds dropped), p50/p99 in ms."""
    srv = topo.spawn(server, [sys.executable, "-c", _ECHO_SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        srv.stdout.readline()
        res = topo.run(client, [sys.executable, "-c", _ECHO_CLIENT, target, str(client_port or port), str(count)],
                       timeout=count * 0.05 + 30, check=False)
    finally:
        topo.stop(srv)
    if res.returncode != 0:
        raise RuntimeError(f"TCP echo to {target} failed: {res.stderr[-300:]}")
    rtts = json.loads(res.stdout)
    return {"echo_ms_p50": round(statistics.median(rtts), 4), "echo_ms_p99": round(_percentile(rtts, 0.99), 4)}


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of proc(5)), all threads


class CpuMeter:
    """CPU time of ``pids`` (their threads included) between ``start()`` and ``stop()``, in seconds."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self._start: dict[int, int] = {}
        self.seconds = 0.0

    def start(self) -> CpuMeter:
        self._start = {p: _cpu_ticks(p) for p in self.pids}
        return self

    def stop(self) -> float:
        self.seconds = sum(_cpu_ticks(p) - t for p, t in self._start.items()) / _CLK_TCK
        return self.seconds

    def per_gb(self, nbytes: int) -> float | None:
        return round(self.seconds / (nbytes / 1e9), 2) if self.pids and nbytes else None


def throughput(topo: Any, client: str, server: str, target: str, pids: Iterable[int], *, seconds: float,
               client_port: int | None = None) -> dict:
    """``iperf3`` plus the CPU seconds per GB the tunnel processes ``pids`` spent meanwhile."""
    meter = CpuMeter(pids).start()
    r = iperf3(topo, client, server, target, seconds=seconds, client_port=client_port)
    meter.stop()
    return {**r, "cpu_s": round(meter.seconds, 2), "cpu_s_per_gb": meter.per_gb(r["bytes"])}


LOSS_RULES = """table netdev smtloss {{
    chain ingress {{
        type filter hook ingress device "{iface}" priority -500; policy accept;
        numgen random mod 100 < {percent} drop
    }}
}}
"""


@contextlib.contextmanager
def loss(topo: Any, ends: list[tuple[str, str, tuple[str, str] | None]], percent: int = 1) -> Iterator[None]:
    """``percent`` % random drop at the netdev ingress of each ``(namespace, interface, veth peer)`` in
    ``ends``; offloads off on the interface and on its veth peer ``(namespace, interface)`` meanwhile."""
    done: list[tuple[str, str]] = []
    try:
        for ns, iface, peer in ends:
            for n, i in ((ns, iface), *((peer,) if peer else ())):
                topo.set_offloads(n, i, False)
                done.append((n, i))
            topo.run(ns, ["nft", "-f", "-"], input=LOSS_RULES.format(iface=iface, percent=percent))
        yield
    finally:
        for ns, _iface, _ in ends:
            topo.run(ns, ["nft", "delete", "table", "netdev", "smtloss"], check=False)
        for n, i in done:
            topo.set_offloads(n, i, True)


def veth_peer(topo: Any, ns: str, iface: str, candidates: Iterable[str]) -> tuple[str, str]:
    """``(namespace, interface)`` at the other end of veth ``iface`` of ``ns``, searched in ``candidates``."""
    line = topo.ip(ns, "-o", "link", "show", iface)
    peer_index = line.split(":")[1].strip().split("@if")[1]
    for cand in candidates:
        for row in topo.ip(cand, "-o", "link").splitlines():
            index, name = row.split(":")[:2]
            if index.strip() == peer_index and "@if" in name:
                return cand, name.strip().split("@")[0]
    raise RuntimeError(f"no veth peer of {ns}/{iface} in {list(candidates)}")
