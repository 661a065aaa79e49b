"""The routing features inside the ``up`` daemon (issue 14): one object the daemon starts and releases.

``NodeRouting.start(node, spawn)`` (after the pump exists, inside the daemon's TaskGroup):

1. writes this device's signed record (name, exit advert, advertised routes) to the records folder
   when it differs from the one there (the admin's approval of an unchanged record is kept);
2. builds ``routing.manager.Routing`` and hooks it into the pump (``route_miss``, ``src_filter``) and
   the directory (``subscribe``: rebuilt on every change, so a revoked device loses its name, routes
   and exit at once);
3. with QoS on, installs ``routing.qos.QosSender`` (``Pump.set_qos``);
4. returns its service tasks: the records watcher (every ``RECORDS_SECONDS``), the OS applier (routes,
   sysctls, nftables: routing/system.py, off the loop, one apply at a time, re-run when the plan
   changes), the QoS drain owner and the DNS server.

``tun_address6`` gives the daemon the TUN's IPv6 address before the device is configured. ``close``
(after every task is done) deletes the nftables tables and pinned routes.

May import: routing.*, dns, crypto (through records), directory. Runs on the node's loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from shadowmesh_client.routing import overlay6, records
from shadowmesh_client.routing.manager import Plan, Routing
from shadowmesh_client.routing.settings import RECORDS_SECONDS, RoutingSettings

if TYPE_CHECKING:
    from shadowmesh_client.dns.server import DnsServer
    from shadowmesh_client.routing.qos import QosSender
    from shadowmesh_client.routing.system import SystemRouting

log = logging.getLogger(__name__)


def tun_address6(directory, overlay_v4: str, settings: RoutingSettings | None) -> str | None:
    """``<device address>/48`` for the TUN device, or None when IPv6 is off (or routing is)."""
    if settings is None or not settings.ipv6:
        return None
    prefix = overlay6.network_prefix(directory.chain_id, directory.registry, directory.network_id)
    return f"{overlay6.device_address(prefix, overlay_v4)}/{overlay6.ULA_PREFIX_LEN}"


class NodeRouting:
    def __init__(self, node, settings: RoutingSettings) -> None:
        self.node, self.settings = node, settings
        s = node.settings
        folder = settings.records_dir or (os.path.join(s.state_dir, "records") if s.state_dir else None)
        self.records_dir = folder
        self.routing = Routing(node.trust, node.identity.public_key, settings, node.table.routes,
                               node.table.peers, records_dir=folder, rpc_url=settings.rpc_url)
        self.qos: QosSender | None = None
        self.dns: DnsServer | None = None
        self.system: SystemRouting | None = None
        self._plan_changed = asyncio.Event()
        self._unsubscribe = None

    # ---- this device's record -------------------------------------------------------------------------
    def publish_own_record(self) -> None:
        st = self.settings
        if self.records_dir is None or not (st.name or st.advertise_exit or st.advertise_routes):
            return
        d = self.node.trust.directory
        me = self.node.identity.public_key
        rec = records.DeviceRecord(d.chain_id, "0x" + d.registry.hex(), d.network_id, me, int(time.time()),
                                   records.check_name(st.name) if st.name else None, st.advertise_exit,
                                   tuple(records.check_prefix(r) for r in st.advertise_routes))
        path = records.record_path(self.records_dir, me)
        try:
            old = records.SignedRecord.from_json(path.read_bytes()) if path.exists() else None
        except Exception:
            old = None
        same = old is not None and (old.record.name, old.record.exit, old.record.routes) == (rec.name, rec.exit,
                                                                                              rec.routes)
        if same:
            return   # unchanged: keep it (and the admin's approval on it)
        records.save(self.records_dir, records.SignedRecord.sign(self.node.identity, rec))
        log.info("device record written to %s (name %s, exit %s, routes %s): an approval network's admin "
                 "approves it with `shadowmesh-client approve-record %s`", path, rec.name, rec.exit,
                 ", ".join(rec.routes) or "none", path)

    # ---- lifecycle ------------------------------------------------------------------------------------
    async def start(self, spawn) -> list[asyncio.Task]:
        node, st, r = self.node, self.settings, self.routing
        self.publish_own_record()
        r.reload_records()
        r.on_change = lambda plan: self._plan_changed.set()
        r.refresh()
        self._unsubscribe = node.trust.directory.subscribe(r.refresh)
        pump = node.pump
        pump.route_miss = r.route_miss
        pump.src_filter = r.src_filter
        coros = [(self._watch_records(), "routing records")]
        if st.qos:
            from shadowmesh_client.routing.qos import Classifier, QosSender

            qos = self.qos = QosSender(pump._frames, Classifier(st.qos_ports))
            pump.set_qos(qos)
            coros.append((qos.run(), "qos"))
        if st.apply_system and not node.settings.userspace:
            from shadowmesh_client.routing.system import SystemRouting

            self.system = SystemRouting(node.tun.name, st, str(r.prefix6))
            coros.append((self._apply_forever(), "routing system"))
        if st.dns:
            coros.append((self._serve_dns(), "dns"))
        return [t for t in (spawn(c, name) for c, name in coros) if t is not None]

    def unsubscribe(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def close(self) -> None:
        """After every task is done: nftables tables and pinned routes go."""
        self.unsubscribe()
        if self.system is not None:
            self.system.close()

    async def _watch_records(self) -> None:
        while True:
            await asyncio.sleep(RECORDS_SECONDS)
            if self.routing.reload_records():
                self.routing.refresh()

    async def _apply_forever(self) -> None:
        from shadowmesh_client.routing.system import resolve_hosts

        assert self.system is not None
        self._plan_changed.set()
        while True:
            await self._plan_changed.wait()
            self._plan_changed.clear()
            plan: Plan = self.routing.plan
            underlay = await asyncio.to_thread(resolve_hosts, plan.underlay)
            try:
                await asyncio.to_thread(self.system.apply, plan, underlay)
            except Exception as exc:   # ConfigError (nft missing/refused), netlink: log, keep the mesh up
                log.error("cannot apply routing to the system: %s", exc)

    def _addresses(self) -> list[str]:
        if self.settings.dns_addresses:
            return list(self.settings.dns_addresses)
        out = [self.node.overlay]
        if self.settings.ipv6:
            out.append(str(self.routing.my_v6(self.node.overlay)))
        return out

    async def _serve_dns(self) -> None:
        from shadowmesh_client.dns.resolved import configure as configure_resolver
        from shadowmesh_client.dns.server import DnsServer, parse_forward

        addrs = self._addresses()
        dns = self.dns = DnsServer(self._names, addrs, self.settings.dns_port,
                                   forward=parse_forward(self.settings.dns_forward, tuple(addrs)))
        if self.settings.configure_resolver and self.settings.apply_system and self.settings.dns_port == 53:
            async def resolver() -> None:
                await dns.ready.wait()
                log.info("names: %s", await asyncio.to_thread(configure_resolver, self.node.tun.name, addrs,
                                                              self.routing.names.zone))
            async with asyncio.TaskGroup() as g:
                g.create_task(dns.run())
                g.create_task(resolver())
        else:
            await dns.run()

    def _names(self):
        return self.routing.names

    def status(self) -> dict:
        out = self.routing.status()
        if self.qos is not None:
            out["qos"] = self.qos.counters()
        if self.dns is not None:
            out["dns"] = {"listening": [f"{h}:{p}" for h, p in self.dns.bound], **self.dns.counters()}
        out["plan"] = {"exit_clients": list(self.routing.plan.exit_clients),
                       "serve_exit": self.routing.plan.serve_exit, "serve_routes": list(self.routing.plan.serve_routes),
                       "tun_routes": list(self.routing.plan.tun_routes)}
        return out


def my_records_path(records_dir: str | os.PathLike, public_key: bytes) -> Path:
    return records.record_path(records_dir, public_key)


