"""The `shadowmesh-client relay` daemon: wiring of a RelayServer whose door is the real protocol handshake.

Spec "Data Plane" (relay fallback), "Security Architecture" (relay tier), issue 5 "Relay". Each job has
its module; this one only wires them and owns the tasks:

* relay/door.py ``Door``: who may open a link (the directory's one ``TrustPolicy``) and the Session per
  device; relay/server.py ``RelayServer`` + relay/core.py: forwarding, per-device counters, rate limit,
  bounded queues (the relay only ever sees envelopes around ciphertext);
* relay/usage.py ``UsageBook``: bytes and messages in/out per device since start, drops by reason (status
  file ``usage``/``drops``; relay/metrics.py serves them to Prometheus from an immutable snapshot);
* relay/billing.py ``RelayBilling`` (``settings.payments``, issue 6): receipts in LOCAL envelopes (acked
  only after the ledger commit), credit gate (``RelayCore.budgets``); RECEIPT_STATE follows the handshake
  response;
* relay/settings.py: settings, tick lengths, link limits;
* relay/guard.py + relay/floors.py (issue 12): the door's flood guard (per-source rate, cookies under
  load) and the handshake floors persisted in ``settings.state_dir`` (replays refused after a restart);
* relay/control.py: control messages (payments, BLOCK) travel sealed in the device-relay session and are
  answered sealed. A bare payments message (the cleartext form of devices before issue 12) is still
  served, in the clear, while ``settings.accept_cleartext_control`` (counted ``cleartext_control``; turn
  it off once every device is upgraded); anything else bare is refused (``cleartext_refused``).

Trust sweeps: a directory change only sets an Event; the ONE sweeper task waits on it (or at most
``SWEEP_SECONDS``), disconnects devices no longer trusted (close code 4001: revoked, suspended, expired)
and folds the core's counters into the usage totals. Sweeps never overlap and their errors are not lost.

Tasks and shutdown (``run``): the directory follower, the sweeper and the biller are supervised: the first
to fail stops the daemon and ``run`` raises its error; ``stop`` ends it cleanly. Either way every task is
cancelled AND awaited, then the server is closed (it awaits its own link, writer and reply tasks), then
billing is closed (its worker thread finishes every queued ledger job first), then the status file is
written and the directory source closed. Known gap: ``DirectorySyncer`` (directory/syncer.py) may leave its
``to_thread`` read running after cancellation; it must await that read before ``close()``.

May import: relay.*, directory, protocol, transport, rewards.messages, daemon_common, observability.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Sequence
from typing import Any

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
from shadowmesh_client.observability import tracing
from shadowmesh_client.observability.catalogue import DIRECTORY, RELAY
from shadowmesh_client.observability.figures import RelayFigures
from shadowmesh_client.observability.snapshot import Published, SnapshotCollector, publish_forever
from shadowmesh_client.protocol import NetworkBinding, ProtocolConfig
from shadowmesh_client.relay.control import MAX_BLOCK_SECONDS, decode_block, is_bare_control
from shadowmesh_client.relay.door import Door
from shadowmesh_client.relay.envelope import encode_local
from shadowmesh_client.relay.floors import open_floors
from shadowmesh_client.relay.guard import Challenge
from shadowmesh_client.relay.server import RelayServer
from shadowmesh_client.relay.settings import (  # noqa: F401 - re-exported: cli/mesh.py and bench import them here
    GC_THRESHOLDS,
    RELAY_PING_INTERVAL,
    SETTLE_SECONDS,
    SWEEP_SECONDS,
    RelaySettings,
    relay_core_config,
    relay_link_limits,
    tune_gc,
)
from shadowmesh_client.relay.usage import UsageBook
from shadowmesh_client.rewards.messages import is_control
from shadowmesh_client.transport import LinkClosedError, Transport

log = logging.getLogger(__name__)

NOTICE_SEND_SECONDS = 1.0
"""Seconds the biller waits for room to send one RELAY_NOTICE before retrying it at its next round."""


class RelayDaemon:
    """``await RelayDaemon(identity, source, settings).run(stop)``; ``source`` is a DirectorySource
    (``DirectorySyncer`` or, in tests, a ``lab.directory.MemoryRegistry`` view)."""

    def __init__(self, identity, source: DirectorySource, settings: RelaySettings, *, endpoint: str | None = None,
                 transport: Transport | None = None, metrics_host: str = "127.0.0.1", rpc_watch=None,
                 metrics_per_device: bool = False) -> None:
        self.identity = identity
        self.ds = source
        self.settings = settings
        self.endpoint = endpoint
        self.transport = transport
        d = source.directory
        self.trust = TrustPolicy(d, identity.public_key)
        self.protocol = ProtocolConfig(NetworkBinding(d.chain_id, d.registry, d.network_id))
        self.floors, self._floor_file = open_floors(settings.state_dir, time.time())
        self.door = Door(identity, self.trust, self.protocol, floors=self.floors,
                         guard=settings.handshake_guard if settings.handshake_guard is not None else False)
        self.cleartext_refused = 0         # LOCAL control messages in the clear, refused
        self.cleartext_control = 0         # ... accepted from an old device (settings.accept_cleartext_control)
        self.blocks = 0                    # BLOCK requests applied
        self.usage = UsageBook()
        self.disconnected = 0              # devices disconnected by a sweep (no longer trusted)
        self.sweeps = 0
        self.server: Any = None            # RelayServer, from run() on
        self.billing: Any = None           # relay.billing.RelayBilling when settings.payments is set
        self.cluster: Any = None           # relay.cluster.ClusterMesh when settings.cluster is set (issue 13)
        self.metrics_server = None         # daemon_common.start_metrics_server's server, while running
        self.listen_address: str | None = None   # HOST:PORT bound, once run() chose it
        self.metrics_host = metrics_host   # address of the metrics port (0.0.0.0 in a container)
        self.metrics_per_device = metrics_per_device   # also shadowmesh_relay_device_bytes{device}: high cardinality
        self.published = Published()       # observability: the loop's latest snapshot, read by the HTTP thread
        self.figures = RelayFigures(self, rpc_watch)
        self.api: Any = None               # api.server.ApiServer while running (settings.api)
        self.started_at = time.time()
        self._changed = asyncio.Event()    # set by directory changes; cleared by the sweeper
        from shadowmesh_client.discovery.relay_side import RelayDiscovery  # issue 15 (docs/discovery.md)

        self.discovery = RelayDiscovery(self)

    # ---- figures other code reads (bench, status) -------------------------------------------------------
    @property
    def sessions(self):
        return self.door.sessions

    @property
    def refused(self) -> int:
        return self.door.refused

    @property
    def totals(self) -> dict[bytes, list[int]]:
        return self.usage.totals

    @property
    def drops(self) -> dict[str, int]:
        return self.usage.drops

    def usage_totals(self) -> dict[str, dict[str, int]]:
        """Per device (hex public key): bytes/messages in and out since start (for receipts)."""
        return self.usage.as_dict()

    # ---- RelayServer hooks --------------------------------------------------------------------------------
    def authenticate(self, hello: bytes, source: object = None):
        with tracing.span("shadowmesh.handshake", {"shadowmesh.role": "relay"}):   # a no-op unless tracing is on
            result = self.door.authenticate(hello, source)
        if result is None or self.billing is None or isinstance(result, Challenge):
            return result
        outgoing, key = result
        return [*outgoing, *self.door.seal(key, self._billing_hello(key))], key

    def _billing_hello(self, key: bytes) -> list[bytes]:
        peer = self.trust.peer(key)
        if peer is None:
            return []
        self.billing.learn(key, peer.owner, peer.device_id)
        return self.billing.state_for(key)   # RECEIPT_STATE, sealed, right after the handshake response

    def on_local(self, key: bytes, frame) -> Sequence[bytes | bytearray] | Awaitable[list[bytearray]] | None:
        """A LOCAL frame of ``key``'s device-relay session: protocol answers, and its sealed control
        messages (relay/control.py): BLOCK applied to the core, payments to billing (awaited by
        RelayServer; acks sealed after the ledger commit)."""
        if is_bare_control(frame):   # the old cleartext form (devices before issue 12)
            if self.billing is not None and is_control(frame) and self.settings.accept_cleartext_control:
                self.cleartext_control += 1
                self._account()
                return self.billing.on_control(key, bytes(frame))   # answered in the clear, as it asked
            self.cleartext_refused += 1
            return None
        opened = self.door.open(key, frame)
        if opened is None:
            return None
        replies: list[bytearray] = list(opened.outgoing)
        payments: list[bytes] = []
        for message in opened.controls:
            block = decode_block(message)
            if block is not None:
                source, seconds = block
                if self.server.core.block(key, source, min(seconds, MAX_BLOCK_SECONDS), self.server.now()):
                    self.blocks += 1
                    log.info("device %s blocked frames from %s for %d s", key.hex()[:8], source.hex()[:8], seconds)
            elif self.billing is not None and is_control(message):
                payments.append(message)
            elif message[:1] == b"\xfc":   # issue 15: discovery (DHT, observed address, candidates), sealed back
                replies += self.door.seal(key, self.discovery.on_message(key, bytes(message)))
        if payments:
            self._account()   # the receipt is checked against every byte received before it
            return self._billing_replies(key, replies, payments)
        if opened.controls and not replies:
            replies = self.door.keepalive(key)   # an answer, so the device's dead-peer timer stays quiet
        return replies

    async def _billing_replies(self, key: bytes, replies: list[bytearray], payments: list[bytes]) -> list[bytearray]:
        for payload in payments:
            replies += self.door.seal(key, await self.billing.on_control(key, bytes(payload)))
        return replies or self.door.keepalive(key)

    def on_directory_change(self, change) -> None:
        """Directory subscriber (called on the loop): wake the sweeper; never starts a task itself."""
        self._changed.set()

    # ---- sweeps and accounting ----------------------------------------------------------------------------
    async def sweep(self) -> None:
        """Disconnect devices the directory no longer trusts; fold the core's counters into the totals.
        Called only by the sweeper task (one at a time)."""
        self.sweeps += 1
        self.discovery.tick()   # issue 15: the relay's own record (load/price hints), DHT contacts
        for key in self.door.forget_untrusted({link.peer for link in list(self.server.links)}):
            if await self.server.disconnect(key):
                self.disconnected += 1
                log.info("device %s disconnected: no longer trusted by the directory", key.hex()[:8])
        self._account()

    def _on_presence(self, key: bytes, present: bool) -> None:
        self.cluster.on_presence(key, present)

    def _account(self) -> None:
        usage = self.server.core.take_usage()
        if self.cluster is not None:   # bytes of devices another member holds are that member's to bill
            usage = self.cluster.local_usage(usage)
        billable = self.usage.fold(usage)
        if self.billing is not None:
            for key, n in billable.items():
                self.billing.add_usage(key, n)

    async def _sweeper(self) -> None:
        changed = self._changed
        while True:
            try:
                async with asyncio.timeout(SWEEP_SECONDS):
                    await changed.wait()
            except TimeoutError:
                pass
            changed.clear()   # a change during the sweep sets it again: the next round follows at once
            await self.sweep()
            self.write_status()

    async def _biller(self) -> None:
        while True:
            await asyncio.sleep(SETTLE_SECONDS)
            self._account()
            await self.billing.settle({link.peer for link in self.server.links})
            await self._send_notices()

    async def _send_notices(self) -> None:
        """RELAY_NOTICEs (why a device is no longer carried, or carried again; issue 11 item 2), sealed in
        the device's session; waits up to NOTICE_SEND_SECONDS for room on a busy link, else it goes at the
        next biller round. A device gone gets none (it is told again when it is stopped again)."""
        for key, payload in self.billing.take_notices().items():
            link = self.server.core.link_of(key)
            if link is None:
                continue
            sent = False
            try:
                for frame in self.door.seal(key, [payload]):
                    message = encode_local(frame)
                    if not link.send_nowait(message):
                        await asyncio.wait_for(link.send(message), NOTICE_SEND_SECONDS)
                    sent = True
            except (TimeoutError, LinkClosedError):
                sent = False
            self.billing.notice_done(key, payload, sent)

    # ---- lifecycle ----------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set (returns) or a task fails (raises its error). Always closes the
        directory source, after every task using it has ended."""
        try:
            await first_sync(self.ds)
            tune_gc()
            me = self.trust.peer(self.identity.public_key)
            d = self.ds.directory
            if me is None or not me.relay:
                raise ConfigError(f"this device is not registered as a relay in network {d.network_id}: "
                                  "register it with `shadowmesh-client register --relay --endpoint URL`")
            s = self.settings
            if s.payments is not None:
                from shadowmesh_client.relay.billing import RelayBilling

                if s.cluster is not None and s.cluster.ledger_url:   # the cluster's shared ledger (PostgreSQL)
                    from shadowmesh_client.relay.cluster.billing import ClusterBilling

                    self.billing = await ClusterBilling.open_shared(s.payments, me.owner, s.cluster.ledger_url)
                else:
                    self.billing = await RelayBilling.open(s.payments, me.owner)
            # settings.listen None: 0.0.0.0 and the published endpoint's port (daemon_common.listen_address)
            self.listen_address = listen_address(s.listen, self.endpoint or me.endpoint, "relay") or "0.0.0.0:443"
            cfg = listener_config(self.listen_address, self.endpoint or me.endpoint, path=s.path,
                                  tls_cert=s.tls_cert, tls_key=s.tls_key, limits=relay_link_limits(),
                                  state_dir=s.state_dir)
            self.server = RelayServer(cfg, relay_core_config(s), self.authenticate, on_local=self.on_local,
                                      transport=self.transport,
                                      presence=self._on_presence if s.cluster is not None else None)
            if s.cluster is not None:
                from shadowmesh_client.relay.cluster import ClusterMesh, network_binding

                self.cluster = ClusterMesh(self.identity, self.trust, self.server, s.cluster, network_binding(d),
                                           transport=self.transport, device_limits=cfg.limits)
            if self.billing is not None:
                self.billing.attach(self.server.core)
            unsubscribe = d.subscribe(self.on_directory_change)
            try:
                await self.server.start()
                if self.cluster is not None:
                    await self.cluster.start()
                if s.metrics_port:
                    from shadowmesh_client.relay.metrics import RelayCollector

                    extra = [RelayCollector(self.usage)] if self.metrics_per_device else []
                    self.published.snapshot = self.figures.build()
                    self.metrics_server = start_metrics_server(
                        s.metrics_port, SnapshotCollector(self.published, DIRECTORY + RELAY), self.metrics_host,
                        published=self.published, extra=extra)
                log.info("relay %s listening on %s", self.identity.public_key.hex()[:16], self.listen_address)
                self.write_status()
                await self._start_api()
                await self._supervise(stop)
            finally:
                unsubscribe()
                await self._close_api()   # after _supervise awaited its sampler task
                if self.cluster is not None:
                    await self.cluster.close()   # after _supervise awaited its dialers; before the server
                await self.server.close()   # awaits its link handlers, writers and LOCAL replies
                self._account()
        finally:
            try:
                if self.billing is not None:
                    await self.billing.close()   # after every task that used it has ended
            finally:
                await self._stop_metrics()
                if self.server is not None:
                    self.write_status(stopped=True)
                if self._floor_file is not None:
                    self._floor_file.close()
                self.ds.close()

    async def _supervise(self, stop: asyncio.Event) -> None:
        """Run the daemon's tasks until ``stop`` or the first failure; cancel and await them all; then
        raise the failure, if any (a task that returns on its own is a failure too)."""
        loop = asyncio.get_running_loop()
        jobs = {"directory": self.ds.run(), "sweeper": self._sweeper()}
        if self.api is not None:
            jobs["api"] = self.api.run()
        if self.billing is not None:
            jobs["billing"] = self._biller()
        if self.cluster is not None:
            jobs["cluster"] = self.cluster.run()
        if self.metrics_server is not None:
            jobs["metrics"] = publish_forever(self.figures.build, self.published)
        tasks = {loop.create_task(job, name=f"relay-{name}"): name for name, job in jobs.items()}
        stopper = loop.create_task(stop.wait(), name="relay-stop")
        try:
            await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*tasks, stopper):
                task.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
        for task, name in tasks.items():
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is not None:
                log.error("relay task %s failed: %s: %s", name, type(exc).__name__, exc)
                raise exc
            raise RuntimeError(f"relay task {name} ended on its own")

    async def _start_api(self) -> None:
        """The local API (api/server.py) when ``settings.api`` is set; its sampler runs under _supervise."""
        if self.settings.api is None:
            return
        from shadowmesh_client.api.server import ApiServer
        from shadowmesh_client.api.views import RelayView

        api = ApiServer(self.settings.api, RelayView(self))
        if await api.start():
            self.api = api

    async def _close_api(self) -> None:
        api, self.api = self.api, None
        if api is not None:
            await api.close()

    async def _stop_metrics(self) -> None:
        server, self.metrics_server = self.metrics_server, None
        if server is not None:
            await asyncio.to_thread(server.shutdown)   # blocks until its serve loop has stopped
            server.server_close()

    # ---- status -------------------------------------------------------------------------------------------
    def status(self) -> dict:
        server = self.server
        return {"public_key": self.identity.public_key.hex(), "pid": os.getpid(), "started_at": self.started_at,
                "port": self._port(),
                "devices_connected": len(server.links) if server is not None else 0,
                "connected_devices": sorted({link.peer.hex() for link in server.links}) if server else [],
                "usage": self.usage.as_dict(), "drops": dict(self.usage.drops), "refused": self.refused,
                "disconnected": self.disconnected,
                "decoys_served": server.server.decoys_served if server else 0,
                "payments": self.billing.status() if self.billing is not None else None,
                **({"cluster": self.cluster.status()} if self.cluster is not None else {})}

    def _port(self) -> int | None:
        try:
            return self.server.port if self.server is not None else None
        except (AssertionError, AttributeError, IndexError, TypeError):
            return None

    def write_status(self, stopped: bool = False) -> None:
        if self.settings.status_file:
            write_status_file(self.settings.status_file, self.status(), stopped=stopped)
