"""`make demo` / `python -m lab.demo`: the whole ShadowMesh on this machine, then gone (root).

1. a local chain: anvil in its own network namespace, both contracts deployed by `ape run deploy`;
2. a network created and four devices registered with the real `shadowmesh-client` commands: a relay and
   device A on the "public" segment, B behind one NAT router, C behind another (lab.mesh);
3. `shadowmesh-client relay` and three `shadowmesh-client up` daemons, each its own process in its namespace;
4. traffic: ping and a 3-second iperf3 TCP transfer A<->B (direct: B dials A's published endpoint) and
   B<->C (through the relay: neither can reach the other), with the figures and the path each took;
5. payments (v2, issue 10): the relay's owner sets a price and the devices' owner funds a reserve that only
   that relay can claim from, before the daemons start (a device accepts the price when its session with
   the relay starts); the devices sign receipts at that price for the authenticated bytes the relay carries
   for them; at the end the payer asks to withdraw its reserve, the relay claims on its own when it sees
   that (automatic claim), `shadowmesh-client claim` picks up anything left, and the demo prints what the
   payer's reserve guaranteed the relay and the relay's SMT balance change;
6. teardown: every daemon stopped by PID (SIGTERM), every namespace deleted; what is left is printed.

Devices a, b and c belong to one owner account and are paid for from that owner's one reserve for the relay
(one credit for the three of them); the relay has an owner of its own (it is paid). Every pause longer than
2 s is announced with what it waits for.
For each traffic test the demo prints the bytes the relay counted for each device DURING that test and the
path both ends chose, so relay billing during the "direct" test is visible (and explained) when it happens.
Ctrl-C: one line ``interrupted``, exit code 130, everything torn down.
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
    try:
        return _main()
    except KeyboardInterrupt:  # the lab's context manager has torn everything down on the way out
        print("interrupted", file=sys.stderr, flush=True)
        return 130


def _usage(lab) -> dict[str, int]:
    usage = lab.status(lab.relay).get("usage", {})
    return {d.name: sum(usage.get(d.public_key, {}).get(k, 0) for k in ("bytes_in", "bytes_out"))
            for d in (lab.a, lab.b, lab.c)}


def _main() -> int:
    if os.geteuid() != 0:
        print("error: the demo needs root (network namespaces and TUN devices): run `sudo make demo`", file=sys.stderr)
        return 2
    from bench.baselines import iperf3_tcp, ping_rtt
    from lab.mesh import LabError, standard_mesh
    from lab.netns import list_namespaces

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="smt-demo-") as workdir:
        _say("== bringing up a local chain and the mesh (relay + A public, B and C behind NAT routers; "
             "about 30 s) ==")
        _say("  a, b and c belong to one owner (one account, one escrow deposit pays for all three); "
             "the relay has its own owner")
        pay: dict = {}

        def payments(lab) -> None:
            _say("  payments: the relay charges 1 SMT per GB (10**9 base units/byte); the devices' owner funds a "
                 "5 SMT reserve for it (before the daemons start: a device accepts the price at session start)")
            pay.update(lab.setup_payments(lab.b, lab.relay, reserve="5", price=10**9))
            _say(f"    {pay['price']}\n    {pay['reserve']}")

        try:
            lab = standard_mesh(workdir, progress=lambda m: _say("  " + m), before_start=payments)
        except LabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        prefix = lab.topo.prefix
        with lab:
            t = lab.topo
            _say("\n== what the payer's reserve guarantees the relay (`shadowmesh-client balance`) ==")
            _say(_reserve_line(lab, pay["relay"]))
            _say("\n== the directory as device A sees it (`shadowmesh-client peers`) ==")
            _say(lab.cli("a", lab.a.config, "peers").stdout.rstrip())
            for name, src, dst in (("A <-> B, direct", lab.b, lab.a), ("B <-> C, through the relay", lab.b, lab.c)):
                _say(f"\n== {name}: {src.name} ({src.overlay}) -> {dst.name} ({dst.overlay}); "
                     "ping, then 3 s of iperf3 each way (about 10 s) ==")
                before = _usage(lab)
                t.run(src.ns, ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", dst.overlay], check=False)
                rtt = ping_rtt(t, src.ns, dst.overlay, count=50, interval=0.01)
                _say(f"  ping: median {rtt['rtt_ms_median']:.3f} ms, loss {rtt['loss']:.0%}")
                for a, b in ((src, dst), (dst, src)):
                    r = iperf3_tcp(t, a.ns, b.ns, b.overlay, seconds=3)
                    _say(f"  iperf3 {a.name} -> {b.name}: {r['gbit_s']:.2f} Gbit/s (one TCP stream, 3 s)")
                _say(f"  path chosen by {src.name}: {lab.peer(src, dst).get('path')}, "
                     f"by {dst.name}: {lab.peer(dst, src).get('path')}")
                time.sleep(1.1)  # the relay's status file is rewritten every second
                after = _usage(lab)
                billed = {n: after[n] - before[n] for n in after if after[n] > before[n]}
                _say("  relay bytes counted during this test: "
                     + (", ".join(f"{n}: {v:,}" for n, v in billed.items()) or "none"))
            time.sleep(1.1)
            usage = lab.status(lab.relay).get("usage", {})
            _say("\n== the relay's per-device byte counts (what it will be paid for) ==")
            for dev in (lab.a, lab.b, lab.c):
                u = usage.get(dev.public_key, {})
                _say(f"  {dev.name}: {u.get('bytes_in', 0):>13,} bytes in, {u.get('bytes_out', 0):>13,} bytes out")
            _say("\n== the payer asks to withdraw its reserve; the relay claims on its own when it sees that ==")
            time.sleep(1.5)   # the last receipts (every 16 MB or 10 s) reach the ledger
            before = _wallet(lab)
            r = json.loads(lab.cli("b", lab.b.config, "withdraw", "--relay", pay["relay"], "--all", "--json").stdout)
            _say(f"  withdrawal of {r['amount']} SMT requested; it can be made in {r['seconds_left']} s (the notice)")
            _say("  (waiting up to 20 s for the relay to see ReserveWithdrawalRequested and claim)")
            claims = lab.wait_for(lambda: (lab.status(lab.relay).get("payments") or {}).get("claims"), 20,
                                  "the relay's automatic claim")
            for c in claims:
                _say(f"  automatic claim ({', '.join(c['reasons'])}): {c['total']} SMT for "
                     f"{sum(x['bytes'] for x in c['claimed']):,} bytes"
                     + (f"; skipped by the contract: {[x['status'] for x in c['skipped_on_chain']]}"
                        if c["skipped_on_chain"] else ""))
            _say("\n== anything left is claimed by hand (`shadowmesh-client claim`) ==")
            _say(lab.cli("relay", lab.relay.config, "claim").stdout.rstrip())
            after = _wallet(lab)
            from shadowmesh_client.rewards.onchain import format_smt

            _say(f"  relay wallet: {format_smt(before)} -> {format_smt(after)} SMT (+{format_smt(after - before)})")
            _say(_reserve_line(lab, pay["relay"]))
            _say("\n== stopping the daemons (SIGTERM) ==")
            for dev in (lab.a, lab.b, lab.c, lab.relay):
                _say(f"  {dev.name}: exit code {lab.stop(dev)}")
        left = [ns for ns in list_namespaces() if ns.startswith(prefix)]
        _say(f"\n== finished in {time.monotonic() - started:.0f} s; everything torn down "
             f"(namespaces left: {left or 'none'}) ==")
    return 0


def _reserve_line(lab, relay: str) -> str:
    b = json.loads(lab.cli("b", lab.b.config, "balance", "--json").stdout)
    for r in b["reserves"]:
        if r["relay"].lower() == relay.lower():
            pending = f", {r['pending_withdrawal']} SMT of it requested back" if r["unlock_at"] else ""
            return (f"  the payer's reserve for the relay holds {r['balance']} SMT{pending}: it guarantees the relay "
                    f"{r['guaranteed']} SMT (the relay carries the devices only up to that, minus what they owe)")
    return "  the payer has no reserve for the relay"


def _wallet(lab) -> int:
    from shadowmesh_client.rewards.onchain import parse_smt

    return parse_smt(json.loads(lab.cli("relay", lab.relay.config, "balance", "--json").stdout)["wallet"])


if __name__ == "__main__":
    sys.exit(main())
