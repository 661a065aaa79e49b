"""Keeping a :class:`Directory` in step with the chain: confirmations, reorgs, persistence, staleness.

docs/directory.md "Sync". One round (``Syncer.sync_once``):

1. ``head`` = latest block; the directory follows ``target = head - confirmations`` (default 0 on a local
   chain, ``config.PUBLIC_CONFIRMATIONS`` elsewhere). With several RPC endpoints (``AgreeingReader``) the head
   is the lowest of theirs and a range whose logs or end-block hash differ between them is refused
   (``RpcDisagreement``, naming the endpoint; the directory keeps its last state).
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
rest on the asyncio event loop.

Threads (GUIDE habit 7: a resource is used from one thread). With :class:`DirectorySyncer`:

* the event loop's thread, which must also be the thread that opened the store (``open_syncer``; the CLI
  opens it on the main thread and ``asyncio.run`` runs the loop there), does everything stateful: every
  SQLite call (``DirectoryStore`` is opened with ``check_same_thread=True``, so SQLite itself refuses any
  other thread), every Directory mutation and every subscriber callback. Query methods are therefore
  safe from coroutines at any time.
* one worker thread owned by the DirectorySyncer runs ``next(steps)``: network reads only. ``steps()``
  takes what it needs of the store (the sync point, its hash, the recent block hashes for the fork
  search) as a snapshot on the calling thread before the worker starts, and the generator touches
  nothing but the reader and that snapshot.
* a cancelled ``sync_once`` waits for the read in flight to end before it re-raises (a thread cannot be
  interrupted: the wait is bounded by the reader's timeout and retries), so once the task running it has
  been awaited no worker is busy, and ``close()`` may release the store, the thread and the HTTP session.

The blocking :class:`Syncer` used alone (CLI ``device``, bench) does everything on the calling thread.

When the RPC endpoint is down the directory keeps answering from the last synced state; ``status(now)``
says how many seconds ago the last successful round finished (``stale_seconds``) and what failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shadowmesh_client.config import confirmations_for
from shadowmesh_client.directory import events as ev
from shadowmesh_client.directory.core import Change, Directory
from shadowmesh_client.directory.reader import AgreeingReader, JsonRpc, LogReader
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
        reader: LogReader | AgreeingReader,
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

    def steps(self) -> Generator[Rollback | Chunk, None, None]:
        """Read what changed on chain. This call reads the store on the calling thread (a snapshot: the sync
        point, its hash and the recent block hashes); each ``next()`` of the returned generator then does
        network I/O only, touching neither the store nor the directory, so it may run in another thread.
        ``commit`` every yielded step (on the store's thread) before advancing."""
        synced = self.store.synced_block
        stored_hash = None if synced is None else self.store.block_hash(synced)
        recent = self.store.recent_blocks() if stored_hash is not None else []  # <= 512 rows: ~0.2 ms
        return self._read(synced, stored_hash, recent)

    def _read(self, synced: int | None, stored_hash: bytes | None,
              recent: list[tuple[int, bytes]]) -> Generator[Rollback | Chunk, None, None]:
        """The network half of ``steps()``: the chain against the store's snapshot (see there)."""
        head = self.reader.head()
        self.head_block = head
        target = head - self.confirmations
        if synced is not None and stored_hash is not None:
            chain_hash = self.reader.block_hash(synced) if synced <= head else None
            if chain_hash != stored_hash:
                fork = self._fork_point(head, recent)
                log.warning("chain reorganisation: block %d changed; rolling back to %s", synced, fork)
                yield Rollback(fork)
                synced = fork  # what commit(Rollback(fork)) leaves as the store's sync point
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

    def _fork_point(self, head: int, recent: list[tuple[int, bytes]]) -> int | None:
        """The newest of ``recent`` (stored (number, hash), newest first) still on the chain; None: none is."""
        for number, stored in recent:
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

    def close(self) -> None:
        """Close the store and the reader's HTTP session (on the store's thread, no read running)."""
        self.store.close()
        self.reader.close()

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


_DONE = object()  # next()'s default: the steps generator is exhausted


class DirectorySyncer:
    """asyncio wrapper: network reads in one worker thread of its own, everything stateful (SQLite store,
    directory mutation, subscriber callbacks) on the event loop's thread (module docstring, "Threads").
    ``run()`` follows the chain every ``interval`` seconds until cancelled; failures are logged once per
    outage and leave the last state in service."""

    def __init__(self, syncer: Syncer, interval: float = 2.0) -> None:
        self.syncer = syncer
        self.interval = interval
        self._lock = asyncio.Lock()
        # The one thread that runs the steps generator (network reads only). Started on first use.
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="directory-rpc")

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
        """Release the store, the worker thread and the HTTP session. Call on the loop's thread once every
        task running ``run``/``sync_once`` has been awaited: they wait for their read in flight, so no
        worker is busy by then (``shutdown(wait=True)`` returns at once; were one busy, it would wait)."""
        self._reads.shutdown(wait=True)
        self.syncer.close()

    async def _next(self, steps: Iterator[Rollback | Chunk]) -> Rollback | Chunk | object:
        """``next(steps)`` in the worker thread. On cancellation, waits for the worker to finish the read
        it is doing (a thread cannot be interrupted), then re-raises: the task ends with no read running."""
        fut = asyncio.get_running_loop().run_in_executor(self._reads, next, steps, _DONE)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            while not fut.done():
                try:
                    await asyncio.wait([fut])
                except asyncio.CancelledError:  # cancelled again: still let the read end first
                    continue
            if not fut.cancelled():
                fut.exception()  # retrieved: a failed read after cancellation is not worth a warning
            raise

    async def sync_once(self) -> int:
        s = self.syncer
        async with self._lock:
            steps = s.steps()  # reads the store here, on the loop's thread
            applied = 0
            try:
                while True:
                    step = await self._next(steps)
                    if step is _DONE:
                        break
                    assert isinstance(step, Rollback | Chunk)
                    s.commit(step)
                    if isinstance(step, Chunk):
                        applied += len(step.events)
            except ChainError as exc:
                s.error = str(exc)
                raise
            finally:
                steps.close()  # no read is running any more (_next waited for it)
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
    confirmations: int | None = None,
    timeout: float = 30.0,
    extra_rpc_urls: list[str] | tuple[str, ...] = (),
    **reader_options: Any,
) -> Syncer:
    """A Syncer for one network, its SQLite file at ``state_dir/directory-<chain>-<registry>-<network>.sqlite``.

    Reads only this network's events (one eth_getLogs filter: ``events.network_filter``). ``confirmations``
    None: ``config.confirmations_for(chain_id)`` (0 on a local chain, more on a public one). With
    ``extra_rpc_urls`` every range is read from each endpoint and accepted only where all agree
    (``reader.AgreeingReader``). Loads the stored state at once (no network I/O): queries answer from it
    before the first round.
    """
    path = Path(state_dir) / f"directory-{chain_id}-{registry.lower()[:10]}-{network_id}.sqlite"
    store = DirectoryStore(path, chain_id, registry, network_id)
    topics = ev.network_filter(network_id)
    readers = [LogReader(JsonRpc(url, timeout=timeout), registry, topics=topics, **reader_options)
               for url in dict.fromkeys([rpc_url, *extra_rpc_urls])]
    reader: Any = readers[0] if len(readers) == 1 else AgreeingReader(readers)
    return Syncer(Directory(chain_id, registry, network_id), store, reader, start_block=deploy_block,
                  confirmations=confirmations_for(chain_id, confirmations))


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
