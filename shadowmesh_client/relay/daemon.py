"""The `shadowmesh-client relay` daemon: a RelayServer whose door is the real protocol handshake.

Spec "Data Plane" (relay fallback), "Security Architecture" (relay tier), issue 5 "Relay". Wiring only:

* the directory (same syncer as a node, followed every second) decides who may connect: the hello in
  the upgrade must be a HANDSHAKE_INIT from a key ``is_trusted`` in this network (checked before any
  crypto), answered with this relay's registered key; anything else gets the decoy page;
* the relay keeps one small Session per device (``sessions``), reused across reconnects so a
  replayed hello (an old timestamp) is refused;
* forwarding, per-device byte counters, rate limit and bounded queues are ``RelayServer``/``RelayCore``
  (transport/relay_server.py, relay_core/): the relay only ever sees envelopes around ciphertext;
* a device the directory stops trusting (revoked, suspended, expired) is disconnected (close code
  4001) within a second or two of the block, and its hellos are refused from then on;
* ``usage_totals()``: bytes and messages in/out per device since start (envelopes included), the figure
  payment receipts are checked against; also in the status file and, with
  ``metrics_port``, as Prometheus counters ``shadowmesh_relay_device_bytes_total{device,direction}``;
* payments (``settings.payments``, issue 6): relay_billing.RelayBilling stores receipts that arrive in LOCAL
  envelopes (ack sent only after the ledger commit), gets the byte counts, and stops relaying for devices
  over their credit or out of deposit (``RelayCore.blocked``); RECEIPT_STATE follows the handshake response.

Restart-safe: nothing a device needs lives only here; devices reconnect with backoff.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from shadowmesh_client.errors import ConfigError, ProtocolError
from shadowmesh_client.protocol import FrameType, NetworkBinding, ProtocolConfig, Session, SessionState, peek_header
from shadowmesh_client.relay import RelayConfig
from shadowmesh_client.rewards.messages import is_control
from shadowmesh_client.directory import DirectorySource
from shadowmesh_client.transport import ServerConfig, Transport
from shadowmesh_client.relay.server import RelayServer
from shadowmesh_client.daemon_common import LINK_MAX_MESSAGE_BYTES, first_sync, node_link_limits, write_status_file

log = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0
"""Seconds between trust sweeps over connected devices and usage accounting rounds."""

GC_THRESHOLDS = (20_000, 50, 20)
"""CPython cyclic-GC thresholds for the relay process (tracked allocations before a young collection,
young collections per middle one, middle per full one). A relay holds thousands of long-lived links of
~100 tracked objects each; with the default (700, 10, 10) the full collections that walk all of them took
~300 us of the ~700 us of CPU per handshake at 10,000 idle links (``bench relay``). Garbage is still
collected, just in fewer, larger rounds."""


def tune_gc() -> None:
    """Move what start-up loaded (modules, the directory) out of the collector's reach (``gc.freeze``)
    and raise its thresholds (GC_THRESHOLDS). Called once by ``RelayDaemon.run`` after the first sync;
    process-wide, so only for a process that is the relay."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


RELAY_PING_INTERVAL = 20.0
"""Seconds between the relay's own WebSocket pings, and its pong timeout. Devices ping their relay link
every 5 s (node PING_INTERVAL: their RTT figure for path choice) and the relay answers those pongs; its
own pings only detect dead links, so they can be 4x rarer: at 10,000 idle links that halves the relay's
idle CPU (22 % -> 10 % of a core, ``bench relay``). A dead device link is dropped within 40 s; meanwhile
frames for it queue up to ``queue_max_bytes`` and are then dropped (counted)."""


def relay_link_limits():
    """The node's link limits (message size, queues, write limit) with the relay's heartbeat."""
    return replace(node_link_limits(), ping_interval=RELAY_PING_INTERVAL, ping_timeout=RELAY_PING_INTERVAL)


@dataclass(frozen=True)
class RelaySettings:
    listen: str = "0.0.0.0:443"
    path: str | None = None            # secret path; default: the path of the published endpoint
    tls_cert: str | None = None
    tls_key: str | None = None
    rate_bytes_per_second: float | None = None   # per device ingress limit; None = unlimited
    queue_max_bytes: int = 4 * LINK_MAX_MESSAGE_BYTES  # per destination; excess dropped and counted
    status_file: str | None = None
    metrics_port: int | None = None
    directory_interval: float = 1.0
    payments: object | None = None     # relay_billing.BillingSettings; None: no receipts, no gating


class RelayDaemon:
    def __init__(self, identity, source: DirectorySource, settings: RelaySettings, *, endpoint: str | None = None,
                 transport: Transport | None = None) -> None:
        self.identity = identity
        self.ds = source
        self.settings = settings
        self.endpoint = endpoint
        self.transport = transport
        d = source.directory
        self.protocol = ProtocolConfig(NetworkBinding(d.chain_id, d.registry, d.network_id))
        self.sessions: dict[bytes, Session] = {}
        self.totals: dict[bytes, list[int]] = {}   # key -> [bytes_in, messages_in, bytes_out, messages_out]
        self.drops: dict[str, int] = {}
        self.refused = 0
        self.disconnected = 0
        self.server: RelayServer | None = None
        self.billing = None                # relay_billing.RelayBilling when settings.payments is set
        self.started_at = time.time()

    def _trusted(self, key: bytes) -> bool:
        return self.ds.directory.is_trusted(key, time.time())

    # ---- hooks ----------------------------------------------------------------------------------------
    def authenticate(self, hello: bytes):
        try:
            header = peek_header(hello)
        except ProtocolError:
            self.refused += 1
            return None
        key = header.sender
        if header.type is not FrameType.HANDSHAKE_INIT or key == self.identity.public_key or not self._trusted(key):
            self.refused += 1
            return None
        s = self.sessions.get(key)
        if s is None or s.state in (SessionState.CLOSED, SessionState.FAILED):
            s = self.sessions[key] = Session(self.identity, key, self.protocol, self._trusted)
        try:
            received = s.open(hello, time.time())
        except ProtocolError:
            self.refused += 1
            return None
        if self.billing is not None:
            return list(received.outgoing) + self._billing_hello(key), key
        return received.outgoing, key

    def _billing_hello(self, key: bytes) -> list[bytes]:
        peer = self.ds.directory.peer_for_key(key, time.time())
        if peer is None:
            return []
        self.billing.learn(key, peer.owner, peer.device_id)
        return self.billing.state_for(key)   # RECEIPT_STATE, sent right after the handshake response

    def on_local(self, key: bytes, frame):
        if self.billing is not None and is_control(frame):
            self._account()   # the receipt is checked against every byte received before it
            return self.billing.on_control(key, bytes(frame))   # awaited by RelayServer; ack after commit
        s = self.sessions.get(key)
        if s is None:
            return None
        try:
            return s.open(bytes(frame), time.time()).outgoing
        except ProtocolError:
            return None

    def on_directory_change(self, change) -> None:
        asyncio.get_running_loop().create_task(self.sweep())

    async def sweep(self) -> None:
        """Disconnect devices the directory no longer trusts; fold the core's counters into the totals."""
        t = time.time()
        d = self.ds.directory
        for key in {link.peer for link in list(self.server.links)}:
            if not d.is_trusted(key, t):
                self.sessions.pop(key, None)
                if await self.server.disconnect(key):
                    self.disconnected += 1
                    log.info("device %s disconnected: no longer trusted by the directory", key.hex()[:8])
        for key in [k for k in self.sessions if not d.is_trusted(k, t)]:
            del self.sessions[key]
        self._account()

    def _account(self) -> None:
        for key, u in self.server.core.take_usage().items():
            tot = self.totals.setdefault(key, [0, 0, 0, 0])
            tot[0] += u.bytes_in
            tot[1] += u.messages_in
            tot[2] += u.bytes_out
            tot[3] += u.messages_out
            if self.billing is not None:
                self.billing.add_usage(key, u.bytes_in + u.bytes_out)
            for reason, n in u.dropped.items():
                self.drops[reason.value] = self.drops.get(reason.value, 0) + n

    def usage_totals(self) -> dict[str, dict[str, int]]:
        """Per device (hex public key): bytes/messages in and out since start (for receipts)."""
        return {k.hex(): {"bytes_in": v[0], "messages_in": v[1], "bytes_out": v[2], "messages_out": v[3]}
                for k, v in self.totals.items()}

    # ---- lifecycle ------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        await first_sync(self.ds)
        tune_gc()
        d = self.ds.directory
        me = d.peer_for_key(self.identity.public_key, time.time())
        if me is None or not me.relay:
            raise ConfigError("this device is not registered as a relay in network "
                              f"{d.network_id}: register it with `shadowmesh-client register --relay --endpoint URL`")
        s = self.settings
        if s.payments is not None:
            from shadowmesh_client.relay.billing import RelayBilling

            self.billing = await RelayBilling.open(s.payments, me.owner)
        host, _, port = s.listen.rpartition(":")
        path = s.path or urlsplit(self.endpoint or me.endpoint or "").path or "/"
        cfg = ServerConfig(host=host, port=int(port), path=path, tls_cert=s.tls_cert, tls_key=s.tls_key,
                           limits=relay_link_limits())
        rcfg = RelayConfig(rate_bytes_per_second=s.rate_bytes_per_second, queue_max_bytes=s.queue_max_bytes,
                           burst_bytes=max(1 << 20, 2 * LINK_MAX_MESSAGE_BYTES))
        self.server = RelayServer(cfg, rcfg, self.authenticate, on_local=self.on_local, transport=self.transport)
        if self.billing is not None:
            self.billing.attach(self.server.core)
        unsubscribe = d.subscribe(self.on_directory_change)
        loop = asyncio.get_running_loop()
        tasks = []
        try:
            await self.server.start()
            if s.metrics_port:
                self._start_metrics(s.metrics_port)
            tasks = [loop.create_task(self.ds.run()), loop.create_task(self._sweeper())]
            if self.billing is not None:
                tasks.append(loop.create_task(self._biller()))
            log.info("relay %s listening on %s", self.identity.public_key.hex()[:16], s.listen)
            self.write_status()
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            unsubscribe()
            await self.server.close()
            self._account()
            if self.billing is not None:
                await self.billing.close()
            self.write_status(stopped=True)
            self.ds.close()

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            await self.sweep()
            self.write_status()

    async def _biller(self) -> None:
        from shadowmesh_client.relay.billing import SETTLE_SECONDS

        while True:
            await asyncio.sleep(SETTLE_SECONDS)
            self._account()
            await self.billing.settle({link.peer for link in self.server.links})

    def status(self) -> dict:
        return {"public_key": self.identity.public_key.hex(), "pid": os.getpid(), "started_at": self.started_at,
                "port": self._port(),
                "devices_connected": len(self.server.core) if self.server is not None else 0,
                "connected_devices": sorted({link.peer.hex() for link in self.server.links}) if self.server else [],
                "usage": self.usage_totals(), "drops": self.drops, "refused": self.refused,
                "disconnected": self.disconnected, "decoys_served": self.server.server.decoys_served if self.server else 0,
                "payments": self.billing.status() if self.billing is not None else None}

    def _port(self) -> int | None:
        try:
            return self.server.port if self.server is not None else None
        except (AssertionError, AttributeError, IndexError):
            return None

    def write_status(self, stopped: bool = False) -> None:
        if self.settings.status_file:
            write_status_file(self.settings.status_file, self.status(), stopped=stopped)

    def _start_metrics(self, port: int) -> None:
        from prometheus_client import start_http_server
        from prometheus_client.core import REGISTRY, CounterMetricFamily

        daemon = self

        class _Collector:
            def collect(self):
                c = CounterMetricFamily("shadowmesh_relay_device_bytes", "Bytes relayed per device",
                                        labels=["device", "direction"])
                for key, v in daemon.totals.items():
                    c.add_metric([key.hex(), "in"], v[0])
                    c.add_metric([key.hex(), "out"], v[2])
                yield c

        REGISTRY.register(_Collector())
        start_http_server(port)
