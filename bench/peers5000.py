"""5,000 peers per node (issue 15), over the in-memory transport: ``python -m bench.peers5000 [--quick]``.

One real ``up`` daemon (``Node`` with ``on_demand``; FakeTun) in a network of ``KNOWN`` devices
(lab.directory.MemoryRegistry, real registrations) next to a real relay and one real peer node ``p``;
``LIVE`` of the devices are a swarm of lightweight initiators (a protocol Session each) that dial the
node's listener over MemoryTransport: each incoming hello makes a session on demand. Figures:

* bytes per KNOWN device: the node's retained size of its directory entry, route and idle PeerState
  (deep size over what only that device's entries reference), over all known devices;
* bytes per LIVE session: the larger of (a) the retained size of a live peer (PeerState, Session with keys
  and replay window, DirectPath, the node's end of the link, its serving task) minus that of an idle one,
  and (b) everything allocated while the sessions were made (tracemalloc) minus the swarm's own share;
* idle CPU: process CPU over ``IDLE_SECONDS`` with every session up and no traffic (the swarm runs no
  timers: this is the node's housekeeping, session timers and idle checks), as % of one core;
* time to first packet: a packet to ``p`` (no session yet) from the node's TUN until it leaves ``p``'s
  TUN: handshake through the relay on demand, then the packet (the direct link follows).

Targets: <= 10 KB per known device, <= 30 KB per live session, idle CPU < 5 % of a core.
``run(args)`` is the ``python -m bench`` entry point (add "peers5000" to bench/__main__.py's list).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import tracemalloc
import types
from typing import Any

KNOWN, LIVE = 10_000, 5_000
IDLE_SECONDS = 10.0
PROFILE = False   # set True to print where the idle CPU goes


_NOT_OWNED = (type, type(sys), type(lambda: 0), types.CoroutineType, types.FrameType, asyncio.Task, asyncio.Future)
"""Never walked into: classes, modules, functions, and tasks/coroutines/frames (a peer's link-serving task
is counted apart: ``TASK_BYTES``; walking its frame reaches the whole daemon through closures)."""


def deep_size(roots, stop: set[int]) -> int:
    """Bytes of every object reachable from ``roots`` without passing through an object in ``stop`` (nor a
    module's globals, which a serving task's frame reaches)."""
    seen: set[int] = set(stop) | {id(vars(mod)) for mod in list(sys.modules.values()) if mod is not None}
    todo = list(roots)
    total = 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, _NOT_OWNED):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        todo.extend(gc.get_referents(obj))
    return total


async def measure(known: int, live: int, idle_seconds: float) -> dict:
    from lab.directory import MemoryRegistry
    from shadowmesh_client.node import Node, NodeSettings
    from shadowmesh_client.node.peers import now
    from shadowmesh_client.protocol import Session
    from shadowmesh_client.relay.daemon import RelayDaemon, RelaySettings
    from shadowmesh_client.transport import ClientConfig
    from shadowmesh_client.transport.memory import MemoryTransport
    from shadowmesh_client.tun import FakeTun
    from tests.client.node.helpers import ipv4

    t_setup = time.perf_counter()
    reg = MemoryRegistry()
    transport = MemoryTransport()
    relay_dev = reg.register(relay=True, endpoint="ws://relay:7000/relay")
    node_dev = reg.register(endpoint="ws://n:7000/n")
    p_dev = reg.register(endpoint="ws://p:7000/p")
    swarm = [reg.register() for _ in range(known - 3)]
    # idle_timeout: an hour, so sessions made early in the ramp-up are still live when measured
    settings: dict[str, Any] = dict(mtu=1400, on_demand=True, idle_timeout=3600.0, backoff_max=0.5,
                                    handshake_guard=None)
    ntun, ptun = FakeTun("n", mtu=1400), FakeTun("p", mtu=1400)
    node = Node(node_dev.identity, reg.source(), NodeSettings(tun_name="n", listen="n:7000", **settings),
                transport=transport, tun=ntun)
    p = Node(p_dev.identity, reg.source(), NodeSettings(tun_name="p", listen="p:7000", **settings),
             transport=transport, tun=ptun)
    relay = RelayDaemon(relay_dev.identity, reg.source(), RelaySettings(listen="relay:7000"), transport=transport)
    stops = [asyncio.Event() for _ in range(3)]
    daemons: list[Any] = [relay, node, p]
    tasks = [asyncio.create_task(d.run(ev)) for d, ev in zip(daemons, stops, strict=True)]
    while node.ready_at is None or p.ready_at is None or not all(r.ready for r in node.table.relays.values()) \
            or not all(r.ready for r in p.table.relays.values()):
        await asyncio.sleep(0.05)
    setup = time.perf_counter() - t_setup

    # ---- time to first packet to a peer with no session ----
    assert node.table.peers[p_dev.identity.public_key].session.state.value == "new"
    pkt = ipv4(node_dev.overlay, p_dev.overlay, b"first")
    t0 = time.perf_counter()
    ntun.inject(pkt)
    while pkt not in ptun.written:
        await asyncio.sleep(0.0005)
    first_packet_ms = (time.perf_counter() - t0) * 1000

    # ---- memory per known device (nothing live yet but p) ----
    gc.collect()
    shared = {id(x) for x in (node.identity, node.protocol, node.trust, node.floors, node.table, node.tun,
                              node.links, node.reconciler, node.pump, node.timers, transport, node.ds, node,
                              node.table.relays)}
    shared |= {id(r) for r in node.table.relays.values()} | {id(r.link) for r in node.table.relays.values()}
    shared |= {id(asyncio.get_running_loop()), id(node.settings), id(node.table.trust)}
    directory = node.ds.directory
    idle_peers = [pe for k, pe in node.table.peers.items() if k != p_dev.identity.public_key]
    per_known = (deep_size([node.table.peers, node.table.routes], shared)
                 + deep_size([directory], shared | {id(node.table.peers)})) / (known - 1)
    idle_one = deep_size(idle_peers[:200], shared) / 200

    # ---- LIVE sessions: the swarm dials the node's listener; each hello makes a session on demand ----
    gc.collect()
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    t1 = time.perf_counter()
    links = []
    sessions = []
    cfg = node.protocol
    for dev in swarm[:live]:
        s = Session(dev.identity, node_dev.identity.public_key, cfg, lambda k: True)
        link = await transport.dial(ClientConfig("ws://n:7000/n"), bytes(s.initiate(now())), peer=dev)
        s.open(await link.recv(), now())
        sessions.append(s)
        links.append(link)
    handshake_s = time.perf_counter() - t1
    await asyncio.sleep(1.0)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced0
    tracemalloc.stop()
    swarm_side = deep_size([sessions, links], {id(node_dev.identity), id(cfg), id(asyncio.get_running_loop())}
                           | {id(d.identity) for d in swarm} | {id(lk._other) for lk in links})
    per_live_traced = (traced - swarm_side) / live      # everything the node allocated for them, tasks included
    live_peers = [node.table.peers[d.identity.public_key] for d in swarm[:live]]
    established = sum(pe.session.state.value == "established" and pe.direct is not None for pe in live_peers)
    gc.collect()
    stop = shared | {id(lk) for lk in links} | {id(pe.relay_paths) for pe in live_peers} | {id(directory)}
    serving = [t for t in asyncio.all_tasks() if (t.get_name() or "").startswith("Task")]
    task_bytes = sum(sys.getsizeof(t) + sys.getsizeof(t.get_coro()) for t in serving[:500]) / max(len(serving[:500]), 1)
    per_live_total = deep_size(live_peers[:500], stop) / 500 + task_bytes
    per_live = per_live_total - idle_one

    # ---- idle CPU ----
    c0, w0 = time.process_time(), time.perf_counter()
    if PROFILE:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
    await asyncio.sleep(idle_seconds)
    if PROFILE:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    idle_cpu = (time.process_time() - c0) / (time.perf_counter() - w0) * 100

    for ev in stops:
        ev.set()
    for lk in links:
        await lk.close()
    await asyncio.wait(tasks, timeout=30)
    return {"known_devices": known, "live_sessions": established, "live_target": live,
            "bytes_per_known_device": round(per_known), "bytes_per_idle_peerstate": round(idle_one),
            "bytes_per_live_session": round(max(per_live, per_live_traced)),
            "bytes_per_live_session_walk": round(per_live),
            "bytes_per_live_session_tracemalloc": round(per_live_traced),
            "bytes_per_live_peer_total": round(per_live_total),
            "idle_cpu_percent_of_core": round(idle_cpu, 2), "first_packet_ms": round(first_packet_ms, 2),
            "handshakes_per_s": round(live / handshake_s), "setup_s": round(setup, 1),
            "targets": {"bytes_per_known_device": 10_240, "bytes_per_live_session": 30_720,
                        "idle_cpu_percent_of_core": 5.0}}


def run(args) -> dict:
    quick = getattr(args, "quick", False)
    known, live = (2_000, 1_000) if quick else (KNOWN, LIVE)
    r = asyncio.run(measure(known, live, 5.0 if quick else IDLE_SECONDS))
    print(f"peers: {r['known_devices']} known, {r['live_sessions']} live | per known device "
          f"{r['bytes_per_known_device']} B (target <= 10 KB) | per live session {r['bytes_per_live_session']} B "
          f"(target <= 30 KB) | idle CPU {r['idle_cpu_percent_of_core']} % of a core (target < 5 %) | "
          f"first packet to a peer with no session {r['first_packet_ms']} ms")
    return r


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.peers5000", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args()), indent=2))
