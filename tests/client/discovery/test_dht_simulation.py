"""1,000 DHT nodes in one process (pure simulated network, real DhtNode/RecordStore/records), under 10 %
churn per minute: lookup success >= 99 % and mean hops <= log2(N) + 2 (issue 15)."""

from __future__ import annotations

import math

from tests.client.discovery.simnet import SimNet

N = 1_000


def test_thousand_nodes_lookups_under_ten_percent_churn_per_minute():
    net = SimNet(N, churn_per_minute=0.10)
    found = hops = tries = 0
    departed = 0
    for _ in range(30):                       # 30 steps of 10 s: 5 minutes, ~50 % of the nodes replaced
        before = len(net.nodes)
        net.step(10.0)
        departed += len(net.nodes) - before
        live = net.live()
        for _ in range(40):
            frm, dst = net.rng.sample(live, 2)
            ok, h = net.lookup(frm, dst.ident.public_key)
            tries += 1
            found += ok
            hops += h if ok else 0
    success = found / tries
    mean_hops = hops / max(found, 1)
    print(f"\nDHT simulation: {N} live nodes, {departed} departed and replaced over 5 simulated minutes "
          f"(10 %/min), {tries} lookups: success {success:.2%}, mean hops {mean_hops:.2f} "
          f"(bound log2(N)+2 = {math.log2(N) + 2:.2f}), RPCs {net.rpcs}, failed RPCs {net.failed_rpcs}")
    assert len(net.live()) == N
    assert departed >= 0.4 * N               # the churn really happened
    assert success >= 0.99
    assert mean_hops <= math.log2(N) + 2
