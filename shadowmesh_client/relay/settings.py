"""The relay daemon's settings and tuning constants, each with its unit, in one place.

Owns: ``RelaySettings`` (what ``shadowmesh-client relay`` passes the daemon), the relay's tick lengths
(``SWEEP_SECONDS``, ``SETTLE_SECONDS``), its link limits (``relay_link_limits``) and the RelayCore
configuration built from the settings (``relay_core_config``), and the process's garbage-collector tuning
(``tune_gc``). The daemon and ``bench relay`` both build the relay from these, so the bench measures the
relay as it runs.

May import: relay (pure core), daemon_common (shared link limits). Nothing with I/O.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from shadowmesh_client.api.settings import ApiSettings
from shadowmesh_client.daemon_common import LINK_MAX_MESSAGE_BYTES, node_link_limits
from shadowmesh_client.relay.core import RelayConfig
from shadowmesh_client.relay.guard import GuardConfig
from shadowmesh_client.transport.config import LinkLimits

if TYPE_CHECKING:  # billing imports web3 (through rewards.onchain): only for the annotation
    from shadowmesh_client.relay.billing import BillingSettings
    from shadowmesh_client.relay.cluster.settings import ClusterSettings

# ---- tick lengths ---------------------------------------------------------------------------------------
SWEEP_SECONDS = 1.0
"""Seconds. Longest gap between two trust sweeps over connected devices (a directory change wakes the
sweeper at once) and between two usage-accounting rounds / status-file writes."""

SETTLE_SECONDS = 0.5
"""Seconds between usage writes + credit decisions (payments): a device that stops paying is cut off at
most this long (times its rate) after it passes its credit; also the most usage a crash loses."""

DIRECTORY_INTERVAL = 1.0
"""Seconds between directory sync rounds (the relay follows the chain like a node does)."""

# ---- links and queues -----------------------------------------------------------------------------------
RELAY_PING_INTERVAL = 20.0
"""Seconds between the relay's own WebSocket pings, and its pong timeout. Devices ping their relay link
every 5 s (node PING_INTERVAL: their RTT figure for path choice) and the relay answers those pongs; its
own pings only detect dead links, so they can be 4x rarer: at 10,000 idle links that halves the relay's
idle CPU (22 % -> 10 % of a core, ``bench relay``). A dead device link is dropped within 40 s; meanwhile
frames for it queue up to ``queue_max_bytes`` and are then dropped (counted)."""

QUEUE_MAX_BYTES = 4 * LINK_MAX_MESSAGE_BYTES
"""Bytes queued per destination device before further frames to it are dropped (counted ``queue_full``)."""

BURST_BYTES = max(1 << 20, 2 * LINK_MAX_MESSAGE_BYTES)
"""Bytes. Token-bucket depth of the per-device rate limit (at least two full messages)."""

# ---- process --------------------------------------------------------------------------------------------
GC_THRESHOLDS = (20_000, 50, 20)
"""CPython cyclic-GC thresholds for the relay process (tracked allocations before a young collection,
young collections per middle one, middle per full one). A relay holds thousands of long-lived links of
~100 tracked objects each; with the default (700, 10, 10) the full collections that walk all of them took
~300 us of the ~700 us of CPU per handshake at 10,000 idle links (``bench relay``). Garbage is still
collected, just in fewer, larger rounds."""


@dataclass(frozen=True)
class RelaySettings:
    listen: str | None = "0.0.0.0:443"   # HOST:PORT; None: 0.0.0.0:<published endpoint's port>
    path: str | None = None            # secret path; default: the path of the published endpoint
    tls_cert: str | None = None
    tls_key: str | None = None
    rate_bytes_per_second: float | None = None   # per device ingress limit (bytes/s); None = unlimited
    queue_max_bytes: int = QUEUE_MAX_BYTES       # per destination (bytes); excess dropped and counted
    status_file: str | None = None
    metrics_port: int | None = None
    directory_interval: float = DIRECTORY_INTERVAL   # seconds
    payments: BillingSettings | None = None  # None: no receipts, no gating
    state_dir: str | None = None                 # handshake floors (relay/floors.py); None: in memory only
    handshake_guard: GuardConfig | None = field(default_factory=GuardConfig)   # None: no flood guard
    messages_per_second: float | None = 10_000.0   # per device (messages); None: no limit (core.RelayConfig)
    accept_cleartext_control: bool = True        # serve old devices' bare payments messages (in the clear)
    api: ApiSettings | None = None               # local API + dashboard (api/); None: off (the CLI turns it on)
    cluster: ClusterSettings | None = None       # relay cluster member (relay/cluster/, issue 13); None: alone


def relay_link_limits() -> LinkLimits:
    """The node's link limits (message size, queues, write limit) with the relay's heartbeat."""
    return replace(node_link_limits(), ping_interval=RELAY_PING_INTERVAL, ping_timeout=RELAY_PING_INTERVAL,
                   idle_ping_interval=None)


def relay_core_config(settings: RelaySettings) -> RelayConfig:
    """The RelayCore configuration (rate limit, queue bound, burst) for ``settings``."""
    return RelayConfig(rate_bytes_per_second=settings.rate_bytes_per_second,
                       queue_max_bytes=settings.queue_max_bytes, burst_bytes=BURST_BYTES,
                       messages_per_second=settings.messages_per_second,
                       burst_messages=int(settings.messages_per_second or 1))


def tune_gc() -> None:
    """Move what start-up loaded (modules, the directory) out of the collector's reach (``gc.freeze``)
    and raise its thresholds (GC_THRESHOLDS). Called once by ``RelayDaemon.run`` after the first sync;
    process-wide, so only for a process that is the relay."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
