"""Routing state of one node: names, the route table, the source filter and what the OS must be told.

Issue 14. ``Routing`` is rebuilt (``refresh``) from the directory's trusted peers and the signed device
records (routing/records.py) whenever either changes; it hands the pump two hooks (node/pump.py):

* ``route_miss(packet)``: IPv6 overlay destinations (the device's IPv4 sits in the last 32 bits: one
  slice compare and the pump's own IPv4 dict, no table of its own), then subnet and exit routes
  (routing/table.py) for anything else;
* ``src_filter(peer, packets)``: a peer may send us packets from its own overlay addresses, from the
  subnets the admin approved for it, and, if it is our exit node, from anywhere. Everything else is
  dropped and counted (``spoofed``): without it a device could impersonate another one to an exit's NAT
  or into a subnet.

``on_change`` (set by the daemon) is called after every rebuild that changed what the OS must know
(routes to add through the TUN device, nftables sets): routing/system.py applies it off the loop.

Pure apart from reading the records folder. Runs on the node's loop; not task-safe.
May import: directory, routing.*, crypto (through records).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shadowmesh_client.directory.events import JoinPolicy
from shadowmesh_client.routing import overlay6
from shadowmesh_client.routing.names import NameTable, network_label
from shadowmesh_client.routing.records import RecordSet, load_folder
from shadowmesh_client.routing.settings import RoutingSettings
from shadowmesh_client.routing.table import Route, RouteTable

log = logging.getLogger(__name__)

V4_DEFAULT = ipaddress.IPv4Network("0.0.0.0/0")
V6_DEFAULT = ipaddress.IPv6Network("::/0")


@dataclass(frozen=True)
class Plan:
    """What the OS side (routing/system.py) must make true. Equal plans need no work."""

    exit_key: bytes | None = None                     # our exit node, if chosen and honoured
    exit_clients: tuple[str, ...] = ()                # overlay addresses allowed to use us as an exit
    serve_exit: bool = False
    serve_routes: tuple[str, ...] = ()                # our approved subnet routes (forward + NAT into them)
    tun_routes: tuple[str, ...] = ()                  # other devices' approved subnets: route into the TUN
    underlay: tuple[str, ...] = field(default=())     # endpoints (URLs) the node itself must reach directly


class Routing:
    def __init__(self, trust, my_key: bytes, settings: RoutingSettings, routes: dict, peers: dict, *,
                 records_dir: str | os.PathLike | None, rpc_url: str | None = None) -> None:
        d = trust.directory
        self.trust, self.me, self.settings = trust, my_key, settings
        self.routes, self.peers = routes, peers              # the PeerTable's (shared, read only here)
        self.prefix6 = overlay6.network_prefix(d.chain_id, d.registry, d.network_id)
        self._head6 = self.prefix6.network_address.packed[:6] + bytes(6)
        self.records = RecordSet(d.chain_id, "0x" + d.registry.hex(), d.network_id)
        self.records_dir = Path(records_dir) if records_dir else None
        self._records_seen: dict[str, float] = {}
        self.rpc_url = rpc_url
        self.names = NameTable("")
        self.table = RouteTable()
        self.plan = Plan()
        self.exit_key: bytes | None = None
        self._sources: dict[bytes, tuple] = {}
        self.spoofed = 0
        self.on_change: Callable[[Plan], None] | None = None
        self.conflicts: list[str] = []

    # ---- inputs ---------------------------------------------------------------------------------------
    def reload_records(self) -> bool:
        """Re-read the records folder if a file changed (by name and mtime). True if it did."""
        if self.records_dir is None:
            return False
        try:
            seen = {e.name: e.stat().st_mtime for e in os.scandir(self.records_dir) if e.name.endswith(".json")}
        except OSError:
            seen = {}
        if seen == self._records_seen:
            return False
        self._records_seen = seen
        self.records.replace_all(load_folder(self.records_dir))
        return True

    def refresh(self, *_: object) -> None:
        """Rebuild names, routes and source rules (directory subscriber; also after ``reload_records``)."""
        d = self.trust.directory
        now = self.trust.now()
        info = d.network
        admin = "0x" + info.admin.hex() if info is not None else None
        approval = info is not None and info.policy == int(JoinPolicy.APPROVAL)
        zone = f"{network_label(info.name if info else '', d.network_id)}.{self.settings.dns_suffix}"
        devices, routes, exits = [], [], {}
        accepted = {}
        for p in d.peers(now):
            if p.relay:
                continue
            acc = self.records.accepted(p.public_key, admin, approval)
            accepted[p.public_key] = acc
            v6 = overlay6.device_address(self.prefix6, p.overlay_address) if self.settings.ipv6 else None
            devices.append((p.public_key, p.registered_at, p.overlay_address, v6, acc.name if acc else None))
            if acc is None or p.public_key == self.me:
                continue
            for r in acc.routes:
                routes.append(Route(ipaddress.ip_network(r), p.public_key, "subnet", p.registered_at))
            if acc.exit:
                exits[p.public_key] = p.registered_at
        self.names = NameTable.build(zone, devices)
        self.exit_key = None
        if self.settings.exit_node:
            entry = self.names.resolve_target(self.settings.exit_node)
            if entry is None or entry.public_key not in exits:
                log.warning("exit node %r is not a trusted device offering an approved exit: default-route "
                            "traffic is dropped until it is", self.settings.exit_node)
            else:
                self.exit_key = entry.public_key
                routes.append(Route(V4_DEFAULT, entry.public_key, "exit", exits[entry.public_key]))
                if self.settings.ipv6:
                    routes.append(Route(V6_DEFAULT, entry.public_key, "exit", exits[entry.public_key]))
        self.table = RouteTable(routes, self.prefix6)
        self.conflicts = self.table.conflicts + self.names.conflicts
        sources = {}
        for key, entry in self.names.by_key.items():
            nets = tuple(self.table.prefixes_of(key)) if key != self.exit_key else ()
            sources[key] = (entry.v4.packed, entry.v6.packed if entry.v6 else None, nets, key == self.exit_key)
        self._sources = sources
        mine = accepted.get(self.me)
        plan = Plan(exit_key=self.exit_key,
                    exit_clients=self._exit_clients() if self.settings.advertise_exit else (),
                    serve_exit=bool(self.settings.advertise_exit and mine and mine.exit),
                    serve_routes=tuple(mine.routes) if mine else (),
                    tun_routes=tuple(str(r.prefix) for r in self.table.routes if r.kind == "subnet"),
                    underlay=self._underlay(d.peers(now)))
        for line in self.conflicts:
            log.info("routing: %s", line)
        if plan != self.plan:
            self.plan = plan
            if self.on_change is not None:
                self.on_change(plan)

    def _exit_clients(self) -> tuple[str, ...]:
        allow = self.settings.exit_allow
        out = []
        for key, entry in self.names.by_key.items():
            if key == self.me:
                continue
            if allow and not any(self.names.resolve_target(a) is entry for a in allow):
                continue
            out.append(str(entry.v4))
            if entry.v6 is not None:
                out.append(str(entry.v6))
        return tuple(sorted(out))

    def _underlay(self, peers) -> tuple[str, ...]:
        urls = {p.endpoint for p in peers if p.endpoint and p.public_key != self.me}
        if self.rpc_url:
            urls.add(self.rpc_url)
        return tuple(sorted(urls))

    # ---- pump hooks -----------------------------------------------------------------------------------
    def route_miss(self, p):
        """The peer for a packet the pump's IPv4 dict did not route (node/pump.py ``route_miss``)."""
        v = p[0] >> 4
        if v == 6:
            if len(p) < 40:
                return None
            if p[24:36] == self._head6:                  # an overlay device address: its IPv4 is the key
                return self.routes.get(bytes(p[36:40]))
            dst = bytes(p[24:40])
        elif v == 4:
            if len(p) < 20:
                return None
            dst = bytes(p[16:20])
        else:
            return None
        key = self.table.lookup(dst)
        return self.peers.get(key) if key is not None else None

    def src_filter(self, peer, packets: list) -> list:
        """The packets ``peer`` may send us by their source address (the rest dropped and counted)."""
        rule = self._sources.get(peer.key)
        if rule is None:
            self.spoofed += len(packets)
            return []
        v4, v6, nets, anything = rule
        if anything:
            return packets
        ok = []
        for p in packets:
            v = p[0] >> 4
            if v == 4 and p[12:16] == v4 or v == 6 and p[8:24] == v6:
                ok.append(p)
            elif nets and self._in_nets(p, v, nets):
                ok.append(p)
            else:
                self.spoofed += 1
        return ok

    @staticmethod
    def _in_nets(p, v: int, nets) -> bool:
        try:
            src = ipaddress.ip_address(bytes(p[12:16]) if v == 4 else bytes(p[8:24]))
        except ValueError:
            return False
        return any(src.version == n.version and src in n for n in nets)

    # ---- views ----------------------------------------------------------------------------------------
    def my_v6(self, v4: str) -> ipaddress.IPv6Address:
        return overlay6.device_address(self.prefix6, v4)

    def status(self) -> dict:
        return {"prefix6": str(self.prefix6), "zone": self.names.zone,
                "names": {e.name: [str(e.v4), str(e.v6) if e.v6 else None] for e in self.names.by_key.values()},
                "routes": [{"prefix": str(r.prefix), "via": r.key.hex()[:16], "kind": r.kind}
                           for r in self.table.routes],
                "exit_node": self.exit_key.hex() if self.exit_key else None,
                "conflicts": self.conflicts, "spoofed_packets": self.spoofed,
                "records_rejected": self.records.rejected}
