"""Settings of the ``up`` daemon (node) and their defaults, each with its unit and the reason for it.

Built by ``cli_mesh`` from the YAML config (``config.Config``: network, chain, key, ``listen``, ``endpoint``,
``relays``, ``tun``) plus command-line options for what the config file has no key for (TLS files,
status file). Pure data; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shadowmesh_client.transport import LinkLimits

# ---- implementation constants ------------------------------------------------------------------------
DEFAULT_MTU = 65_000
"""Bytes. Default TUN MTU. The tunnel rides TCP (WebSocket), so there is no path-MTU or fragmentation
reason to stay at 1,400: every TUN read/write, AEAD call and WebSocket message costs a roughly fixed
~10-20 µs in Python, and a 64 KiB packet amortises that over 46x more bytes than a 1,400-byte one (the
inner TCP then uses 64 KiB segments end to end). 65,000 leaves room under the IPv4 limit (65,535) for
the inner headers; a frame (80 B overhead) plus the relay envelope (33 B) stays below 66,560 B, the
transport's default message limit, so even a relay with default limits carries it."""

MAX_FRAME_BYTES = 256 * 1024
"""Bytes. Largest frame the node builds from one TUN burst (several packets per frame, one AEAD call and
one WebSocket message). Larger frames cut per-message overhead at MTU 1,400; 256 KiB keeps the worst-case
receive buffer per link (``max_queue`` x message) at 1 MiB."""

LINK_MAX_MESSAGE_BYTES = MAX_FRAME_BYTES + 1_024
"""Bytes. WebSocket message limit on node and relay links: a full frame plus the relay envelope."""

READ_BATCH = 128
"""Packets read from the TUN device per wake-up at most (bounds latency and memory per burst)."""

TICK_SECONDS = 0.5
"""Seconds between housekeeping rounds: session timers, trust sweep, path re-selection, status file."""

DIRECTORY_INTERVAL = 1.0
"""Seconds between directory sync rounds: a revocation is seen within about this plus one tick (<< 10 s)."""

PING_INTERVAL = 5.0
"""Seconds between WebSocket pings on node links: the RTT figure each path is judged by (Link.latency)."""

PING_TIMEOUT = 10.0
"""Seconds without a pong before a link is declared dead and the path fails over."""

BACKOFF_MAX = 8.0
"""Seconds: cap of the reconnect delay to peers and relays (from 0.25 s doubling, with jitter)."""

RELAY_RTT_PENALTY = 0.002
"""Seconds added to a relayed path's estimated RTT (2 x link RTT to the relay): the direct path wins ties."""


def node_link_limits() -> LinkLimits:
    return LinkLimits(max_message_bytes=LINK_MAX_MESSAGE_BYTES, ping_interval=PING_INTERVAL,
                      ping_timeout=PING_TIMEOUT, write_limit=1 << 20)


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
