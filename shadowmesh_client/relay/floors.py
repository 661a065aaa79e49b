"""Persisted handshake floors: ``<state_dir>/handshake-floors.bin``, so a restarted daemon refuses replays.

Issue 12 "Replay protection that survives restarts". ``open_floors(state_dir, now)`` returns a
``protocol.floors.HandshakeFloors`` loaded from the file (entries the freshness window covers are pruned)
whose ``on_raise`` appends one record per accepted handshake BEFORE the Session builds its response:

    record = sender Ed25519 key (32 bytes) || timestamp (uint64 big-endian, nanoseconds)   40 bytes

Appends go through ``os.write`` on an ``O_APPEND`` descriptor: one system call, no fsync (a killed or
crashed process loses nothing already written; a power loss may lose the last records, and the freshness
window still bounds what a replay can do then). The file is compacted at start-up (rewritten with one
record per live key, atomically by rename). Used by both daemons (the relay door, the node's peers), which
is why it lives here next to the door. ``state_dir=None``: floors in memory only (the window still
applies). One event loop; the descriptor is closed by ``close()``.

May import: protocol.floors.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from shadowmesh_client.protocol.floors import HANDSHAKE_WINDOW_SECONDS, HandshakeFloors

FLOORS_FILE = "handshake-floors.bin"
_RECORD = struct.Struct(">32sQ")


class FloorFile:
    """The append-only file behind a HandshakeFloors (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.written = 0

    def read(self) -> list[tuple[bytes, int]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        n = len(data) - len(data) % _RECORD.size   # a torn last record is ignored
        return [_RECORD.unpack_from(data, i) for i in range(0, n, _RECORD.size)]

    def rewrite(self, items: list[tuple[bytes, int]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(_RECORD.pack(k, ts) for k, ts in items))
        os.replace(tmp, self.path)

    def append(self, key: bytes, timestamp: int) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(self._fd, _RECORD.pack(key, timestamp))
        self.written += 1

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def open_floors(state_dir: str | os.PathLike | None, now: float,
                window_seconds: float = HANDSHAKE_WINDOW_SECONDS) -> tuple[HandshakeFloors, FloorFile | None]:
    """The daemon's floors (loaded and compacted) and the file behind them (None without a state dir)."""
    if state_dir is None:
        return HandshakeFloors(window_seconds), None
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    file = FloorFile(Path(state_dir) / FLOORS_FILE)
    floors = HandshakeFloors(window_seconds, on_raise=file.append)
    floors.load(file.read())
    floors.prune(now)
    file.rewrite(floors.items())
    return floors, file
