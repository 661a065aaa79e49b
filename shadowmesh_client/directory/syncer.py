"""Keeping a :class:`Directory` in step with the chain: confirmations, reorgs, persistence, staleness.

docs/directory.md "Sync". One round (``Syncer.sync_once``):

1. ``head`` = latest block; the directory follows ``target = head - confirmations``.
2. Reorg check: the hash of the last synced block is compared with the chain's. If it differs (or the
   block is gone, e.g. after ``evm_revert``), the fork point is the newest stored block hash (up to
   ``store.KEEP_BLOCK_HASHES``) that still matches; the store forgets everything after it and the
   directory is rebuilt from the remaining stored events, notifying subscribers of the differences.
   If no stored hash matches, everything is re-synced from the registry's deploy block.
3. New logs from ``synced + 1`` to ``target`` are read in adaptive ranges (``reader.LogReader``), each
   range decoded, applied to the directory and committed to SQLite with the hash of its last block in one
   transaction, so a crash or a dead RPC mid-sync loses at most the range in flight.

The I/O (``steps()``: a generator whose every ``next()`` does network reads) is separate from the
mutation (``commit(step)``), so :class:`DirectorySyncer` can run the reads in a worker thread and the
mutations, subscriber callbacks included, on the asyncio event loop: the directory is only ever touched
from the loop thread, and query methods are safe to call from coroutines at any time.

When the RPC endpoint is down the directory keeps answering from the last synced state; ``status(now)``
says how many seconds ago the last successful round finished (``stale_seconds``) and what failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

from shadowmesh_client.directory import events as ev
from shadowmesh_client.directory.core import Change, Directory
from shadowmesh_client.directory.reader import JsonRpc, LogReader
from shadowmesh_client.directory.store import DirectoryStore
from shadowmesh_client.errors import ChainError

log = logging.getLogger(__name__)


@dataclass
class Rollback:
    fork_block: int | None  # keep blocks <= fork_block; None: forget everything


@dataclass
class Chunk:
    end_block: int
    end_hash: bytes
    events: list[ev.Event] = field(default_factory=list)
    head: int = 0


@dataclass
class SyncStatus:
    synced_block: int | None
    head_block: int | None
    last_success: float | None  # unix seconds of the last round that reached the target block
    stale_seconds: float | None  # now - last_success (None: never synced)
    error: str | None  # the last round's failure, None when it succeeded
    devices: int


class Syncer:
    """Blocking sync of ``directory`` from ``reader`` into ``store``, starting at ``start_block``."""

    def __init__(
        self,
        directory: Directory,
        store: DirectoryStore,
        reader: LogReader,
        *,
        start_block: int = 0,
        confirmations: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.store = store
        self.reader = reader
        self.start_block = start_block
        self.confirmations = confirmations
        self.clock = clock
        self.head_block: int | None = None
        self.last_success: float | None = store.last_success
        self.error: str | None = None
        self.reorgs = 0
        self._load()

    def _load(self) -> None:
        """Replay the stored events (a restart resumes from ``store.synced_block``)."""
        self.directory.preload_proofs(self.store.proof_results())
        self.directory.rebuild(self.store.events(), self.clock())

    # ------------------------------------------------------------------ I/O half

    def steps(self) -> Iterator[Rollback | Chunk]:
        """Read what changed on chain; each ``next()`` does network I/O and touches no state but the store's
        reads. ``commit`` every yielded step before advancing."""
        head = self.reader.head()
        self.head_block = head
        target = head - self.confirmations
        synced = self.store.synced_block
        if synced is not None:
            stored_hash = self.store.block_hash(synced)
            chain_hash = self.reader.block_hash(synced) if synced <= head else None
            if stored_hash is not None and chain_hash != stored_hash:
                fork = self._fork_point(head)
                log.warning("chain reorganisation: block %d changed; rolling back to %s", synced, fork)
                yield Rollback(fork)
                synced = self.store.synced_block
        start = self.start_block if synced is None else synced + 1
        if start > target:
            return
        network_id = self.directory.network_id
        for end, logs in self.reader.ranges(start, target):
            chunk = Chunk(end, b"", head=head)
            for raw in logs:
                try:
                    e = ev.decode_log(raw)
                except ev.MalformedLog as exc:
                    log.warning("skipping malformed registry log in block %s: %s", raw.get("blockNumber"), exc)
                    continue
                if e is not None and e.network_id == network_id:  # type: ignore[attr-defined]
                    chunk.events.append(e)
            end_hash = self.reader.block_hash(end)
            if end_hash is None:  # the chain shrank under us: the next round sees the reorg
                return
            chunk.end_hash = end_hash
            yield chunk

    def _fork_point(self, head: int) -> int | None:
        for number, stored in self.store.recent_blocks():
            if number <= head and self.reader.block_hash(number) == stored:
                return number
        return None

    # ------------------------------------------------------------------ mutation half

    def commit(self, step: Rollback | Chunk) -> list[Change]:
        now = self.clock()
        if isinstance(step, Rollback):
            self.reorgs += 1
            self.store.rollback_to(step.fork_block)
            return self.directory.rebuild(self.store.events(), now)
        changes = self.directory.apply(step.events, now)
        hashes = {e.block_number: e.block_hash for e in step.events}
        hashes[step.end_block] = step.end_hash
        d = self.directory
        self.store.commit_range(
            ((e, d.proof_result(e.device_id) if isinstance(e, ev.DeviceRegistered) else None) for e in step.events),
            hashes,
            step.end_block,
        )
        return changes

    # ------------------------------------------------------------------ rounds

    def sync_once(self) -> int:
        """One blocking round; returns the number of events applied. Raises ChainError on failure
        (after the reader's retries); the directory keeps its last state."""
        applied = 0
        try:
            for step in self.steps():
                self.commit(step)
                if isinstance(step, Chunk):
                    applied += len(step.events)
        except ChainError as exc:
            self.error = str(exc)
            raise
        self._succeeded()
        return applied

    def _succeeded(self) -> None:
        self.error = None
        self.last_success = self.clock()
        self.store.mark_success(self.last_success)
        self.directory.tick(self.last_success)

    def status(self, now: float | None = None) -> SyncStatus:
        now = self.clock() if now is None else now
        return SyncStatus(
            synced_block=self.store.synced_block,
            head_block=self.head_block,
            last_success=self.last_success,
            stale_seconds=None if self.last_success is None else max(0.0, now - self.last_success),
            error=self.error,
            devices=len(self.directory),
        )


class DirectorySyncer:
    """asyncio wrapper: network reads in a worker thread (``asyncio.to_thread``), directory mutation and
    subscriber callbacks on the event loop. ``run()`` follows the chain every ``interval`` seconds until
    cancelled; failures are logged once per outage and leave the last state in service."""

    def __init__(self, syncer: Syncer, interval: float = 2.0) -> None:
        self.syncer = syncer
        self.interval = interval
        self._lock = asyncio.Lock()

    @property
    def directory(self) -> Directory:
        return self.syncer.directory

    @property
    def has_state(self) -> bool:
        """True once something was synced and stored (a daemon may start on it while the chain is down)."""
        return self.syncer.store.synced_block is not None

    def status(self, now: float | None = None) -> SyncStatus:
        return self.syncer.status(now)

    def close(self) -> None:
        """Close the SQLite store. Only after ``run``/``sync_once`` have ended (no worker thread left)."""
        self.syncer.store.close()

    async def sync_once(self) -> int:
        s = self.syncer
        async with self._lock:
            steps = s.steps()
            applied = 0
            sentinel = object()
            try:
                while True:
                    step = await asyncio.to_thread(next, steps, sentinel)
                    if step is sentinel:
                        break
                    s.commit(step)
                    if isinstance(step, Chunk):
                        applied += len(step.events)
            except ChainError as exc:
                s.error = str(exc)
                raise
            s._succeeded()
            return applied

    async def run(self) -> None:
        failing = False
        while True:
            try:
                await self.sync_once()
                if failing:
                    log.info("directory sync resumed at block %s", self.syncer.store.synced_block)
                failing = False
            except ChainError as exc:
                if not failing:
                    log.warning("directory sync failed, serving the last state: %s", exc)
                failing = True
                self.syncer.directory.tick(self.syncer.clock())
            await asyncio.sleep(self.interval)


def open_syncer(
    rpc_url: str,
    chain_id: int,
    registry: str,
    network_id: int,
    state_dir: str | os.PathLike,
    *,
    deploy_block: int = 0,
    confirmations: int = 0,
    timeout: float = 30.0,
    **reader_options,
) -> Syncer:
    """A Syncer for one network, its SQLite file at ``state_dir/directory-<chain>-<registry>-<network>.sqlite``.

    Loads the stored state at once (no network I/O): queries answer from it before the first round.
    """
    path = Path(state_dir) / f"directory-{chain_id}-{registry.lower()[:10]}-{network_id}.sqlite"
    store = DirectoryStore(path, chain_id, registry, network_id)
    reader = LogReader(JsonRpc(rpc_url, timeout=timeout), registry, **reader_options)
    return Syncer(Directory(chain_id, registry, network_id), store, reader, start_block=deploy_block,
                  confirmations=confirmations)


class DirectorySource(Protocol):
    """What a daemon needs of its directory: the live ``directory``, one ``sync_once`` round (raises
    ChainError when the chain cannot be read), ``run`` (follow until cancelled), ``status``, ``has_state``
    (a stored state to start from when the chain is down) and ``close`` (release the store; call only
    after every task using the source has ended). Implementations: ``DirectorySyncer`` (the chain) and,
    for tests, ``lab.directory.MemoryRegistry`` (an in-process registry)."""

    @property
    def directory(self) -> Directory: ...

    @property
    def has_state(self) -> bool: ...

    async def sync_once(self) -> int: ...

    async def run(self) -> None: ...

    def status(self, now: float | None = None) -> SyncStatus: ...

    def close(self) -> None: ...
