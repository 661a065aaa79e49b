"""Network-namespace topologies for end-to-end tests and benchmarks (root only).

A ``Topology`` creates namespaces named ``smt-<pid>-<name>``, joins them with veth pairs, bridges
("switches") and NAT routers, starts processes inside them, and tears everything down again:

    with mesh_topology() as topo:                     # the mesh of issue 5, see mesh_topology()
        relay = topo.hosts["relay"]                   # Host(name, netns, ip, ...)
        srv = topo.spawn("relay", ["iperf3", "-s"])   # a tracked subprocess.Popen
        topo.run("a", ["ping", "-c1", relay.ip])      # subprocess.CompletedProcess, raises on failure

Addresses: the public underlay is 198.18.0.0/24 (RFC 2544 benchmarking space); LANs behind NAT
routers are 198.19.<n>.0/24 with the router on .1. IPv6 is switched off in every namespace (no router
solicitations, no MLD noise). NAT routers masquerade out of their ``wan0`` and are stateful:
inbound packets that do not belong to a connection opened from inside are dropped, as is every new
connection to the router itself except ICMP echo.

Clean-up contract: ``teardown()`` sends SIGTERM to every tracked process group, SIGKILL to those
still alive after ``kill_timeout`` seconds, then kills anything else still running in one of our
namespaces (``ip netns pids``: daemons that forked), then deletes every namespace. It is idempotent,
runs from ``__exit__``, from pytest fixture finalizers (conftest.py) and from ``atexit``; SIGTERM to the
process is turned into KeyboardInterrupt (when no other handler is installed) so that it runs then too.
Only SIGKILL of the test process leaves namespaces behind; ``reap_stale()`` removes those of dead PIDs.

Not thread-safe: build and tear down a topology from one thread.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from shadowmesh_client.tun.netns import enter_netns

PUBLIC_SUBNET = "198.18.0.0/24"
"""The "public internet" of the test mesh."""

NS_ROOT = "smt-"
"""Every namespace this module makes starts with ``smt-<pid>-``."""

KILL_TIMEOUT = 3.0
"""Seconds between SIGTERM and SIGKILL at teardown."""


class NetnsError(RuntimeError):
    """A command that builds the topology failed; the message has the command and its stderr."""


@dataclass
class Segment:
    """An L2 network: a bridge in namespace ``netns``. ``gateway`` is the NAT router's LAN address."""

    name: str
    netns: str
    bridge: str
    subnet: ipaddress.IPv4Network
    gateway: str | None = None
    _used: set[str] = field(default_factory=set, repr=False)
    _ports: int = field(default=0, repr=False)

    def allocate(self, ip: str | None) -> str:
        """Reserve ``ip`` (or the next free address from .2 up) in this segment and return it."""
        if ip is None:
            for cand in self.subnet.hosts():
                if str(cand) not in self._used and str(cand) != self.gateway and int(cand) & 0xFF >= 2:
                    ip = str(cand)
                    break
            else:
                raise NetnsError(f"segment {self.name} ({self.subnet}) is full")
        if ipaddress.ip_address(ip) not in self.subnet:
            raise NetnsError(f"{ip} is not inside segment {self.name} ({self.subnet})")
        if ip in self._used or ip == self.gateway:
            raise NetnsError(f"{ip} is already used in segment {self.name}")
        self._used.add(ip)
        return ip


@dataclass
class Host:
    """A namespace with one address on a segment. For a NAT router, ``ip`` is its public (WAN) address."""

    name: str
    netns: str
    ip: str
    iface: str
    segment: str
    gateway: str | None = None  # default route, for hosts behind a NAT router
    lan: Segment | None = None  # the LAN a NAT router serves


_LIVE: set[Topology] = set()
_LIVE_LOCK = threading.Lock()
_instances = 0  # topologies made by this process: part of the default prefix, so they never collide


def _teardown_all() -> None:
    for topo in list(_LIVE):
        topo.teardown()


atexit.register(_teardown_all)


def _install_sigterm_handler() -> None:
    # Without this a SIGTERM ends the process without atexit handlers or fixture finalizers.
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        owner = os.getpid()

        def _on_sigterm(signum: int, frame: object) -> None:
            if os.getpid() != owner:
                # A forked child inherited this handler (pyroute2's namespace helper is a fork of this
                # process, and teardown SIGTERMs whatever is left in a namespace). Raising here would unwind
                # the child into the parent's code, e.g. go on running the parent's tests: die instead.
                os._exit(128 + signum)
            raise KeyboardInterrupt("SIGTERM")

        signal.signal(signal.SIGTERM, _on_sigterm)


def _sh(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0,
        input: str | None = None) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{' '.join(argv)}: timed out after {timeout} s") from None
    if check and res.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: exit {res.returncode}: {res.stderr.strip() or res.stdout.strip()}")
    return res


def list_namespaces() -> list[str]:
    """Names of every named network namespace on the machine (``ip netns list``)."""
    out = _sh(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(netns: str) -> list[int]:
    """PIDs of every process whose network namespace is ``netns``."""
    res = _sh(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_pids(pids: Sequence[int], timeout: float) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.02)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _delete_namespace(netns: str, timeout: float) -> None:
    pids = [p for p in netns_pids(netns) if p != os.getpid()]
    if pids:
        _kill_pids(pids, timeout)
    _sh(["ip", "netns", "del", netns], check=False)


def reap_stale(root: str = NS_ROOT) -> list[str]:
    """Delete namespaces ``smt-<pid>-*`` whose creating process is gone; return their names."""
    reaped = []
    for ns in list_namespaces():
        if not ns.startswith(root):
            continue
        pid = ns[len(root):].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            _delete_namespace(ns, 0.5)
            reaped.append(ns)
    return reaped


class Topology:
    """Namespaces, links and processes that live and die together. See the module docstring."""

    def __init__(self, prefix: str | None = None, *, kill_timeout: float = KILL_TIMEOUT) -> None:
        if prefix is None:
            global _instances
            _instances += 1
            prefix = f"{NS_ROOT}{os.getpid()}-{_instances}-"
        self.prefix = prefix
        if not self.prefix.startswith(NS_ROOT):
            raise NetnsError(f"prefix must start with {NS_ROOT!r} so reap_stale() can find leftovers")
        self.kill_timeout = kill_timeout
        self.namespaces: list[str] = []  # full names, creation order
        self.hosts: dict[str, Host] = {}
        self.segments: dict[str, Segment] = {}
        self.procs: list[subprocess.Popen] = []
        self._closed = False
        self._lan_count = 0
        with _LIVE_LOCK:
            _LIVE.add(self)
        _install_sigterm_handler()

    # -- namespaces --------------------------------------------------------------------------

    def ns(self, name: str) -> str:
        """Full namespace name for a short one (``"a"`` -> ``"smt-1234-a"``); full names pass through."""
        return name if name.startswith(self.prefix) else self.prefix + name

    def add_namespace(self, name: str) -> str:
        """Create namespace ``name`` (loopback up, IPv6 off, IPv4 forwarding off); return its full name."""
        self._check_open()
        full = self.ns(name)
        if full in self.namespaces:
            raise NetnsError(f"namespace {full} exists already in this topology")
        _sh(["ip", "netns", "add", full])
        self.namespaces.append(full)
        self.sysctl(full, "net.ipv6.conf.all.disable_ipv6", "1")
        self.sysctl(full, "net.ipv6.conf.default.disable_ipv6", "1")
        self.ip(full, "link", "set", "lo", "up")
        return full

    def sysctl(self, netns: str, key: str, value: str) -> None:
        """Set a per-namespace sysctl (``net.*``) in ``netns`` without starting a process."""
        path = "/proc/sys/" + key.replace(".", "/")
        with enter_netns(self.ns(netns)):
            with open(path, "w") as f:
                f.write(value)

    def ip(self, netns: str, *args: str) -> str:
        """Run ``ip -n <netns> args...`` and return its stdout; raises ``NetnsError`` on failure."""
        return _sh(["ip", "-n", self.ns(netns), *args]).stdout

    # -- links ---------------------------------------------------------------------------------

    def add_veth(
        self,
        netns_a: str,
        netns_b: str,
        *,
        name_a: str = "veth0",
        name_b: str = "veth0",
        cidr_a: str | None = None,
        cidr_b: str | None = None,
        mtu: int | None = None,
    ) -> None:
        """A veth pair between two namespaces (made inside them: no names in the root namespace),
        optional addresses like ``"198.18.1.1/24"``, links up."""
        a, b = self.ns(netns_a), self.ns(netns_b)
        extra = ["mtu", str(mtu)] if mtu else []
        _sh(["ip", "-n", a, "link", "add", name_a, *extra, "type", "veth", "peer", "name", name_b, "netns", b, *extra])
        for n, dev, cidr in ((a, name_a, cidr_a), (b, name_b, cidr_b)):
            if cidr:
                self.ip(n, "addr", "add", cidr, "dev", dev)
            self.ip(n, "link", "set", dev, "up")

    def set_offloads(self, netns: str, iface: str, on: bool) -> None:
        """Switch TSO/GSO/GRO and checksum offloads of ``iface`` on or off (``ethtool -K``).

        Keep them on (the default) for kernel paths. Turn them off on both ends of a veth that a
        userspace forwarder reads with a packet socket: otherwise it sees 64 KiB GSO super-packets it
        cannot forward and TCP stalls (notes/netns.md).
        """
        state = "on" if on else "off"
        self.run(netns, ["ethtool", "-K", iface, "tso", state, "gso", state, "gro", state, "tx", state, "rx", state])

    def add_switch(self, name: str, subnet: str = PUBLIC_SUBNET) -> Segment:
        """A namespace ``name`` holding bridge ``br0``: an L2 switch for ``subnet`` with no address."""
        full = self.add_namespace(name)
        self.ip(full, "link", "add", "br0", "type", "bridge")
        self.ip(full, "link", "set", "br0", "up")
        seg = Segment(name, full, "br0", ipaddress.ip_network(subnet))
        self.segments[name] = seg
        return seg

    def _attach(self, netns: str, seg: Segment, iface: str, ip: str) -> None:
        seg._ports += 1
        port = f"p{seg._ports}"
        self.add_veth(netns, seg.netns, name_a=iface, name_b=port, cidr_a=f"{ip}/{seg.subnet.prefixlen}")
        self.ip(seg.netns, "link", "set", port, "master", seg.bridge)

    def add_host(self, name: str, segment: Segment | str, ip: str | None = None, *, iface: str = "eth0") -> Host:
        """A namespace ``name`` plugged into ``segment`` as ``iface`` with address ``ip`` (or the next
        free one). Behind a NAT router the host gets a default route through it."""
        seg = self.segments[segment] if isinstance(segment, str) else segment
        ip = seg.allocate(ip)
        full = self.add_namespace(name)
        self._attach(full, seg, iface, ip)
        if seg.gateway:
            self.ip(full, "route", "add", "default", "via", seg.gateway)
        host = Host(name, full, ip, iface, seg.name, seg.gateway)
        self.hosts[name] = host
        return host

    def add_nat_router(
        self, name: str, uplink: Segment | str, lan_subnet: str | None = None, *, wan_ip: str | None = None
    ) -> Host:
        """A NAT router: ``wan0`` on ``uplink`` (address ``wan_ip``), bridge ``lan0`` serving ``lan_subnet``
        (default 198.19.<n>.0/24) as its .1, nftables masquerade out of ``wan0``, stateful firewall.
        Returns the router's Host; its ``lan`` is the Segment to ``add_host`` devices onto."""
        self._lan_count += 1
        lan_net = ipaddress.ip_network(lan_subnet or f"198.19.{self._lan_count}.0/24")
        router = self.add_host(name, uplink, wan_ip, iface="wan0")
        gw = str(next(lan_net.hosts()))
        self.ip(router.netns, "link", "add", "lan0", "type", "bridge")
        self.ip(router.netns, "addr", "add", f"{gw}/{lan_net.prefixlen}", "dev", "lan0")
        self.ip(router.netns, "link", "set", "lan0", "up")
        self.sysctl(router.netns, "net.ipv4.ip_forward", "1")
        # nft 1.0.6 wants multi-line rule files (notes/netns.md).
        rules = f"""table ip smtnat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" ip saddr {lan_net} masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan0" oifname "wan0" accept
    }}
    chain input {{
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iifname "lo" accept
        iifname "lan0" accept
        icmp type echo-request accept
    }}
}}
"""
        _sh(["ip", "netns", "exec", router.netns, "nft", "-f", "-"], input=rules)
        seg = Segment(f"{name}-lan", router.netns, "lan0", lan_net, gateway=gw)
        self.segments[seg.name] = seg
        router.lan = seg
        return router

    # -- processes -----------------------------------------------------------------------------

    def _argv(self, netns: str, argv: Sequence[str]) -> list[str]:
        # `ip netns exec` execs the command after setns (no fork): Popen.pid is the command's PID.
        return ["ip", "netns", "exec", self.ns(netns), *argv]

    def spawn(self, netns: str, argv: Sequence[str], **popen_kwargs) -> subprocess.Popen:
        """Start ``argv`` inside ``netns`` in its own process group; tracked and killed at teardown."""
        self._check_open()
        popen_kwargs.setdefault("start_new_session", True)
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self._argv(netns, argv), **popen_kwargs)
        self.procs.append(proc)
        return proc

    def run(
        self, netns: str, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` inside ``netns`` to completion; text output captured. Raises ``NetnsError`` if it
        fails (``check``) or outlives ``timeout`` seconds (it is killed then)."""
        self._check_open()
        return _sh(self._argv(netns, argv), check=check, timeout=timeout, input=input)

    def stop(self, proc: subprocess.Popen, timeout: float | None = None) -> int | None:
        """SIGTERM ``proc``'s process group, SIGKILL after ``timeout`` s; reap it; return its exit code."""
        timeout = self.kill_timeout if timeout is None else timeout
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    proc.kill()
                proc.wait()
        else:
            # The leader exited; its group may still have members (a shell's children).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream:
                stream.close()
        return proc.returncode

    # -- teardown ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def teardown(self) -> None:
        """Kill every process and delete every namespace of this topology. Idempotent; never raises
        for things already gone."""
        if self._closed:
            return
        self._closed = True
        try:
            running = [p for p in self.procs if p.poll() is None]
            for p in running:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + self.kill_timeout
            for p in self.procs:
                try:
                    p.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                self.stop(p, 0)
            for ns in reversed(self.namespaces):
                _delete_namespace(ns, self.kill_timeout)
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def _check_open(self) -> None:
        if self._closed:
            raise NetnsError("this topology was torn down; build a new one")

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()


def _build(topo: Topology, fn) -> Topology:
    try:
        fn(topo)
    except BaseException:
        topo.teardown()
        raise
    return topo


def mesh_topology(prefix: str | None = None) -> Topology:
    """The mesh test topology of issue 5; hosts by name (``topo.hosts[name].ip``):

    ======  =====================  =======================================
    anvil   198.18.0.10            the chain (public)
    relay   198.18.0.20            relay host (public)
    a       198.18.0.30            device A (public)
    nat1    198.18.0.101 (WAN)     NAT router 1, LAN 198.19.1.0/24 (.1)
    b       198.19.1.2             device B behind nat1 (default via .1)
    nat2    198.18.0.102 (WAN)     NAT router 2, LAN 198.19.2.0/24 (.1)
    c       198.19.2.2             device C behind nat2
    ======  =====================  =======================================

    plus the switch namespace ``public`` (bridge only). B and C reach the public hosts; nothing
    reaches B or C unless they opened the connection.
    """

    def build(t: Topology) -> None:
        pub = t.add_switch("public", PUBLIC_SUBNET)
        t.add_host("anvil", pub, "198.18.0.10")
        t.add_host("relay", pub, "198.18.0.20")
        t.add_host("a", pub, "198.18.0.30")
        nat1 = t.add_nat_router("nat1", pub, "198.19.1.0/24", wan_ip="198.18.0.101")
        t.add_host("b", nat1.lan, "198.19.1.2")
        nat2 = t.add_nat_router("nat2", pub, "198.19.2.0/24", wan_ip="198.18.0.102")
        t.add_host("c", nat2.lan, "198.19.2.2")

    return _build(Topology(prefix), build)


def veth_pair(prefix: str | None = None, *, cidr_a: str = "198.18.1.1/24", cidr_b: str = "198.18.1.2/24") -> Topology:
    """Two namespaces ``a`` and ``b`` joined by one veth pair (``veth0`` each side): the benchmark set-up.
    ``topo.hosts["a"].ip`` / ``["b"].ip`` are the addresses."""

    def build(t: Topology) -> None:
        t.add_namespace("a")
        t.add_namespace("b")
        t.add_veth("a", "b", cidr_a=cidr_a, cidr_b=cidr_b)
        for name, cidr in (("a", cidr_a), ("b", cidr_b)):
            t.hosts[name] = Host(name, t.ns(name), cidr.split("/")[0], "veth0", "veth")

    return _build(Topology(prefix), build)
