"""Relay cluster benchmark (issue 13 "Cluster"): ``python -m bench cluster`` (in ``make bench``).

    python -m bench cluster [--quick]
    python -m bench.cluster _member ...      (internal: one member process)

Figures (all on loopback; every process started here is ended by PID at the end):

* ``handshakes_per_s_1_worker`` / ``_2_workers``: the real ``RelayDaemon`` (directory of N devices built
  in-process as in bench/relay.py, flood guard off) as 1 or 2 member processes bound to ONE port with
  SO_REUSEPORT (relay/cluster/workers.py) and meshed over loopback; bench/relay.py's client processes
  connect N sessions at once. Rate = handshakes accepted by all members / seconds from the first to the
  last. Target: 2 workers >= 1.7 x 1 worker. On this 2-core VM the client processes need more CPU per
  connect than the relay, and share the cores: ``relay_cpu_us_per_handshake`` per member gives what each
  worker could do on a free core.
* ``same_member_mbit_s`` / ``cross_member_mbit_s``: one device sends 64 KiB frames as fast as backpressure
  allows to another device, both on member 0 (same) or the receiver on member 1 (cross: one mesh hop).
  Target: cross >= 0.8 x same.
* ``bytes_per_session``: RSS growth of both members of the 2-worker run per session (devices split over
  the workers; each member also holds a remote route for every device of the other). Target <= 25 KB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time

from bench.relay import (
    PATH,
    StaticSource,
    _read_json,
    _send,
    build_directory,
    cpu_seconds,
    identity,
    protocol_config,
    raise_nofile,
    rss_kib,
)

TARGET_SCALING = 1.7
TARGET_CROSS_RATIO = 0.8
TARGET_BYTES_PER_SESSION = 25_000
FRAME_BYTES = 60_000          # inner frame bytes per relayed message (~ one full 64 KiB message)
MESH_BASE_PORT = 17946


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- one member process -----------------------------------------------------------------------------------
async def _member_main(args) -> None:
    from shadowmesh_client.relay.cluster import ClusterSettings, worker_settings
    from shadowmesh_client.relay.daemon import RelayDaemon
    from shadowmesh_client.relay.settings import RelaySettings

    raise_nofile()
    directory, relay_id = build_directory(args.devices, args.seed)
    base = ClusterSettings(listen=f"127.0.0.1:{args.mesh_port}")
    cluster = worker_settings(base, args.index, args.workers)
    settings = RelaySettings(listen=f"127.0.0.1:{args.port}", path=PATH, handshake_guard=None, cluster=cluster)
    stamps = {"first": None, "last": None, "ok": 0, "cpu_first": 0.0, "cpu_last": 0.0}

    class Member(RelayDaemon):
        def authenticate(self, hello, source=None):
            if stamps["first"] is None:
                stamps["cpu_first"] = cpu_seconds()
            result = super().authenticate(hello, source)
            if result is not None and not hasattr(result, "reply"):
                now = time.perf_counter()
                stamps["first"] = stamps["first"] or now
                stamps["last"], stamps["cpu_last"] = now, cpu_seconds()
                stamps["ok"] += 1
            return result

    daemon = Member(relay_id, StaticSource(directory), settings)
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(daemon.run(stop))
    while daemon.cluster is None or not daemon._port():
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    while len(daemon.cluster.dialed) < args.workers - 1:
        await asyncio.sleep(0.02)
    import gc
    gc.collect()
    print(json.dumps({"rss_kib": rss_kib()}), flush=True)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (await reader.readline()).strip():
        gc.collect()
        print(json.dumps({"rss_kib": rss_kib(), "links": len(daemon.server.links), "ok": stamps["ok"],
                          "first": stamps["first"], "last": stamps["last"],
                          "cpu_span": stamps["cpu_last"] - stamps["cpu_first"],
                          "cluster": daemon.cluster.status()}), flush=True)
    stop.set()
    await task


def _spawn_member(index: int, workers: int, port: int, mesh_port: int, devices: int, seed: str, reuse: bool):
    import subprocess
    env = dict(os.environ)
    argv = [sys.executable, "-m", "bench.cluster", "_member", "--index", str(index), "--workers", str(workers),
            "--port", str(port), "--mesh-port", str(mesh_port), "--devices", str(devices), "--seed", seed]
    if reuse:
        argv.append("--reuse-port")
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _spawn_clients(url: str, seed: str, start: int, count: int, concurrency: int):
    import subprocess
    return subprocess.Popen([sys.executable, "-m", "bench.relay", "_clients", "--url", url, "--seed", seed,
                             "--start", str(start), "--count", str(count), "--concurrency", str(concurrency)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _end(procs) -> None:
    import subprocess
    for p in procs:
        try:
            p.stdin.close()
        except OSError:
            pass
    deadline = time.monotonic() + 15
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()   # by PID: only processes this run started
            p.wait()


def handshakes(workers: int, sessions: int, log=print) -> dict:
    """Connect ``sessions`` devices to ``workers`` members sharing one port; rates and memory."""
    seed = os.urandom(8).hex()
    port, mesh = _free_port(), MESH_BASE_PORT + (os.getpid() % 1000) * 4
    procs = []
    try:
        members = [_spawn_member(i, workers, port, mesh, sessions, seed, True) for i in range(workers)]
        procs += members
        base = [_read_json(m, 300, f"member {i}") for i, m in enumerate(members)]
        url = f"ws://127.0.0.1:{port}{PATH}"
        n_clients = 2
        share = -(-sessions // n_clients)
        clients = [_spawn_clients(url, seed, k * share, min(share, sessions - k * share), 32) for k in range(n_clients)]
        procs += clients
        for c in clients:
            _read_json(c, 300, "client process")
        for c in clients:
            _send(c, "go")
        results = [_read_json(c, 600, "client process") for c in clients]
        time.sleep(2.0)
        for m in members:
            _send(m, "rss")
        after = [_read_json(m, 120, "member") for m in members]
        ok = sum(a["ok"] for a in after)
        first = min(a["first"] for a in after if a["first"])
        last = max(a["last"] for a in after if a["last"])
        links = sum(a["links"] for a in after)
        out = {"workers": workers, "sessions": links, "client_errors": [r["errors"] for r in results],
               "handshakes_per_s": round((ok - 1) / (last - first)) if last > first else None,
               "per_member_handshakes": [a["ok"] for a in after],
               "relay_cpu_us_per_handshake": [round(a["cpu_span"] * 1e6 / max(a["ok"] - 1, 1)) for a in after],
               "bytes_per_session": round(sum(a["rss_kib"] - b["rss_kib"] for a, b in zip(after, base, strict=True))
                                          * 1024 / max(links, 1)),
               "remote_routes": [a["cluster"]["devices_remote"] for a in after]}
        log(f"  {workers} worker(s): {out['handshakes_per_s']} handshakes/s, {links} sessions "
            f"(per member {out['per_member_handshakes']}), {out['bytes_per_session']} B/session")
        return out
    finally:
        _end(procs)


# ---- relayed throughput ---------------------------------------------------------------------------------------
async def _pair_main(args) -> None:
    from shadowmesh_client.daemon_common import node_link_limits
    from shadowmesh_client.protocol import Session
    from shadowmesh_client.relay import EnvelopeType, decode, encode_forward, encode_local
    from shadowmesh_client.transport import ClientConfig
    from shadowmesh_client.transport.ws import dial

    config = protocol_config()
    relay_key = identity(args.seed, -1).public_key

    async def connect(i: int, url: str):
        session = Session(identity(args.seed, i), relay_key, config, lambda k: k == relay_key)
        link = await dial(ClientConfig(url, limits=node_link_limits()), session.initiate(time.time()))
        env = decode(await asyncio.wait_for(link.recv(), 30))
        assert env.type is EnvelopeType.LOCAL
        for frame in session.open(bytes(env.inner), time.time()).outgoing:
            await link.send(encode_local(frame))
        return link

    a = await connect(0, args.url_a)
    b = await connect(1, args.url_b)
    await asyncio.sleep(1.0)   # presence reaches the other member
    a_key, b_key = identity(args.seed, 0).public_key, identity(args.seed, 1).public_key
    inner = bytes([0x13, 0, 0, 0]) + (7).to_bytes(4, "big") + a_key + bytes(24) + b"x" * FRAME_BYTES
    message = encode_forward(b_key, inner)
    received = 0
    stop_at = time.perf_counter() + args.seconds

    async def sender():
        while time.perf_counter() < stop_at:
            await a.send(message)

    async def receiver():
        nonlocal received
        while True:
            m = await b.recv()
            if m[0] == EnvelopeType.DELIVER:
                received += len(m)

    recv_task = asyncio.get_running_loop().create_task(receiver())
    t0 = time.perf_counter()
    await sender()
    await asyncio.sleep(0.3)
    elapsed = time.perf_counter() - t0
    recv_task.cancel()
    await asyncio.gather(recv_task, return_exceptions=True)
    print(json.dumps({"mbit_s": round(received * 8 / elapsed / 1e6, 1)}), flush=True)
    a.abort()
    b.abort()


def throughput(seconds: float, log=print) -> dict:
    import subprocess
    seed = os.urandom(8).hex()
    ports, mesh = [_free_port(), _free_port()], MESH_BASE_PORT + 500 + (os.getpid() % 100) * 4
    procs = []
    try:
        members = [_spawn_member(i, 2, ports[i], mesh, 4, seed, False) for i in range(2)]
        procs += members
        for i, m in enumerate(members):
            _read_json(m, 120, f"member {i}")
        out = {}
        for name, b in (("same_member_mbit_s", 0), ("cross_member_mbit_s", 1)):
            pair = subprocess.Popen([sys.executable, "-m", "bench.cluster", "_pair", "--seed", seed, "--seconds",
                                     str(seconds), "--url-a", f"ws://127.0.0.1:{ports[0]}{PATH}",
                                     "--url-b", f"ws://127.0.0.1:{ports[b]}{PATH}"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append(pair)
            out[name] = _read_json(pair, seconds + 60, "pair")["mbit_s"]
            pair.wait(10)
        out["cross_over_same"] = round(out["cross_member_mbit_s"] / out["same_member_mbit_s"], 2) \
            if out["same_member_mbit_s"] else None
        log(f"  relayed: same member {out['same_member_mbit_s']} Mbit/s, cross member {out['cross_member_mbit_s']} "
            f"Mbit/s ({out['cross_over_same']} x)")
        return out
    finally:
        _end(procs)


def run(args) -> dict:
    quick = getattr(args, "quick", False)
    sessions = 1_000 if quick else 4_000
    one = handshakes(1, sessions)
    two = handshakes(2, sessions)
    flow = throughput(3.0 if quick else 8.0)
    scaling = round(two["handshakes_per_s"] / one["handshakes_per_s"], 2) \
        if one["handshakes_per_s"] and two["handshakes_per_s"] else None
    result = {"one_worker": one, "two_workers": two, **flow, "handshake_scaling": scaling,
              "scaling_within_target": (scaling or 0) >= TARGET_SCALING,
              "cross_within_target": (flow["cross_over_same"] or 0) >= TARGET_CROSS_RATIO,
              "memory_within_target": two["bytes_per_session"] <= TARGET_BYTES_PER_SESSION,
              "cores": os.cpu_count(), "load_average": os.getloadavg()[0]}
    rows = [
        ("handshakes/s, 1 worker", one["handshakes_per_s"], f"{one['sessions']} sessions"),
        ("handshakes/s, 2 workers", two["handshakes_per_s"],
         f"x{scaling} (target >= {TARGET_SCALING}: {'met' if result['scaling_within_target'] else 'NOT met'})"),
        ("relay CPU/handshake, 2 workers", f"{two['relay_cpu_us_per_handshake']} us", "per worker process"),
        ("relayed, same member", f"{flow['same_member_mbit_s']} Mbit/s", "64 KiB frames, one flow"),
        ("relayed, cross member", f"{flow['cross_member_mbit_s']} Mbit/s",
         f"x{flow['cross_over_same']} (target >= {TARGET_CROSS_RATIO}: "
         f"{'met' if result['cross_within_target'] else 'NOT met'})"),
        ("memory per session, 2 workers", f"{two['bytes_per_session'] / 1000:.1f} KB",
         f"target <= 25 KB ({'met' if result['memory_within_target'] else 'NOT met'}); incl. remote routes"),
    ]
    print("\n".join(f"  {a:<32} {b!s:>16}   {c}" for a, b, c in rows), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster")
    p.add_argument("mode", choices=("run", "_member", "_pair"))
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mesh-port", type=int, default=MESH_BASE_PORT)
    p.add_argument("--devices", type=int, default=10)
    p.add_argument("--seed", default="")
    p.add_argument("--reuse-port", action="store_true")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--url-a", default="")
    p.add_argument("--url-b", default="")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.mode == "_member":
        if args.reuse_port:
            from shadowmesh_client.relay.cluster.workers import reuse_port_policy
            reuse_port_policy()
        from shadowmesh_client.daemon_common import event_loop_factory

        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:   # the relay daemon's loop
            runner.run(_member_main(args))
    elif args.mode == "_pair":
        asyncio.run(_pair_main(args))
    else:
        print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
