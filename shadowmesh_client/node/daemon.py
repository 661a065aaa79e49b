"""The ``up`` daemon's lifecycle: start in order, run every task under one TaskGroup, shut down cleanly.

Spec "Network Layer" / "Data Plane"; issue 5 "Node". Start-up order (each step needs the previous):

1. directory: load the stored state and sync once (retrying with backoff while the chain is
   unreachable and nothing is stored; with stored state the node starts on it and keeps retrying);
2. this device's overlay address from the directory (refused if the device is not trusted there);
3. TUN device (unless one is given, e.g. ``tun.FakeTun`` in tests): created with TUNSETIFF (it vanishes
   with our file descriptor, so even a crash leaves nothing behind), then ``<overlay>/10`` (the whole
   overlay routed into it), MTU and link up with ``configure_async`` (netlink off the loop);
4. one ``asyncio.TaskGroup`` owns every task from here on (node/tasks.py): peers, routes, dialers and
   relay clients (node/reconcile.py), the directory subscription, the listener when this device has an
   endpoint (node/links.py authenticates and serves its links), then the packet pump (node/pump.py), the
   directory follower, the session timers (node/timers.py), housekeeping (path re-selection, trust
   sweep, status file) and, with ``payments`` (node/payments.py), the relay receipts.

``stop`` (an asyncio.Event; the CLI sets it on SIGINT/SIGTERM) ends ``run``: the service tasks are
cancelled and awaited, every session gets a CLOSE frame, links close, the listener stops, every task left
is cancelled and awaited; only then are the TUN device (and so the interface) and the directory source
closed. A task that fails (TUN deleted under us, a bug) aborts the group: every other task is cancelled
and awaited, the same resources are released, and ``run`` raises that task's error.

May import: directory, protocol, transport, tun, userspace, daemon_common, observability, node.*.
Not task-safe beyond its loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shadowmesh_client.daemon_common import (
    first_sync,
    listen_address,
    listener_config,
    start_metrics_server,
    write_status_file,
)
from shadowmesh_client.directory import DirectorySource
from shadowmesh_client.directory.trust import TrustPolicy
from shadowmesh_client.errors import ConfigError
from shadowmesh_client.node.links import PeerLinks
from shadowmesh_client.node.peers import PeerTable, now
from shadowmesh_client.node.pump import Pump
from shadowmesh_client.node.reconcile import Reconciler
from shadowmesh_client.node.settings import PATH_SECONDS, STATUS_SECONDS, NodeSettings
from shadowmesh_client.node.tasks import Spawner
from shadowmesh_client.node.timers import SessionTimers
from shadowmesh_client.observability import tracing
from shadowmesh_client.observability.catalogue import DIRECTORY, NODE
from shadowmesh_client.observability.figures import NodeFigures
from shadowmesh_client.observability.snapshot import Published, SnapshotCollector, publish_forever
from shadowmesh_client.protocol import NetworkBinding, ProtocolConfig
from shadowmesh_client.relay.floors import open_floors
from shadowmesh_client.transport import Server, Transport
from shadowmesh_client.tun import TunDevice, open_tun  # configure_async: lazily (pyroute2; not in userspace mode)
from shadowmesh_client.userspace.service import Userspace

if TYPE_CHECKING:
    from shadowmesh_client.api.server import ApiServer
    from shadowmesh_client.node.payments import NodePayments, RelayNotices
    from shadowmesh_client.routing.node import NodeRouting

log = logging.getLogger(__name__)

OVERLAY_PREFIX = 10  # spec "Network Layer": the overlay is 100.64.0.0/10 (RFC 6598)
CLOSE_TIMEOUT = 5.0
"""Seconds shutdown waits for CLOSE frames and link closes before cancelling what is left."""


class Node:
    """One device's mesh daemon. ``await Node(...).run(stop_event)``; see the module docstring."""

    def __init__(self, identity, source: DirectorySource, settings: NodeSettings, *, endpoint: str | None = None,
                 protocol: ProtocolConfig | None = None, payments=None, transport: Transport | None = None,
                 tun: TunDevice | None = None, metrics: tuple[str, int] | None = None, rpc_watch=None) -> None:
        self.identity = identity
        self.ds = source
        self.settings = settings
        self.transport = transport if transport is not None else _websocket_transport()
        self._given_tun = tun
        self.endpoint = endpoint
        d = source.directory
        self.protocol = protocol or ProtocolConfig(NetworkBinding(d.chain_id, d.registry, d.network_id))
        self.trust = TrustPolicy(d, identity.public_key, clock=now)
        # Handshake floors shared by every peer session, persisted in settings.state_dir (issue 12).
        self.floors, self._floor_file = open_floors(settings.state_dir, time.time())
        self.table = PeerTable(identity, self.protocol, self.trust.is_trusted, self.floors)
        self.links: PeerLinks | None = None
        self.reconciler: Reconciler | None = None
        self.timers: SessionTimers | None = None
        self.pump: Pump | None = None
        self.routing: NodeRouting | None = None   # while running, when settings.routing is set
        self.streams: Userspace | None = None   # the stream layer (issue 18), while running
        self.server: Server | None = None
        self.tun: TunDevice | None = None
        self.overlay: str | None = None
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.listen_port: int | None = None
        self.listen_address: str | None = None   # HOST:PORT bound (daemon_common.listen_address)
        self._payment_setup = payments     # node.payments.PaymentSetup, or None: sign no receipts
        self.payments: NodePayments | RelayNotices | None = None   # RelayNotices: unpaid, notices only
        self.discovery = None              # discovery.service.NodeDiscovery with settings.discovery (issue 15)
        self._unsubscribe: Callable[[], None] | None = None
        self.api: ApiServer | None = None  # the local API while running (settings.api)
        self.metrics = metrics             # (host, port) of the metrics port (observability/http.py), or None
        self.metrics_server = None         # its server, while running
        self.published = Published()       # the loop's latest snapshot, read by the metrics HTTP thread
        self.figures = NodeFigures(self, rpc_watch)

    # ---- lifecycle ------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        try:
            me = await self._start_directory()
            await self._open_tun()
            self._offer_offload()
            try:
                async with asyncio.TaskGroup() as group:
                    spawn = Spawner(group)
                    service = await self._start(spawn, me)
                    await stop.wait()
                    await self._stop(spawn, service)
            except BaseExceptionGroup as eg:
                if len(eg.exceptions) == 1:   # one task failed: stop with ITS error
                    raise eg.exceptions[0] from None
                raise
        finally:
            await self._release()

    async def _start_directory(self):
        await first_sync(self.ds)
        me = self.trust.peer(self.identity.public_key)
        if me is None:
            raise ConfigError(
                f"this device ({self.identity.public_key.hex()[:16]}..) is not an active, unexpired member of "
                f"network {self.ds.directory.network_id}: register it (`shadowmesh-client register`) or renew it")
        self.overlay = str(me.overlay_address)
        self.endpoint = self.endpoint or me.endpoint
        return me

    async def _open_tun(self) -> None:
        s = self.settings
        if self._given_tun is not None:
            self.tun = self._given_tun
            return
        # ---- userspace mode (issue 18, userspace/): no TUN device, no netlink, no privileges ----
        if s.userspace:
            from shadowmesh_client.userspace.sink import PacketSink

            self.tun = PacketSink(s.tun_name, mtu=s.mtu)
            return
        from shadowmesh_client.routing.node import tun_address6
        from shadowmesh_client.tun import configure_async

        v6 = tun_address6(self.ds.directory, self.overlay or "", s.routing)   # issue 14: None without IPv6
        # vnet_hdr: coalesced TCP writes (tun/gro.py); offload: TCP super-packets (tun/gso.py, issue 17)
        self.tun = open_tun(s.tun_name, mtu=s.mtu, vnet_hdr=True, offload=s.offload, ipv4_only=v6 is None)
        await configure_async(self.tun.name, f"{self.overlay}/{OVERLAY_PREFIX}", mtu=s.mtu, address6=v6)

    def _offer_offload(self) -> None:
        """Our handshakes offer offload-form frames exactly when the TUN device can write them."""
        able = self.tun is not None and self.tun.offload
        if self.protocol.offload != able:
            self.protocol = self.table.config = dataclasses.replace(self.protocol, offload=able)

    async def _start(self, spawn: Spawner, me) -> list[asyncio.Task]:
        """Wire the components, start the listener and the service tasks (returned)."""
        s = self.settings
        self.timers = timers = SessionTimers(self.table, spawn)
        self.links = links = PeerLinks(self.table, self.trust, s, self.transport, spawn, timers.wake)
        self.reconciler = rec = Reconciler(self.identity, self.table, self.trust, links, self.protocol, s,
                                           self.endpoint, spawn, timers.wake)
        self.pump = links.pump = Pump(self.tun, self.table.routes, self.table.peers, links.incoming,
                                      links.on_events, timers.wake)
        # ---- streams (issue 18, userspace/): every node terminates peers' streams; proxies if configured
        self.streams = Userspace(self.pump, self.overlay or "0.0.0.0", s.streams, userspace=s.userspace)
        await self.streams.start()
        rec.on_peer_gone = self.streams.mux.peer_gone   # a revoked peer's streams are reset at once
        if self._payment_setup is not None:
            from shadowmesh_client.node.payments import NodePayments

            self.payments = NodePayments(self._payment_setup, me.owner, me.device_id, self.trust)
            rec.on_relay_control = self.payments.on_control
        else:   # unpaid: still hear why a relay stops carrying us (issue 11 item 2)
            from shadowmesh_client.node.payments import RelayNotices

            self.payments = RelayNotices(self.trust)
            rec.on_relay_control = self.payments.on_control
        from shadowmesh_client.discovery.service import attach as attach_discovery  # issue 15 (docs/discovery.md)

        discovery_coros = await attach_discovery(self, spawn)   # on-demand sessions, records, NAT traversal
        rec.refresh()
        self._unsubscribe = self.trust.directory.subscribe(rec.on_directory_change)
        routing_tasks: list[asyncio.Task] = []
        # issue 14 (routing/node.py): names, IPv6, exit and subnet routes, QoS; all need the TUN device and the
        # kernel (nftables, routes, DNS on the overlay address): off in userspace mode (issue 18)
        if s.routing is not None and not s.userspace:
            from shadowmesh_client.routing.node import NodeRouting

            self.routing = NodeRouting(self, s.routing)
            routing_tasks = await self.routing.start(spawn)
        self.listen_address = listen_address(s.listen, self.endpoint, "up")   # None: from the endpoint
        if self.listen_address and self.endpoint:
            cfg = listener_config(self.listen_address, self.endpoint, path=s.path, tls_cert=s.tls_cert,
                                  tls_key=s.tls_key, limits=s.limits, state_dir=s.state_dir)
            authenticate = tracing.traced(links.authenticate, "shadowmesh.handshake", {"shadowmesh.role": "node"})
            self.server = self.transport.server(cfg, authenticate, links.on_server_link)
            await self.server.start()
            self.listen_port = self.server.port
        coros = [(self.pump.run(), "pump"), (self.ds.run(), "directory"), (timers.run(), "timers"),
                 (self._housekeeping(), "housekeeping")]
        coros.append((self.streams.run(), "streams"))
        coros += discovery_coros   # issue 15
        if self.payments is not None:
            coros.append((self.payments.run(self.table.relays), "payments"))
        self.ready_at = time.time()
        if self.metrics is not None:
            self.published.snapshot = self.figures.build()
            collector = SnapshotCollector(self.published, DIRECTORY + NODE)
            self.metrics_server = start_metrics_server(self.metrics[1], collector, self.metrics[0],
                                                       published=self.published)
            coros.append((publish_forever(self.figures.build, self.published), "metrics"))
        service = [t for t in (spawn(c, name) for c, name in coros) if t is not None] + routing_tasks
        service += await self._start_api(spawn)
        log.info("up: %s on %s (mtu %d), overlay %s, %d peer(s), %d relay(s)%s", self.identity.public_key.hex()[:16],
                 self.tun.name if self.tun is not None else "?", s.mtu, self.overlay, len(self.table.peers),
                 len(self.table.relays),
                 f", listening on {self.listen_address}" if self.server is not None else "")
        self.write_status()
        return service

    async def _housekeeping(self) -> None:
        """Path re-selection and the trust sweep every PATH_SECONDS; the status file every STATUS_SECONDS."""
        assert self.reconciler is not None
        last_status = time.monotonic()
        while True:
            await asyncio.sleep(PATH_SECONDS)
            self.reconciler.sweep()
            self.table.reselect()
            if time.monotonic() - last_status >= STATUS_SECONDS:
                last_status = time.monotonic()
                self.write_status()

    async def _stop(self, spawn: Spawner, service: list[asyncio.Task]) -> None:
        """Graceful part of shutdown, inside the group: every task is done when this returns."""
        log.info("shutting down")
        assert self.reconciler is not None
        for t in service:
            t.cancel()
        await asyncio.wait(service)
        if self.routing is not None:
            self.routing.unsubscribe()
        await self._close_api()   # its sampler task is done: end SSE streams, stop serving
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        try:
            await asyncio.wait_for(self.reconciler.close_all(), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("closing sessions took longer than %.0f s; dropping the rest", CLOSE_TIMEOUT)
        server, self.server = self.server, None
        if server is not None:
            await server.close()   # awaits the handlers of accepted links
        spawn.cancel_all()

    async def _release(self) -> None:
        """After every task is done (or never started): listener, subscription, TUN device, status, source."""
        await self._close_api()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.server is not None:
            await self.server.close()
        metrics_server, self.metrics_server = self.metrics_server, None
        if metrics_server is not None:   # its publishing task ended with the group
            await asyncio.to_thread(metrics_server.shutdown)
            metrics_server.server_close()
        if self.streams is not None:
            self.streams.close()
        if self.routing is not None:   # nftables tables and pinned routes (before the TUN device goes)
            await asyncio.to_thread(self.routing.close)
        if self.tun is not None:
            self.tun.close()
        try:
            self.write_status(stopped=True)
        except OSError as exc:
            log.warning("cannot write the status file: %s", exc)
        if self._floor_file is not None:
            self._floor_file.close()
        self.ds.close()

    async def _start_api(self, spawn: Spawner) -> list[asyncio.Task]:
        """The local API (api/server.py) and its sampler task, when ``settings.api`` is set."""
        if self.settings.api is None:
            return []
        from shadowmesh_client.api.server import ApiServer
        from shadowmesh_client.api.views import NodeView

        api = ApiServer(self.settings.api, NodeView(self))
        if not await api.start():
            return []
        self.api = api
        task = spawn(api.run(), "api")
        return [task] if task is not None else []

    async def _close_api(self) -> None:
        api, self.api = self.api, None
        if api is not None:
            await api.close()

    # ---- status ---------------------------------------------------------------------------------------
    def status(self) -> dict:
        out = {"public_key": self.identity.public_key.hex(), "overlay": self.overlay,
               "tun": self.tun.name if self.tun is not None else None, "mtu": self.settings.mtu,
               "started_at": self.started_at, "ready_at": self.ready_at, "pid": os.getpid(),
               "listening": self.listen_port,
               "discovery": self.discovery.status() if self.discovery is not None else None,   # issue 15
               "directory": vars(self.ds.status())}
        if self.pump is not None and self.links is not None and self.reconciler is not None \
                and self.timers is not None:
            t = now()
            out.update({"peers": [p.status(t) for p in self.table.peers.values()],
                        "relays": [r.status() for r in self.table.relays.values()],
                        "auth_refused": self.links.auth_refused, "peers_closed": self.reconciler.peers_closed,
                        "timers": {"fired": self.timers.fired, "next_at": self.timers.next_at}})
            out["counters"] = self.pump.counters()
        if self.routing is not None:
            out["routing"] = self.routing.status()
        if self.streams is not None:
            out["streams"] = self.streams.status()
        if self.payments is not None:
            out["payments"] = self.payments.status()
        return out

    def write_status(self, stopped: bool = False) -> None:
        if self.settings.status_file:
            write_status_file(self.settings.status_file, self.status(), stopped=stopped)


def _websocket_transport() -> Transport:
    from shadowmesh_client.transport.ws import WebSocketTransport

    return WebSocketTransport()
