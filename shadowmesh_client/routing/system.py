"""Apply a routing ``Plan`` (routing/manager.py) to the OS: routes, forwarding sysctls, nftables.

Issue 14. Blocking (netlink, subprocess): the daemon calls ``SystemRouting.apply`` through
``asyncio.to_thread``, one call at a time (``Node`` serialises them), and ``close`` at shutdown.

* other devices' approved subnets: a route per prefix through the TUN device;
* an exit node (``exit_node``): first every underlay address the node itself must reach (peers'
  endpoints, relays, the RPC endpoint, ``exclude`` prefixes) is pinned to the route it has now (a /32 or
  /128 via the current gateway: no routing loop through the tunnel), then ``0.0.0.0/1`` + ``128.0.0.0/1``
  (and ``::/1`` + ``8000::/1``) through the TUN device: more specific than the default route, which is
  left alone, and gone with the device. ``include`` replaces the halves by the listed prefixes. Without
  ``exit_allow_lan``, each directly connected network is also split in two halves through the TUN (more
  specific than the connected route), after pinning the gateway itself;
* serving as exit or subnet router: ``net.ipv4.ip_forward`` and ``net.ipv6.conf.all.forwarding`` on, and
  the forwarding table (routing/nft.py); the kill switch table when asked.

May import: pyroute2, routing.nft, routing.manager (Plan), socket.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from urllib.parse import urlsplit

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from shadowmesh_client.routing import nft
from shadowmesh_client.routing.manager import Plan
from shadowmesh_client.routing.settings import RoutingSettings

log = logging.getLogger(__name__)

HALVES = {4: ("0.0.0.0/1", "128.0.0.0/1"), 6: ("::/1", "8000::/1")}


def resolve_hosts(urls) -> list[str]:
    """IP addresses of the hosts in ``urls`` (names resolved now; unresolvable ones skipped)."""
    out: set[str] = set()
    for url in urls:
        host = urlsplit(url).hostname
        if not host:
            continue
        try:
            for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP):
                out.add(str(info[4][0]).split("%")[0])
        except OSError:
            log.warning("cannot resolve %s: it is not pinned outside the tunnel", host)
    return sorted(out)


def _sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        log.warning("cannot set %s: %s", path, exc)


class SystemRouting:
    def __init__(self, tun: str, settings: RoutingSettings, overlay6: str | None) -> None:
        self.tun, self.settings, self.overlay6 = tun, settings, overlay6
        self._routes: set[tuple[str, int | None, str | None]] = set()   # (dst, oif, gateway) we added
        self._fwd = self._kill = False

    def _add(self, ipr: IPRoute, dst: str, *, oif: int, gateway: str | None = None) -> None:
        net = ipaddress.ip_network(dst, strict=False)
        kw = {"dst": str(net.network_address), "dst_len": net.prefixlen, "oif": oif,
              "family": socket.AF_INET if net.version == 4 else socket.AF_INET6}
        if gateway:
            kw["gateway"] = gateway
        try:
            ipr.route("replace", **kw)
        except NetlinkError as exc:
            log.warning("cannot add route %s: %s", dst, exc)
            return
        self._routes.add((str(net), oif, gateway))

    def _pin(self, ipr: IPRoute, address: str) -> None:
        """Route ``address`` (or prefix) the way it goes now, as a more specific route."""
        net = ipaddress.ip_network(address, strict=False)
        try:
            got = ipr.route("get", dst=str(net.network_address))
        except NetlinkError:
            return
        if not got:
            return
        oif = got[0].get_attr("RTA_OIF")
        if oif == self._tun_index(ipr):
            return   # already through the tunnel (an overlay address): nothing to pin
        gw = got[0].get_attr("RTA_GATEWAY")
        if gw:
            self._add(ipr, gw, oif=oif)
        self._add(ipr, str(net), oif=oif, gateway=gw)

    def _tun_index(self, ipr: IPRoute) -> int:
        found = ipr.link_lookup(ifname=self.tun)
        if not found:
            raise OSError(errno.ENODEV, f"no device {self.tun}")
        return found[0]

    def _connected(self, ipr: IPRoute, tun: int) -> list[str]:
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for r in ipr.get_routes(family=family, table=254):
                oif = r.get_attr("RTA_OIF")
                dst = r.get_attr("RTA_DST")
                if oif == tun or not dst or r["dst_len"] == 0 or r["scope"] != 253 and family == socket.AF_INET:
                    continue
                net = ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False)
                if net.is_link_local or net.is_loopback or net.prefixlen >= net.max_prefixlen:
                    continue
                out.append(str(net))
        return out

    def apply(self, plan: Plan, underlay_ips: list[str]) -> None:
        s = self.settings
        with IPRoute() as ipr:
            tun = self._tun_index(ipr)
            for prefix in plan.tun_routes:
                self._add(ipr, prefix, oif=tun)
            if s.exit_node:
                for ip in list(underlay_ips) + list(s.exclude):
                    self._pin(ipr, ip)
                families = (4, 6) if s.ipv6 else (4,)
                wanted = list(s.include) or [h for f in families for h in HALVES[f]]
                if not s.exit_allow_lan:
                    for net in self._connected(ipr, tun):
                        n = ipaddress.ip_network(net)
                        wanted.extend(str(sub) for sub in n.subnets(1))
                for prefix in wanted:
                    self._add(ipr, prefix, oif=tun)
            lan = [] if not s.exit_allow_lan else self._connected(ipr, tun)
        if plan.serve_exit or plan.serve_routes:
            _sysctl("/proc/sys/net/ipv4/ip_forward", "1")
            if s.ipv6:
                _sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")
            nft.apply(nft.forward_ruleset(self.tun, overlay6=self.overlay6 or "fd00::/8",
                                          exit_clients=plan.exit_clients, serve_exit=plan.serve_exit,
                                          subnets=plan.serve_routes))
            self._fwd = True
        elif self._fwd:
            nft.delete(nft.FWD_TABLE)
            self._fwd = False
        if s.exit_node and s.kill_switch:
            nft.apply(nft.killswitch_ruleset(self.tun, underlay=underlay_ips, lan=lan))
            self._kill = True

    def close(self) -> None:
        """Clean shutdown: our nftables tables go (routes through the TUN vanish with the device; pinned
        underlay routes are removed here)."""
        if self._fwd:
            nft.delete(nft.FWD_TABLE)
        if self._kill:
            nft.delete(nft.KILL_TABLE)
        try:
            with IPRoute() as ipr:
                for dst, oif, gw in self._routes:
                    net = ipaddress.ip_network(dst)
                    try:
                        ipr.route("del", dst=str(net.network_address), dst_len=net.prefixlen, oif=oif,
                                  family=socket.AF_INET if net.version == 4 else socket.AF_INET6,
                                  **({"gateway": gw} if gw else {}))
                    except NetlinkError:
                        pass   # gone with the TUN device already
        except OSError as exc:
            log.warning("cannot remove routes: %s", exc)
        self._routes.clear()
