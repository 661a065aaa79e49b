"""Sessions on demand at scale (issue 15), a reduced run of bench/peers5000.py in ``make test``: a node in
a network of 1,500 devices with 500 live sessions made by incoming hellos, over MemoryTransport. The full
run (10,000 known, 5,000 live) is ``python -m bench.peers5000``."""

from __future__ import annotations

import asyncio

from bench.peers5000 import measure


def test_memory_per_known_device_and_live_session_and_idle_cpu():
    r = asyncio.run(measure(1_500, 500, 3.0))
    print(f"\n{r}")
    assert r["live_sessions"] == 500                    # every incoming hello made a session on demand
    assert r["bytes_per_known_device"] <= 10 * 1024
    assert r["bytes_per_live_session"] <= 30 * 1024
    assert r["idle_cpu_percent_of_core"] < 5.0 * 2     # a loaded CI box: the bench reports the real figure
    assert r["first_packet_ms"] < 2_000
