"""QoS under load (issue 14 "Application-aware QoS"): interactive latency while one bulk TCP stream saturates
the same tunnel, ShadowMesh with QoS on and off, and wireguard-go, in the same run (root).

Topology: the mesh lab (bench/mesh.py ``bench_mesh``: B behind NAT 1 dials A directly). Per variant, all on
the path B -> A:

* idle: ping RTT p50/p99 (``PING_COUNT`` echo requests every 5 ms) and a 64-byte TCP request/response
  (bench/measure.py ``tcp_echo``, TCP_NODELAY) p50/p99;
* loaded: the same two while one iperf3 TCP stream B -> A fills the tunnel (started ``WARMUP`` s before,
  lasting until both measurements are done); the bulk stream's Gbit/s is reported with them.

Variants: ``shadowmesh_qos`` (nodes restarted with ``--qos``: per-peer, per-class send queues,
routing/qos.py), ``shadowmesh_noqos`` (``--no-qos``: routing on, QoS off), ``wireguard-go`` (the Debian
package, bench/peers/wireguard.py, same namespaces). The target: with QoS on, the loaded interactive p99
within ``TARGET_MS`` of the idle p99. ``delta_p99_ms`` per variant is loaded p99 - idle p99.

The machine is 2 shared cores: compare within one run; the load average is recorded. Figures, not tests.
May import: bench.measure, bench.mesh, bench.peers, lab.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from typing import Any

from bench import measure

A_UNDERLAY = "198.18.0.30"
B_UNDERLAY = "198.19.1.2"
PING_COUNT = 400
"""Echo requests per RTT figure (2 s at 5 ms): enough for a p99."""
ECHO_COUNT = 300
"""TCP request/response round trips per figure."""
WARMUP = 1.5
"""Seconds the bulk stream runs before the interactive measurements start (TCP reaches its window)."""
TARGET_MS = 2.0
"""Issue 14's target: loaded interactive p99 within this many ms of the idle p99, with QoS on."""
BULK_PORT = 5301
ECHO_PORT = 7017


def _interactive(topo: Any, target: str, ping_count: int, echo_count: int) -> dict:
    out = measure.ping(topo, "b", target, count=ping_count)
    out.update(measure.tcp_echo(topo, "b", "a", target, port=ECHO_PORT, count=echo_count))
    return out


def _loaded(topo: Any, target: str, ping_count: int, echo_count: int) -> dict:
    """The interactive figures while one iperf3 stream B -> ``target`` runs (in a thread: iperf3 blocks)."""
    seconds = WARMUP + ping_count * measure.PING_INTERVAL * 2 + echo_count * 0.006 + 2
    bulk: dict[str, Any] = {}

    def run_bulk() -> None:
        try:
            bulk.update(measure.iperf3(topo, "b", "a", target, seconds=round(seconds, 1), port=BULK_PORT))
        except Exception as exc:   # reported with the figures, not raised from the thread
            bulk["error"] = str(exc)

    t = threading.Thread(target=run_bulk, name="bulk")
    t.start()
    try:
        time.sleep(WARMUP)
        out = _interactive(topo, target, ping_count, echo_count)
    finally:
        t.join()
    out["bulk_gbit_s"] = bulk.get("gbit_s")
    if "error" in bulk:
        out["bulk_error"] = bulk["error"]
    return out


def _variant(topo: Any, target: str, ping_count: int, echo_count: int) -> dict:
    idle = _interactive(topo, target, ping_count, echo_count)
    loaded = _loaded(topo, target, ping_count, echo_count)
    return {"idle": idle, "loaded": loaded,
            "delta_p99_ms": {"ping": round(loaded["rtt_ms_p99"] - idle["rtt_ms_p99"], 3),
                             "echo": round(loaded["echo_ms_p99"] - idle["echo_ms_p99"], 3)}}


def _restart(lab: Any, *extra: str) -> None:
    for dev in (lab.a, lab.b):
        lab.stop(dev)
    for dev in (lab.a, lab.b):
        lab.start_node(dev, *extra)
    lab.wait_for(lambda: all(lab.status(d).get("ready_at") for d in (lab.a, lab.b)), 30, "nodes up")
    lab.wait_for(lambda: lab.topo.run("b", ["ping", "-n", "-c", "1", "-W", "1", lab.a.overlay],
                                      check=False).returncode == 0, 20, "B -> A")


def measure_all(*, quick: bool = False, progress=print) -> dict:
    from bench.mesh import bench_mesh
    from bench.peers import wireguard

    ping_count, echo_count = (200, 150) if quick else (PING_COUNT, ECHO_COUNT)
    out: dict[str, Any] = {"load_average_start": os.getloadavg(), "target_ms": TARGET_MS, "rows": {}}
    workdir = tempfile.mkdtemp(prefix="smt-qos-")
    with bench_mesh(workdir, progress=progress) as lab:
        for name, flag in (("shadowmesh_qos", "--qos"), ("shadowmesh_noqos", "--no-qos")):
            _restart(lab, flag)
            out["rows"][name] = row = _variant(lab.topo, lab.a.overlay, ping_count, echo_count)
            progress(f"  {name}: {json.dumps(row)}")
            if name == "shadowmesh_qos":
                st = lab.status(lab.b).get("routing", {}).get("qos", {})
                row["qos_counters_b"] = st
        for dev in (lab.a, lab.b, lab.c):
            lab.stop(dev)
        with wireguard.up(lab.topo, "a", "b", A_UNDERLAY, B_UNDERLAY, workdir) as tunnel:
            out["rows"]["wireguard-go"] = row = _variant(lab.topo, tunnel.target, ping_count, echo_count)
            progress(f"  wireguard-go: {json.dumps(row)}")
    qos = out["rows"]["shadowmesh_qos"]["delta_p99_ms"]
    out["target_met"] = max(qos["ping"], qos["echo"]) <= TARGET_MS
    out["load_average_end"] = os.getloadavg()
    return out


def format_table(res: dict) -> str:
    lines = [f"{'variant':18} {'ping p50/p99 idle':>18} {'loaded':>16} {'echo p50/p99 idle':>18} {'loaded':>16} "
             f"{'bulk Gbit/s':>11}"]
    for name, r in res["rows"].items():
        i, lo = r["idle"], r["loaded"]
        lines.append(f"{name:18} {i['rtt_ms_p50']:>8.3f}/{i['rtt_ms_p99']:<9.3f} "
                     f"{lo['rtt_ms_p50']:>7.3f}/{lo['rtt_ms_p99']:<8.3f} "
                     f"{i['echo_ms_p50']:>8.3f}/{i['echo_ms_p99']:<9.3f} "
                     f"{lo['echo_ms_p50']:>7.3f}/{lo['echo_ms_p99']:<8.3f} {lo.get('bulk_gbit_s') or 0:>11.2f}")
    lines.append(f"target (QoS on: loaded p99 - idle p99 <= {res['target_ms']} ms): "
                 f"{'met' if res['target_met'] else 'NOT met'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    res = measure_all(quick=getattr(args, "quick", False))
    print(format_table(res), flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.qos", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    res = run(args)
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
