"""``shadowmesh-client relay --workers N``: N relay processes on one host sharing one port (SO_REUSEPORT).

Issue 13 "Cluster": one Python process tops out near one core of handshakes; the kernel spreads new
connections over N listening sockets bound with SO_REUSEPORT, one per worker process, and the workers form
a cluster mesh over loopback (relay/cluster/mesh.py: worker i listens on ``--cluster-listen`` port + i) so
two devices on different workers still reach each other in one hop.

* ``supervise(n)`` (the parent): holds the state directory's ``relay`` lock, starts worker ``i`` as the
  same command line with ``SHADOWMESH_RELAY_WORKER=i/n`` in its environment, restarts a worker that dies
  (after ``RESTART_SECONDS``: its devices reconnect meanwhile, to the other workers), and on SIGINT/SIGTERM
  passes SIGTERM on and waits for every worker (each stops cleanly: relay/daemon.py).
* ``worker_env()`` (a worker): ``(i, n)`` or None; ``reuse_port_policy()`` makes every server of the
  worker's loop (uvloop's or asyncio's, daemon_common.event_loop_factory) bind with SO_REUSEPORT.
* ``worker_state_dir``: each worker keeps its own handshake floors (relay/floors.py compacts its file at
  start-up: one writer per file) in ``<state_dir>/worker-<i>``, with the decoy site stamp of the main
  state dir copied (every worker serves byte-identical decoy pages).

May import: the standard library, transport.config (site stamp).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shadowmesh_client.transport.config import SITE_STAMP_FILE, site_mtime_for

log = logging.getLogger(__name__)

WORKER_ENV = "SHADOWMESH_RELAY_WORKER"
RESTART_SECONDS = 1.0
"""Seconds before a worker that died is started again."""
GIVE_UP_FAILURES, GIVE_UP_SECONDS = 6, 30.0
"""The supervisor gives up (exit 1) when workers exit this many times within this many seconds (a
configuration error every restart would repeat)."""
STOP_SECONDS = 15.0
"""Seconds workers get to stop cleanly after SIGTERM before they are killed."""


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def worker_env() -> tuple[int, int] | None:
    value = os.environ.get(WORKER_ENV)
    if not value:
        return None
    index, _, total = value.partition("/")
    return int(index), int(total)


def reuse_port_policy() -> None:
    """Every event loop of this process binds its servers with SO_REUSEPORT (call before the daemon runs)."""
    from shadowmesh_client.daemon_common import bind_with_reuse_port

    bind_with_reuse_port()


def worker_state_dir(state_dir: Path, index: int) -> Path:
    path = Path(state_dir) / f"worker-{index}"
    path.mkdir(parents=True, exist_ok=True)
    stamp = site_mtime_for(state_dir)
    if stamp is not None:
        own = path / SITE_STAMP_FILE
        own.touch(exist_ok=True)
        os.utime(own, (stamp, stamp))
    return path


def supervise(n: int, argv: list[str] | None = None) -> int:
    """Run ``n`` workers of this command until SIGINT/SIGTERM; returns the exit status."""
    argv = list(sys.argv if argv is None else argv)
    command = [sys.executable, "-c", "import sys; from shadowmesh_client.cli import main; sys.argv[0] = "
               "'shadowmesh-client'; main()", *argv[1:]]
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[int, subprocess.Popen] = {}
    died_at: dict[int, float] = {}
    failures: list[float] = []

    def start(i: int) -> None:
        procs[i] = subprocess.Popen(command, env={**os.environ, WORKER_ENV: f"{i}/{n}"})
        log.info("relay worker %d/%d started (pid %d)", i, n, procs[i].pid)

    try:
        for i in range(n):
            start(i)
        while not stopping:
            time.sleep(0.2)
            for i, proc in list(procs.items()):
                code = proc.poll()
                if code is None or stopping:
                    continue
                if i not in died_at:
                    failures.append(time.monotonic())
                    if len([t for t in failures if t > time.monotonic() - GIVE_UP_SECONDS]) >= GIVE_UP_FAILURES:
                        log.error("relay workers keep exiting (%d times in %.0f s): stopping; see their errors above",
                                  GIVE_UP_FAILURES, GIVE_UP_SECONDS)
                        return 1
                    log.warning("relay worker %d (pid %d) exited with %s: restarting in %.0f s", i, proc.pid, code,
                                RESTART_SECONDS)
                    died_at[i] = time.monotonic()
                elif time.monotonic() - died_at[i] >= RESTART_SECONDS:
                    del died_at[i]
                    start(i)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 0
