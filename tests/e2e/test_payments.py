"""Relay payments end to end (issue 6): real anvil + deploy script, real `relay` and `up` processes in
namespaces, real TUN devices, real `shadowmesh-client set-price / deposit / claim / balance` commands.

Topology (meshlab / mesh_topology): the relay (its own owner account, price PRICE) on the public segment,
B behind NAT 1 and C behind NAT 2 (owner account 1, which funds a reserve for the relay: payments v2), D on
the public host ``a`` (owner account 3 with a reserve too, ``payments.sign_receipts: false``, no endpoint:
credit is per payer, so a payer's own non-signing device would stop its other devices as well).
B->C and D->C can only go through the relay. One chain and one mesh for the module; tests run in file order
(claim, cut-off with the relay's notice, kill -9 of the relay under load).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab.mesh import MeshLab
from lab.netns import list_namespaces, mesh_topology
from shadowmesh_client.rewards.onchain import parse_smt

XFER = str(Path(__file__).with_name("xfer.py"))
RELAY_URL = "ws://198.18.0.20:7443/api/v1/ws/relay-pay"
PRICE = 10**9                  # SMT base units per byte (1 SMT per GB)
SIZE = 40 * 1000 * 1000        # bytes B sends to C
CREDIT = 32 * 1000 * 1000      # the relay's payments.credit_bytes
TOLERANCE = 256 * 1024         # rewards default tolerance_bytes
DEVICE_PAYMENTS = {"every_bytes": 1_000_000, "every_seconds": 1}

pytestmark = pytest.mark.timeout(300)


def _payments(dev, **values) -> None:
    data = yaml.safe_load(dev.config.read_text())
    data["payments"] = values
    dev.config.write_text(yaml.safe_dump(data))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    topo = mesh_topology()
    prefix = topo.prefix
    try:
        lab = MeshLab(topo, tmp_path_factory.mktemp("pay"))
        lab.start_chain()
        net = lab.create_network("relay")
        lab.relay = lab.add_device("relay", net, endpoint=RELAY_URL, relay=True, owner=2)
        lab.b = lab.add_device("b", net)
        lab.c = lab.add_device("c", net)
        lab.d = lab.add_device("d", net, ns="a", owner=3)
        _payments(lab.relay, credit_bytes=CREDIT)
        for dev in (lab.b, lab.c):
            _payments(dev, **DEVICE_PAYMENTS)
        _payments(lab.d, sign_receipts=False)
        lab.setup_payments(lab.b, lab.relay, reserve="5", price=PRICE)   # before the sessions start
        lab.setup_payments(lab.d, lab.relay, reserve="5", price=PRICE)
        lab.start_relay(lab.relay)
        for dev in (lab.b, lab.c):
            lab.start_node(dev)
        lab.wait_for(lambda: all(lab.status(d).get("ready_at") for d in (lab.b, lab.c)), 30, "nodes up")
        yield lab
    finally:
        topo.teardown()
    assert not [ns for ns in list_namespaces() if ns.startswith(prefix)]


def send(lab, src, dst, size: int, port: int, timeout: float = 60) -> dict:
    srv = lab.topo.spawn(dst.ns, [sys.executable, XFER, "serve", dst.overlay, str(port)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert srv.stdout.readline().strip() == "listening"
        sent = lab.topo.run(src.ns, [sys.executable, XFER, "send", dst.overlay, str(port), str(size), "1"],
                            timeout=timeout)
        return json.loads(sent.stdout)
    finally:
        lab.topo.stop(srv)


def pay_state(lab, dev) -> dict:
    """The device's own figures for the relay: counted, signed, acked, relay_counted."""
    return lab.status(dev).get("payments", {}).get("relays", {}).get(lab.relay.public_key, {})


def settled(lab, dev) -> dict | None:
    p = pay_state(lab, dev)
    if p and p["acked"] == p["signed"] and p["counted"] - p["acked"] <= TOLERANCE and p["acked"] > 0:
        return p
    return None


def wallet(lab) -> int:
    return parse_smt(json.loads(lab.cli("relay", lab.relay.config, "balance", "--json").stdout)["wallet"])


def claim(lab) -> dict:
    return json.loads(lab.cli("relay", lab.relay.config, "claim", "--json").stdout)


def connect(lab, src, dst) -> None:
    """First packets start the end-to-end handshake; wait until it is up."""
    lab.wait_for(lambda: lab.topo.run(src.ns, ["ping", "-n", "-c", "1", "-W", "1", dst.overlay], check=False)
                 .returncode == 0, 30, f"{src.name} -> {dst.name} ping")


def test_relay_is_paid_price_times_receipted_bytes_and_only_once(lab):
    connect(lab, lab.b, lab.c)
    lab.wait_for(lambda: (lab.peer(lab.b, lab.c).get("path") or "").startswith("relay:"), 10,
                 "B's path to C through the relay (status file rewritten every second)")
    sent = send(lab, lab.b, lab.c, SIZE, 5201)
    assert sent["bytes"] == SIZE
    for dev in (lab.b, lab.c):
        lab.wait_for(lambda dev=dev: (p := settled(lab, dev)) and p["acked"] >= SIZE, 20,
                     f"{dev.name}'s receipts acknowledged")
    for dev in (lab.b, lab.c):     # stopped: no new bytes, no new receipts; the ledger is final for the claims
        assert lab.stop(dev) == 0
    final = {dev.name: lab.status(dev)["payments"]["relays"][lab.relay.public_key] for dev in (lab.b, lab.c)}
    before = wallet(lab)
    out = claim(lab)
    paid = {line["device_id"]: line for line in out["claims"] if line["status"] == "claimed"}
    assert set(paid) == {lab.b.device_id, lab.c.device_id}, out
    for name, dev in (("b", lab.b), ("c", lab.c)):
        line = paid[dev.device_id]
        assert line["amount_base"] == PRICE * line["bytes"]
        assert line["bytes"] == final[name]["acked"]                          # what the relay stored
        assert abs(line["bytes"] - final[name]["counted"]) <= TOLERANCE      # the device's own count
    assert SIZE <= paid[lab.b.device_id]["bytes"] <= SIZE * 1.2    # payload + headers, envelopes, TCP ACKs
    assert wallet(lab) - before == out["total_base"] == PRICE * sum(x["bytes"] for x in paid.values())
    print(f"\npaid: B {paid[lab.b.device_id]['bytes']:,} bytes (own count {final['b']['counted']:,}), "
          f"C {paid[lab.c.device_id]['bytes']:,} bytes (own count {final['c']['counted']:,}); "
          f"total {out['total']} SMT")

    again = claim(lab)
    assert again["total_base"] == 0 and all(x["status"] == "skipped: already paid" for x in again["claims"])
    assert wallet(lab) - before == out["total_base"]


def test_device_that_does_not_sign_is_cut_off_after_its_credit(lab):
    lab.start_node(lab.c)
    lab.start_node(lab.d)
    connect(lab, lab.d, lab.c)    # D gets through while within its credit
    try:
        send(lab, lab.d, lab.c, 4 * CREDIT, 5202, timeout=15)
        completed = True
    except Exception:  # noqa: BLE001 - the transfer stalls when the relay stops forwarding: killed on timeout
        completed = False
    assert not completed, "D sent 4x its credit through the relay without a single receipt"
    st = lab.wait_for(lambda: (s := lab.status(lab.relay)) and lab.d.public_key in s["payments"]["blocked"] and s,
                      10, "D blocked")
    assert st["payments"]["devices"][lab.d.public_key]["decision"] == "credit exceeded"
    assert st["drops"].get("unpaid", 0) > 0
    assert st["payments"]["devices"][lab.d.public_key]["receipted"] == 0
    # Issue 11 item 2: the relay told D why (a sealed RELAY_NOTICE), and D shows it.
    try:
        notice = lab.wait_for(lambda: ((lab.status(lab.d).get("payments") or {}).get("relays", {})
                                       .get(lab.relay.public_key, {}).get("notice")), 10, "D's relay notice")
    except Exception:
        raise AssertionError(f"no notice: D payments {lab.status(lab.d).get('payments')}; relay notices_sent "
                             f"{lab.status(lab.relay)['payments'].get('notices_sent')} pending "
                             f"{lab.status(lab.relay)['payments'].get('notices_pending')}; D log: "
                             f"{lab.d.log.read_text()[-3000:]}") from None
    assert not notice["carrying"] and notice["reason"] == "credit_exceeded" and notice["what_to_do"]
    r = lab.topo.run("a", ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", lab.c.overlay], check=False)
    assert r.returncode != 0, "traffic still flows for a device over its credit"
    lab.stop(lab.d)


def test_relay_killed_under_load_claims_what_it_acked_and_keeps_relaying_for_the_device(lab):
    """kill -9 of the relay while B's traffic flows: the relay loses its unpersisted usage (up to
    SETTLE_SECONDS of it) and whatever was in flight on the dead link, so B's count runs ahead of the
    relay's for good. The acked receipt is still claimed, and B is NOT cut off afterwards: it lowers its
    count to the relay's on RELAY_COUNT (docs/payments.md "Lost counts")."""
    lab.start_node(lab.b)
    connect(lab, lab.b, lab.c)
    start = lab.status(lab.relay)["payments"]["devices"].get(lab.b.public_key, {}).get("receipted", 0)
    srv = lab.topo.spawn(lab.c.ns, [sys.executable, XFER, "serve", lab.c.overlay, "5203"], stdout=subprocess.PIPE,
                         text=True)
    sender = None
    try:
        assert srv.stdout.readline().strip() == "listening"
        # Far more than gets through before the kill: the relay dies while B is sending, whatever the speed.
        sender = lab.topo.spawn(lab.b.ns, [sys.executable, XFER, "send", lab.c.overlay, "5203", str(100 * SIZE), "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        b = lab.wait_for(lambda: (p := pay_state(lab, lab.b)) and p["acked"] > start + SIZE // 8 and p, 30,
                         "B's traffic flowing and acked")
        os.kill(lab.relay.proc.pid, signal.SIGKILL)         # mid-transfer
        lab.relay.proc.wait()
        lab.start_relay(lab.relay)
        lab.wait_for(lambda: lab.status(lab.relay).get("port"), 20, "relay restarted")
        before = wallet(lab)
        out = claim(lab)
        line = next(x for x in out["claims"] if x["device_id"] == lab.b.device_id)
        assert line["status"] == "claimed" and line["bytes"] >= b["acked"] - start
        assert wallet(lab) - before == out["total_base"] > 0
    finally:
        if sender is not None:
            lab.topo.stop(sender)
        lab.topo.stop(srv)

    # More than the relay's credit after the restart: before the fix every receipt was rejected OVER_COUNT
    # and B was cut off at CREDIT bytes; now the transfer completes.
    sent = send(lab, lab.b, lab.c, SIZE, 5204, timeout=90)
    assert sent["bytes"] == SIZE > CREDIT
    p = lab.wait_for(lambda: settled(lab, lab.b), 20, "B's receipts acknowledged after the restart")
    st = lab.status(lab.relay)["payments"]
    assert lab.b.public_key not in st["blocked"] and st["devices"][lab.b.public_key]["decision"] == "ok"
    # Whether the kill lost more than TOLERANCE of the relay's count depends on the machine's speed (up to
    # SETTLE_SECONDS of usage plus what was in flight): a slow run may lose less, and then nothing is rejected.
    # When B did write bytes off, it was on the relay's RELAY_COUNT answer, never on its own, and never more
    # than the relay could have lost (the in-process test in tests/client/payments forces the loss).
    if p["written_off"]:
        assert st["count_answers"] >= 1 and p["written_off"] < CREDIT
    print(f"\nrelay killed under load: B wrote off {p['written_off']:,} bytes the relay never counted; "
          f"B's count {p['counted']:,}, acked {p['acked']:,}; relay rejections {st['receipts_rejected']}")
