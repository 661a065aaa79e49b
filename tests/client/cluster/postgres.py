"""A throwaway PostgreSQL cluster for tests: Debian's postgresql package, initdb in a temp dir, started on a
free port (127.0.0.1, trust auth), stopped and removed afterwards. Root runs the server as the
``postgres`` user (PostgreSQL refuses to run as root). Skips when the package is not installed."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """A running throwaway server: ``url``; ``crash_restart()`` stops it as a crash would (``-m immediate``:
    no checkpoint, only the WAL survives) and starts it again on the same port."""

    def __init__(self, bindir: Path, base: Path, port: int, prefix: list[str]) -> None:
        self.bindir, self.base, self.port, self.prefix = bindir, base, port, prefix
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), *args], check=True,
                       capture_output=True)

    def start(self) -> None:
        self.pg_ctl("-l", str(self.base / "log"), "-w", "-o",
                    f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1", "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "-w", "stop")

    def crash_restart(self) -> None:
        self.stop("immediate")
        self.start()


@contextmanager
def throwaway_postgres(wrap: list[str] | None = None):
    """Yields a running PgServer (``.url``: a ``postgresql://`` URL) with an empty database. ``wrap``: a
    command prefix for the server (e.g. ``ip netns exec NS``: it then listens on that namespace's loopback)."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian package `postgresql`: make debs)")
    root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="sm-pg-"))
    data = base / "data"
    prefix: list[str] = list(wrap or [])
    if root:
        shutil.chown(base, "postgres")
        os.chmod(base, 0o700)
        prefix += ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                        "--no-sync"], check=True, capture_output=True)
        server = PgServer(bindir, base, port, prefix)
        server.start()
        try:
            yield server
        finally:
            try:
                server.stop("immediate")
            except subprocess.CalledProcessError:
                pass
    finally:
        shutil.rmtree(base, ignore_errors=True)
