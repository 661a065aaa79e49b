"""Userspace mode vs TUN mode vs v2ray VMess over WebSocket (issue 18), one TCP stream each, same run.

Topology: the mesh lab (``bench.mesh.bench_mesh``): A public with an endpoint, B behind NAT 1; every row
carries B -> A (iperf3, one stream; TCP echo RTT):

* ``tun``         B and A both TUN nodes: iperf3 to A's overlay address;
* ``userspace``   B restarted with ``up --userspace`` (forwards ``127.0.0.1:15201 -> A:5201`` and
                  ``127.0.0.1:17007 -> A:7007`` from its config): iperf3 to B's local forward, A's node
                  terminates the stream into a TCP connection to its own overlay address;
* ``v2ray-vmess-ws``  bench/peers/v2ray.py between the same namespaces (underlay addresses).

Targets (issue 18): userspace >= 1 x v2ray and >= 0.5 x TUN (Gbit/s). CPU seconds per GB of the two
daemons (v2ray: its two processes) is the steadier figure on a shared machine. Needs root (namespaces).
"""

from __future__ import annotations

import os
import tempfile
import time

import yaml

from bench import measure
from bench.mesh import A_UNDERLAY, B_UNDERLAY, DEFAULT_SECONDS, QUICK_SECONDS, bench_mesh
from bench.peers import v2ray

FORWARD_OFFSET = 10000
"""B's forward for A's port P listens on 127.0.0.1:(P + FORWARD_OFFSET)."""


def _row(topo, target: str, pids: list[int], seconds: float, ports: dict[int, int] | None = None) -> dict:
    ports = ports or {}
    out = measure.throughput(topo, "b", "a", target, pids, seconds=seconds, client_port=ports.get(measure.IPERF_PORT))
    out.update(measure.tcp_echo(topo, "b", "a", target, client_port=ports.get(measure.ECHO_PORT)))
    return out


def measure_all(seconds: float, progress=print) -> dict:
    out: dict = {"load_average_start": os.getloadavg(), "seconds": seconds, "rows": {}}
    rows = out["rows"]
    work = tempfile.mkdtemp(prefix="smt-bench-us-")
    with bench_mesh(work, progress) as lab:
        t, a, b = lab.topo, lab.a, lab.b
        rows["tun"] = _row(t, a.overlay, [a.proc.pid, b.proc.pid], seconds)
        progress(f"  tun: {rows['tun']['gbit_s']} Gbit/s")
        lab.stop(b)
        cfg = yaml.safe_load(b.config.read_text())
        cfg["forward"] = [f"127.0.0.1:{p + FORWARD_OFFSET} -> {a.overlay}:{p}"
                          for p in (measure.IPERF_PORT, measure.ECHO_PORT)]
        b.config.write_text(yaml.safe_dump(cfg))
        lab.start_node(b, "--userspace")
        lab.wait_for(lambda: lab.status(b).get("ready_at") and lab.peer(b, a).get("path") == "direct", 30,
                     "B in userspace mode")
        time.sleep(0.5)
        ports = {p: p + FORWARD_OFFSET for p in (measure.IPERF_PORT, measure.ECHO_PORT)}
        rows["userspace"] = _row(t, "127.0.0.1", [a.proc.pid, b.proc.pid], seconds, ports)
        progress(f"  userspace: {rows['userspace']['gbit_s']} Gbit/s")
        try:
            with v2ray.up(t, "a", "b", A_UNDERLAY, B_UNDERLAY, work) as tun:
                rows["v2ray-vmess-ws"] = _row(t, tun.target, tun.pids, seconds, tun.ports)
            progress(f"  v2ray: {rows['v2ray-vmess-ws']['gbit_s']} Gbit/s")
        except Exception as exc:  # reported, the other rows stand
            rows["v2ray-vmess-ws"] = {"error": str(exc)[:300]}
    out["load_average_end"] = os.getloadavg()
    us = rows["userspace"]["gbit_s"]
    out["targets"] = {"userspace_vs_tun": round(us / rows["tun"]["gbit_s"], 2) if rows["tun"]["gbit_s"] else None,
                      "userspace_vs_v2ray": round(us / rows["v2ray-vmess-ws"]["gbit_s"], 2)
                      if rows["v2ray-vmess-ws"].get("gbit_s") else None}
    out["targets"]["met"] = bool(out["targets"]["userspace_vs_tun"] and out["targets"]["userspace_vs_tun"] >= 0.5
                                 and out["targets"]["userspace_vs_v2ray"]
                                 and out["targets"]["userspace_vs_v2ray"] >= 1.0)
    return out


def format_table(r: dict) -> str:
    lines = [f"{'row':<16} {'Gbit/s':>8} {'CPU s/GB':>9} {'echo p50 ms':>12} {'echo p99 ms':>12}"]
    for name, row in r["rows"].items():
        if "error" in row:
            lines.append(f"{name:<16} error: {row['error']}")
            continue
        lines.append(f"{name:<16} {row['gbit_s']:>8.3f} {row.get('cpu_s_per_gb') or 0:>9.2f} "
                     f"{row['echo_ms_p50']:>12.3f} {row['echo_ms_p99']:>12.3f}")
    t = r["targets"]
    lines.append(f"userspace / tun = {t['userspace_vs_tun']} (target >= 0.5), userspace / v2ray = "
                 f"{t['userspace_vs_v2ray']} (target >= 1.0)")
    return "\n".join(lines)


def run(args) -> dict:
    if os.geteuid() != 0:
        print("[userspace] skipped: needs root (network namespaces)")
        return {"skipped": "needs root"}
    r = measure_all(QUICK_SECONDS if getattr(args, "quick", False) else DEFAULT_SECONDS)
    print(format_table(r), flush=True)
    return r
