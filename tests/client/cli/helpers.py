"""Run the real `shadowmesh-client` in its own process, and a TCP server that accepts and never answers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from lab.chain import PROJECT_ROOT

PASSPHRASE = "device-passphrase"
PASSWORD = "owner-password"


def env(**extra: str) -> dict:
    e = dict(os.environ, SHADOWMESH_PASSPHRASE=PASSPHRASE, SHADOWMESH_OWNER_PASSWORD=PASSWORD,
             PYTHONPATH=str(PROJECT_ROOT))
    e.pop("SHADOWMESH_TIMEOUT", None)
    e.update(extra)
    return e


def run(*args: str, config: Path | None = None, timeout: float = 120, **env_extra: str) -> subprocess.CompletedProcess:
    """`shadowmesh-client [--config CONFIG] ARGS...` as a subprocess (stdin closed: no prompts)."""
    argv = [sys.executable, "-m", "shadowmesh_client.cli"] + (["--config", str(config)] if config else []) + list(args)
    return subprocess.run(argv, capture_output=True, text=True, env=env(**env_extra), cwd=PROJECT_ROOT,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def one_error_line(p: subprocess.CompletedProcess, code: int = 1) -> str:
    """Assert the process failed with ``code`` and exactly one ``error:`` line on stderr; return it."""
    lines = p.stderr.strip().splitlines()
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr[-4000:])
    assert "Traceback" not in p.stderr, p.stderr[-4000:]
    assert "Traceback" not in p.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], p.stderr
    return errors[0]


@contextlib.contextmanager
def silent_server(accepted: threading.Event | None = None) -> Iterator[str]:
    """http://127.0.0.1:PORT of a TCP server that accepts connections and never answers; ``accepted`` is set
    once it has accepted one (a client is then waiting for its answer)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(srv.accept()[0])
                if accepted is not None:
                    accepted.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for s in held:
            s.close()
        srv.close()
