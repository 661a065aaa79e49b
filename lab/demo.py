"""`make demo` / `python -m lab.demo`: the whole ShadowMesh on this machine, then gone (root).

1. a local chain: anvil in its own network namespace, both contracts deployed by `ape run deploy`;
2. a network created and four devices registered with the real `shadowmesh-client` commands: a relay and
   device A on the "public" segment, B behind one NAT router, C behind another (lab.mesh);
3. `shadowmesh-client relay` and three `shadowmesh-client up` daemons, each its own process in its namespace;
4. traffic: ping and a 3-second iperf3 TCP transfer A<->B (direct: B dials A's published endpoint) and
   B<->C (through the relay: neither can reach the other), with the figures and the path each took;
5. payments: the devices' owner deposits SMT, the relay's owner sets a price; the devices sign receipts for
   the bytes the relay carries for them, and at the end the relay runs `shadowmesh-client claim` and
   prints its SMT balance change;
6. teardown: every daemon stopped by PID (SIGTERM), every namespace deleted; what is left is printed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time


def _say(msg: str) -> None:
    print(msg, flush=True)


def main() -> int:
    if os.geteuid() != 0:
        print("error: the demo needs root (network namespaces and TUN devices): run `sudo make demo`", file=sys.stderr)
        return 2
    from bench.baselines import iperf3_tcp, ping_rtt
    from lab.mesh import LabError, standard_mesh
    from lab.netns import list_namespaces

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="smt-demo-") as workdir:
        _say("== bringing up a local chain and the mesh (relay + A public, B and C behind NAT routers) ==")
        try:
            lab = standard_mesh(workdir, progress=lambda m: _say("  " + m))
        except LabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        prefix = lab.topo.prefix
        with lab:
            t = lab.topo
            _say("\n== payments: B's owner deposits 5 SMT, the relay charges 1 SMT per GB (10**9 base units/byte) ==")
            payer = json.loads(lab.cli("b", lab.b.config, "balance", "--json").stdout)["address"]
            lab.mint(payer, 10 * 10**18)
            _say("  " + lab.cli("b", lab.b.config, "deposit", "5").stdout.splitlines()[0])
            _say("  " + lab.cli("relay", lab.relay.config, "set-price", str(10**9)).stdout.splitlines()[0])
            lab.wait_for(lambda: (lab.status(lab.relay).get("payments") or {}).get("price_per_byte"), 15,
                         "the relay to see its price")
            _say("\n== the directory as device A sees it (`shadowmesh-client peers`) ==")
            _say(lab.cli("a", lab.a.config, "peers").stdout.rstrip())
            for name, src, dst in (("A <-> B, direct", lab.b, lab.a), ("B <-> C, through the relay", lab.b, lab.c)):
                _say(f"\n== {name}: {src.name} ({src.overlay}) -> {dst.name} ({dst.overlay}) ==")
                t.run(src.ns, ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", dst.overlay], check=False)
                rtt = ping_rtt(t, src.ns, dst.overlay, count=50, interval=0.01)
                _say(f"  ping: median {rtt['rtt_ms_median']:.3f} ms, loss {rtt['loss']:.0%}")
                for a, b in ((src, dst), (dst, src)):
                    r = iperf3_tcp(t, a.ns, b.ns, b.overlay, seconds=3)
                    _say(f"  iperf3 {a.name} -> {b.name}: {r['gbit_s']:.2f} Gbit/s (one TCP stream, 3 s)")
                _say(f"  path chosen by {src.name}: {lab.peer(src, dst).get('path')}")
            time.sleep(1.1)
            usage = lab.status(lab.relay).get("usage", {})
            _say("\n== the relay's per-device byte counts (what it will be paid for) ==")
            for dev in (lab.a, lab.b, lab.c):
                u = usage.get(dev.public_key, {})
                _say(f"  {dev.name}: {u.get('bytes_in', 0):>13,} bytes in, {u.get('bytes_out', 0):>13,} bytes out")
            _say("\n== the relay claims its reward (`shadowmesh-client claim`) ==")
            time.sleep(1.5)   # the last receipts (every 16 MB or 10 s) reach the ledger
            before = _wallet(lab)
            _say(lab.cli("relay", lab.relay.config, "claim").stdout.rstrip())
            after = _wallet(lab)
            from shadowmesh_client.rewards.onchain import format_smt

            _say(f"  relay wallet: {format_smt(before)} -> {format_smt(after)} SMT (+{format_smt(after - before)})")
            _say("\n== stopping the daemons (SIGTERM) ==")
            for dev in (lab.a, lab.b, lab.c, lab.relay):
                _say(f"  {dev.name}: exit code {lab.stop(dev)}")
        left = [ns for ns in list_namespaces() if ns.startswith(prefix)]
        _say(f"\n== torn down in {time.monotonic() - started:.1f} s; namespaces left: {left or 'none'} ==")
    return 0


def _wallet(lab) -> int:
    from shadowmesh_client.rewards.onchain import parse_smt

    return parse_smt(json.loads(lab.cli("relay", lab.relay.config, "balance", "--json").stdout)["wallet"])


if __name__ == "__main__":
    sys.exit(main())
