"""What the two daemons (`up`: node/, `relay`: relay/) share: the first directory sync, the link limits
both ends of a link must agree on, the listen address (from the published endpoint), the one-daemon-per-
state-directory lock, the status file, logging set-up, the event loop, signal handling and the Prometheus
metrics server.

May import: directory, transport.config, errors, observability, prometheus_client, uvloop. Imports nothing of
node/ or relay/.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shadowmesh_client.errors import ChainError, ConfigError
from shadowmesh_client.transport.config import LinkLimits, ServerConfig, site_mtime_for

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

IDLE_PING_INTERVAL = 60.0
"""Seconds between pings on a peer link that carried no message for two pings (``Link.ping_when_idle``):
at thousands of live sessions the 5 s pings were most of a node's idle CPU (bench peers-netns). Links to
relays keep PING_INTERVAL (their pings find a renumbered NAT and pick relay paths)."""

LINK_WRITE_LIMIT = 1 << 20
"""Bytes. Write-buffer high-water mark per link: above it ``send_nowait`` refuses and ``send`` waits."""


def node_link_limits() -> LinkLimits:
    """The limits of every node link (to peers and to relays)."""
    return LinkLimits(max_message_bytes=LINK_MAX_MESSAGE_BYTES, ping_interval=PING_INTERVAL,
                      ping_timeout=PING_TIMEOUT, write_limit=LINK_WRITE_LIMIT, idle_ping_interval=IDLE_PING_INTERVAL)


# ---- listen address -----------------------------------------------------------------------------------
def endpoint_port(endpoint: str) -> int:
    """The TCP port peers dial for ``endpoint`` (ws:// or wss:// URL): its explicit port, else 443 for
    wss:// and 80 for ws://."""
    parts = urlsplit(endpoint)
    return parts.port or (443 if parts.scheme == "wss" else 80)


def listen_address(listen: str | None, endpoint: str | None, role: str = "up") -> str | None:
    """HOST:PORT the daemon's listener binds. ``listen`` (set with --listen or `listen:`) wins; else
    ``0.0.0.0:<the published endpoint's port>``; None with neither (no listener). When ``listen`` is set and
    its port is not the endpoint's, logs a WARNING naming both: peers dial the endpoint, so unless a proxy
    or port forward joins the two they see only `dial failed` (issue 11 trap 1)."""
    if not endpoint:
        return listen
    port = endpoint_port(endpoint)
    if listen is None:
        return f"0.0.0.0:{port}"
    listen_port = int(listen.rpartition(":")[2])
    if listen_port != port:
        log.warning("%s listens on %s but peers dial port %d of the published endpoint %s: unless a proxy or "
                    "port forward sends %d to %d, peers will fail to connect; drop `listen:`/--listen to listen "
                    "on 0.0.0.0:%d, or publish the right port with `set-endpoint`", role, listen, port,
                    urlsplit(endpoint)._replace(path="/…").geturl(), port, listen_port, port)
    return listen


# ---- one daemon per state directory --------------------------------------------------------------------
LOCK_FILE = "daemon.lock"
"""In the state directory: flock()ed by the running `up` or `relay`, holding "<pid> <role>"."""


def listener_config(address: str, endpoint: str | None, *, path: str | None, tls_cert: str | None,
                    tls_key: str | None, limits: LinkLimits, state_dir: str | os.PathLike[str] | None) -> ServerConfig:
    """The listener of either daemon: ``address`` ("HOST:PORT"), the secret path from the settings or else
    the published endpoint's path, TLS files, link limits, and the decoy's per-installation validators."""
    host, _, port = address.rpartition(":")
    return ServerConfig(host=host, port=int(port), path=path or urlsplit(endpoint or "").path or "/",
                        tls_cert=tls_cert, tls_key=tls_key, limits=limits, site_mtime=site_mtime_for(state_dir))


@contextlib.contextmanager
def state_lock(state_dir: str | os.PathLike[str], role: str) -> Iterator[Path]:
    """Hold ``<state_dir>/daemon.lock`` (an exclusive ``flock``) for the ``with`` block, or raise
    ConfigError naming the daemon that holds it. The kernel drops the lock when the process ends, however
    it ends, so a crash leaves nothing stale; the file itself stays (removing it would race a starter)."""
    path = Path(state_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            who = f"`{holder[1]}` (pid {holder[0]})" if len(holder) >= 2 else "another daemon"
            raise ConfigError(f"{who} is already running on the state directory {path.parent}: stop it first, "
                              "or give this daemon its own `state_dir:` (and config)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {role}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)   # releases the flock


# ---- first sync ---------------------------------------------------------------------------------------
_STOP: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar("shadowmesh_stop", default=None)
"""The stop event of ``run_until_signalled``, so that ``first_sync`` (which may wait for the chain for
ever) gives up on Ctrl-C/SIGTERM: a daemon only looks at its stop event once it has started."""


class StartInterrupted(Exception):
    """SIGINT/SIGTERM arrived while the daemon waited for its first directory sync."""


async def first_sync(ds: Any, *, max_delay: float = 8.0) -> None:
    """One successful sync round of ``ds`` (a directory.DirectorySource). With stored state a failure is
    only a warning (the daemon starts on what it has and keeps retrying); without, retry with backoff.
    Under ``run_until_signalled`` a signal ends the wait: StartInterrupted (the CLI exits 130)."""
    stop = _STOP.get()
    if stop is None:
        return await _first_sync(ds, max_delay)
    sync = asyncio.ensure_future(_first_sync(ds, max_delay))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((sync, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:   # both awaited before leaving, whatever happened
        for task in (sync, stopped):
            task.cancel()
        await asyncio.gather(sync, stopped, return_exceptions=True)
    if sync.done() and not sync.cancelled():
        return sync.result()
    raise StartInterrupted("interrupted while waiting for the chain")


async def _first_sync(ds: Any, max_delay: float) -> None:
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


# ---- event loop ---------------------------------------------------------------------------------------
EVENT_LOOP_ENV = "SHADOWMESH_EVENT_LOOP"
"""Environment variable choosing the daemons' event loop: ``uvloop`` (the default) or ``asyncio``."""

EVENT_LOOPS = ("uvloop", "asyncio")
"""Its valid values, the default first. uvloop against asyncio's loop, bench/latency.py (12 alternating pairs
on the mesh lab, paired medians): ping RTT p50 -0.034 ms direct (0.346 -> 0.306 ms, lower in 11 of 12 pairs)
and -0.056 ms relayed (10 of 12); CPU per packet -12 us on A, -11 us on B, -16 us on the relay (about -13 to
-20 %, 11 of 12 pairs each); p99 within noise (8 of 12 lower)."""


def event_loop_choice() -> str:
    """``uvloop`` or ``asyncio`` from ``SHADOWMESH_EVENT_LOOP`` (unset or empty: the default); anything else
    is a ConfigError naming the valid values."""
    value = os.environ.get(EVENT_LOOP_ENV, "").strip().lower() or EVENT_LOOPS[0]
    if value not in EVENT_LOOPS:
        raise ConfigError(f"{EVENT_LOOP_ENV}={os.environ.get(EVENT_LOOP_ENV)!r} is not an event loop: use "
                          f"{EVENT_LOOP_ENV}=uvloop (the default) or {EVENT_LOOP_ENV}=asyncio")
    return value


_reuse_port = False   # set once at start-up by relay workers (bind_with_reuse_port), before any loop exists


def bind_with_reuse_port() -> None:
    """Every daemon loop this process makes from now on binds its servers with SO_REUSEPORT (relay workers,
    relay/cluster/workers.py: N processes accept on one port). Call before ``run_until_signalled``."""
    global _reuse_port
    _reuse_port = True


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """What ``run_until_signalled`` makes its loop with: uvloop's (a ``uvloop.Loop`` subclass, see
    ``_precise_uvloop``), or asyncio's with ``SHADOWMESH_EVENT_LOOP=asyncio`` or when uvloop cannot be
    imported (logged at INFO); either binding with SO_REUSEPORT after ``bind_with_reuse_port``. Only the
    daemon's own loop: no ``uvloop.install()`` (pyroute2 makes asyncio loops of its own for netlink: those
    stay asyncio's)."""
    base: type = asyncio.SelectorEventLoop
    if event_loop_choice() == "uvloop":
        try:
            base = _precise_uvloop()
        except ImportError as exc:
            log.info("event loop: asyncio's (uvloop not available: %s)", exc)
    if not _reuse_port:
        return base

    class ReusePortLoop(base):
        async def create_server(self, *args: Any, **kwargs: Any):
            kwargs.setdefault("reuse_port", True)
            return await super().create_server(*args, **kwargs)

    return ReusePortLoop


def _precise_uvloop() -> type:
    """A ``uvloop.Loop`` whose ``time()`` is ``time.monotonic()``, as asyncio's. uvloop's own clock is libuv's
    loop time in whole milliseconds, and websockets times its heartbeat with ``loop.time()``: every sub-ms
    link RTT (``Link.latency``, which path and relay choice compare; 0.0 means "no pong yet" to
    node/peers.py's RttFloor) read 0.0. Timers are unaffected: ``call_at`` converts to a delay from
    ``time()``, and libuv's timers count on the same CLOCK_MONOTONIC (at millisecond resolution)."""
    import uvloop

    class Loop(uvloop.Loop):
        def time(self) -> float:
            return time.monotonic()

    return Loop


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
    """Run the daemon on the event loop of ``event_loop_factory`` (uvloop unless ``SHADOWMESH_EVENT_LOOP=
    asyncio``), as ``asyncio.run`` does; SIGINT and SIGTERM set its ``stop`` event (clean shutdown). A signal
    during the first directory sync raises KeyboardInterrupt once the daemon has released what it holds."""

    async def main() -> None:
        stop = asyncio.Event()
        _STOP.set(stop)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await daemon_run(stop)

    factory = event_loop_factory()
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    except StartInterrupted:
        raise KeyboardInterrupt from None   # the CLI's "interrupted", exit 130


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
