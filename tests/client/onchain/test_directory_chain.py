"""The directory against a real anvil running the real DeviceRegistry: proofs, reorgs, restarts, RPC outages."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from shadowmesh_client.crypto import Identity
from shadowmesh_client.directory import ChangeKind
from shadowmesh_client.directory.events import TOPICS, decode_log
from shadowmesh_client.directory.proof import device_id, proof_message
from shadowmesh_client.directory.syncer import open_syncer
from shadowmesh_client.errors import ChainError


def syncer_for(d, network_id, state_dir, url=None, **kw):
    dep = d.deployment
    return open_syncer(url or d.url, dep.chain_id, dep.registry, network_id, state_dir,
                       deploy_block=dep.deploy_block, **kw)


def test_proof_message_and_device_id_match_the_contract(deployed):
    owner, key = deployed.accounts[1], Identity.generate().public_key
    assert deployed.registry.functions.proofMessage(7, owner, key).call() == proof_message(
        deployed.deployment.chain_id, deployed.deployment.registry, 7, owner, key)
    assert deployed.registry.functions.computeDeviceId(7, owner, key).call() == device_id(7, owner, key)


def test_event_topics_match_the_deployed_abi(deployed):
    from eth_utils import event_abi_to_log_topic

    abi_topics = {e["name"]: "0x" + event_abi_to_log_topic(e).hex() for e in deployed.deployment.registry_abi
                  if e["type"] == "event"}
    for name, topic in TOPICS.items():
        assert abi_topics[name] == topic, name


def test_forged_proof_is_ignored_and_logged(deployed, tmp_path, caplog):
    net = deployed.new_network()
    owner = deployed.accounts[1]
    honest, _ = deployed.register(net, owner)
    victim, mallory = Identity.generate(), Identity.generate()
    forged = mallory.sign(proof_message(deployed.deployment.chain_id, deployed.deployment.registry, net, owner,
                                        victim.public_key))
    _, forged_id = deployed.register(net, owner, victim, proof=forged)
    s = syncer_for(deployed, net, tmp_path)
    with caplog.at_level(logging.WARNING):
        s.sync_once()
    now = time.time()
    assert s.directory.is_trusted(honest.public_key, now)
    assert not s.directory.is_trusted(victim.public_key, now)
    assert forged_id in s.directory.rejected
    assert "0x" + forged_id.hex() in caplog.text
    # the contract itself cannot tell: verifyDevice says yes, the directory says no
    assert deployed.registry.functions.verifyDevice(forged_id).call()


def test_lifecycle_events_followed(deployed, tmp_path):
    admin, owner = deployed.accounts[0], deployed.accounts[2]
    net = deployed.new_network(admin, policy=1)  # approval
    ident, did = deployed.register(net, owner, endpoint="wss://a.example/ws")
    s = syncer_for(deployed, net, tmp_path)
    seen = []
    s.directory.subscribe(lambda c: seen.append(c.kind))
    s.sync_once()
    assert not s.directory.is_trusted(ident.public_key, time.time())  # pending
    deployed.send(deployed.registry.functions.approveDevice(did), admin)
    deployed.send(deployed.registry.functions.updateEndpoint(did, "wss://b.example/ws", True), owner)
    s.sync_once()
    peer = s.directory.peer_for_key(ident.public_key, time.time())
    assert peer.endpoint == "wss://b.example/ws" and peer.relay
    deployed.send(deployed.registry.functions.suspendDevice(did), admin)
    s.sync_once()
    assert not s.directory.is_trusted(ident.public_key, time.time())
    assert seen == [ChangeKind.ADDED, ChangeKind.CHANGED, ChangeKind.REVOKED]


def test_reorg_via_snapshot_revert_is_followed(fresh_chain, tmp_path):
    d = fresh_chain
    net = d.new_network()
    owner = d.accounts[1]
    kept, _ = d.register(net, owner)
    snap = d.rpc("evm_snapshot")
    dropped, dropped_id = d.register(net, owner)
    s = syncer_for(d, net, tmp_path)
    seen = []
    s.directory.subscribe(lambda c: seen.append((c.kind, c.peer.public_key)))
    s.sync_once()
    assert s.directory.is_trusted(dropped.public_key, time.time())
    assert d.rpc("evm_revert", [snap])
    replacement, _ = d.register(net, owner)  # same block number as the dropped one, another hash
    d.rpc("anvil_mine", ["0x2"])
    s.sync_once()
    now = time.time()
    assert s.reorgs == 1
    assert not s.directory.is_trusted(dropped.public_key, now)
    assert s.directory.is_trusted(kept.public_key, now) and s.directory.is_trusted(replacement.public_key, now)
    assert (ChangeKind.REMOVED, dropped.public_key) in seen
    assert (ChangeKind.ADDED, replacement.public_key) in seen
    # and the store agrees: a restart sees the post-reorg chain
    s.store.close()
    again = syncer_for(d, net, tmp_path)
    assert not again.directory.is_trusted(dropped.public_key, now)
    assert again.directory.is_trusted(replacement.public_key, now)


def test_restart_resumes_from_sqlite(deployed, tmp_path):
    net = deployed.new_network()
    owner = deployed.accounts[3]
    first = [deployed.register(net, owner)[0] for _ in range(3)]
    s = syncer_for(deployed, net, tmp_path)
    s.sync_once()
    synced = s.store.synced_block
    s.store.close()
    later, _ = deployed.register(net, owner)

    restarted = syncer_for(deployed, net, tmp_path)
    now = time.time()
    assert all(restarted.directory.is_trusted(i.public_key, now) for i in first)  # before any network I/O
    asked = []
    original = restarted.reader.get_logs
    restarted.reader.get_logs = lambda a, b: asked.append((a, b)) or original(a, b)
    assert restarted.sync_once() == 1
    assert asked and asked[0][0] == synced + 1
    assert restarted.directory.is_trusted(later.public_key, time.time())


class Proxy:
    """A TCP forwarder in front of the RPC endpoint that the test can kill and restart (real sockets)."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.close()
        self.up = False
        self.conns: list[socket.socket] = []

    def start(self):
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.up = True
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.up = False
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self.listener.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self.conns.clear()

    def _accept(self):
        while self.up:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass


def test_rpc_killed_mid_sync_serves_stale_then_recovers(deployed, tmp_path):
    net = deployed.new_network()
    owner = deployed.accounts[4]
    before = [deployed.register(net, owner)[0] for _ in range(2)]
    proxy = Proxy(int(deployed.url.rsplit(":", 1)[1]))
    proxy.start()
    try:
        s = syncer_for(deployed, net, tmp_path, url=f"http://127.0.0.1:{proxy.port}", retries=2, backoff=0.01,
                       initial_range=1, max_range=1)
        s.sync_once()
        after = [deployed.register(net, owner)[0] for _ in range(4)]  # 4 more blocks to read one by one
        original = s.reader.get_logs
        calls = []

        def dying(a, b):
            calls.append(a)
            if len(calls) == 2:
                proxy.stop()  # the endpoint dies between two ranges of one round
            return original(a, b)

        s.reader.get_logs = dying
        with pytest.raises(ChainError):
            s.sync_once()
        now = time.time()
        st = s.status(now)
        assert st.error and st.stale_seconds is not None
        assert all(s.directory.is_trusted(i.public_key, now) for i in before)  # still serving
        partial = s.store.synced_block  # what was committed before the outage stays
        assert partial is not None
        proxy.start()
        s.sync_once()
        assert s.status().error is None
        assert all(s.directory.is_trusted(i.public_key, time.time()) for i in before + after)
    finally:
        proxy.stop()


def test_async_syncer_applies_on_the_loop(deployed, tmp_path):
    import asyncio

    from shadowmesh_client.directory import DirectorySyncer

    net = deployed.new_network()
    ident, _ = deployed.register(net, deployed.accounts[5])
    s = syncer_for(deployed, net, tmp_path)

    async def main():
        threads = []
        s.directory.subscribe(lambda c: threads.append(threading.get_ident()))
        ds = DirectorySyncer(s, interval=0.05)
        await ds.sync_once()
        return threads, threading.get_ident()

    threads, loop_thread = asyncio.run(main())
    assert threads == [loop_thread]
    assert s.directory.is_trusted(ident.public_key, time.time())


def test_logs_decode_like_web3(deployed):
    net = deployed.new_network()
    ident, did = deployed.register(net, deployed.accounts[6], endpoint="wss://x.example/ws", relay=True)
    logs = deployed.rpc("eth_getLogs", [{"address": deployed.deployment.registry, "fromBlock": "0x0"}])
    mine = [decode_log(entry) for entry in logs]
    reg = [e for e in mine if getattr(e, "device_id", None) == did][0]
    assert reg.public_key == ident.public_key and reg.endpoint == "wss://x.example/ws" and reg.relay
    assert reg.network_id == net and len(reg.proof) == 64
