"""NAT types for the lab, built with nftables in a namespace router (issue 15 "NAT traversal, measured").

RFC 4787 names what a NAT does to a device's outgoing flows (mapping) and to unsolicited inbound packets
(filtering). ``add_nat(topo, name, uplink, kind)`` builds a router like ``Topology.add_nat_router`` (wan0 on
the public switch, lan0 bridge, stateful forward filter) whose behaviour is one of:

* ``EIF``  endpoint-independent mapping, endpoint-independent filtering ("full cone"): masquerade keeps the
  source port (Linux NAT preserves it when the tuple is free: one mapping for every destination), and a
  NEW inbound TCP connection to any port >= 1024 is forwarded to the device (DNAT to the same port);
* ``ADF``  endpoint-independent mapping, address-dependent filtering: inbound NEW connections only from an
  IP address the device sent to (an nftables set ``contacted`` of destination addresses, 120 s timeout);
* ``PDF``  endpoint-independent mapping, address-and-port-dependent filtering: inbound only as part of a
  flow the device opened to that (address, port): conntrack alone (a SYN from that pair while ours is in
  SYN_SENT is a simultaneous open: RFC 5382 REQ-2 behaviour of Linux);
* ``SYM``  address-and-port-dependent mapping ("symmetric"): ``masquerade random``: every flow gets a
  random public port, so the address a relay observes is useless for anyone else; filtering as PDF.

``renumber(topo, router, new_ip)`` moves the router's public side to another address (the old one is
removed and the router's flow table flushed, as a home router's new DHCP lease or reboot does).
Root only (namespaces, nftables). Not thread-safe: build from one thread.
"""

from __future__ import annotations

import ipaddress

from lab.netns import Host, Segment, Topology, _sh

KINDS = ("EIF", "ADF", "PDF", "SYM")
DESCRIPTION = {
    "EIF": "EIM + endpoint-independent filtering (full cone)",
    "ADF": "EIM + address-dependent filtering (restricted cone)",
    "PDF": "EIM + address-and-port-dependent filtering (port-restricted cone)",
    "SYM": "address-and-port-dependent mapping (symmetric)",
}


def add_nat(topo: Topology, name: str, uplink: Segment | str, kind: str, device: str, *,
            wan_ip: str | None = None) -> tuple[Host, Host]:
    """A NAT router of ``kind`` and one device behind it; returns (router, device)."""
    if kind not in KINDS:
        raise ValueError(f"NAT kind {kind!r}: one of {KINDS}")
    topo._lan_count += 1
    lan_net = ipaddress.ip_network(f"198.19.{topo._lan_count}.0/24")
    router = topo.add_host(name, uplink, wan_ip, iface="wan0")
    gw = str(next(lan_net.hosts()))
    topo.ip(router.netns, "link", "add", "lan0", "type", "bridge")
    topo.ip(router.netns, "addr", "add", f"{gw}/{lan_net.prefixlen}", "dev", "lan0")
    topo.ip(router.netns, "link", "set", "lan0", "up")
    topo.sysctl(router.netns, "net.ipv4.ip_forward", "1")
    seg = Segment(f"{name}-lan", router.netns, "lan0", lan_net, gateway=gw)
    topo.segments[seg.name] = seg
    router.lan = seg
    host = topo.add_host(device, seg)
    _sh(["ip", "netns", "exec", router.netns, "nft", "-f", "-"], input=rules(kind, str(lan_net), host.ip))
    return router, host


def rules(kind: str, lan: str, device_ip: str) -> str:
    masquerade = "masquerade random" if kind == "SYM" else "masquerade"
    inbound = ""
    sets = ""
    track = ""
    if kind == "EIF":
        inbound = f'iifname "wan0" tcp dport 1024-65535 ct state new dnat to {device_ip}'
    elif kind == "ADF":
        sets = "set contacted { type ipv4_addr; flags dynamic,timeout; timeout 120s; }"
        track = 'iifname "lan0" oifname "wan0" update @contacted { ip daddr }'
        inbound = f'iifname "wan0" ip saddr @contacted tcp dport 1024-65535 ct state new dnat to {device_ip}'
    # nft 1.0.6 wants multi-line rule files (notes/netns.md).
    return f"""table ip smtnat {{
    {sets}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        {inbound}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" ip saddr {lan} {masquerade}
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        {track}
        ct state established,related accept
        ct status dnat accept
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


def renumber(topo: Topology, router: Host, new_ip: str) -> None:
    """Move ``router``'s public address to ``new_ip`` (same /24); the old address goes away. Packets still
    sent to it (neighbours on the public switch keep its MAC while TCP traffic confirms it) are dropped
    on arrival, as an upstream that no longer routes it here would: otherwise the inbound DNAT rule,
    which does not look at the destination, would keep old flows alive on the old address."""
    seg = topo.segments[router.segment]
    prefix = seg.subnet.prefixlen
    _sh(["ip", "netns", "exec", router.netns, "nft", "insert", "rule", "ip", "smtnat", "prerouting",
         "iifname", "wan0", "ip", "daddr", router.ip, "drop"])
    # delete first: deleting a primary address also deletes the secondaries of its subnet (Linux default)
    topo.ip(router.netns, "addr", "del", f"{router.ip}/{prefix}", "dev", "wan0")
    topo.ip(router.netns, "addr", "add", f"{new_ip}/{prefix}", "dev", "wan0")
    router.ip = new_ip
    flush_conntrack(router.netns)


def flush_conntrack(netns: str) -> None:
    """Forget every tracked flow of ``netns`` (a router that renumbers or reboots loses its NAT state)."""
    from pyroute2 import Conntrack

    from shadowmesh_client.tun.netns import enter_netns

    with enter_netns(netns):
        ct = Conntrack()
        try:
            ct.flush()
        finally:
            ct.close()


# ---- daemons in namespaces, one thread and event loop each ----------------------------------------------
class NsDaemon:
    """A daemon run by ``asyncio.run`` in its own thread, inside namespace ``netns`` (setns moves only the
    calling thread, so every socket of that loop lives there). ``build()`` makes the daemon INSIDE the loop;
    ``call(fn)`` runs ``fn(daemon)`` on the loop and returns its result; ``stop()`` ends ``run`` and joins.
    Lab only: daemons share one ``lab.directory.MemoryRegistry`` (its events are appended before start)."""

    def __init__(self, netns: str, build) -> None:
        import threading

        self.netns = netns
        self._build = build
        self.daemon = None
        self.loop = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"ns {netns}", daemon=True)

    def _main(self) -> None:
        import asyncio

        from shadowmesh_client.tun.netns import enter_netns

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.daemon = self._build()
            self._ready.set()
            await self.daemon.run(self._stop)

        try:
            with enter_netns(self.netns):
                asyncio.run(main())
        except BaseException as exc:   # reported by stop()
            self.error = exc
        finally:
            self._ready.set()

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        self._ready.wait(timeout)

    def call(self, fn, timeout: float = 10.0):
        import concurrent.futures

        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(self.daemon))
            except BaseException as exc:
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self.error is not None and not isinstance(self.error, KeyboardInterrupt):
            raise self.error
