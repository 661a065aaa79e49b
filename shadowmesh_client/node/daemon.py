"""The ``up`` daemon's lifecycle: start in order, run until told to stop, shut down cleanly.

Spec "Network Layer" / "Data Plane"; issue 5 "Node". Start-up order (each step needs the previous):

1. directory: load the stored state and sync once (retrying with backoff while the chain is
   unreachable and nothing is stored; with stored state the node starts on it and keeps retrying);
2. this device's overlay address from the directory (refused if the device is not trusted there);
3. TUN device: created with TUNSETIFF (it vanishes with our file descriptor, so even a crash leaves
   nothing behind), address ``<overlay>/10`` (the whole overlay routed into it), MTU, link up;
4. peers, routes, dialers and relay links (``PeerManager.refresh``), directory subscription;
5. the WebSocket listener when this device has an endpoint;
6. tasks: packet pump, directory follower, housekeeping tick (timers, trust sweep, paths, status file),
   and with ``payments`` (node/payments.py) the relay receipts: byte counts in, receipts out.

``stop`` (an asyncio.Event; the CLI sets it on SIGINT/SIGTERM) ends ``run``: every session gets a CLOSE
frame, links close, the listener stops, the TUN device is closed (and so removed), SQLite is closed.
A task that dies (TUN deleted under us, a bug) also ends ``run``, through the same shutdown, and is
re-raised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from urllib.parse import urlsplit

from shadowmesh_client.directory import DirectorySource
from shadowmesh_client.errors import ConfigError
from shadowmesh_client.protocol import NetworkBinding, ProtocolConfig
from shadowmesh_client.transport import Server, ServerConfig, Transport
from shadowmesh_client.tun import TunDevice, configure, open_tun
from shadowmesh_client.node.manager import PeerManager
from shadowmesh_client.node.peers import now
from shadowmesh_client.node.pump import Pump
from shadowmesh_client.node.settings import TICK_SECONDS, NodeSettings
from shadowmesh_client.daemon_common import first_sync, write_status_file

log = logging.getLogger(__name__)

OVERLAY_PREFIX = 10  # spec "Network Layer": the overlay is 100.64.0.0/10 (RFC 6598)


class Node:
    """One device's mesh daemon. ``await Node(...).run(stop_event)``; see the module docstring."""

    def __init__(self, identity, source: DirectorySource, settings: NodeSettings, *, endpoint: str | None = None,
                 protocol: ProtocolConfig | None = None, payments=None, transport: Transport | None = None,
                 tun: TunDevice | None = None) -> None:
        self.identity = identity
        self.ds = source
        self.settings = settings
        self.transport = transport if transport is not None else _websocket_transport()
        self._given_tun = tun
        self.endpoint = endpoint
        d = source.directory
        self.protocol = protocol or ProtocolConfig(NetworkBinding(d.chain_id, d.registry, d.network_id))
        self.manager: PeerManager | None = None
        self.pump: Pump | None = None
        self.server: Server | None = None
        self.tun = None
        self.overlay: str | None = None
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.listen_port: int | None = None
        self._payment_setup = payments     # node.payments.PaymentSetup, or None: sign no receipts
        self.payments = None

    async def run(self, stop: asyncio.Event) -> None:
        tasks: list[asyncio.Task] = []
        unsubscribe = None
        try:
            await first_sync(self.ds)
            d = self.ds.directory
            me = d.peer_for_key(self.identity.public_key, now())
            if me is None:
                raise ConfigError(
                    f"this device ({self.identity.public_key.hex()[:16]}..) is not an active, unexpired member of "
                    f"network {d.network_id}: register it (`shadowmesh-client register`) or renew it")
            self.overlay = str(me.overlay_address)
            self.endpoint = self.endpoint or me.endpoint
            s = self.settings
            if self._given_tun is not None:
                self.tun = self._given_tun
            else:
                self.tun = open_tun(s.tun_name, mtu=s.mtu, vnet_hdr=True)  # coalesced TCP writes (tun/gro.py)
                configure(self.tun.name, f"{self.overlay}/{OVERLAY_PREFIX}", mtu=s.mtu)
            self.manager = m = PeerManager(self.identity, d, self.protocol, s, self.endpoint, self.transport)
            self.pump = Pump(self.tun, m.routes, m.peers, m.incoming, m.on_events)
            m.pump = self.pump
            if self._payment_setup is not None:
                from shadowmesh_client.node.payments import NodePayments

                self.payments = NodePayments(self._payment_setup, me.owner, me.device_id, d)
                m.on_relay_control = self.payments.on_control
            m.refresh()
            unsubscribe = d.subscribe(m.on_directory_change)
            if s.listen and self.endpoint:
                host, _, port = s.listen.rpartition(":")
                cfg = ServerConfig(host=host, port=int(port), path=s.path or urlsplit(self.endpoint or "").path or "/",
                                   tls_cert=s.tls_cert, tls_key=s.tls_key, limits=s.limits)
                self.server = self.transport.server(cfg, m.authenticate, m.on_server_link)
                await self.server.start()
                self.listen_port = self.server.port
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(self.pump.run(), name="pump"),
                     loop.create_task(self.ds.run(), name="directory"),
                     loop.create_task(self._housekeeping(), name="tick")]
            if self.payments is not None:
                tasks.append(loop.create_task(self.payments.run(m.relays), name="payments"))
            self.ready_at = time.time()
            log.info("up: %s on %s (mtu %d), overlay %s, %d peer(s), %d relay(s)%s", self.identity.public_key.hex()[:16],
                     self.tun.name, s.mtu, self.overlay, len(m.peers), len(m.relays),
                     f", listening on {s.listen}" if self.server is not None else "")
            self.write_status()
            stopper = loop.create_task(stop.wait(), name="stop")
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for t in done:
                if t is not stopper and t.exception() is not None:
                    raise t.exception()
        finally:
            await self._shutdown(tasks, unsubscribe)

    async def _housekeeping(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            await self.manager.tick()
            n += 1
            if n % 2 == 0:
                self.write_status()

    async def _shutdown(self, tasks: list, unsubscribe) -> None:
        log.info("shutting down")
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except BaseException:  # noqa: BLE001 - already reported by run(); shutting down anyway
                pass
        if unsubscribe is not None:
            unsubscribe()
        if self.manager is not None:
            try:
                await asyncio.wait_for(self.manager.close(), 5.0)
            except asyncio.TimeoutError:
                log.warning("closing sessions took longer than 5 s; dropping the rest")
        if self.server is not None:
            await self.server.close()
        if self.tun is not None:
            self.tun.close()
        try:
            self.write_status(stopped=True)
        except OSError as exc:
            log.warning("cannot write the status file: %s", exc)
        self.ds.close()

    def status(self) -> dict:
        out = {"public_key": self.identity.public_key.hex(), "overlay": self.overlay,
               "tun": self.tun.name if self.tun is not None else None, "mtu": self.settings.mtu,
               "started_at": self.started_at, "ready_at": self.ready_at, "pid": os.getpid(),
               "listening": self.listen_port,
               "directory": vars(self.ds.status())}
        if self.manager is not None:
            out.update(self.manager.status())
            out["counters"] = self.pump.counters()
        if self.payments is not None:
            out["payments"] = self.payments.status()
        return out

    def write_status(self, stopped: bool = False) -> None:
        if self.settings.status_file:
            write_status_file(self.settings.status_file, self.status(), stopped=stopped)


def _websocket_transport() -> Transport:
    from shadowmesh_client.transport.ws import WebSocketTransport

    return WebSocketTransport()
