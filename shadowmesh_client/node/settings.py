"""Settings of the ``up`` daemon (node) and their defaults, each with its unit and the reason for it.

Built by ``cli/mesh.py`` from the YAML config (``config.Config``: network, chain, key, ``listen``, ``endpoint``,
``relays``, ``tun``) plus command-line options for what the config file has no key for (TLS files,
status file). Pure data; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shadowmesh_client.api.settings import ApiSettings
from shadowmesh_client.daemon_common import LINK_MAX_MESSAGE_BYTES, MAX_FRAME_BYTES, node_link_limits
from shadowmesh_client.relay.guard import GuardConfig
from shadowmesh_client.routing.settings import RoutingSettings
from shadowmesh_client.transport import LinkLimits
from shadowmesh_client.userspace.settings import StreamSettings

__all__ = ["LINK_MAX_MESSAGE_BYTES", "MAX_FRAME_BYTES", "node_link_limits"]  # re-exported (their home: daemon_common)

# ---- implementation constants ------------------------------------------------------------------------
DEFAULT_MTU = 65_000
"""Bytes. Default TUN MTU. The tunnel rides TCP (WebSocket), so there is no path-MTU or fragmentation
reason to stay at 1,400: every TUN read/write, AEAD call and WebSocket message costs a roughly fixed
~10-20 µs in Python, and a 64 KiB packet amortises that over 46x more bytes than a 1,400-byte one (the
inner TCP then uses 64 KiB segments end to end). 65,000 leaves room under the IPv4 limit (65,535) for
the inner headers; a frame (80 B overhead) plus the relay envelope (33 B) stays below 66,560 B, the
transport's default message limit, so even a relay with default limits carries it."""

READ_BATCH = 128
"""Packets read from the TUN device per wake-up at most (bounds latency and memory per burst)."""

PATH_SECONDS = 0.5
"""Seconds between housekeeping rounds: path re-selection by RTT and the trust sweep (a registration that
expires emits no event). Link changes re-select at once; this only tracks RTT drift and expiry."""

STATUS_SECONDS = 1.0
"""Seconds between status-file writes."""

TIMER_RESCAN_SECONDS = 1.0
"""Seconds: the longest the session-timer task (node/timers.py) sleeps without looking at every session.
It is woken at once by handshakes, rekeys and session events; the packet path moves a few timers without
waking it (keepalive 10 s after a receive, dead-peer check 15 s after a send, a crossed rekey threshold),
and this bounds how late those fire, without a wake-up per packet on the hot path."""

TIMER_MIN_GAP = 0.05
"""Seconds: a session whose timer is still due right after ``on_timer`` is looked at again after this, not
spun on (a guard; the protocol always moves its timer forward)."""

RECEIPT_TICK_SECONDS = 0.1
"""Seconds between folding the relay links' byte counters into the receipt issuers (node/payments.py)."""

DIRECTORY_INTERVAL = 1.0
"""Seconds between directory sync rounds: a revocation is seen within about this plus one tick (<< 10 s)."""

BACKOFF_MAX = 8.0
"""Seconds: cap of the reconnect delay to peers and relays (from 0.25 s doubling, with jitter)."""

BLOCK_AFTER_BAD_FRAMES = 64
"""Frames: a source whose last this-many frames through a relay were all rejected (wrong tag, replayed,
unknown) and none accepted is blocked at that relay (relay/control.py BLOCK), for BLOCK_SECONDS."""

BLOCK_SECONDS = 60
"""Seconds a BLOCK asks the relay to drop a garbage-only source's frames to us (then it may try again)."""

RELAY_RTT_PENALTY = 0.002
"""Seconds added to a relayed path's estimated RTT (2 x link RTT to the relay): the direct path wins ties."""


@dataclass(frozen=True)
class NodeSettings:
    """Everything ``Node`` needs besides the identity and the directory syncer."""

    tun_name: str = "sm0"
    mtu: int = DEFAULT_MTU
    listen: str | None = None            # "HOST:PORT" to accept peers on, or None (no endpoint)
    path: str | None = None              # secret WebSocket path (from the published endpoint)
    tls_cert: str | None = None          # PEM files for wss:// when listening
    tls_key: str | None = None
    ca_file: str | None = None           # PEM trust roots for dialing wss:// peers and relays
    relays: tuple[str, ...] = ()         # if set: only relays whose published endpoint is listed
    status_file: str | None = None       # JSON status written every tick (tests, demo, monitoring)
    limits: LinkLimits = field(default_factory=node_link_limits)
    backoff_max: float = BACKOFF_MAX
    directory_interval: float = DIRECTORY_INTERVAL
    state_dir: str | None = None         # handshake floors (relay/floors.py); None: in memory only
    handshake_guard: GuardConfig | None = field(default_factory=GuardConfig)   # accept hook; None: off
    api: ApiSettings | None = None       # local API + dashboard (api/); None: off (the CLI turns it on)
    routing: RoutingSettings | None = None   # issue 14 (routing/, dns/): names, IPv6, exit, subnets, QoS; None: off
    # ---- userspace mode and streams (issue 18, docs/userspace.md) ----
    userspace: bool = False              # no TUN device (userspace/sink.py): runs unprivileged, no pyroute2
    streams: StreamSettings = field(default_factory=StreamSettings)   # proxies, forwards, exposed ports
    # ---- discovery, NAT traversal, sessions on demand (issue 15, docs/discovery.md) ----
    on_demand: bool = False              # sessions/dialers on first packet or hello; idle ones dropped
    idle_timeout: float = 180.0          # seconds without packets before an on-demand session is dropped
    discovery: bool = False              # publish/refresh a signed endpoint record, NAT traversal (discovery/)
    punch_port: int = 0                  # local TCP port of relay links and hole punching; 0: chosen at start
    offload: bool = True                 # TUN send-side offload, TCP super-packets to peers that accept them (issue 17)
