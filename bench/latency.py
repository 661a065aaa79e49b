"""Latency A/B runs (issue 17 "Latency"): ping RTT and CPU µs per packet of the nodes, paired.

``python -m bench.latency [--pairs N] [--variant uvloop|tree] [--base-tree DIR] [--variant-tree DIR]``:
on the mesh lab (B behind NAT -> A, and B -> relay -> C), for each pair of runs the daemons are
restarted as the baseline, then as the variant (order alternates between pairs), and each run measures:

* ping RTT p50 / p99 (``COUNT`` echo requests every ``INTERVAL`` s, B -> A direct and B -> C relayed);
* CPU µs per packet: the daemons' CPU time from ``/proc/<pid>/task/*/schedstat`` (nanoseconds, all
  threads: far finer than the 10 ms ticks of /proc/<pid>/stat) during the ping, divided by the packets
  each one handled (every echo is one packet in and one out on each of A and B: 2 x COUNT; the relay
  forwards 2 frames per relayed echo). ``cpu_us_per_packet_*`` is the raw figure, ``net_us_per_packet_*``
  the same minus the daemon's idle CPU rate measured for ``IDLE_SECONDS`` just before (directory
  polling, timers, status file: about 1 % of a core each, ~9 µs per packet at this ping rate).

``python -m bench.latency --inproc DIR [DIR ...]``: no lab; the link layer alone, per package copy
(``DIR`` holds a ``shadowmesh_client``): a real WebSocket link pair on 127.0.0.1 in one event loop
echoes a ``ECHO_BYTES`` message (the sealed frame of an 84-byte ping) ``ECHO_ROUNDS`` times, both ends
on ``deliver_to`` + ``send_nowait`` as the node uses them; user and system CPU µs and wall p50 per round
trip (2 sends + 2 receives), one subprocess per copy, copies alternating for ``--rounds`` rounds. The
user figure is the code's; the system one and the wall time move with the kernel's handling of the
loopback (seen bimodal on this machine: the same code at ~30 or ~65 µs per round trip in different runs).

Variants:

* ``tree``: the daemons import ``shadowmesh_client`` from ``--variant-tree`` (default: this working
  tree) and the baseline from ``--base-tree`` (a copy of the package as it was, e.g. made with
  ``git worktree`` or ``git show HEAD:file`` for the changed files): a code change A/B in one lab.
* ``uvloop``: the daemons' event loop, through ``SHADOWMESH_EVENT_LOOP`` (daemon_common.py): the baseline
  runs with ``asyncio``, the variant with ``uvloop`` (the default since it measured better; both from
  ``--variant-tree``, default this working tree).

The result is a list of pairs plus the median of the paired differences (variant - base).
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
import time

from bench import measure
from shadowmesh_client.daemon_common import EVENT_LOOP_ENV

COUNT = 2000
"""Echo requests per measurement."""
INTERVAL = 0.002
"""Seconds between echo requests."""
IDLE_SECONDS = 2.0
"""Seconds of idle CPU measured before each ping, to subtract the daemons' background work."""


def _schedstat_ns(pid: int) -> int:
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def _boot(tree: str | None) -> str | None:
    """``python -c`` source that runs the CLI from ``tree``; None (the usual command line) without one."""
    if not tree:
        return None
    lines = ["import sys", f"sys.path.insert(0, {os.path.abspath(tree)!r})",
             "sys.argv[0] = 'shadowmesh-client'",
             "from shadowmesh_client.cli import main",
             "main(prog_name='shadowmesh-client')"]
    return "\n".join(lines) + "\n"


def _argv_for(boot: str | None):
    def cli_argv(self, config, *args):
        argv = self.__class__.cli_argv(self, config, *args)
        if boot is not None:
            i = argv.index("shadowmesh_client.cli")
            argv = [argv[0], "-c", boot, *argv[i + 1:]]
        return argv
    return cli_argv


def _restart(lab, boot: str | None, event_loop: str | None, extra: tuple[str, ...]) -> None:
    """Restart every daemon from ``boot`` with ``SHADOWMESH_EVENT_LOOP=event_loop`` (None: unset) in the
    environment the lab's processes inherit."""
    import types

    lab.cli_argv = types.MethodType(_argv_for(boot), lab)
    os.environ.pop(EVENT_LOOP_ENV, None)
    if event_loop is not None:
        os.environ[EVENT_LOOP_ENV] = event_loop
    for dev in (lab.a, lab.b, lab.c):
        lab.stop(dev)
    lab.stop(lab.relay)
    lab.start_relay(lab.relay)
    for dev in (lab.a, lab.b, lab.c):
        lab.start_node(dev, *extra)
    lab.wait_for(lambda: all(lab.status(d).get("ready_at") for d in (lab.a, lab.b, lab.c)), 30, "nodes up")
    for target in (lab.a.overlay, lab.c.overlay):
        lab.topo.run("b", ["ping", "-n", "-c", "20", "-i", "0.05", "-W", "1", target], check=False)


def _cpu_during(pids: dict[str, int], packets: dict[str, int], work) -> tuple[dict, dict]:
    """Run ``work()``; return (its result, {name: raw and net-of-idle CPU µs per packet})."""
    before = {k: _schedstat_ns(p) for k, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(IDLE_SECONDS)
    idle_s = time.monotonic() - t0
    idle = {k: (_schedstat_ns(p) - before[k]) / idle_s for k, p in pids.items()}   # ns per second
    before = {k: _schedstat_ns(p) for k, p in pids.items()}
    t0 = time.monotonic()
    result = work()
    busy_s = time.monotonic() - t0
    out = {}
    for k, p in pids.items():
        used = _schedstat_ns(p) - before[k]
        out[f"cpu_us_per_packet_{k}"] = round(used / 1e3 / packets[k], 1)
        out[f"net_us_per_packet_{k}"] = round((used - idle[k] * busy_s) / 1e3 / packets[k], 1)
    return result, out


def one_run(lab) -> dict:
    t = lab.topo
    direct, cpu = _cpu_during({"a": lab.a.proc.pid, "b": lab.b.proc.pid}, {"a": 2 * COUNT, "b": 2 * COUNT},
                              lambda: measure.ping(t, "b", lab.a.overlay, count=COUNT, interval=INTERVAL))
    n = COUNT // 2
    relayed, cpu_relay = _cpu_during({"relay": lab.relay.proc.pid}, {"relay": 2 * n},
                                     lambda: measure.ping(t, "b", lab.c.overlay, count=n, interval=INTERVAL))
    return {"direct_p50": direct["rtt_ms_p50"], "direct_p99": direct["rtt_ms_p99"],
            "relayed_p50": relayed["rtt_ms_p50"], "relayed_p99": relayed["rtt_ms_p99"],
            **cpu, **cpu_relay, "load": round(os.getloadavg()[0], 2)}


ECHO_BYTES = 172
"""Bytes per in-process echo message: an 84-byte ping sealed (88 bytes of frame overhead)."""
ECHO_ROUNDS = 10000
"""Round trips per in-process measurement (after 200 of warm-up)."""

_ECHO = """
import asyncio, json, os, sys, time
sys.path.insert(0, sys.argv[1])
from shadowmesh_client.transport import ClientConfig, ServerConfig
from shadowmesh_client.transport.ws import LinkServer, dial
n, size, warm = int(sys.argv[2]), int(sys.argv[3]), 200

async def main():
    async def on_link(link):
        link.deliver_to(link.send_nowait)
        await link.wait_closed()
    loop = asyncio.get_running_loop()
    async with LinkServer(ServerConfig(), lambda hello: (b"", hello), on_link) as server:
        link = await dial(ClientConfig(server.url), b"bench")
        box = [None]
        link.deliver_to(lambda m: box[0].set_result(m))
        msg, rtts = os.urandom(size), []
        for i in range(n + warm):
            box[0] = loop.create_future()
            if i == warm:
                t0 = os.times()
            t = time.perf_counter()
            link.send_nowait(msg)
            await box[0]
            rtts.append(time.perf_counter() - t)
        t1 = os.times()
        await link.close()
    rtts = sorted(rtts[warm:])
    user, system = (t1.user - t0.user) / n * 1e6, (t1.system - t0.system) / n * 1e6
    print(json.dumps({"user_us_per_round_trip": round(user, 1), "sys_us_per_round_trip": round(system, 1),
                      "cpu_us_per_round_trip": round(user + system, 1), "p50_us": round(rtts[n // 2] * 1e6, 1)}))
asyncio.run(main())
"""


def inproc(trees: list[str], rounds: int) -> dict:
    """The in-process link echo (module docstring) for each package copy, alternating, ``rounds`` times."""
    import subprocess

    runs: dict[str, list[dict]] = {t: [] for t in trees}
    for r in range(rounds):
        for tree in trees:
            out = subprocess.run([sys.executable, "-c", _ECHO, os.path.abspath(tree), str(ECHO_ROUNDS),
                                  str(ECHO_BYTES)], capture_output=True, text=True, check=True, timeout=300)
            runs[tree].append(json.loads(out.stdout))
            print(f"round {r} {tree}: {runs[tree][-1]}", flush=True)
    return {t: {k: statistics.median(x[k] for x in v) for k in v[0]} for t, v in runs.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--variant", default="uvloop", choices=("uvloop", "tree"))
    p.add_argument("--base-tree", metavar="DIR", help="directory holding the baseline shadowmesh_client package")
    p.add_argument("--variant-tree", metavar="DIR", help="directory holding the variant's package (tree)")
    p.add_argument("--inproc", nargs="+", metavar="DIR", help="in-process link echo of these package copies")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of --inproc")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    if args.inproc:
        medians = inproc(args.inproc, args.rounds)
        print(json.dumps({"load": os.getloadavg()[0], "median": medians}))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(medians, f, indent=2)
        return 0
    from bench.mesh import bench_mesh

    # (boot, SHADOWMESH_EVENT_LOOP) of each side
    runs = ({"base": (_boot(args.variant_tree), "asyncio"), "uvloop": (_boot(args.variant_tree), "uvloop")}
            if args.variant == "uvloop" else
            {"base": (_boot(args.base_tree), os.environ.get(EVENT_LOOP_ENV)),
             "tree": (_boot(args.variant_tree), os.environ.get(EVENT_LOOP_ENV))})
    pairs = []
    load_before = os.getloadavg()
    with bench_mesh(tempfile.mkdtemp(prefix="smt-lat-")) as lab:
        for i in range(args.pairs):
            order = ("base", args.variant) if i % 2 == 0 else (args.variant, "base")
            pair = {}
            for v in order:
                _restart(lab, *runs[v], ())
                pair[v] = one_run(lab)
                print(f"pair {i} {v}: {pair[v]}", flush=True)
            pairs.append(pair)
    keys = [k for k in pairs[0]["base"] if k != "load"]
    diff = {k: round(statistics.median(pr[args.variant][k] - pr["base"][k] for pr in pairs), 4) for k in keys}
    med = {v: {k: round(statistics.median(pr[v][k] for pr in pairs), 4) for k in keys} for v in ("base", args.variant)}
    out = {"variant": args.variant, "pairs": pairs, "median": med, "median_paired_difference": diff,
           "load_before": load_before, "load_after": os.getloadavg()}
    print(json.dumps({"median": med, "median_paired_difference": diff, "load_before": load_before,
                      "load_after": os.getloadavg()}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
