"""One daemon per state directory (issue 11 trap 3: two `up`s on one config made the links flap and
overwrote each other's status file; two relays shared one receipts.sqlite). Real processes: the first
`up` holds <state_dir>/daemon.lock while it waits for a chain that is not there; a second `up`, and a
`relay`, on the same state directory fail with one line naming its pid; after the first one is killed
(SIGKILL: a crash) the lock is free again, and SIGTERM while waiting for the chain exits 130 at once."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab.chain import PROJECT_ROOT, free_port
from tests.client.cli.helpers import env, one_error_line, run


def _config(tmp: Path) -> Path:
    cfg = tmp / "config.yaml"
    cfg.write_text(f"rpc_url: http://127.0.0.1:{free_port()}\nchain_id: 31337\n"   # nobody answers there
                   'registry: "0x2222222222222222222222222222222222222222"\nnetwork_id: 1\n'
                   "keystore_backend: file\nendpoint: ws://127.0.0.1:7000/ws\n")
    assert run("init", config=cfg).returncode == 0          # the device key
    return cfg


def _start_up(cfg: Path, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "shadowmesh_client.cli", "--config", str(cfg), "up", "--api", "off"]
    with log.open("w") as err:
        return subprocess.Popen(argv, env=env(), cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)


def _wait_for_line(log: Path, words: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while words not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)


def _holder(lock: Path, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until ``proc`` wrote its pid into the lock file (it holds the lock from then on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.returncode
        if lock.exists() and lock.read_text().split()[:1] == [str(proc.pid)]:
            return
        time.sleep(0.1)
    raise AssertionError(f"pid {proc.pid} never took {lock}")


def _is_locked(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_second_daemon_on_the_same_state_directory_is_refused_and_a_crash_leaves_nothing(tmp_path):
    cfg = _config(tmp_path)
    lock = tmp_path / "state" / "daemon.lock"
    procs: list[subprocess.Popen] = []
    try:
        first = _start_up(cfg, tmp_path / "first.log")
        procs.append(first)
        _holder(lock, first)
        for command in ("up", "relay"):
            line = one_error_line(run(command, "--api", "off", config=cfg, timeout=60))
            assert f"`up` (pid {first.pid}) is already running on the state directory {lock.parent}" in line, line
        assert first.poll() is None and lock.read_text().split() == [str(first.pid), "up"]   # untouched

        first.kill()                                            # a crash: no clean-up code runs
        first.wait(10)
        assert not _is_locked(lock)                             # the kernel dropped the lock with the process
        second = _start_up(cfg, tmp_path / "second.log")
        procs.append(second)
        _holder(lock, second)                                   # the stale pid in the file did not matter
        assert _is_locked(lock)

        _wait_for_line(tmp_path / "second.log", "chain unreachable and no stored directory yet")
        second.send_signal(signal.SIGTERM)                      # stop while it waits for the chain
        assert second.wait(15) == 130
        assert (tmp_path / "second.log").read_text().strip().splitlines()[-1] == "interrupted"
        assert not _is_locked(lock)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
