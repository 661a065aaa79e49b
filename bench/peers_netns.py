"""5,000 peers per node, the real-namespace check (issue 15): ``python -m bench peers-netns [--quick]``.

bench/peers5000.py measures a node in process over the in-memory transport; this runs the same shape on
real parts and measures the real process from /proc:

* ``node``: one real ``up`` daemon (``shadowmesh_client.node.Node``: real TUN made and configured in its
  namespace, WebSocket transport on a real socket, sessions on demand, the default flood guard) as its own
  process (``python -m bench.peers_netns node``) in namespace ``node``, in a network of ``KNOWN`` devices
  (lab.directory.MemoryRegistry, real registrations; identities from fixed seeds so every process builds
  the same network: device 0 the relay, 1 the node, 2 the peer ``p``, 3.. the load);
* ``swarm``: the load generator, another process in namespace ``load``: ``LIVE`` real client sessions (a
  protocol Session each, its own registered identity, one WebSocket link each to the node's listener, node
  link limits: pings every 5 s like a real peer); they answer ICMP echo, nothing else, and run no timers;
* a real relay and the real peer node ``p`` (FakeTun) run as threads of this process in their namespaces
  (lab/nat.py NsDaemon).

Figures (the node's process only; RSS read after gc and malloc_trim in the node): RSS per live session (RSS
after the swarm is up minus before, / LIVE), RSS per known device (against a node of the same code with 3
known devices), idle CPU over ``IDLE_SECONDS`` with every session up (utime+stime from /proc/PID/stat, % of
one core), time to first packet (a UDP datagram sent into the node's real TUN until it leaves ``p``'s TUN:
on-demand handshake through the relay, then the packet), handshakes per second of the ramp-up, ping RTT
through the TUN to the first and last swarm peer. The same run also runs bench/peers5000.py at the same sizes
first and reports the ratios (netns / in-memory), with the load average. RSS counts what tracemalloc and the
object walk do not (interpreter arenas, fragmentation, socket buffers in user space): read it as an upper
bound. The idle CPU of the real node includes the WebSocket pings of every live link, which MemoryTransport
does not model: peer links ping every ``PING_INTERVAL`` s while they carry messages and every
``IDLE_PING_INTERVAL`` s once idle (transport/ws/link.py ``ping_when_idle``), so the idle figure is taken
after the links went idle, over one whole idle ping period. ``PEERS_NETNS_NO_PING=1`` turns pings off on both
sides to show their share (a diagnostic, not the default).

Root only. Every namespace and process is torn down (lab/netns.py Topology: by PID), also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from typing import Any

from shadowmesh_client.daemon_common import IDLE_PING_INTERVAL, PING_INTERVAL
from shadowmesh_client.transport.ws.link import IDLE_ROUNDS

KNOWN, LIVE = 2_000, 1_000
IDLE_SECONDS = 10.0
PORT = 7000
DIAL_CONCURRENCY = 16
FIRST_MARK = b"peers-netns first packet"


# ---- the network every process builds the same way ---------------------------------------------------
def identity(index: int):
    from shadowmesh_client.crypto import Identity, blake2b

    return Identity.from_seed(blake2b(b"bench.peers_netns %d" % index))


def overlay(index: int) -> str:
    """The overlay address MemoryRegistry gives the ``index``-th registration (from 1, in order)."""
    n = index + 1
    return f"100.64.{n >> 8}.{n & 0xFF}"


def registry(known: int, relay_ip: str, node_ip: str, p_ip: str):
    """Device 0 relay, 1 node, 2 p (with endpoints), then ``known - 3`` load devices (none)."""
    from lab.directory import MemoryRegistry

    reg = MemoryRegistry()
    reg.register(identity(0), relay=True, endpoint=f"ws://{relay_ip}:{PORT}/relay")
    reg.register(identity(1), endpoint=f"ws://{node_ip}:{PORT}/n")
    reg.register(identity(2), endpoint=f"ws://{p_ip}:{PORT}/p")
    for i in range(3, known):
        reg.register(identity(i))
    return reg


def _commands(loop: asyncio.AbstractEventLoop, handle, stop: asyncio.Event) -> None:
    """stdin thread of a child: one JSON command per line, one JSON answer per line; EOF stops the child."""
    for line in sys.stdin:
        try:
            answer = asyncio.run_coroutine_threadsafe(handle(line.split()), loop).result(60)
        except Exception as exc:   # reported to the parent, which fails the run
            answer = {"error": repr(exc)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    loop.call_soon_threadsafe(stop.set)


async def _serve(handle, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    threading.Thread(target=_commands, args=(loop, handle, stop), daemon=True).start()


def _trim() -> None:
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _no_ping():
    """Diagnostic (env PEERS_NETNS_NO_PING=1): node links without WebSocket pings, to see what they cost."""
    import dataclasses

    from shadowmesh_client.daemon_common import node_link_limits

    return dataclasses.replace(node_link_limits(), ping_interval=None, ping_timeout=None)


# ---- child: the node ---------------------------------------------------------------------------------
async def node_main(a: argparse.Namespace) -> None:
    from shadowmesh_client.node import Node, NodeSettings

    reg = registry(a.known, a.relay_ip, a.ip, a.p_ip)
    source = reg.source(interval=1.0)
    reg.events = []         # the chain's copy of the events is not the node's memory
    _trim()
    extra: dict[str, Any] = {"limits": _no_ping()} if os.environ.get("PEERS_NETNS_NO_PING") else {}
    settings = NodeSettings(tun_name="pn0", listen=f"{a.ip}:{PORT}", on_demand=True, idle_timeout=a.idle_timeout,
                            backoff_max=0.5, **extra)
    node = Node(identity(1), source, settings)
    stop = asyncio.Event()

    async def handle(cmd: list[str]) -> dict:
        if cmd[0] == "trim":
            _trim()
        relays = node.table.relays.values()
        od = node.reconciler.ondemand if node.reconciler is not None else None
        established = sum(pe.session.state.value == "established" for pe in node.table.peers.values())
        return {"ready": node.ready_at is not None and bool(relays) and all(r.ready for r in relays),
                "established": established, "known": len(node.table.peers),
                "live": len(od.live) if od is not None else None, "dropped": od.dropped if od is not None else None}

    await _serve(handle, stop)
    await node.run(stop)


# ---- child: the load generator -----------------------------------------------------------------------
def echo_reply(packet: bytes) -> bytes | None:
    """The ICMP echo reply to an IPv4 echo request (RFC 792), else None."""
    ihl = (packet[0] & 0x0F) * 4
    if packet[0] >> 4 != 4 or packet[9] != 1 or len(packet) < ihl + 8 or packet[ihl] != 8:
        return None
    out = bytearray(packet)
    out[12:16], out[16:20] = packet[16:20], packet[12:16]   # the header checksum does not change
    out[ihl] = 0
    out[ihl + 2:ihl + 4] = b"\0\0"
    icmp = out[ihl:] + (b"\0" if (len(out) - ihl) % 2 else b"")
    s = sum(int.from_bytes(icmp[i:i + 2], "big") for i in range(0, len(icmp), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    out[ihl + 2:ihl + 4] = (~s & 0xFFFF).to_bytes(2, "big")
    return bytes(out)


class Peer:
    """One swarm session: a protocol Session and its WebSocket link to the node."""

    def __init__(self, index: int, session, link) -> None:
        self.index, self.session, self.link = index, session, link
        self.echoes = 0

    def on_frame(self, frame: bytes) -> None:
        from shadowmesh_client.errors import ProtocolError
        from shadowmesh_client.node.peers import now

        try:
            got = self.session.open(frame, now())
        except ProtocolError:
            return
        out = list(got.outgoing)
        replies = [r for r in map(echo_reply, got.packets) if r is not None]
        if replies and self.session.is_established:
            out.append(self.session.seal_packets(replies, now()))
            self.echoes += len(replies)
        for f in out:
            self.link.send_nowait(bytes(f))


async def swarm_main(a: argparse.Namespace) -> None:
    from lab.directory import CHAIN_ID, NETWORK_ID, REGISTRY
    from shadowmesh_client.daemon_common import node_link_limits
    from shadowmesh_client.node.peers import now
    from shadowmesh_client.protocol import NetworkBinding, ProtocolConfig, Session
    from shadowmesh_client.transport import ClientConfig
    from shadowmesh_client.transport.ws import WebSocketTransport

    cfg = ProtocolConfig(NetworkBinding(CHAIN_ID, REGISTRY, NETWORK_ID))
    node_key = identity(1).public_key
    transport = WebSocketTransport()
    client = ClientConfig(f"ws://{a.node_ip}:{PORT}/n",
                          limits=_no_ping() if os.environ.get("PEERS_NETNS_NO_PING") else node_link_limits())
    peers: list[Peer] = []
    failed: list[str] = []
    stop = asyncio.Event()
    gate = asyncio.Semaphore(DIAL_CONCURRENCY)

    async def dial(index: int) -> None:
        async with gate:
            s = Session(identity(index), node_key, cfg, lambda k: True)
            try:
                link = await transport.dial(client, bytes(s.initiate(now())), peer=node_key)
                got = s.open(await link.recv(), now())
            except Exception as exc:   # counted and reported; the parent decides
                failed.append(repr(exc))
                return
            peer = Peer(index, s, link)
            for f in got.outgoing:
                link.send_nowait(bytes(f))
            link.deliver_to(peer.on_frame)
            peers.append(peer)

    async def handle(cmd: list[str]) -> dict:
        if cmd[0] == "up":
            t0 = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                for i in range(int(cmd[1]), int(cmd[2])):
                    tg.create_task(dial(i))
            return {"up": len(peers), "failed": len(failed), "errors": failed[:3],
                    "seconds": time.perf_counter() - t0}
        still = [p.index for p in peers if not p.link.closed]
        return {"up": len(peers), "open": len(still), "open_indices": still if len(still) <= 10 else None,
                "established": sum(p.session.is_established for p in peers),
                "echoes": {str(p.index): p.echoes for p in peers if p.echoes}}

    await _serve(handle, stop)
    await stop.wait()
    for p in peers:
        p.link.abort()


# ---- parent ------------------------------------------------------------------------------------------
class Child:
    """A child process in a namespace of ``topo``, spoken to with one JSON line each way."""

    def __init__(self, topo, netns: str, argv: list[str], log_path: str) -> None:
        self._log = open(log_path, "w")   # noqa: SIM115  closed by close()
        self.proc = topo.spawn(netns, [sys.executable, "-m", "bench.peers_netns", *argv], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=self._log, text=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self._topo = topo
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.log_path = log_path

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def ask(self, *cmd: object, timeout: float = 60.0) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(map(str, cmd)) + "\n")
        self.proc.stdin.flush()
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{cmd[0]!r}: no answer in {timeout} s (log: {self.log_path})") from None
        if line is None:
            raise RuntimeError(f"child exited {self.proc.poll()} (log: {self.log_path}):\n{self.tail()}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{cmd[0]!r}: {answer['error']}")
        return answer

    def wait_for(self, what: str, cond, timeout: float, *cmd: object) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.ask(*(cmd or ("status",)))
            if cond(answer):
                return answer
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout} s waiting for {what}: {answer}")
            time.sleep(0.2)

    def tail(self) -> str:
        with open(self.log_path) as fh:
            return fh.read()[-3000:]

    def close(self) -> None:
        self._topo.stop(self.proc, 10.0)
        self._log.close()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime, stime (fields 14, 15)


def idle_cpu(pid: int, seconds: float) -> float:
    """CPU of ``pid`` over ``seconds`` of wall time, % of one core."""
    c0, w0 = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.perf_counter() - w0) * 100


class StampTun:
    """p's FakeTun, noting when the first-packet marker leaves it (perf_counter)."""

    def __new__(cls, name: str):
        from shadowmesh_client.tun import FakeTun

        class _Stamp(FakeTun):
            first_at: float | None = None

            def write(self, packet: bytes) -> None:
                if self.first_at is None and FIRST_MARK in packet:
                    self.first_at = time.perf_counter()
                super().write(packet)

        return _Stamp(name, mtu=1400)


class Lab:
    """The namespaces (switch ``pub``; hosts relay, p, node, load), relay and p as threads, the node and
    the swarm as child processes. Use as a context manager: everything goes at exit, also on failure."""

    def __init__(self, known: int, *, idle_timeout: float = 3600.0, workdir: str | None = None) -> None:
        import tempfile

        self.known, self.idle_timeout = known, idle_timeout
        self._own_dir = workdir is None            # the children's logs: removed after a clean run
        self.workdir = workdir or tempfile.mkdtemp(prefix="peers-netns-")
        self._stack = ExitStack()

    def __enter__(self) -> Lab:
        from lab.nat import NsDaemon
        from lab.netns import Topology
        from shadowmesh_client.node import Node, NodeSettings
        from shadowmesh_client.relay.daemon import RelayDaemon, RelaySettings

        try:
            self.topo = topo = self._stack.enter_context(Topology())
            pub = topo.add_switch("pub")
            self.hosts = {n: topo.add_host(n, pub) for n in ("relay", "p", "node", "load")}
            ip = {n: h.ip for n, h in self.hosts.items()}
            reg = registry(3, ip["relay"], ip["node"], ip["p"])
            self.p_tun = StampTun("p")
            relay = NsDaemon(self.hosts["relay"].netns, lambda: RelayDaemon(
                identity(0), reg.source(), RelaySettings(listen=f"{ip['relay']}:{PORT}")))
            p = NsDaemon(self.hosts["p"].netns, lambda: Node(identity(2), reg.source(), NodeSettings(
                tun_name="p", mtu=1400, listen=f"{ip['p']}:{PORT}", on_demand=True, backoff_max=0.5),
                tun=self.p_tun))
            for d in (relay, p):
                d.start()
                self._stack.callback(d.stop)
            self.p = p
            self.node_args = ["--ip", ip["node"], "--relay-ip", ip["relay"], "--p-ip", ip["p"],
                              "--idle-timeout", str(self.idle_timeout)]
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._stack.close()   # children (by PID), threads, then every namespace
        if exc_type is None and self._own_dir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def start_node(self, known: int, name: str = "node") -> Child:
        child = Child(self.topo, self.hosts["node"].netns, ["node", "--known", str(known), *self.node_args],
                      f"{self.workdir}/{name}.log")
        self._stack.callback(child.close)
        child.wait_for("the node and its relay link", lambda s: s["ready"], 120.0)
        return child

    def start_swarm(self) -> Child:
        child = Child(self.topo, self.hosts["load"].netns, ["swarm", "--node-ip", self.hosts["node"].ip],
                      f"{self.workdir}/swarm.log")
        self._stack.callback(child.close)
        return child

    def ping(self, index: int, count: int = 1, timeout: float = 5.0) -> float | None:
        """Average RTT in ms of ``count`` pings from the node's namespace to device ``index``, or None."""
        res = self.topo.run("node", ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", str(int(timeout)),
                                     overlay(index)], check=False, timeout=timeout * count + 10)
        for line in res.stdout.splitlines():
            if line.startswith("rtt") or line.startswith("round-trip"):
                return float(line.split("=")[1].split("/")[1])
        return None

    def first_packet_ms(self, timeout: float = 30.0) -> float:
        """A datagram into the node's TUN to p (no session yet) until it leaves p's TUN."""
        import socket

        from shadowmesh_client.tun.netns import enter_netns

        with enter_netns(self.hosts["node"].netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            t0 = time.perf_counter()
            sock.sendto(FIRST_MARK, (overlay(2), 9))
            deadline = time.monotonic() + timeout
            while self.p_tun.first_at is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"first packet to p did not arrive in {timeout} s")
                time.sleep(0.0005)
        return (self.p_tun.first_at - t0) * 1000


def measure_netns(known: int, live: int, idle_seconds: float) -> dict:
    with Lab(known) as lab:
        base = lab.start_node(3, "node-base")             # the same process with 3 known devices
        time.sleep(1.0)
        base.ask("trim")
        rss_base = rss_bytes(base.proc.pid)
        base.close()
        t0 = time.perf_counter()
        node = lab.start_node(known)
        setup_s = time.perf_counter() - t0
        pid = node.proc.pid
        first_ms = lab.first_packet_ms()
        time.sleep(1.0)
        node.ask("trim")
        rss_known = rss_bytes(pid)
        idle0 = idle_cpu(pid, idle_seconds)               # the same node with no session but p's
        swarm = lab.start_swarm()
        up = swarm.ask("up", 3, 3 + live, timeout=600)
        if up["up"] < live:
            raise RuntimeError(f"swarm: {up}")
        st = node.wait_for(f"{live} sessions at the node", lambda s: s["established"] >= live + 1, 60.0)
        time.sleep(1.0)
        node.ask("trim")
        rss_live = rss_bytes(pid)
        # Idle links ping every IDLE_PING_INTERVAL once IDLE_ROUNDS pings passed without a message (the
        # handshakes were the last ones): wait for that, then measure one whole idle ping period.
        time.sleep((IDLE_ROUNDS + 1) * PING_INTERVAL)
        s0, w0 = cpu_seconds(swarm.proc.pid), time.perf_counter()
        idle = idle_cpu(pid, max(idle_seconds, IDLE_PING_INTERVAL))
        swarm_cpu = (cpu_seconds(swarm.proc.pid) - s0) / (time.perf_counter() - w0) * 100
        ping_first, ping_last = lab.ping(3, 3), lab.ping(2 + live, 3)
        st = node.ask("status")
        return {"known_devices": known, "live_sessions": st["established"] - 1, "live_target": live,
                "bytes_per_known_device": round((rss_known - rss_base) / (known - 3)),
                "bytes_per_live_session": round((rss_live - rss_known) / live),
                "rss_mb": {"base_3_known": round(rss_base / 2**20, 1), "known": round(rss_known / 2**20, 1),
                           "live": round(rss_live / 2**20, 1)},
                "idle_cpu_percent_of_core": round(idle, 2), "idle_cpu_percent_no_sessions": round(idle0, 2),
                "idle_cpu_percent_at_5000_sessions": round(idle0 + (idle - idle0) * 5_000 / live, 1),
                "swarm_idle_cpu_percent_of_core": round(swarm_cpu, 2),
                "first_packet_ms": round(first_ms, 2), "handshakes_per_s": round(live / up["seconds"]),
                "ping_ms_first_last": [ping_first, ping_last], "setup_s": round(setup_s, 1)}


def run(args) -> dict:
    if os.geteuid() != 0:
        print("peers-netns: needs root (namespaces, TUN); skipped", file=sys.stderr)
        return {"skipped": "needs root"}
    quick = getattr(args, "quick", False)
    known, live = (getattr(args, "known", None) or (1_000 if quick else KNOWN),
                   getattr(args, "live", None) or (300 if quick else LIVE))
    idle = 5.0 if quick else IDLE_SECONDS
    from bench.peers5000 import measure

    mem = asyncio.run(measure(known, live, idle))
    load0 = os.getloadavg()
    real = measure_netns(known, live, idle)
    load = os.getloadavg()
    keys = ("bytes_per_known_device", "bytes_per_live_session", "idle_cpu_percent_of_core", "first_packet_ms",
            "handshakes_per_s")
    ratio = {k: round(real[k] / mem[k], 2) if mem.get(k) else None for k in keys}
    print(f"peers-netns: {known} known devices, {real['live_sessions']}/{live} live sessions; "
          f"load average {load0[0]:.2f} -> {load[0]:.2f} (1 min)")
    print(f"  {'figure':34}{'netns (real process)':>22}{'in-memory':>12}{'ratio':>8}")
    for k in keys:
        print(f"  {k:34}{real[k]:>22}{mem[k]:>12}{ratio[k] if ratio[k] is not None else '-':>8}")
    print(f"  node idle CPU with no session {real['idle_cpu_percent_no_sessions']} %, linear to 5,000 sessions "
          f"{real['idle_cpu_percent_at_5000_sessions']} % of a core (target < 5 %); swarm idle CPU "
          f"{real['swarm_idle_cpu_percent_of_core']} %")
    print(f"  node RSS MB {real['rss_mb']}; ping through TUN to first/last peer {real['ping_ms_first_last']} ms")
    return {"netns": real, "in_memory": mem, "ratio_netns_over_in_memory": ratio,
            "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in load]}


def _child_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers_netns", description=__doc__)
    sub = parser.add_subparsers(dest="role")
    n = sub.add_parser("node", help="(child) the node daemon")
    n.add_argument("--known", type=int, required=True)
    n.add_argument("--ip", required=True)
    n.add_argument("--relay-ip", required=True)
    n.add_argument("--p-ip", required=True)
    n.add_argument("--idle-timeout", type=float, default=3600.0)
    s = sub.add_parser("swarm", help="(child) the load generator")
    s.add_argument("--node-ip", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--known", type=int)
    parser.add_argument("--live", type=int)
    return parser.parse_args(argv)


if __name__ == "__main__":
    a = _child_args(sys.argv[1:])
    if a.role == "node":
        asyncio.run(node_main(a))
    elif a.role == "swarm":
        asyncio.run(swarm_main(a))
    else:
        print(json.dumps(run(a), indent=2))
