"""SQLite persistence of the directory: the network's events, recent block hashes, and the sync point.

A thin wrapper: the directory state is never stored, only the events it is a fold of (plus each
registration's proof verification result, so a restart does not re-verify 100,000 signatures). On start
the syncer replays the stored events into a fresh :class:`~shadowmesh_client.directory.core.Directory`
and then fetches only blocks after ``synced_block``.

Schema (version 1):
  meta(key, value)                      chain_id, registry, network_id, synced_block, schema
  events(block, log_index, kind, block_hash, payload, proof_ok)   payload = JSON of the event's fields
  blocks(number, hash)                  hashes of recently synced blocks, for reorg detection

One store file belongs to one (chain id, registry, network id): opening it for another raises
:class:`StoreMismatch` (the caller then starts a new file or wipes it).

Not thread-safe: one connection, used only by the thread that opened it (with ``DirectorySyncer``, the
event loop's thread: see syncer.py "Threads"). SQLite enforces it (``check_same_thread=True``): a call
from any other thread raises ``sqlite3.ProgrammingError``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from shadowmesh_client.directory import events as ev
from shadowmesh_client.errors import ShadowMeshError

SCHEMA_VERSION = 1
KEEP_BLOCK_HASHES = 512  # most recent block hashes kept for finding a reorg's fork point

_CLASSES = {
    cls.__name__: cls
    for cls in (
        ev.NetworkCreated,
        ev.NetworkAdminTransferred,
        ev.DeviceRegistered,
        ev.DeviceRevoked,
        ev.DeviceRenewed,
        ev.DeviceApproved,
        ev.DeviceSuspended,
        ev.DeviceEndpointUpdated,
    )
}
_BASE = {f.name for f in dataclasses.fields(ev.Event)}
_FIELDS = {
    name: [(f.name, f.type == "bytes") for f in dataclasses.fields(cls) if f.name not in _BASE]
    for name, cls in _CLASSES.items()
}


class StoreMismatch(ShadowMeshError, ValueError):
    """The store file belongs to another chain, registry or network."""


def _payload(e: ev.Event) -> str:
    return json.dumps([getattr(e, n).hex() if b else getattr(e, n) for n, b in _FIELDS[type(e).__name__]])


def _event(kind: str, block: int, log_index: int, block_hash: bytes, payload: str) -> ev.Event:
    values = json.loads(payload)
    kw: dict[str, Any] = {n: bytes.fromhex(v) if b else v for (n, b), v in zip(_FIELDS[kind], values, strict=True)}
    return _CLASSES[kind](block, log_index, block_hash, b"", **kw)


class DirectoryStore:
    """The SQLite file at ``path`` for one (chain_id, registry, network_id)."""

    def __init__(self, path: str | os.PathLike, chain_id: int, registry: str, network_id: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=True)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS events(
                block INTEGER NOT NULL, log_index INTEGER NOT NULL, kind TEXT NOT NULL,
                block_hash BLOB NOT NULL, payload TEXT NOT NULL, proof_ok INTEGER,
                PRIMARY KEY(block, log_index));
            CREATE TABLE IF NOT EXISTS blocks(number INTEGER PRIMARY KEY, hash BLOB NOT NULL);
            """
        )
        identity = {"chain_id": str(chain_id), "registry": registry.lower(), "network_id": str(network_id),
                    "schema": str(SCHEMA_VERSION)}
        stored = dict(self._db.execute("SELECT key, value FROM meta WHERE key IN (?,?,?,?)", tuple(identity)))
        if stored and any(stored.get(k) != v for k, v in identity.items()):
            self._db.close()
            raise StoreMismatch(
                f"directory state {self.path} belongs to chain {stored.get('chain_id')}, registry "
                f"{stored.get('registry')}, network {stored.get('network_id')}; delete it or choose another state_dir"
            )
        if not stored:
            self._db.executemany("INSERT INTO meta VALUES (?,?)", identity.items())

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ reads

    @property
    def synced_block(self) -> int | None:
        row = self._db.execute("SELECT value FROM meta WHERE key='synced_block'").fetchone()
        return int(row[0]) if row else None

    @property
    def last_success(self) -> float | None:
        """Unix time of the last sync round that reached its target block (for staleness across restarts)."""
        row = self._db.execute("SELECT value FROM meta WHERE key='last_success'").fetchone()
        return float(row[0]) if row else None

    def mark_success(self, when: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_success', ?)", (repr(when),))

    def block_hash(self, number: int) -> bytes | None:
        row = self._db.execute("SELECT hash FROM blocks WHERE number=?", (number,)).fetchone()
        return bytes(row[0]) if row else None

    def recent_blocks(self) -> list[tuple[int, bytes]]:
        """Stored (number, hash) pairs, newest first."""
        return [(n, bytes(h)) for n, h in self._db.execute("SELECT number, hash FROM blocks ORDER BY number DESC")]

    def events(self) -> Iterator[ev.Event]:
        for kind, block, index, bhash, payload in self._db.execute(
            "SELECT kind, block, log_index, block_hash, payload FROM events ORDER BY block, log_index"
        ):
            yield _event(kind, block, index, bytes(bhash), payload)

    def proof_results(self) -> dict[bytes, bool]:
        out = {}
        for payload, ok in self._db.execute(
            "SELECT payload, proof_ok FROM events WHERE kind='DeviceRegistered' AND proof_ok IS NOT NULL"
        ):
            out[bytes.fromhex(json.loads(payload)[0])] = bool(ok)
        return out

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    # ------------------------------------------------------------------ writes (each one transaction)

    def commit_range(self, events: Iterable[tuple[ev.Event, bool | None]], block_hashes: dict[int, bytes],
                     synced_block: int) -> None:
        """Atomically add events (with proof results), block hashes, and move the sync point."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?)",
                (
                    (e.block_number, e.log_index, type(e).__name__, e.block_hash, _payload(e),
                     None if ok is None else int(ok))
                    for e, ok in events
                ),
            )
            db.executemany("INSERT OR REPLACE INTO blocks VALUES (?,?)", block_hashes.items())
            db.execute(
                "DELETE FROM blocks WHERE number NOT IN (SELECT number FROM blocks ORDER BY number DESC LIMIT ?)",
                (KEEP_BLOCK_HASHES,),
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('synced_block', ?)", (str(synced_block),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def rollback_to(self, block: int | None) -> None:
        """Forget everything after ``block`` (None: everything) — the reorg's fork point."""
        db = self._db
        db.execute("BEGIN")
        try:
            if block is None:
                db.execute("DELETE FROM events")
                db.execute("DELETE FROM blocks")
                db.execute("DELETE FROM meta WHERE key='synced_block'")
            else:
                db.execute("DELETE FROM events WHERE block > ?", (block,))
                db.execute("DELETE FROM blocks WHERE number > ?", (block,))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('synced_block', ?)", (str(block),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
