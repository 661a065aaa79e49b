"""Baselines the mesh benchmark compares against (issue 5 "Benchmark"), measured between two namespaces.

* ``iperf3_tcp``: one TCP stream, iperf3, ``seconds`` long (10 s by default) -> Gbit/s, retransmits.
* ``ping_rtt``: ICMP echo every 5 ms (``-i 0.005``: root only) -> median/min/max RTT in ms, loss.
* ``wireguard_go``: a wireguard-go (userspace, Debian package) tunnel between the same two namespaces;
  run the two measurements above through it.
* ``tun_loop``: how many packets per second a plain Python loop moves through a TUN device
  (read_batch, swap addresses, write_batch): the ceiling for any Python data plane on this machine.
* ``measure_all`` / ``run(args)`` / ``python -m bench.baselines [--quick]``: all of it,
  returned as a dict and printed as a table plus JSON.

Figures drift between runs (2 shared cores): compare figures from the same run, as ratios.
Namespaces come from the lab builder ``lab.netns``.
Every function takes a ``Topology`` (anything with ``ns``/``spawn``/``run``/``stop``/``ip``) and the
namespace names, so bench/mesh.py can run them on its own namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SECONDS = 10.0
"""Seconds per iperf3 run."""
QUICK_SECONDS = 2.0
"""Seconds per iperf3 run with --quick."""
PING_INTERVAL = 0.005
"""Seconds between echo requests (issue 5: 5 ms)."""
PING_COUNT = 200
"""Echo requests per RTT measurement (1 s at 5 ms)."""
WG_MTU = 1420
"""Bytes. wireguard-go's default interface MTU."""
WG_PORT = 51820
"""UDP port wireguard-go listens on in each namespace."""
WG_SOCKET_DIR = Path("/run/wireguard")
"""wireguard-go's UAPI sockets: one directory for all namespaces, so names must be unique machine-wide."""

_wg_count = 0


# -- measurements on any two namespaces --------------------------------------------------------------


def iperf3_tcp(topo: Any, client: str, server: str, server_ip: str, *, seconds: float = DEFAULT_SECONDS,
               port: int = 5201) -> dict[str, float]:
    """One iperf3 TCP stream from ``client`` to ``server_ip`` (in namespace ``server``) for ``seconds``.

    Returns ``gbit_s`` (receiver side), ``retransmits`` and ``seconds``."""
    srv = topo.spawn(server, ["iperf3", "-s", "-1", "-p", str(port), "--forceflush"],
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in srv.stdout:  # --forceflush: "Server listening on PORT" arrives at once
            if "listening" in line:
                break
        else:
            raise RuntimeError(f"iperf3 server in {server} exited with {srv.wait()}")
        res = topo.run(client, ["iperf3", "-c", server_ip, "-p", str(port), "-t", str(seconds), "-J"],
                       timeout=seconds + 30)
    finally:
        topo.stop(srv)
    end = json.loads(res.stdout)["end"]
    return {
        "gbit_s": round(end["sum_received"]["bits_per_second"] / 1e9, 3),
        "retransmits": end["sum_sent"].get("retransmits", 0),
        "seconds": seconds,
    }


def ping_rtt(topo: Any, src: str, dst_ip: str, *, count: int = PING_COUNT,
             interval: float = PING_INTERVAL) -> dict[str, float]:
    """``count`` echo requests every ``interval`` s from namespace ``src``: median/min/max RTT (ms), loss."""
    res = topo.run(src, ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", dst_ip], check=False,
                   timeout=count * interval + 30)
    rtts = [float(tok.split("=")[1]) for line in res.stdout.splitlines() for tok in line.split()
            if tok.startswith("time=")]
    if not rtts:
        raise RuntimeError(f"no echo replies from {dst_ip}: {res.stdout[-300:]} {res.stderr[-300:]}")
    return {
        "rtt_ms_median": round(statistics.median(rtts), 4),
        "rtt_ms_min": min(rtts),
        "rtt_ms_max": max(rtts),
        "loss": round(1 - len(rtts) / count, 4),
    }


@dataclass(frozen=True)
class WireGuardLink:
    """A running wireguard-go tunnel: interface names and tunnel addresses on each side."""

    iface_a: str
    iface_b: str
    ip_a: str
    ip_b: str


def _wg_keypair() -> tuple[str, str]:
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout.strip()
    public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True, check=True).stdout.strip()
    return private, public


@contextlib.contextmanager
def wireguard_go(topo: Any, ns_a: str, ns_b: str, underlay_a: str, underlay_b: str, *,
                 tunnel: str = "100.127.0.0/30", mtu: int = WG_MTU) -> Iterator[WireGuardLink]:
    """Bring up wireguard-go in ``ns_a`` and ``ns_b`` (reachable at ``underlay_a``/``underlay_b``), peer them,
    address them ``.1``/``.2`` of ``tunnel``; stop both on exit. Needs wireguard-go and wg (wireguard-tools).

    Each side is configured with the other's underlay address as endpoint. If ``ns_b`` is behind a NAT,
    send from ``ns_b`` first (e.g. a short ping): ``ns_a`` then learns its translated endpoint (roaming)."""
    global _wg_count
    _wg_count += 1
    stem = f"smwg{os.getpid() % 1000000}{_wg_count}"
    if len(stem) > 14:
        stem = f"smwg{os.getpid() % 10000}{_wg_count % 100}"
    net = ipaddress.ip_network(tunnel)
    hosts = list(net.hosts())
    ends = [(ns_a, stem + "a", str(hosts[0]), underlay_a), (ns_b, stem + "b", str(hosts[1]), underlay_b)]
    keys = [_wg_keypair(), _wg_keypair()]
    procs = []
    env = dict(os.environ, WG_PROCESS_FOREGROUND="1", WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1",
               LOG_LEVEL="error")
    try:
        for ns, iface, _, _ in ends:
            procs.append(topo.spawn(ns, ["wireguard-go", "-f", iface], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _, iface, _, _ in ends:
            sock = WG_SOCKET_DIR / f"{iface}.sock"
            deadline = time.monotonic() + 5
            while not sock.exists():
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"wireguard-go did not create {sock}")
                time.sleep(0.01)
        with tempfile.TemporaryDirectory(prefix="smt-wg-") as d:
            for i, (ns, iface, ip, _) in enumerate(ends):
                other = ends[1 - i]
                keyfile = Path(d) / f"{iface}.key"
                keyfile.write_text(keys[i][0])
                keyfile.chmod(0o600)
                topo.run(ns, ["wg", "set", iface, "private-key", str(keyfile), "listen-port", str(WG_PORT),
                              "peer", keys[1 - i][1], "endpoint", f"{other[3]}:{WG_PORT}",
                              "allowed-ips", f"{other[2]}/32"])
                topo.ip(ns, "addr", "add", f"{ip}/{net.prefixlen}", "dev", iface)
                topo.ip(ns, "link", "set", iface, "mtu", str(mtu), "up")
        yield WireGuardLink(ends[0][1], ends[1][1], ends[0][2], ends[1][2])
    finally:
        for p in procs:
            topo.stop(p)
        for _, iface, _, _ in ends:
            with contextlib.suppress(FileNotFoundError):
                (WG_SOCKET_DIR / f"{iface}.sock").unlink()


# -- the Python TUN loop -----------------------------------------------------------------------------

_BLASTER = """
import socket, sys, time
payload = b"x" * int(sys.argv[1]); end = time.monotonic() + float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("100.64.0.1", 9999))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
n = 0
while time.monotonic() < end:
    for _ in range(256):
        try:
            s.sendto(payload, ("100.64.0.2", 9999)); n += 1
        except OSError:
            pass
print(n)
"""


def _reflect(p: bytes) -> bytes:
    # Swap source/destination address and port: both checksums stay valid (one's-complement sums commute).
    return p[:12] + p[16:20] + p[12:16] + p[22:24] + p[20:22] + p[24:]


def tun_loop(topo: Any, netns: str, *, mtu: int, seconds: float = 3.0, batch: int = 64) -> dict[str, float]:
    """Packets/s a Python loop moves through a TUN in ``netns``: a sender process floods UDP datagrams
    of ``mtu`` bytes into the TUN; the loop reads them (``read_batch``), swaps addresses and writes them
    back (``write_batch``), so each packet costs one read and one write. Both share the CPUs."""
    from shadowmesh_client.tun import configure, open_tun

    with open_tun("smtloop%d", mtu=mtu, netns=topo.ns(netns)) as dev:
        configure(dev.name, "100.64.0.1/10", netns=topo.ns(netns))
        sender = topo.spawn(netns, [sys.executable, "-c", _BLASTER, str(mtu - 28), str(seconds + 0.5)],
                            stdout=subprocess.PIPE, text=True)
        try:
            fd, moved, start = dev.fileno(), 0, None
            end = time.monotonic() + seconds + 2.0
            while time.monotonic() < end:
                if not select.select([fd], [], [], 0.5)[0]:
                    if start is not None:
                        break  # the sender finished
                    continue
                packets = dev.read_batch(batch)
                if start is None:
                    start, moved = time.monotonic(), 0
                moved += dev.write_batch([_reflect(p) for p in packets])
                if time.monotonic() - start >= seconds:
                    break
            elapsed = time.monotonic() - (start or time.monotonic())
            sent = sender.communicate(timeout=seconds + 10)[0].strip()
        finally:
            topo.stop(sender)
    pps = moved / elapsed if elapsed else 0.0
    return {
        "mtu": mtu,
        "packets_per_s": round(pps),
        "gbit_s": round(pps * mtu * 8 / 1e9, 3),
        "sender_packets": int(sent or 0),
        "seconds": round(elapsed, 2),
    }


# -- everything ---------------------------------------------------------------------------------------


def measure_all(seconds: float = DEFAULT_SECONDS, *, wireguard: bool = True, tun: bool = True) -> dict[str, dict]:
    """Plain veth and wireguard-go between namespaces a and b of one veth pair, plus the TUN loop."""
    from lab import netns
    out: dict[str, dict] = {}
    with netns.veth_pair() as topo:
        a, b = topo.hosts["a"], topo.hosts["b"]
        out["veth"] = {**iperf3_tcp(topo, "a", "b", b.ip, seconds=seconds), **ping_rtt(topo, "a", b.ip)}
        if wireguard:
            with wireguard_go(topo, "a", "b", a.ip, b.ip) as wg:
                ping_rtt(topo, "a", wg.ip_b, count=5, interval=0.05)  # handshake first
                out["wireguard_go"] = {**iperf3_tcp(topo, "a", "b", wg.ip_b, seconds=seconds),
                                       **ping_rtt(topo, "a", wg.ip_b)}
        if tun:
            loop_seconds = min(seconds, 3.0)
            out["tun_loop_1400"] = tun_loop(topo, "a", mtu=1400, seconds=loop_seconds)
            out["tun_loop_65000"] = tun_loop(topo, "a", mtu=65000, seconds=loop_seconds)
    return out


def format_table(results: dict[str, dict]) -> str:
    rows = [f"{'path':<16} {'Gbit/s':>8} {'retrans':>8} {'RTT med ms':>11} {'packets/s':>10}"]
    for name, r in results.items():
        rows.append(
            f"{name:<16} {r.get('gbit_s', float('nan')):>8.3f} {str(r.get('retransmits', '')):>8} "
            f"{str(r.get('rtt_ms_median', '')):>11} {str(r.get('packets_per_s', '')):>10}"
        )
    if "veth" in results and "wireguard_go" in results and results["veth"]["gbit_s"]:
        ratio = results["wireguard_go"]["gbit_s"] / results["veth"]["gbit_s"]
        rows.append(f"wireguard-go / veth throughput: {ratio:.3f}")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> dict[str, dict]:
    """Entry point in the style of ``bench`` modules (``args.quick``: 2 s runs)."""
    results = measure_all(QUICK_SECONDS if getattr(args, "quick", False) else DEFAULT_SECONDS)
    print(format_table(results), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SECONDS:g} s iperf3 runs instead of {DEFAULT_SECONDS:g} s")
    parser.add_argument("--seconds", type=float, help="seconds per iperf3 run (overrides --quick)")
    parser.add_argument("--no-wireguard", action="store_true", help="skip wireguard-go")
    parser.add_argument("--no-tun", action="store_true", help="skip the Python TUN loop")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("baselines need root (network namespaces)", file=sys.stderr)
        return 2
    seconds = args.seconds or (QUICK_SECONDS if args.quick else DEFAULT_SECONDS)
    results = measure_all(seconds, wireguard=not args.no_wireguard, tun=not args.no_tun)
    print(format_table(results))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
