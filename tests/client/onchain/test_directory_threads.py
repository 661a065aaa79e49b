"""Which thread touches what in DirectorySyncer (directory/syncer.py "Threads"), against a real anvil.

The SQLite store is used only by the event loop's thread (the one that opened it); the worker thread only
does network reads; a cancelled round waits for its read in flight, so close() never races a worker.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from shadowmesh_client.directory import DirectorySyncer
from shadowmesh_client.directory.store import DirectoryStore
from tests.client.onchain.test_directory_chain import syncer_for


class ThreadLog:
    """The real store, recording the thread of every attribute read and call made through it."""

    def __init__(self, store: DirectoryStore) -> None:
        self._store = store
        self.calls: list[tuple[str, int]] = []

    def __getattr__(self, name: str):
        self.calls.append((name, threading.get_ident()))
        attr = getattr(self._store, name)  # properties (synced_block) run here, on the recording thread
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.calls.append((name, threading.get_ident()))
            return attr(*args, **kwargs)

        return call


def test_store_is_used_only_on_the_loop_thread_through_a_reorg(fresh_chain, tmp_path):
    d = fresh_chain
    net = d.new_network()
    owner = d.accounts[1]
    kept, _ = d.register(net, owner)
    snap = d.rpc("evm_snapshot")
    dropped, _ = d.register(net, owner)
    s = syncer_for(d, net, tmp_path)
    recorder = ThreadLog(s.store)
    s.store = recorder  # type: ignore[assignment]
    reader_threads: set[int] = set()
    original_head = s.reader.head
    s.reader.head = lambda: reader_threads.add(threading.get_ident()) or original_head()

    async def main() -> int:
        ds = DirectorySyncer(s, interval=0.05)
        try:
            await ds.sync_once()
            assert s.directory.is_trusted(dropped.public_key, time.time())
            assert d.rpc("evm_revert", [snap])
            replacement, _ = d.register(net, owner)
            d.rpc("anvil_mine", ["0x2"])
            await ds.sync_once()  # reorg: fork search, rollback, rebuild from the store, then new ranges
            assert s.reorgs == 1
            now = time.time()
            assert not s.directory.is_trusted(dropped.public_key, now)
            assert s.directory.is_trusted(replacement.public_key, now)
            assert s.directory.is_trusted(kept.public_key, now)
            ds.status()
            assert ds.has_state
        finally:
            ds.close()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    used = {name for name, _ in recorder.calls}
    assert {"synced_block", "block_hash", "recent_blocks", "commit_range", "rollback_to", "close"} <= used
    assert {t for _, t in recorder.calls} == {loop_thread}, [c for c in recorder.calls if c[1] != loop_thread]
    assert reader_threads and loop_thread not in reader_threads  # the reads did run in the worker


def test_store_refuses_other_threads(tmp_path):
    """SQLite enforces the one-thread rule (check_same_thread=True): a stray worker call fails loudly."""
    store = DirectoryStore(tmp_path / "d.sqlite", 31337, "0x" + "11" * 20, 1)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            store.synced_block  # noqa: B018 - the property read is the SQLite call under test
        except BaseException as exc:  # noqa: BLE001 - recorded and asserted on below
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.ProgrammingError)
    assert store.synced_block is None  # the opening thread still may
    store.close()


def test_cancelled_round_waits_for_its_read_then_close_is_safe(deployed, tmp_path):
    net = deployed.new_network()
    ident, _ = deployed.register(net, deployed.accounts[4])
    s = syncer_for(deployed, net, tmp_path)
    started, finished = threading.Event(), threading.Event()
    original_head = s.reader.head

    def slow_head() -> int:  # the real call, made slow: a read the cancellation lands in the middle of
        started.set()
        time.sleep(0.3)
        try:
            return original_head()
        finally:
            finished.set()

    s.reader.head = slow_head

    async def main() -> None:
        ds = DirectorySyncer(s, interval=0.05)
        task = asyncio.create_task(ds.run())
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished.is_set(), "the task ended while its worker was still reading"
        ds.close()
        # everything is released: the store's connection is closed, the worker thread gone
        with pytest.raises(sqlite3.ProgrammingError):
            s.store.synced_block  # noqa: B018 - the property read is the SQLite call under test
        assert not any(t.name.startswith("directory-rpc") for t in threading.enumerate())

    asyncio.run(main())
    assert not s.directory.is_trusted(ident.public_key, time.time())  # the round never committed
