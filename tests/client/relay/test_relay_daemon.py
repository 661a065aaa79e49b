"""The relay daemon in-process (MemoryTransport, MemoryRegistry): forwarding, the door, revocation sweeps,
drops, status, metrics, and the task/shutdown discipline (review defects of the restructure)."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import time
import urllib.request

import pytest

from shadowmesh_client.crypto import Identity
from shadowmesh_client.daemon_common import node_link_limits
from shadowmesh_client.errors import ConfigError
from shadowmesh_client.protocol import Session
from shadowmesh_client.relay import EnvelopeType, RelayConfig, encode_forward
from shadowmesh_client.relay.core import DeviceUsage
from shadowmesh_client.relay.daemon import SWEEP_SECONDS, RelayDaemon, RelaySettings
from shadowmesh_client.relay.metrics import RelayCollector
from shadowmesh_client.relay.server import RelayServer
from shadowmesh_client.relay.usage import UsageBook
from shadowmesh_client.transport import ClientConfig, HandshakeRejectedError, ServerConfig
from shadowmesh_client.transport.base import CLOSE_REVOKED
from shadowmesh_client.transport.memory import MemoryTransport
from tests.client.relay.helpers import RELAY_URL, inner_frame, relay_lab, wait_for

STATUS_KEYS = {"public_key", "pid", "started_at", "port", "devices_connected", "connected_devices", "usage", "drops",
               "refused", "disconnected", "decoys_served", "payments", "stopped", "written_at"}


def other_tasks() -> set[asyncio.Task]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_two_relay_clients_talk_through_the_relay_and_usage_is_counted():
    from shadowmesh_client.directory.trust import TrustPolicy
    from shadowmesh_client.node.relays import RelayClient  # the node's own relay client
    from shadowmesh_client.node.tasks import Spawner

    async with relay_lab() as lab:
        a_dev, b_dev = lab.registry.register(), lab.registry.register()
        lab.registry.sync()
        delivered: list[tuple[bytes, bytes]] = []
        relay_key = lab.relay.identity.public_key

        def client(dev, spawn):
            view = lab.registry.source()                 # the device's own directory
            return RelayClient(dev.identity, relay_key, RELAY_URL, lab.protocol,
                               TrustPolicy(view.directory, dev.identity.public_key),
                               ClientConfig(RELAY_URL, limits=node_link_limits()),
                               lambda source, inner, rc: delivered.append((source, bytes(inner))), lambda: None,
                               dial=lab.transport.dial, spawn=spawn)

        async with asyncio.TaskGroup() as group:
            spawn = Spawner(group)
            a, b = client(a_dev, spawn), client(b_dev, spawn)
            a.start()
            b.start()
            try:
                await wait_for(lambda: a.ready and b.ready and len(lab.daemon.server.core) == 2,
                               what="both connected")
                frame = inner_frame(a_dev.identity.public_key, 5000)
                await a.link.send(encode_forward(b_dev.identity.public_key, frame))
                await wait_for(lambda: delivered, what="delivery")
                assert delivered == [(a_dev.identity.public_key, frame)]
                await wait_for(lambda: lab.daemon.usage_totals().get(a_dev.identity.public_key.hex(), {})
                               .get("bytes_in", 0) > 5000, timeout=2 * SWEEP_SECONDS + 1, what="usage folded")
                usage = lab.daemon.usage_totals()
                assert usage[b_dev.identity.public_key.hex()]["bytes_out"] >= len(frame) + 33
                assert lab.daemon.status()["connected_devices"] == sorted(
                    [a_dev.identity.public_key.hex(), b_dev.identity.public_key.hex()])
            finally:
                await a.close()
                await b.close()
                spawn.cancel_all()


async def test_unregistered_key_own_key_and_replayed_hello_are_refused():
    async with relay_lab() as lab:
        stranger = lab.device(lab.registry.register())   # registered after the relay's last sync: unknown
        with pytest.raises(HandshakeRejectedError):
            await stranger.connect()
        assert lab.daemon.refused == 1
        anyone = Identity.generate().public_key    # a hello whose sender is the relay's own key
        own = Session(lab.relay.identity, anyone, lab.protocol, lambda k: True).initiate(time.time())
        with pytest.raises(HandshakeRejectedError):
            await lab.transport.dial(ClientConfig(RELAY_URL), own)
        assert lab.daemon.refused == 2
        lab.registry.sync()
        await stranger.connect()                          # trusted now
        with pytest.raises(HandshakeRejectedError):       # the same hello again: a replay
            await lab.transport.dial(ClientConfig(RELAY_URL), stranger.hello)
        assert lab.daemon.refused == 3
        assert lab.daemon.server.server.decoys_served == 3


async def test_revoked_device_is_disconnected_with_4001_within_a_bounded_time():
    async with relay_lab() as lab:
        dev = lab.device()
        lab.registry.sync()
        await dev.connect()
        t0 = time.monotonic()
        lab.registry.revoke(dev.registered)
        lab.registry.sync()
        await asyncio.wait_for(dev.link.wait_closed(), 1.0)
        assert time.monotonic() - t0 < 0.5      # woken by the change, not by the periodic sweep
        assert dev.link.close_code == CLOSE_REVOKED
        assert lab.daemon.disconnected == 1 and dev.key not in lab.daemon.sessions
        with pytest.raises(HandshakeRejectedError):
            await dev.connect()


async def test_sweeps_are_owned_by_one_task_and_never_overlap():
    running = {"now": 0, "max": 0, "calls": 0}

    class SlowSweeps(RelayDaemon):
        async def sweep(self):
            running["now"] += 1
            running["calls"] += 1
            running["max"] = max(running["max"], running["now"])
            try:
                await asyncio.sleep(0.05)
                await super().sweep()
            finally:
                running["now"] -= 1

    async with relay_lab(daemon_cls=SlowSweeps) as lab:
        tasks_before = len(other_tasks())
        devices = [lab.registry.register() for _ in range(6)]
        lab.registry.sync()
        for dev in devices:                     # six directory changes in a burst
            lab.registry.revoke(dev)
            lab.registry.sync()
            assert len(other_tasks()) == tasks_before   # a change starts no task of its own
        await asyncio.sleep(0.3)
        assert running["calls"] >= 1
    assert running["max"] == 1


async def test_rate_limited_and_queue_full_drops_are_counted():
    settings = RelaySettings(rate_bytes_per_second=1000.0, queue_max_bytes=70_000)
    async with relay_lab(settings) as lab:
        a, b, c = lab.device(), lab.device(), lab.device()
        lab.registry.sync()
        for d in (a, b, c):
            await d.connect()
        for _ in range(30):                     # 30 x 60 KB at 1 kB/s after a 1 MiB burst: rate limited
            await a.forward(b, 60_000)
        # b never reads: once its link's write buffer is full (1 MiB: a's burst nearly fills it; the relay
        # sends with send_nowait while there is room, issue 17), its queue fills, then drops
        for _ in range(6):
            await c.forward(b, 60_000)
        drops = await wait_for(lambda: lab.daemon.drops.get("rate_limited") and lab.daemon.drops,
                               timeout=2 * SWEEP_SECONDS + 1, what="drops folded")
        assert drops["rate_limited"] >= 10
        await wait_for(lambda: lab.daemon.drops.get("queue_full"), timeout=2 * SWEEP_SECONDS + 1, what="queue drops")
        assert lab.daemon.status()["drops"] == lab.daemon.drops


async def test_status_file_keeps_its_keys_and_says_stopped(tmp_path):
    path = tmp_path / "relay-status.json"
    async with relay_lab(RelaySettings(status_file=str(path))):
        await wait_for(path.exists, what="status file")
        assert set(json.loads(path.read_text())) == STATUS_KEYS
    data = json.loads(path.read_text())
    assert data["stopped"] is True and set(data) == STATUS_KEYS and data["payments"] is None


def test_metrics_collector_reads_only_the_published_snapshot():
    book = UsageBook()
    key = bytes(32)
    book.fold({key: DeviceUsage(bytes_in=100, messages_in=1, bytes_out=40, messages_out=1)})
    book.totals[key][0] += 999                  # the loop mutating its dict between publications
    samples = {(s.labels["device"], s.labels["direction"]): s.value
               for fam in RelayCollector(book).collect() for s in fam.samples}
    assert samples == {(key.hex(), "in"): 100, (key.hex(), "out"): 40}
    assert isinstance(book.snapshot, tuple)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_metrics_server_serves_own_registry_and_is_shut_down_on_exit():
    port = free_port()
    per_device = functools.partial(RelayDaemon, metrics_per_device=True)  # opt-in: high cardinality
    async with relay_lab(RelaySettings(metrics_port=port), daemon_cls=per_device) as lab:
        a, b = lab.device(), lab.device()
        lab.registry.sync()
        await a.connect()
        await b.connect()
        await a.forward(b, 2000)
        await wait_for(lambda: lab.daemon.usage.snapshot, timeout=2 * SWEEP_SECONDS + 1, what="snapshot")
        url = f"http://127.0.0.1:{port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        assert f'shadowmesh_relay_device_bytes_total{{device="{a.key.hex()}",direction="in"}}' in body
        assert "python_gc_objects_collected_total" not in body    # not the process-global REGISTRY
    with pytest.raises(OSError):
        await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=2).read())


async def test_a_failing_task_stops_run_with_its_error_and_closes_the_source():
    class Broken(RelayDaemon):
        async def sweep(self):
            raise RuntimeError("sweep failed: disk full")

    async with relay_lab(daemon_cls=Broken) as lab:
        with pytest.raises(RuntimeError, match="disk full"):
            await asyncio.wait_for(asyncio.shield(lab.task), 3 * SWEEP_SECONDS)
        assert lab.source.closed
        assert other_tasks() == set()


async def test_shutdown_awaits_every_task_then_closes_the_source():
    async with relay_lab() as lab:
        devices = [lab.device() for _ in range(3)]
        lab.registry.sync()
        for d in devices:
            await d.connect()
        for _ in range(20):                     # a backlog for devices[1]: a writer task is busy
            await devices[0].forward(devices[1], 60_000)
        lab.stop.set()
        await asyncio.wait_for(lab.task, 5)
    assert lab.source.closed
    assert other_tasks() == set()
    assert all(d.link.closed for d in devices)


async def test_relay_server_close_awaits_its_reply_tasks():
    """A LOCAL reply in flight (e.g. a ledger commit) is cancelled AND finished when close() returns."""
    transport = MemoryTransport()
    ended = []

    async def slow(key, frame):
        try:
            await asyncio.sleep(30)
        finally:
            ended.append(key)

    key = Identity.generate().public_key
    server = RelayServer(ServerConfig(host="r", port=1, path="/"), RelayConfig(), lambda hello: ([], key),
                         on_local=slow, transport=transport)
    await server.start()
    link = await transport.dial(ClientConfig("ws://r:1/"), b"hello")
    from shadowmesh_client.relay import encode_local

    await link.send(encode_local(b"\xfa" + bytes(70)))
    await wait_for(lambda: server._repliers, what="reply in flight")
    await server.close()
    assert ended == [key] and other_tasks() == set()


async def test_a_device_that_is_not_a_relay_cannot_run_the_relay(monkeypatch):
    from lab.directory import MemoryRegistry
    from tests.client.relay.helpers import no_gc_tuning

    no_gc_tuning(monkeypatch)
    registry = MemoryRegistry()
    plain = registry.register()
    source = registry.source()
    daemon = RelayDaemon(plain.identity, source, RelaySettings(listen="x:1"), transport=MemoryTransport())
    with pytest.raises(ConfigError, match="not registered as a relay"):
        await daemon.run(asyncio.Event())
    assert source.closed


async def test_envelopes_after_the_handshake_are_deliveries_from_the_authenticated_key():
    async with relay_lab() as lab:
        a, b = lab.device(), lab.device()
        lab.registry.sync()
        await a.connect()
        await b.connect()
        await a.forward(b, 300)
        env = await b.recv()
        assert env.type is EnvelopeType.DELIVER and env.key == a.key
