"""Mesh benchmark (issue 5 "Benchmark"): the real daemons on the real namespaces, figures side by side.

On the issue-5 topology (``meshlab.standard_mesh``: anvil, relay and A public; B behind NAT 1; C behind
NAT 2), in ONE run, one TCP stream of iperf3 each:

* ``underlay``      B -> A over the plain veths/bridge/NAT (the kernel's ceiling here);
* ``wireguard_go``  B -> A through wireguard-go (Debian package) between the same two namespaces;
* ``wireguard_go_veth``  wireguard-go between two namespaces on one plain veth pair (no NAT: the
  baseline of notes/netns.md; through the NAT wireguard-go loses packets and is slower, so the ratios
  use whichever wireguard-go figure is HIGHER, the conservative choice);
* ``direct``        B -> A through the mesh (B dialled A), default MTU (65,000);
* ``relayed``       B -> C through the mesh and the relay, default MTU;
* ``direct_1400``   B -> A with every node restarted at MTU 1,400;
* ping RTT (5 ms interval, median) through each; ``first_packet_s``: B's node restarted, seconds from
  spawning ``shadowmesh-client up`` to the first echo reply from A through the tunnel (includes Python
  start-up, unlocking the Argon2id-sealed key, one directory sync, TUN set-up, dial + handshake).

Targets: direct >= 4 x wireguard-go, direct_1400 >= 1.5 x wireguard-go, relayed >= 0.5 x direct,
first packet <= 1 s. The machine is 2 shared cores: compare ratios within one run; say the load.
Not measured here (left for later): the relay's 10,000 idle sessions.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from bench.baselines import DEFAULT_SECONDS, QUICK_SECONDS, iperf3_tcp, ping_rtt, wireguard_go

A_UNDERLAY = "198.18.0.30"
B_UNDERLAY = "198.19.1.2"


def _through(topo, src: str, dst: str, ip: str, seconds: float) -> dict:
    topo.run(src, ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", ip], check=False)
    return {**iperf3_tcp(topo, src, dst, ip, seconds=seconds), **ping_rtt(topo, src, ip)}


def _first_packet(lab) -> float:
    lab.stop(lab.b)
    start = time.monotonic()
    lab.start_node(lab.b)
    while time.monotonic() - start < 30:
        r = lab.topo.run("b", ["ping", "-n", "-c", "1", "-W", "0.05", lab.a.overlay], check=False)
        if r.returncode == 0:
            return round(time.monotonic() - start, 3)
    raise RuntimeError("no packet through a restarted node within 30 s")


def measure(seconds: float) -> dict:
    from lab.mesh import standard_mesh
    from lab.netns import veth_pair

    out: dict = {"load_average": os.getloadavg()}
    with veth_pair() as v:
        with wireguard_go(v, "a", "b", v.hosts["a"].ip, v.hosts["b"].ip) as wg:
            v.run("a", ["ping", "-n", "-c", "3", "-i", "0.2", wg.ip_b], check=False)
            out["wireguard_go_veth"] = _through(v, "a", "b", wg.ip_b, seconds)
    with standard_mesh(tempfile.mkdtemp(prefix="smt-bench-"), progress=lambda m: print("  " + m, flush=True)) as lab:
        t = lab.topo
        out["underlay"] = _through(t, "b", "a", A_UNDERLAY, seconds)
        with wireguard_go(t, "a", "b", A_UNDERLAY, B_UNDERLAY) as wg:
            t.run("b", ["ping", "-n", "-c", "3", "-i", "0.2", wg.ip_a], check=False)  # B behind NAT speaks first
            out["wireguard_go"] = _through(t, "b", "a", wg.ip_a, seconds)
        out["direct"] = _through(t, "b", "a", lab.a.overlay, seconds)
        out["relayed"] = _through(t, "b", "c", lab.c.overlay, seconds)
        out["first_packet"] = {"first_packet_s": _first_packet(lab)}
        for dev in (lab.a, lab.b, lab.c):
            lab.stop(dev)
            lab.start_node(dev, "--mtu", "1400")
        lab.wait_for(lambda: all(lab.status(d).get("ready_at") for d in (lab.a, lab.b, lab.c)), 30, "nodes at 1400")
        out["direct_1400"] = _through(t, "b", "a", lab.a.overlay, seconds)
    wg_rate = max(out["wireguard_go"]["gbit_s"], out["wireguard_go_veth"]["gbit_s"]) or float("nan")
    out["ratios"] = {
        "direct / wireguard_go": round(out["direct"]["gbit_s"] / wg_rate, 2),
        "direct_1400 / wireguard_go": round(out["direct_1400"]["gbit_s"] / wg_rate, 2),
        "relayed / direct": round(out["relayed"]["gbit_s"] / (out["direct"]["gbit_s"] or float("nan")), 2),
        "added RTT direct - wireguard_go (ms)": round(
            out["direct"]["rtt_ms_median"] - out["wireguard_go"]["rtt_ms_median"], 3),
        "wireguard_go figure used (Gbit/s)": wg_rate,
    }
    return out


def format_table(r: dict) -> str:
    rows = [f"{'path (B -> A / C)':<18} {'Gbit/s':>8} {'retrans':>8} {'RTT med ms':>11}"]
    for name in ("underlay", "wireguard_go", "wireguard_go_veth", "direct", "relayed", "direct_1400"):
        x = r[name]
        rows.append(f"{name:<18} {x['gbit_s']:>8.3f} {x['retransmits']:>8} {x['rtt_ms_median']:>11.3f}")
    rows.append(f"first packet after `up`: {r['first_packet']['first_packet_s']:.3f} s (target <= 1 s)")
    for k, v in r["ratios"].items():
        rows.append(f"{k}: {v}")
    rows.append("targets: direct/wg >= 4, direct_1400/wg >= 1.5, relayed/direct >= 0.5; "
                f"load average during the run: {', '.join(f'{x:.2f}' for x in r['load_average'])}")
    return "\n".join(rows)


def run(args) -> dict:
    if os.geteuid() != 0:
        print("mesh benchmark needs root (namespaces, TUN)", file=sys.stderr)
        return {"skipped": "needs root"}
    r = measure(QUICK_SECONDS if getattr(args, "quick", False) else DEFAULT_SECONDS)
    print(format_table(r), flush=True)
    return r


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.mesh")
    p.add_argument("--quick", action="store_true")
    run(p.parse_args())
