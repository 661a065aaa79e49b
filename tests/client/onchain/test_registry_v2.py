"""Registry v2 and RPC trust against a real anvil (issue 10, attacks 9 and 10, and the sync saving):

* Pending registrations in an Approval network take no overlay address; the address comes with the
  admin's approval (DeviceApproved) and the directory takes it from there; the registration pays the
  protocol fee plus the network's own fee; a closed network refuses registrations.
* One eth_getLogs filter per network (network id at topic 1): the directory fetches only its network's
  logs. Measured here with 10 networks against the v1 behaviour (every registry log).
* A lying RPC (a proxy that forwards to anvil and appends one fabricated DeviceRegistered log) fools a
  directory that trusts it alone; among several endpoints the range is refused and the liar is named.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account

from lab.chain import ANVIL_KEYS
from shadowmesh_client.chain import Chain
from shadowmesh_client.chain import registry as reg
from shadowmesh_client.crypto import Identity
from shadowmesh_client.directory.events import TOPICS, network_topic
from shadowmesh_client.directory.proof import device_id, proof_message
from shadowmesh_client.directory.reader import JsonRpc, LogReader, RpcDisagreement
from shadowmesh_client.errors import ChainError
from tests.client.onchain.test_directory_chain import syncer_for


def test_pending_registrations_take_no_address_until_approved(deployed, tmp_path):
    admin = deployed.accounts[0]
    net = deployed.new_network(admin, policy=1)                      # Approval
    for _ in range(5):                                               # a stranger registers 5 devices
        deployed.register(net, deployed.accounts[2])
    assert deployed.registry.functions.networks(net).call()[1] == 0x64400001   # nextOverlay untouched
    _, mine = deployed.register(net, deployed.accounts[1])
    s = syncer_for(deployed, net, tmp_path)
    s.sync_once()
    assert not s.directory.peers(time.time())                        # nobody is live, nobody has an address
    deployed.send(deployed.registry.functions.approveDevice(mine), admin)
    s.sync_once()
    [peer] = s.directory.peers(time.time())
    assert peer.device_id == mine and str(peer.overlay_address) == "100.64.0.1"   # the first address
    assert s.directory.peer_by_overlay("100.64.0.1").device_id == mine


def test_registration_pays_both_fees_and_a_closed_network_refuses(deployed):
    chain = Chain(deployed.url, deployed.deployment)
    admin, owner = Account.from_key(ANVIL_KEYS[0]), Account.from_key(ANVIL_KEYS[3])
    net = reg.create_network(chain, admin, "fees", "open", 86_400).network_id
    reg.set_network_fee(chain, admin, net, 7 * 10**15)
    assert reg.fees(chain, net) == (0, 7 * 10**15)
    r = reg.register(chain, owner, Identity.generate(), net)
    assert r.fee_paid == 7 * 10**15 and r.status == "active" and r.overlay_address == "100.64.0.1"
    assert deployed.registry.functions.networkFee(net).call() == [7 * 10**15, 7 * 10**15]
    reg.set_network_registration(chain, admin, net, False)
    with pytest.raises(ChainError, match="RegistrationClosed|closed"):
        reg.register(chain, owner, Identity.generate(), net)
    pending = reg.create_network(chain, admin, "approval", "approval", 86_400).network_id
    p = reg.register(chain, owner, Identity.generate(), pending)
    assert p.status == "pending approval" and p.overlay_address.startswith("none yet")
    a = reg.approve(chain, admin, p.device_id)
    assert a.overlay_address == "100.64.0.1"


class _Counting(JsonRpc):
    """A JsonRpc that adds up what eth_getLogs returned (logs, and bytes of their JSON)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.logs = self.bytes = self.requests = 0

    def call(self, method, params):
        result = super().call(method, params)
        if method == "eth_getLogs":
            self.requests += 1
            self.logs += len(result)
            self.bytes += len(json.dumps(result))
        return result


def test_one_filter_per_network_and_the_sync_saving_with_10_networks(deployed, tmp_path):
    nets = [deployed.new_network() for _ in range(10)]
    for net in nets:
        for i in range(4):
            deployed.register(net, deployed.accounts[1 + i % 3])
    head = deployed.w3.eth.block_number
    start = deployed.deployment.deploy_block
    target = nets[4]
    figures = {}
    for name, topics in (("v1: every registry log", None),
                         ("v2: one network's filter", [sorted(TOPICS.values()), network_topic(target)])):
        rpc = _Counting(deployed.url)
        reader = LogReader(rpc, deployed.deployment.registry, topics=topics)
        t0 = time.perf_counter()
        got = [raw for _end, logs in reader.ranges(start, head) for raw in logs]
        figures[name] = {"logs": rpc.logs, "bytes": rpc.bytes, "seconds": time.perf_counter() - t0}
        if topics is not None:
            assert all(raw["topics"][1] == network_topic(target) for raw in got)
        reader.close()
    v1, v2 = figures["v1: every registry log"], figures["v2: one network's filter"]
    assert v2["logs"] == 5 and v1["logs"] >= 10 * 5                 # 1 NetworkCreated + 4 registrations each
    assert v1["bytes"] >= 9 * v2["bytes"]
    print(f"\ndirectory sync with 10 networks (5 logs each): {figures}; saving: "
          f"{v1['logs'] / v2['logs']:.1f}x fewer logs, {v1['bytes'] / v2['bytes']:.1f}x fewer bytes")
    s = syncer_for(deployed, target, tmp_path)
    s.sync_once()
    assert len(s.directory.peers(time.time())) == 4


class _LyingRpc:
    """An HTTP JSON-RPC proxy to ``upstream`` that appends ``fake`` to every eth_getLogs answer whose range
    holds its block: the attack of issue 10 item 10."""

    def __init__(self, upstream: str, fake: dict) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                req = json.loads(body)
                r = urllib.request.Request(upstream, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(r, timeout=10) as resp:
                    reply = json.loads(resp.read())
                if req.get("method") == "eth_getLogs" and isinstance(reply.get("result"), list):
                    f = req["params"][0]
                    if int(f["fromBlock"], 16) <= int(proxy.fake["blockNumber"], 16) <= int(f["toBlock"], 16):
                        reply["result"].append(proxy.fake)
                        proxy.lies += 1
                out = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.fake, self.lies = fake, 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _fabricated_registration(deployed, net: int) -> tuple[dict, Identity]:
    """A DeviceRegistered log that never happened: Active, with a valid proof by the liar's own key."""
    ident, owner = Identity.generate(), deployed.accounts[4]
    dep = deployed.deployment
    proof = ident.sign(proof_message(dep.chain_id, dep.registry, net, owner, ident.public_key))
    block = deployed.w3.eth.get_block("latest")
    data = abi_encode(["bytes32", "uint32", "uint64", "uint8", "bool", "string", "bytes"],
                      [ident.public_key, 0x644000FE, int(time.time()) + 10**6, 2, False, "", proof])
    did = device_id(net, owner, ident.public_key)
    return {"address": dep.registry.lower(), "blockNumber": hex(block["number"]),
            "blockHash": block["hash"].to_0x_hex(),
            "transactionHash": "0x" + "ee" * 32, "transactionIndex": "0x0", "logIndex": "0x63", "removed": False,
            "topics": [TOPICS["DeviceRegistered"], network_topic(net), "0x" + did.hex(),
                       "0x" + bytes(12).hex() + owner[2:].lower()],
            "data": "0x" + data.hex()}, ident


def test_a_lying_rpc_among_several_is_detected_and_named(deployed, tmp_path):
    net = deployed.new_network(policy=1)                              # Approval: nobody is Active yet
    deployed.register(net, deployed.accounts[1])                      # Pending
    fake, ident = _fabricated_registration(deployed, net)
    liar = _LyingRpc(deployed.url, fake)
    try:
        fooled = syncer_for(deployed, net, tmp_path / "alone", url=liar.url)   # trusting one RPC: the attack
        fooled.sync_once()
        assert fooled.directory.is_trusted(ident.public_key, time.time())      # a device that never existed
        fooled.close()

        s = syncer_for(deployed, net, tmp_path / "several", extra_rpc_urls=[liar.url])
        with pytest.raises(RpcDisagreement) as err:
            s.sync_once()
        assert err.value.disagreeing == [liar.url] and liar.url in str(err.value)
        assert not s.directory.is_trusted(ident.public_key, time.time()) and s.store.synced_block is None
        assert s.status().error and liar.url in s.status().error
        s.close()
        honest = syncer_for(deployed, net, tmp_path / "honest", extra_rpc_urls=[deployed.url.replace("127.0.0.1",
                                                                                                      "localhost")])
        honest.sync_once()                                            # two honest endpoints agree
        assert not honest.directory.peers(time.time()) and honest.store.synced_block is not None
        honest.close()
    finally:
        liar.close()
    assert liar.lies >= 2
