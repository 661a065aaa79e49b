"""The relay scale benchmark's harness (bench/relay.py) at a small size: a real relay
process and two client processes on loopback, real handshakes against the in-process directory.

Figures are not asserted (speed targets are measured by the benchmark itself); what is asserted is that
every session the bench counts is a real authenticated session the relay holds, so ``make bench`` reports
what it claims, and that a key outside the synthetic directory is refused by the same authenticate path.
"""

from __future__ import annotations

import time

from bench import relay as bench
from shadowmesh_client.crypto import Identity
from shadowmesh_client.protocol import Session
from shadowmesh_client.relay.daemon import RelayDaemon, RelaySettings


def test_every_counted_session_is_an_authenticated_relay_link():
    r = bench.measure(40, clients=2, idle_seconds=0.2, log=lambda *a: None)
    assert r["sessions"] == r["relay_links"] == r["relay_routes"] == r["relay_sessions_kept"] == 40
    assert r["client_errors"] == {} and r["relay_refused"] == 0
    assert r["client_processes"] == 2
    assert r["bytes_per_session"] > 0 and r["handshakes_per_s"] > 0


def test_the_synthetic_directory_trusts_its_devices_and_nothing_else():
    directory, relay_id = bench.build_directory(5, "seed")
    now = time.time()
    assert directory.peer_for_key(relay_id.public_key, now).relay
    assert all(directory.is_trusted(bench.identity("seed", i).public_key, now) for i in range(5))
    daemon = RelayDaemon(relay_id, bench.StaticSource(directory), RelaySettings())
    cfg = bench.protocol_config()

    def hello(ident):
        return Session(ident, relay_id.public_key, cfg, lambda k: True).initiate(now)

    member = bench.identity("seed", 3)
    assert daemon.authenticate(hello(member))[1] == member.public_key
    assert daemon.authenticate(hello(bench.identity("other-seed", 3))) is None
    assert daemon.authenticate(hello(Identity.generate())) is None
    assert daemon.refused == 2
