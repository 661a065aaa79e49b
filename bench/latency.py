"""Latency A/B runs (issue 17 "Latency"): ping RTT and CPU µs per packet of the nodes, paired.

``python -m bench.latency [--pairs N] [--variant uvloop]``: on the mesh lab (B behind NAT -> A, and
B -> relay -> C), for each pair of runs the nodes are restarted as the baseline, then as the variant
(order alternates between pairs), and each run measures:

* ping RTT p50 / p99 (``COUNT`` echo requests every ``INTERVAL`` s, B -> A and B -> C);
* CPU µs per packet: the nodes' CPU time from ``/proc/<pid>/task/*/schedstat`` (nanoseconds, all
  threads: far finer than the 10 ms ticks of /proc/<pid>/stat) during the direct ping, divided by the
  packets each node handled (every echo is one packet in and one out on each of A and B: 2 x COUNT).

Variants: ``uvloop`` runs the daemons' main loop on uvloop (``asyncio.Runner(loop_factory=...)``; not
``uvloop.install()``: pyroute2's own netlink loops must stay asyncio's) (``--uvloop-path`` when uvloop is
not in the venv). The result is a list of pairs plus the median of the paired differences.
Figures, not tests: the load average is recorded with each run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile

from bench import measure

COUNT = 2000
"""Echo requests per measurement."""
INTERVAL = 0.002
"""Seconds between echo requests."""


def _schedstat_ns(pid: int) -> int:
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def _argv_for(variant: str, uvloop_path: str | None):
    def cli_argv(self, config, *args):
        argv = self.__class__.cli_argv(self, config, *args)
        if variant == "uvloop":
            boot = ("import sys\n"
                    + (f"sys.path.insert(0, {uvloop_path!r})\n" if uvloop_path else "")
                    # the daemon's loop only: pyroute2 makes loops of its own for netlink, which uvloop
                    # cannot open (AF_NETLINK), so no global uvloop.install()
                    + "import asyncio, uvloop\n"
                    "def _run(main, *, debug=None):\n"
                    "    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:\n"
                    "        return r.run(main)\n"
                    "asyncio.run = _run\n"
                    "sys.argv[0] = 'shadowmesh-client'\n"
                    "from shadowmesh_client.cli import main\nmain(prog_name='shadowmesh-client')\n")
            i = argv.index("shadowmesh_client.cli")
            argv = [argv[0], "-c", boot, *argv[i + 1:]]
        return argv
    return cli_argv


def _restart(lab, variant: str, uvloop_path: str | None, extra: tuple[str, ...]) -> None:
    import types

    lab.cli_argv = types.MethodType(_argv_for(variant, uvloop_path), lab)
    for dev in (lab.a, lab.b, lab.c):
        lab.stop(dev)
    lab.stop(lab.relay)
    lab.start_relay(lab.relay)
    for dev in (lab.a, lab.b, lab.c):
        lab.start_node(dev, *extra)
    lab.wait_for(lambda: all(lab.status(d).get("ready_at") for d in (lab.a, lab.b, lab.c)), 30, "nodes up")
    for target in (lab.a.overlay, lab.c.overlay):
        lab.topo.run("b", ["ping", "-n", "-c", "20", "-i", "0.05", "-W", "1", target], check=False)


def one_run(lab) -> dict:
    t = lab.topo
    pids = [lab.a.proc.pid, lab.b.proc.pid]
    before = [_schedstat_ns(p) for p in pids]
    direct = measure.ping(t, "b", lab.a.overlay, count=COUNT, interval=INTERVAL)
    after = [_schedstat_ns(p) for p in pids]
    relayed = measure.ping(t, "b", lab.c.overlay, count=COUNT // 2, interval=INTERVAL)
    per_packet = [(y - x) / 1e3 / (2 * COUNT) for x, y in zip(before, after, strict=True)]
    return {"direct_p50": direct["rtt_ms_p50"], "direct_p99": direct["rtt_ms_p99"],
            "relayed_p50": relayed["rtt_ms_p50"], "relayed_p99": relayed["rtt_ms_p99"],
            "cpu_us_per_packet_a": round(per_packet[0], 1), "cpu_us_per_packet_b": round(per_packet[1], 1),
            "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--variant", default="uvloop", choices=("uvloop",))
    p.add_argument("--uvloop-path", help="directory holding the uvloop package (if not in the venv)")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    from bench.mesh import bench_mesh

    pairs = []
    with bench_mesh(tempfile.mkdtemp(prefix="smt-lat-")) as lab:
        for i in range(args.pairs):
            order = ("base", args.variant) if i % 2 == 0 else (args.variant, "base")
            pair = {}
            for v in order:
                _restart(lab, v, args.uvloop_path, ())
                pair[v] = one_run(lab)
                print(f"pair {i} {v}: {pair[v]}", flush=True)
            pairs.append(pair)
    keys = [k for k in pairs[0]["base"] if k != "load"]
    diff = {k: round(statistics.median(pr[args.variant][k] - pr["base"][k] for pr in pairs), 4) for k in keys}
    out = {"variant": args.variant, "pairs": pairs, "median_paired_difference": diff}
    print(json.dumps(out["median_paired_difference"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
