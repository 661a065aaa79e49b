"""Log decoding edge cases, adaptive eth_getLogs ranges and backoff, SQLite store round trip (no chain)."""

from __future__ import annotations

import itertools

import pytest

from shadowmesh_client.directory import events as ev
from shadowmesh_client.directory.reader import LogReader, RpcError, RpcUnavailable
from shadowmesh_client.directory.store import DirectoryStore, StoreMismatch

REG = "0x" + "ab" * 20


class ScriptedRpc:
    """An in-memory JSON-RPC stand-in for the reader's unit tests: refuses ranges wider than ``limit``."""

    def __init__(self, limit=None, failures=0, logs_per_block=0):
        self.limit, self.failures, self.per_block = limit, failures, logs_per_block
        self.asked = []

    def call(self, method, params):
        if self.failures:
            self.failures -= 1
            raise RpcUnavailable("down")
        a, b = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
        self.asked.append((a, b))
        if self.limit and b - a + 1 > self.limit:
            raise RpcError(method, -32005, "query returned more than 10000 results")
        return [{"blockNumber": hex(n)} for n in range(a, b + 1) for _ in range(self.per_block)]


def test_ranges_shrink_when_refused_and_cover_everything():
    rpc = ScriptedRpc(limit=100)
    reader = LogReader(rpc, REG, initial_range=1000)
    ends = [end for end, _ in reader.ranges(0, 999)]
    assert ends[-1] == 999
    covered = [(a, b) for a, b in rpc.asked if b - a + 1 <= 100]
    assert covered[0][0] == 0 and all(x[1] + 1 == y[0] for x, y in itertools.pairwise(covered))


def test_ranges_shrink_on_dense_logs():
    rpc = ScriptedRpc(logs_per_block=10)
    reader = LogReader(rpc, REG, initial_range=1000, target_logs=500)
    list(reader.ranges(0, 2999))
    assert rpc.asked[1][1] - rpc.asked[1][0] + 1 == 50


def test_backoff_then_give_up():
    slept = []
    reader = LogReader(ScriptedRpc(failures=2), REG, retries=3, backoff=0.1, sleep=slept.append)
    assert list(reader.ranges(0, 0)) == [(0, [])]
    assert slept == [0.1, 0.2]
    reader = LogReader(ScriptedRpc(failures=10), REG, retries=2, backoff=0.1, sleep=slept.append)
    with pytest.raises(RpcUnavailable):
        list(reader.ranges(0, 0))


def _log(topics, data=b"", block=5):
    return {"topics": topics, "data": "0x" + data.hex(), "blockNumber": hex(block), "logIndex": "0x0",
            "blockHash": "0x" + "11" * 32, "transactionHash": "0x" + "22" * 32}


def test_malformed_logs_raise_one_error_type():
    topic = ev.TOPICS["DeviceRenewed"]
    with pytest.raises(ev.MalformedLog):
        ev.decode_log(_log([topic, "0x" + "00" * 32]))  # missing topic
    with pytest.raises(ev.MalformedLog):
        ev.decode_log(_log([topic, "0x" + "00" * 32, "0x" + "00" * 32], b"\x01"))  # short data
    assert ev.decode_log(_log(["0x" + "99" * 32])) is None  # not a directory event


def test_store_roundtrip_rollback_and_identity(tmp_path):
    e = ev.DeviceRenewed(7, 1, b"\x01" * 32, b"", device_id=b"\x02" * 32, network_id=3, expires_at=99)
    s = DirectoryStore(tmp_path / "d.sqlite", 1, REG, 3)
    s.commit_range([(e, None)], {7: b"\x01" * 32, 9: b"\x03" * 32}, 9)
    assert list(s.events()) == [e] and s.synced_block == 9
    s.rollback_to(8)
    assert list(s.events()) == [e] and s.synced_block == 8 and s.block_hash(9) is None
    s.rollback_to(6)
    assert list(s.events()) == []
    s.close()
    with pytest.raises(StoreMismatch):
        DirectoryStore(tmp_path / "d.sqlite", 1, REG, 4)
