"""What the two daemons (`up`: node/, `relay`: relay/) share: the first directory sync, the link limits
both ends of a link must agree on, the status file, logging set-up, signal handling and the Prometheus
metrics server.

May import: directory, transport.config, errors, observability, prometheus_client. Imports nothing of node/ or relay/.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from shadowmesh_client.errors import ChainError
from shadowmesh_client.transport.config import LinkLimits

log = logging.getLogger(__name__)

# ---- link limits: the same on node and relay links -------------------------------------------------
MAX_FRAME_BYTES = 256 * 1024
"""Bytes. Largest frame the node builds from one TUN burst (several packets per frame, one AEAD call and
one WebSocket message). Larger frames cut per-message overhead at MTU 1,400; 256 KiB keeps the worst-case
receive buffer per link (``max_queue`` x message) at 1 MiB."""

LINK_MAX_MESSAGE_BYTES = MAX_FRAME_BYTES + 1_024
"""Bytes. WebSocket message limit on node and relay links: a full frame plus the relay envelope."""

PING_INTERVAL = 5.0
"""Seconds between WebSocket pings on node links: the RTT figure each path is judged by (Link.latency)."""

PING_TIMEOUT = 10.0
"""Seconds without a pong before a link is declared dead and the path fails over."""

LINK_WRITE_LIMIT = 1 << 20
"""Bytes. Write-buffer high-water mark per link: above it ``send_nowait`` refuses and ``send`` waits."""


def node_link_limits() -> LinkLimits:
    """The limits of every node link (to peers and to relays)."""
    return LinkLimits(max_message_bytes=LINK_MAX_MESSAGE_BYTES, ping_interval=PING_INTERVAL,
                      ping_timeout=PING_TIMEOUT, write_limit=LINK_WRITE_LIMIT)


# ---- first sync ---------------------------------------------------------------------------------------
async def first_sync(ds: Any, *, max_delay: float = 8.0) -> None:
    """One successful sync round of ``ds`` (a directory.DirectorySource). With stored state a failure is
    only a warning (the daemon starts on what it has and keeps retrying); without, retry with backoff."""
    delay = 0.25
    while True:
        try:
            await ds.sync_once()
            return
        except ChainError as exc:
            if ds.has_state:
                log.warning("chain unreachable, starting from the stored directory: %s", exc)
                return
            log.warning("chain unreachable and no stored directory yet; retrying in %.1f s: %s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


# ---- status file --------------------------------------------------------------------------------------
def write_status_file(path: str | os.PathLike[str] | None, status: dict[str, Any], *, stopped: bool = False) -> None:
    """Replace ``path`` with ``status`` plus ``stopped`` and ``written_at`` (Unix seconds); no-op without a
    path. Written atomically (temporary file, then rename), so a reader never sees half a file."""
    if not path:
        return
    data = {**status, "stopped": stopped, "written_at": time.time()}
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, default=str)
    os.replace(tmp, path)


# ---- logging and signals ------------------------------------------------------------------------------
def setup_logging(level: str, fmt: str = "text", secrets: Iterable[str] = ()) -> Any:
    """Daemon logging to stderr at ``level`` (DEBUG, INFO, ...) as ``fmt`` (``text`` or ``json``: one
    object per line, spec levels; observability/logs.py), every string of ``secrets`` (secret path, key
    material) redacted; websockets' own chatter at WARNING. Returns the Redactor (``add`` more secrets)."""
    from shadowmesh_client.observability.logs import configure

    redactor = configure(level, fmt, secrets)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("shadowmesh_client.transport.websockets").setLevel(logging.WARNING)
    return redactor


def run_until_signalled(daemon_run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """``asyncio.run`` the daemon; SIGINT and SIGTERM set its ``stop`` event (clean shutdown)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await daemon_run(stop)

    asyncio.run(main())


# ---- metrics ------------------------------------------------------------------------------------------
def start_metrics_server(port: int, collector: Any, host: str = "127.0.0.1", *, published: Any = None,
                         extra: Iterable[Any] = ()) -> Any:
    """Serve ``collector`` (+ ``extra`` collectors and the process collector: CPU, memory) on ``host:port``
    from an HTTP thread of its own, in a registry of its own (not the process-global REGISTRY), with
    ``/healthz`` and ``/livez`` answered from ``published`` (an observability.snapshot.Published; see
    observability/http.py). The collectors run on that thread: they must read only immutable snapshots
    the loop publishes. Returns the server (``shutdown()`` then ``server_close()`` it on exit)."""
    from shadowmesh_client.observability.http import serve

    return serve(host, port, [collector, *extra], published)
