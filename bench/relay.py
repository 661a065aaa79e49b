"""Relay scale benchmark (issue 5 "Benchmark"): one relay holding 10,000 idle authenticated sessions.

    python -m bench relay                 # 10,000 sessions (``--quick``: 2,000)
    python -m bench.relay --sessions 10000 --clients 4 [--profile]

What runs (all on loopback, every process started here is killed by PID at the end):

* **relay process** (``_relay``): a :class:`~shadowmesh_client.relay.daemon.RelayDaemon`'s own hooks
  (``authenticate``/``on_local``: the real protocol handshake, the directory's ``TrustPolicy`` before any
  crypto, one relay Session per device) behind a real :class:`~shadowmesh_client.relay.server.RelayServer`
  built exactly as ``RelayDaemon.run`` builds it (same ``relay_link_limits``: 20 s relay heartbeat, same
  ``relay_core_config``, same garbage-collector tuning ``relay.settings.tune_gc``).
  Only ``RelayDaemon.run``'s chain sync is left out: **the directory for N+1 devices is built in-process**
  by feeding synthetic ``NetworkCreated``/``DeviceRegistered`` events, each with a VALID Ed25519 proof of
  possession, to the pure directory core (``Directory.apply``: it verifies every proof), and handed to the
  daemon as a ``StaticSource`` (a DirectorySource over that prebuilt directory). No chain is
  needed for this bench; ``bench directory`` measures syncing 10,000 real registrations from anvil.
* **client processes** (``_clients``; one per 5,000 sessions unless ``--clients``): each derives its
  devices' keys from the shared seed, prepares one HANDSHAKE_INIT per device (as ``RelayClient._hello``
  does), waits for "go", then dials the relay (``--concurrency`` upgrades in flight over all client
  processes, below the listen backlog of 100), completes the handshake with the relay's response (LOCAL
  envelope) and sends the key-confirming frame back as LOCAL, exactly like the node's ``RelayClient``
  (same link limits: 5 s heartbeat). Then the links stay open and idle.

Why several client processes: a process may hold at most the hard ``RLIMIT_NOFILE`` descriptors (20,000
here), and both ends of 10,000 links in one process would need 20,000 plus its own. Every process
raises its soft limit to the hard one (``resource.setrlimit``); sessions that do not fit under the
relay's hard limit are not attempted: the run is capped and says so instead of failing.

Figures:
* ``bytes_per_session``: relay RSS after all sessions are up (gc'd, 2 s settled) minus its RSS with the
  directory loaded and the server listening but no session (the "empty process"), divided by sessions.
  Target <= 25 KB (25,000 B).
* ``handshakes_per_s``: sessions accepted by the relay / seconds from its first to its last successful
  authentication while all clients connect at once. Target >= 2,000/s. The relay and the clients share
  the 2 cores of this VM (and other engineers' jobs), and a client spends more CPU per connection than
  the relay, so this is a floor. ``relay_cpu_us_per_handshake`` (relay process CPU time over the same
  span / handshakes; includes heartbeats and the key-confirming frame) gives what one free core could do.
* ``idle_cpu_percent``: relay CPU over 10 s with every link idle (heartbeats only).
* ``--profile``: tracemalloc in the relay; memory per session by component (websockets connection
  objects, asyncio, protocol Session objects, RelayCore routing entries...) and by allocation site.
  Slows everything: use it for the breakdown, not for the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import resource
import select
import subprocess
import sys
import time

DEFAULT_SESSIONS = 10_000
QUICK_SESSIONS = 2_000
PER_CLIENT_PROCESS = 5_000      # sessions per client process (well under its descriptor limit)
CONCURRENCY = 64                # upgrades in flight, all client processes together (listen backlog: 100)
FD_MARGIN = 256                 # descriptors a process keeps for itself (pipes, files, listener)
IDLE_SECONDS = 10.0             # seconds over which the relay's idle CPU is measured
TARGET_BYTES_PER_SESSION = 25_000
TARGET_HANDSHAKES_PER_S = 2_000
PATH = "/api/v1/ws/bench-relay-scale"
CHAIN_ID, REGISTRY, NETWORK_ID = 31337, "0x" + "5e" * 20, 1
OWNER = bytes.fromhex("be" * 20)


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_seconds() -> float:
    """User + system CPU seconds this process has used (CLOCK_PROCESS_CPUTIME_ID: ~1 us a call, where
    getrusage is a slower system call that also invites a reschedule)."""
    return time.process_time()


def raise_nofile() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard one; returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def identity(seed: str, index: int):
    """Device ``index``'s identity, derived from the run's seed (index -1: the relay)."""
    from shadowmesh_client.crypto import Identity
    return Identity.from_seed(hashlib.sha256(f"{seed}/{index}".encode()).digest())


def protocol_config():
    from shadowmesh_client.protocol import NetworkBinding, ProtocolConfig
    return ProtocolConfig(NetworkBinding(CHAIN_ID, REGISTRY, NETWORK_ID))


# ---- relay process ---------------------------------------------------------------------------------
def build_directory(devices: int, seed: str):
    """A Directory holding ``devices`` trusted devices plus the relay (index -1), from synthetic events
    with valid proofs fed to the pure core. Returns (directory, relay identity)."""
    from shadowmesh_client.directory import events as ev
    from shadowmesh_client.directory.core import Directory
    from shadowmesh_client.directory.proof import device_id, proof_message

    d = Directory(CHAIN_ID, REGISTRY, NETWORK_ID)
    expires = int(time.time()) + 365 * 86400
    zero = bytes(32)
    events = [ev.NetworkCreated(1, 0, zero, zero, network_id=NETWORK_ID, admin=OWNER, policy=0,
                                registration_period=365 * 86400, name="bench")]
    for n, i in enumerate(range(-1, devices)):
        ident = identity(seed, i)
        pk = ident.public_key
        events.append(ev.DeviceRegistered(
            2 + n // 1000, n % 1000, zero, zero, device_id=device_id(NETWORK_ID, OWNER, pk), owner=OWNER,
            network_id=NETWORK_ID, public_key=pk, overlay_address=0x64400000 + n + 1, expires_at=expires,
            status=2, relay=i < 0, endpoint=f"ws://127.0.0.1{PATH}" if i < 0 else "",
            proof=ident.sign(proof_message(CHAIN_ID, REGISTRY, NETWORK_ID, OWNER, pk))))
    d.apply(events, time.time())
    assert len(d.peers(time.time())) == devices + 1, "every synthetic registration must verify"
    return d, identity(seed, -1)


class StaticSource:
    """``directory.DirectorySource`` over a prebuilt Directory: nothing to sync (the bench's directory
    never changes), so ``sync_once`` applies nothing and ``run`` only waits to be cancelled."""

    def __init__(self, directory) -> None:
        self._directory = directory
        self.closed = False

    @property
    def directory(self):
        return self._directory

    @property
    def has_state(self) -> bool:
        return True

    async def sync_once(self) -> int:
        return 0

    async def run(self) -> None:
        await asyncio.Event().wait()

    def status(self, now: float | None = None):
        from shadowmesh_client.directory.syncer import SyncStatus

        return SyncStatus(synced_block=None, head_block=None, last_success=None, stale_seconds=None, error=None,
                          devices=len(self._directory))

    def close(self) -> None:
        self.closed = True


async def _relay_main(args) -> None:
    from shadowmesh_client.relay.daemon import RelayDaemon
    from shadowmesh_client.relay.server import RelayServer
    from shadowmesh_client.relay.settings import RelaySettings, relay_core_config, relay_link_limits, tune_gc
    from shadowmesh_client.transport import ServerConfig

    if args.profile:
        import tracemalloc
        tracemalloc.start(8)
    limits = raise_nofile()
    t = time.perf_counter()
    directory, relay_id = build_directory(args.devices, args.seed)
    build_s = time.perf_counter() - t
    tune_gc()  # as RelayDaemon.run does after its first directory sync
    s = RelaySettings(listen="127.0.0.1:0", path=PATH)
    daemon = RelayDaemon(relay_id, StaticSource(directory), s)
    # As RelayDaemon.run builds it (run() itself would first sync a chain).
    stamps = {"first": None, "last": None, "ok": 0}

    def authenticate(hello: bytes):
        if stamps["first"] is None:
            stamps["cpu_first"] = cpu_seconds()
        result = daemon.authenticate(hello)
        if result is not None:
            now = time.perf_counter()
            stamps["first"] = stamps["first"] or now
            stamps["last"], stamps["cpu_last"] = now, cpu_seconds()
            stamps["ok"] += 1
        return result

    cfg = ServerConfig(host="127.0.0.1", port=0, path=PATH, limits=relay_link_limits())
    server = daemon.server = RelayServer(cfg, relay_core_config(s), authenticate, on_local=daemon.on_local)
    await server.start()
    gc.collect()
    snapshot = tracemalloc.take_snapshot() if args.profile else None
    print(json.dumps({"port": server.port, "rss_kib": rss_kib(), "nofile": limits,
                      "directory_build_s": round(build_s, 2)}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).strip():  # "rss" -> figures; EOF -> exit
        cpu_now = cpu_seconds()  # before the collection below
        gc.collect()
        out = {"rss_kib": rss_kib(), "links": len(server.links), "routes": len(server.core),
               "sessions": len(daemon.sessions), "refused": daemon.refused, "authenticated": stamps["ok"],
               "cpu_span_s": stamps["cpu_last"] - stamps["cpu_first"] if stamps["ok"] > 1 else None,
               "cpu_now": cpu_now,
               "auth_span_s": (stamps["last"] - stamps["first"]) if stamps["ok"] > 1 else None}
        if snapshot is not None and line == b"profile":
            out["top"] = _top(tracemalloc.take_snapshot().compare_to(snapshot, "traceback"), len(server.links))
        out["cpu_after"] = cpu_seconds()
        print(json.dumps(out), flush=True)
    await server.close()


_COMPONENTS = (  # (path fragment of the innermost matching frame, component name)
    ("shadowmesh_client/protocol/", "protocol Session objects"),
    ("shadowmesh_client/relay/core.py", "relay routing entries (RelayCore)"),
    ("shadowmesh_client/transport/", "transport Link / LinkServer"),
    ("shadowmesh_client/", "relay daemon / other ShadowMesh"),
    ("websockets/", "websockets connection objects"),
    ("asyncio/", "asyncio tasks, futures, transports"),
)


def _top(diff, n: int, limit: int = 8) -> list:
    """Memory grown since the empty snapshot, per session: by component (the innermost frame of each
    allocation that belongs to a known package; tracemalloc tracebacks run oldest -> newest), then the
    biggest allocation sites."""
    by_component: dict[str, int] = {}
    for stat in diff:
        name = "other (stdlib, interpreter)"
        for frame in reversed(stat.traceback):
            path = frame.filename.replace(os.sep, "/")
            hit = next((c for frag, c in _COMPONENTS if frag in path), None)
            if hit:
                name = hit
                break
        by_component[name] = by_component.get(name, 0) + stat.size_diff
    rows = [{"bytes_per_session": round(v / max(n, 1)), "where": k}
            for k, v in sorted(by_component.items(), key=lambda kv: -kv[1])]
    for stat in diff[:limit]:
        frames = [f"{os.path.basename(fr.filename)}:{fr.lineno}" for fr in reversed(stat.traceback)]
        rows.append({"bytes_per_session": round(stat.size_diff / max(n, 1)),
                     "where": "  site: " + " < ".join(frames[:4])})
    return rows


# ---- client processes ------------------------------------------------------------------------------
async def _clients_main(args) -> None:
    from shadowmesh_client.daemon_common import node_link_limits
    from shadowmesh_client.errors import ProtocolError
    from shadowmesh_client.protocol import Session
    from shadowmesh_client.relay import EnvelopeType, decode, encode_local
    from shadowmesh_client.transport import ClientConfig
    from shadowmesh_client.transport.ws import dial

    raise_nofile()
    config = protocol_config()
    relay_key = identity(args.seed, -1).public_key
    trust = lambda key: key == relay_key  # noqa: E731  (the node trusts the relay its directory lists)
    now = time.time()
    sessions = [Session(identity(args.seed, i), relay_key, config, trust)
                for i in range(args.start, args.start + args.count)]
    hellos = [s.initiate(now) for s in sessions]
    client_cfg = ClientConfig(args.url, limits=node_link_limits())
    print(json.dumps({"ready": len(hellos)}), flush=True)
    sys.stdin.readline()  # "go"

    links, errors = [], {}
    gate = asyncio.Semaphore(args.concurrency)

    async def one(session, hello) -> None:
        async with gate:
            try:
                link = await dial(client_cfg, hello)
                env = decode(await asyncio.wait_for(link.recv(), 30))
                if env.type is not EnvelopeType.LOCAL:
                    raise ProtocolError("relay did not answer the handshake first")
                received = session.open(bytes(env.inner), time.time())
                if not session.is_established:
                    raise ProtocolError("handshake did not complete")
                for frame in received.outgoing:
                    await link.send(encode_local(frame))
                links.append(link)
            except Exception as exc:  # TransportError, ProtocolError, timeouts...: counted by type, reported
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    t0, cpu0 = time.perf_counter(), cpu_seconds()
    await asyncio.gather(*(one(s, h) for s, h in zip(sessions, hellos, strict=True)))
    elapsed = time.perf_counter() - t0
    print(json.dumps({"connected": len(links), "errors": errors, "seconds": round(elapsed, 3),
                      "cpu_s": cpu_seconds() - cpu0}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # EOF or "close"
    for link in links:
        link.abort()


# ---- orchestration ---------------------------------------------------------------------------------
def _spawn(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.relay", *argv],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _read_json(proc: subprocess.Popen, timeout: float, what: str) -> dict:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError(f"{what} (pid {proc.pid}) gave no answer within {timeout:.0f} s "
                           f"(exit code {proc.poll()})")
    return json.loads(line)


def _send(proc: subprocess.Popen, line: str) -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def measure(sessions: int, *, clients: int | None = None, concurrency: int = CONCURRENCY,
            profile: bool = False, idle_seconds: float = IDLE_SECONDS, log=print) -> dict:
    seed = os.urandom(8).hex()
    soft, hard = raise_nofile()
    out: dict = {"sessions_requested": sessions, "nofile_soft": soft, "nofile_hard": hard}
    if hard != resource.RLIM_INFINITY and sessions > hard - FD_MARGIN:
        out["capped_by_nofile"] = True
        log(f"  {sessions} sessions do not fit under the relay's hard limit of {hard} open files "
            f"per process: measuring {hard - FD_MARGIN} instead")
        sessions = hard - FD_MARGIN
    procs: list[subprocess.Popen] = []
    try:
        relay = _spawn("_relay", "--devices", str(sessions), "--seed", seed, *(["--profile"] if profile else []))
        procs.append(relay)
        base = _read_json(relay, 300, "relay")
        out["directory_build_s"] = base["directory_build_s"]
        out["relay_nofile"] = base["nofile"]
        log(f"  relay pid {relay.pid}: directory of {sessions + 1} devices built in {base['directory_build_s']} s "
            f"(proofs verified), empty RSS {base['rss_kib'] / 1024:.1f} MiB, open-file limit {base['nofile']}")
        url = f"ws://127.0.0.1:{base['port']}{PATH}"
        fit = PER_CLIENT_PROCESS if hard == resource.RLIM_INFINITY else min(PER_CLIENT_PROCESS, hard - FD_MARGIN)
        n_procs = max(clients or 0, -(-sessions // fit))
        share = -(-sessions // n_procs)
        per_proc = max(1, concurrency // n_procs)
        cps = []
        for k in range(n_procs):
            start, count = k * share, min(share, sessions - k * share)
            if count > 0:
                cps.append(_spawn("_clients", "--url", url, "--seed", seed, "--start", str(start),
                                  "--count", str(count), "--concurrency", str(per_proc)))
                procs.append(cps[-1])
        for p in cps:
            _read_json(p, 300, "client process")
        log(f"  {len(cps)} client processes ready (pids {', '.join(str(p.pid) for p in cps)}); connecting")
        t0 = time.perf_counter()
        for p in cps:
            _send(p, "go")
        results = [_read_json(p, 600, "client process") for p in cps]
        out["connect_wall_s"] = round(time.perf_counter() - t0, 3)
        time.sleep(2.0)  # idle: let the first heartbeats and the key-confirming LOCAL frames settle
        _send(relay, "profile" if profile else "rss")
        after = _read_json(relay, 120, "relay")
        connected = sum(r["connected"] for r in results)
        errors: dict = {}
        for r in results:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        out.update({
            "sessions": connected, "client_processes": len(cps), "client_errors": errors,
            "relay_links": after["links"], "relay_routes": after["routes"],
            "relay_sessions_kept": after["sessions"], "relay_refused": after["refused"],
            "empty_rss_mib": round(base["rss_kib"] / 1024, 1), "loaded_rss_mib": round(after["rss_kib"] / 1024, 1),
            "bytes_per_session": round((after["rss_kib"] - base["rss_kib"]) * 1024 / max(after["links"], 1)),
            "handshakes_per_s": round((after["authenticated"] - 1) / after["auth_span_s"])
            if after["auth_span_s"] else None,
            "client_connects_per_s": round(connected / out["connect_wall_s"]),
            "relay_cpu_us_per_handshake": round(after["cpu_span_s"] * 1e6 / (after["authenticated"] - 1))
            if after["cpu_span_s"] else None,
            "client_cpu_us_per_connect": round(sum(r["cpu_s"] for r in results) * 1e6 / max(connected, 1)),
        })
        # idle cost: the relay's CPU while every session only exchanges WebSocket heartbeats
        time.sleep(idle_seconds)
        _send(relay, "rss")
        idle = _read_json(relay, 120, "relay")
        out["idle_cpu_percent"] = round((idle["cpu_now"] - after["cpu_after"]) / idle_seconds * 100, 1)
        if profile:
            out["profile_top"] = after.get("top", [])
        out["memory_within_target"] = out["bytes_per_session"] <= TARGET_BYTES_PER_SESSION
        out["handshakes_within_target"] = (out["handshakes_per_s"] or 0) >= TARGET_HANDSHAKES_PER_S
        out["load_average"] = os.getloadavg()[0]
        return out
    finally:
        for p in reversed(procs):
            try:
                p.stdin.close()
            except OSError:
                pass
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()  # by PID: only the processes this run started
                p.wait()


def _table(r: dict) -> str:
    rows = [
        ("sessions held (relay links)", f"{r['relay_links']:,}", f"of {r['sessions_requested']:,} asked; "
         f"{r['client_processes']} client processes"),
        ("memory per session", f"{r['bytes_per_session'] / 1000:.1f} KB",
         f"target <= {TARGET_BYTES_PER_SESSION // 1000} KB "
         f"({'met' if r['memory_within_target'] else 'NOT met'})"),
        ("relay RSS empty -> loaded", f"{r['empty_rss_mib']} -> {r['loaded_rss_mib']} MiB", "directory loaded in both"),
        ("handshakes per second (relay)", f"{r['handshakes_per_s']:,}", f"target >= {TARGET_HANDSHAKES_PER_S:,} "
         f"({'met' if r['handshakes_within_target'] else 'NOT met'})"),
        ("relay CPU per handshake", f"{r['relay_cpu_us_per_handshake']} us",
         f"= {1e6 / r['relay_cpu_us_per_handshake']:,.0f}/s on one free core"
         if r['relay_cpu_us_per_handshake'] else ""),
        ("connects per second (clients)", f"{r['client_connects_per_s']:,}", f"wall {r['connect_wall_s']} s"),
        ("client CPU per connect", f"{r['client_cpu_us_per_connect']} us", "dial + handshake, all client processes"),
        ("relay CPU while idle", f"{r['idle_cpu_percent']} %",
         f"of one core, {r['relay_links']:,} links, heartbeats only"),
        ("relay sessions kept", f"{r['relay_sessions_kept']:,}", "protocol Session objects after handshake"),
        ("client errors", sum(r["client_errors"].values()),
         json.dumps(r["client_errors"]) if r["client_errors"] else ""),
        ("open files (soft/hard)", f"{r['relay_nofile'][0]:,}/{r['relay_nofile'][1]:,}",
         "per process; capped run" if r.get("capped_by_nofile") else "per process"),
        ("directory build (in-process)", f"{r['directory_build_s']} s", "synthetic events, proofs verified"),
        ("load average (1 min)", f"{r['load_average']:.2f}", "2 shared cores: figures are noisy"),
    ]
    text = "\n".join(f"  {a:<32} {b!s:>18}   {c}" for a, b, c in rows)
    for row in r.get("profile_top", []):
        text += f"\n    {row['bytes_per_session']:>7} B/session  {row['where']}"
    return text


def run(args) -> dict:
    """Entry point of ``python -m bench relay`` (``args.quick``, ``args.sessions``)."""
    sessions = getattr(args, "sessions", None) or int(os.environ.get("SHADOWMESH_BENCH_SESSIONS", 0)) or (
        QUICK_SESSIONS if getattr(args, "quick", False) else DEFAULT_SESSIONS)
    result = measure(sessions, clients=getattr(args, "clients", None),
                     concurrency=getattr(args, "concurrency", CONCURRENCY), profile=getattr(args, "profile", False))
    print(_table(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("_relay")
    r.add_argument("--devices", type=int, required=True)
    r.add_argument("--seed", required=True)
    r.add_argument("--profile", action="store_true")
    c = sub.add_parser("_clients")
    for name in ("--url", "--seed"):
        c.add_argument(name, required=True)
    for name in ("--start", "--count", "--concurrency"):
        c.add_argument(name, type=int, required=True)
    p.add_argument("--sessions", type=int, default=None, help=f"idle sessions to open (default {DEFAULT_SESSIONS})")
    p.add_argument("--clients", type=int, default=None,
                   help=f"client processes (default: one per {PER_CLIENT_PROCESS})")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY, help="upgrades in flight (all client processes)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_SESSIONS} sessions")
    p.add_argument("--profile", action="store_true", help="tracemalloc in the relay: memory by allocation site")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = p.parse_args(argv)
    if args.cmd == "_relay":
        asyncio.run(_relay_main(args))
        return 0
    if args.cmd == "_clients":
        asyncio.run(_clients_main(args))
        return 0
    result = run(args)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
