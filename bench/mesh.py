"""Side-by-side benchmark (issue 17): ShadowMesh and every peer on the same topology, in the same run.

Topology: the mesh lab's (``lab.mesh.standard_mesh``: anvil, relay and A public; B behind NAT 1; C behind
NAT 2). Every path carries B -> A (the relayed one B -> C), one iperf3 TCP stream each:

* ``underlay``            the plain veths/bridge/NAT (the kernel's ceiling; no tunnel process);
* ``shadowmesh``          B -> A direct (B dialled A), default MTU 65,000;
* ``shadowmesh_relayed``  B -> C through the relay, default MTU;
* ``shadowmesh_1400``     B -> A with every node restarted at MTU 1,400 (send-side offload on, the default);
* ``shadowmesh_1400_plain`` the same, restarted with ``--no-offload`` (one read per 1,400-byte segment):
  the offload's paired effect is ``offload_gain_1400``;
* ``first_packet_s``: B's node restarted, seconds to the first echo reply from A through the tunnel;
* ``wireguard-go``, ``nebula-1300`` (Nebula's default MTU), ``nebula-8900``, ``openvpn-udp``,
  ``openvpn-tcp``, ``v2ray-vmess-ws`` (a TCP-STREAM proxy, not a packet tunnel: no ping figure):
  bench/peers/, all with ChaCha20-Poly1305.

Per path: Gbit/s and retransmits clean; Gbit/s with 1 % random loss at the netdev ingress of A's and B's
links (offloads off there: bench/measure.py ``loss``); ping RTT p50/p99 (5 ms interval); TCP echo RTT
p50/p99 (64 bytes, TCP_NODELAY); CPU seconds per GB of the tunnel's processes on both ends (plus the relay
for the relayed path) from /proc during the clean run. Then the ratios to the best peer and the issue's
targets, and ``aead_gbps``: the bare XChaCha20-Poly1305 on one core on 64 KiB, in the same run.

The machine is 2 shared cores: compare within one run, prefer CPU per GB and ratios; the load average is
recorded at the start and the end. ``bench/readme.py`` renders the README table from the JSON.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from typing import Any

from bench import measure
from bench.peers import Tunnel, nebula, openvpn, v2ray, wireguard

A_UNDERLAY = "198.18.0.30"
B_UNDERLAY = "198.19.1.2"
RELAY_UNDERLAY = "198.18.0.20"
DEFAULT_SECONDS = 8.0
"""Seconds per iperf3 run."""
QUICK_SECONDS = 2.0
"""Seconds per iperf3 run with --quick."""
LOSS_PERCENT = 1
"""Percent of packets dropped at each end's ingress in the loss scenario."""

SHADOWMESH_ROWS = ("shadowmesh", "shadowmesh_1400", "shadowmesh_1400_plain", "shadowmesh_relayed")
PEER_ROWS = ("wireguard-go", "nebula-1300", "nebula-8900", "openvpn-udp", "openvpn-tcp", "v2ray-vmess-ws")
ROWS = ("underlay", *SHADOWMESH_ROWS, *PEER_ROWS)
LABELS = {
    "underlay": "underlay (veths + NAT, no tunnel)",
    "shadowmesh": "ShadowMesh direct, MTU 65,000",
    "shadowmesh_1400": "ShadowMesh direct, MTU 1,400",
    "shadowmesh_1400_plain": "ShadowMesh direct, MTU 1,400, --no-offload",
    "shadowmesh_relayed": "ShadowMesh relayed (B -> relay -> C)",
    "wireguard-go": "wireguard-go (Debian)",
    "nebula-1300": "Nebula 1.6.1, MTU 1,300",
    "nebula-8900": "Nebula 1.6.1, MTU 8,900",
    "openvpn-udp": "OpenVPN 2.6 UDP",
    "openvpn-tcp": "OpenVPN 2.6 TCP",
    "v2ray-vmess-ws": "v2ray 4.34 VMess/WebSocket (TCP proxy)",
}


def aead_limit(seconds: float = 1.0) -> float:
    """Gbit/s of the bare XChaCha20-Poly1305 seal on 64 KiB on one core (bench/protocol.py's ``aead``)."""
    from bench.protocol import _throughput

    return round(_throughput(65536, 1, seconds)["aead_gbps"], 2)


class _Run:
    def __init__(self, topo: Any, seconds: float, with_loss: bool) -> None:
        self.topo = topo
        self.seconds = seconds
        self.with_loss = with_loss
        ends = []
        for ns in ("a", "b"):   # A's and B's links: both ends of the path every row crosses
            peer = measure.veth_peer(topo, ns, "eth0", ("public", "nat1"))
            ends.append((ns, "eth0", peer))
        self.loss_ends = ends

    def path(self, src: str, dst: str, target: str, pids: list[int], *, packet: bool = True,
             ports: dict[int, int] | None = None) -> dict:
        t, ports = self.topo, ports or {}
        if packet:
            t.run(src, ["ping", "-n", "-c", "3", "-i", "0.05", "-W", "1", target], check=False)  # warm up
        out = measure.throughput(t, src, dst, target, pids, seconds=self.seconds,
                                 client_port=ports.get(measure.IPERF_PORT))
        if packet:
            out.update(measure.ping(t, src, target))
        out.update(measure.tcp_echo(t, src, dst, target, client_port=ports.get(measure.ECHO_PORT)))
        if self.with_loss:
            with measure.loss(t, self.loss_ends, LOSS_PERCENT):
                lossy = measure.iperf3(t, src, dst, target, seconds=self.seconds,
                                       client_port=ports.get(measure.IPERF_PORT))
            out["loss_gbit_s"] = lossy["gbit_s"]
            out["loss_retransmits"] = lossy["retransmits"]
        return out

    def tunnel(self, tun: Tunnel) -> dict:
        return {**self.path("b", "a", tun.target, tun.pids, packet=tun.packet, ports=tun.ports), "mtu": tun.mtu}


def _first_packet(lab) -> float:
    """Seconds from spawning B's ``up`` to the first echo reply from A through the tunnel (Python start-up,
    key unlock, one directory sync, TUN set-up, dial + handshake)."""
    lab.stop(lab.b)
    start = time.monotonic()
    lab.start_node(lab.b)
    while time.monotonic() - start < 30:
        if lab.topo.run("b", ["ping", "-n", "-c", "1", "-W", "0.05", lab.a.overlay], check=False).returncode == 0:
            return round(time.monotonic() - start, 3)
    raise RuntimeError("no packet through a restarted node within 30 s")


def bench_mesh(workdir: str, progress=print, node_args: tuple[str, ...] = ()):
    """``lab.mesh.standard_mesh`` with the relay registered by the devices' owner (no payments here: a relay
    of another owner is refused as a relay without them, since the payments-v2 merge)."""
    from lab.mesh import standard_mesh

    return standard_mesh(workdir, node_args=node_args, progress=lambda line: progress("  " + line), relay_owner=1)


def measure_all(seconds: float, *, with_loss: bool = True, progress=print) -> dict:
    out: dict[str, Any] = {"load_average_start": os.getloadavg(), "seconds": seconds,
                           "loss_percent": LOSS_PERCENT if with_loss else None, "rows": {}}
    rows = out["rows"]
    out["aead_gbps"] = aead_limit()
    work = tempfile.mkdtemp(prefix="smt-bench-")
    with bench_mesh(work, progress) as lab:
        t = lab.topo
        run = _Run(t, seconds, with_loss)
        rows["underlay"] = run.path("b", "a", A_UNDERLAY, [])
        out["relay_rtt_ms_p50"] = measure.ping(t, "b", RELAY_UNDERLAY, count=200)["rtt_ms_p50"]
        progress("  underlay done")
        rows["shadowmesh"] = {**run.path("b", "a", lab.a.overlay, [lab.a.proc.pid, lab.b.proc.pid]), "mtu": 65000}
        rows["shadowmesh_relayed"] = {**run.path("b", "c", lab.c.overlay, [
            lab.b.proc.pid, lab.c.proc.pid, lab.relay.proc.pid]), "mtu": 65000}
        out["first_packet_s"] = _first_packet(lab)
        progress("  shadowmesh done")
        peers = (("wireguard-go", lambda: wireguard.up(t, "a", "b", A_UNDERLAY, B_UNDERLAY, work)),
                 ("nebula-1300", lambda: nebula.up(t, "a", "b", A_UNDERLAY, B_UNDERLAY, work, mtu=1300)),
                 ("nebula-8900", lambda: nebula.up(t, "a", "b", A_UNDERLAY, B_UNDERLAY, work, mtu=8900)),
                 ("openvpn-udp", lambda: openvpn.up(t, "a", "b", A_UNDERLAY, B_UNDERLAY, work, proto="udp")),
                 ("openvpn-tcp", lambda: openvpn.up(t, "a", "b", A_UNDERLAY, B_UNDERLAY, work, proto="tcp")),
                 ("v2ray-vmess-ws", lambda: v2ray.up(t, "a", "b", A_UNDERLAY, B_UNDERLAY, work)))
        for name, up in peers:
            try:
                with up() as tun:
                    rows[name] = run.tunnel(tun)
            except Exception as exc:  # a peer that fails is reported, the others still run
                rows[name] = {"error": str(exc)[:300]}
            progress(f"  {name} done")
        for name, args in (("shadowmesh_1400", ()), ("shadowmesh_1400_plain", ("--no-offload",))):
            for dev in (lab.a, lab.b, lab.c):
                lab.stop(dev)
                lab.start_node(dev, "--mtu", "1400", *args)
            lab.wait_for(lambda: all(lab.status(d).get("ready_at") for d in (lab.a, lab.b, lab.c)), 30, name)
            rows[name] = {**run.path("b", "a", lab.a.overlay, [lab.a.proc.pid, lab.b.proc.pid]), "mtu": 1400}
        plain = rows["shadowmesh_1400_plain"].get("gbit_s")
        if plain:
            out["offload_gain_1400"] = round(rows["shadowmesh_1400"]["gbit_s"] / plain, 2)
    out["load_average_end"] = os.getloadavg()
    out["ratios"], out["targets"] = ratios(out)
    return out


def _best(rows: dict, key: str, *, low: bool = False) -> tuple[str, float] | None:
    cands = [(name, rows[name][key]) for name in PEER_ROWS
             if name in rows and rows[name].get(key) is not None]
    if not cands:
        return None
    return (min if low else max)(cands, key=lambda c: c[1])


def ratios(r: dict) -> tuple[dict, dict]:
    rows = r["rows"]
    sm = rows.get("shadowmesh", {})
    best_rate = _best(rows, "gbit_s")
    best_loss = _best(rows, "loss_gbit_s")
    best_rtt = _best(rows, "rtt_ms_p50", low=True)
    best_cpu = _best(rows, "cpu_s_per_gb", low=True)
    wg = rows.get("wireguard-go", {})
    out: dict[str, Any] = {"best_peer_gbit_s": best_rate, "best_peer_loss_gbit_s": best_loss,
                           "best_peer_rtt_ms_p50": best_rtt, "best_peer_cpu_s_per_gb": best_cpu}
    for name in SHADOWMESH_ROWS:
        row = rows.get(name)
        if not row or "error" in row:
            continue
        x = out[name] = {}
        if best_rate:
            x["gbit_s_x_best_peer"] = round(row["gbit_s"] / best_rate[1], 2)
        if best_loss and row.get("loss_gbit_s") is not None:
            x["loss_gbit_s_x_best_peer"] = round(row["loss_gbit_s"] / (best_loss[1] or float("nan")), 2)
        if best_rtt and row.get("rtt_ms_p50"):
            x["rtt_p50_x_best_peer"] = round(row["rtt_ms_p50"] / best_rtt[1], 2)
        if best_cpu and row.get("cpu_s_per_gb"):
            x["cpu_per_gb_x_best_peer"] = round(row["cpu_s_per_gb"] / best_cpu[1], 2)
    targets: dict[str, Any] = {}
    if sm.get("rtt_ms_p50") and wg.get("rtt_ms_p50"):
        targets["direct RTT p50 <= wireguard-go's"] = [sm["rtt_ms_p50"], wg["rtt_ms_p50"],
                                                      sm["rtt_ms_p50"] <= wg["rtt_ms_p50"]]
    if sm.get("rtt_ms_p50") and best_rtt:
        targets["direct RTT p50 <= 1.5 x best peer's"] = [sm["rtt_ms_p50"], round(1.5 * best_rtt[1], 4),
                                                          sm["rtt_ms_p50"] <= 1.5 * best_rtt[1]]
    rel = rows.get("shadowmesh_relayed", {})
    if rel.get("rtt_ms_p50") and sm.get("rtt_ms_p50") and r.get("relay_rtt_ms_p50"):
        bound = round(sm["rtt_ms_p50"] + 2 * r["relay_rtt_ms_p50"] + 0.1, 4)
        targets["relayed RTT p50 <= direct + 2 x RTT to relay + 0.1 ms"] = [rel["rtt_ms_p50"], bound,
                                                                           rel["rtt_ms_p50"] <= bound]
    m1400 = rows.get("shadowmesh_1400", {})
    if m1400.get("gbit_s") and best_rate:
        targets["MTU 1,400 >= 3 x best peer"] = [m1400["gbit_s"], round(3 * best_rate[1], 3),
                                                 m1400["gbit_s"] >= 3 * best_rate[1]]
    if rel.get("gbit_s") and sm.get("gbit_s"):
        targets["relayed >= 0.8 x direct"] = [rel["gbit_s"], round(0.8 * sm["gbit_s"], 3),
                                              rel["gbit_s"] >= 0.8 * sm["gbit_s"]]
    if sm.get("gbit_s") and r.get("aead_gbps"):
        targets["direct >= 0.5 x AEAD single-core limit"] = [sm["gbit_s"], round(0.5 * r["aead_gbps"], 3),
                                                             sm["gbit_s"] >= 0.5 * r["aead_gbps"]]
    return out, targets


def _f(v: Any, fmt: str = ".2f") -> str:
    return "–" if v is None else format(v, fmt)


def table_rows(r: dict) -> list[list[str]]:
    """Header plus one row per path: what both the terminal table and the README table show."""
    rows, best = r["rows"], r["ratios"].get("best_peer_gbit_s")
    head = ["path", "Gbit/s", "retrans", f"Gbit/s {r.get('loss_percent') or 0} % loss", "ping p50 ms",
            "ping p99 ms", "TCP echo p50 ms", "CPU s/GB", "× best peer Gbit/s"]
    out = [head]
    for name in ROWS:
        x = rows.get(name)
        if x is None:
            continue
        if "error" in x:
            out.append([LABELS[name], "failed: " + x["error"][:60]] + [""] * (len(head) - 2))
            continue
        out.append([LABELS[name], _f(x["gbit_s"]), str(x["retransmits"]), _f(x.get("loss_gbit_s")),
                    _f(x.get("rtt_ms_p50"), ".3f"), _f(x.get("rtt_ms_p99"), ".3f"), _f(x.get("echo_ms_p50"), ".3f"),
                    _f(x.get("cpu_s_per_gb"), ".1f"),
                    _f(x["gbit_s"] / best[1]) if best and name != "underlay" else "–"])
    return out


def format_table(r: dict) -> str:
    cells = table_rows(r)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    lines.append(f"AEAD (XChaCha20-Poly1305, 64 KiB, one core): {r['aead_gbps']} Gbit/s; "
                 f"RTT B -> relay p50 {r.get('relay_rtt_ms_p50')} ms; first packet after `up` "
                 f"{r.get('first_packet_s')} s; MTU 1,400 offload on / off {r.get('offload_gain_1400')}")
    for k, v in r["ratios"].items():
        lines.append(f"{k}: {v}")
    for k, (value, bound, ok) in r["targets"].items():
        lines.append(f"target {k}: {value} vs {bound}: {'met' if ok else 'NOT met'}")
    la = lambda x: ", ".join(f"{v:.2f}" for v in x)  # noqa: E731
    lines.append(f"load average: start {la(r['load_average_start'])}; end {la(r['load_average_end'])}")
    return "\n".join(lines)


def run(args) -> dict:
    if os.geteuid() != 0:
        print("mesh benchmark needs root (namespaces, TUN)", file=sys.stderr)
        return {"skipped": "needs root"}
    seconds = getattr(args, "seconds", None) or (QUICK_SECONDS if getattr(args, "quick", False) else DEFAULT_SECONDS)
    start = time.monotonic()
    r = measure_all(seconds, with_loss=not getattr(args, "no_loss", False))
    r["wall_s"] = round(time.monotonic() - start, 1)
    print(format_table(r), flush=True)
    if getattr(args, "readme", False):
        from bench.readme import update_readme

        update_readme(r)
        print("README.md: figures table rewritten from this run", flush=True)
    return r


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.mesh")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-loss", action="store_true")
    p.add_argument("--seconds", type=float)
    p.add_argument("--readme", action="store_true")
    with contextlib.suppress(KeyboardInterrupt):
        run(p.parse_args())
