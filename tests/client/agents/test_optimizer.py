"""The network optimizer (agents/optimizer.py): relay choice, k-median placement, buffer sizes; and its
figure against "first relay" on two whole nodes and two relays in one event loop.

The figure's topology: devices b and c behind NAT (no endpoints) so every packet between them is relayed;
relay r1 (registered first: what "first relay" picks) is 40 ms away one-way from every device, r2 5 ms.
``DelayTransport`` is a MemoryTransport whose links really hold each message for the one-way delay of the
relay they lead to (and report 2x that as their heartbeat RTT, the figure the node measures): the echo
times below are measured through the real daemons, not computed. It is in-process, not the namespace lab:
the delays are emulated per link, no kernel shaping is involved.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from statistics import median
from urllib.parse import urlsplit

from shadowmesh_client.agents.optimizer import RelayMetrics, place_relay, rank_relays, suggest, tune_buffers
from shadowmesh_client.transport.memory import MemoryLink
from tests.client.node.helpers import Mesh, PartitionTransport, wait_for


def test_relay_ranking_weighs_rtt_loss_load_and_price():
    near_lossy = RelayMetrics("near-lossy", 10.0, loss=0.5)
    far = RelayMetrics("far", 30.0)
    busy = RelayMetrics("busy", 12.0, load=0.9)
    ranked = [m.name for m, _ in rank_relays([near_lossy, far, busy, RelayMetrics("down", 1.0, up=False),
                                              RelayMetrics("unmeasured", None)])]
    assert ranked == ["near-lossy", "far", "busy", "unmeasured", "down"]   # 20 < 30 < 120 ms-equivalent
    assert rank_relays([RelayMetrics("a", 10, price_per_gb=50), RelayMetrics("b", 20)])[0][0].name == "b"


def test_k_median_places_relays_where_they_cut_the_most_latency():
    # two sites of devices (eu: e1 e2, us: u1 u2) that cannot reach each other directly; candidates per site
    rtt = {"e1": {"c-eu": 5, "c-us": 90, "c-asia": 160}, "e2": {"c-eu": 8, "c-us": 95, "c-asia": 170},
           "u1": {"c-eu": 90, "c-us": 6, "c-asia": 120}, "u2": {"c-eu": 85, "c-us": 9, "c-asia": 130}}
    one = place_relay(rtt, ["c-eu", "c-us", "c-asia"], pairs=[("e1", "e2"), ("u1", "u2")])
    assert one["chosen"][0] in ("c-eu", "c-us") and one["cost_after_ms"] < one["cost_before_ms"]
    two = place_relay(rtt, ["c-eu", "c-us", "c-asia"], pairs=[("e1", "e2"), ("u1", "u2")], k=2)
    assert sorted(two["chosen"]) == ["c-eu", "c-us"] and two["cost_after_ms"] == (13 + 15) / 2


def test_buffers_follow_the_bandwidth_delay_product():
    assert tune_buffers(1e6, 0.01)["change"] == "keep"            # 10 kB BDP: the 1 MiB default is plenty
    big = tune_buffers(125e6, 0.08)                                 # 1 Gbit/s x 80 ms = 10 MB in flight
    assert big["bdp_bytes"] == 10_000_000 and big["write_limit"] == 1 << 25 and big["change"] == "raise"
    out = suggest({"peers": [{"public_key": "ab" * 16, "path": "relay:r1", "direct": False, "rate_bps": 1e9,
                              "relay_paths": [{"name": "relay:r1", "up": True, "rtt_ms": 80.0},
                                              {"name": "relay:r2", "up": True, "rtt_ms": 10.0}]}]})
    assert {o["kind"] for o in out} == {"relay_choice", "buffers"}
    assert next(o for o in out if o["kind"] == "relay_choice")["gain_ms"] == 70.0


class DelayTransport(PartitionTransport):
    """Links to host H hold every message for ``delay[H]`` seconds (each direction), in order."""

    def __init__(self, delay: dict[str, float]) -> None:
        super().__init__()
        self.delay = delay

    async def dial(self, config, hello, *, peer=None):
        link = await super().dial(config, hello, peer=peer)
        d = self.delay.get(urlsplit(config.url).hostname or "", 0.0)
        if d:
            for end in (link, link._other):
                end.latency = 2 * d
                _delay(end, d)
        return link


def _delay(link: MemoryLink, d: float) -> None:
    loop = asyncio.get_running_loop()
    queue: deque = deque()

    def flush() -> None:
        t = loop.time()
        while queue and queue[0][0] <= t:
            _, other, data = queue.popleft()
            MemoryLink._put(link, other, data)
        if queue:
            loop.call_at(queue[0][0], flush)

    def put(other, data) -> None:
        queue.append((loop.time() + d, other, data))
        if len(queue) == 1:
            loop.call_at(queue[0][0], flush)

    link._put = put


async def _echo_rtts(relays_allowed: tuple[str, ...] | None, n: int = 20) -> tuple[list[float], dict]:
    mesh = Mesh()
    mesh.transport = DelayTransport({"r1": 0.040, "r2": 0.005})
    mesh.relay("r1")
    mesh.relay("r2")
    urls = {"r1": "ws://r1:7000/relay", "r2": "ws://r2:7000/relay"}
    pin = tuple(urls[r] for r in relays_allowed) if relays_allowed else ()
    b, c = mesh.node("b", endpoint=False, relays=pin), mesh.node("c", endpoint=False, relays=pin)
    mesh.start()
    await mesh.ready()
    try:
        await wait_for(lambda: (b.path(c) or "").startswith("relay:") and (c.path(b) or "").startswith("relay:"),
                       10, "relayed paths")
        status = b.daemon.status()
        rtts = []
        for i in range(n):
            ping, pong = b.packet_to(c, b"ping%d" % i), c.packet_to(b, b"pong%d" % i)
            t0 = time.perf_counter()
            b.tun.inject(ping)
            await wait_for(lambda p=ping: p in c.tun.written, 5, "ping", step=0.0005)
            c.tun.inject(pong)
            await wait_for(lambda p=pong: p in b.tun.written, 5, "pong", step=0.0005)
            rtts.append((time.perf_counter() - t0) * 1000)
        return rtts, status
    finally:
        await mesh.stop()


def test_the_optimizers_relay_beats_the_first_relay():
    async def scenario():
        first, _ = await _echo_rtts(("r1",))                     # "first relay": the first registered
        _, probe = await _echo_rtts(None, n=1)                   # both relays up: what the node measures
        keys = {r["public_key"][:8]: r for r in probe["relays"]}
        metrics = [RelayMetrics(f"relay:{k}", r["rtt_ms"]) for k, r in keys.items()]
        best = rank_relays(metrics)[0][0]
        chosen = "r2" if keys[best.name[6:]]["url_host"].startswith("r2") else "r1"
        optimized, _ = await _echo_rtts((chosen,))
        return first, optimized, chosen, metrics

    first, optimized, chosen, metrics = asyncio.run(scenario())
    print(f"\noptimizer: measured relay RTTs {[(m.name, m.rtt_ms) for m in metrics]}; chose {chosen}; echo RTT "
          f"b->c->b median {median(first):.1f} ms via the first relay vs {median(optimized):.1f} ms via the "
          f"optimizer's ({median(first) / median(optimized):.1f}x lower)")
    assert chosen == "r2"
    assert median(optimized) < median(first) / 3
