"""Observability in-process: the relay's and the node's metrics ports (real HTTP, scraped with urllib and
parsed with prometheus_client's own parser), /healthz and /livez, the snapshot discipline, the catalogue's
naming rules, the RPC watch against a real refused connection, and tracing off by default."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shadowmesh_client.observability import tracing
from shadowmesh_client.observability.catalogue import ALL, BY_NAME, DIRECTORY, NODE, RELAY
from shadowmesh_client.observability.http import serve
from shadowmesh_client.observability.logs import JsonFormatter, Redactor, configure
from shadowmesh_client.observability.rpc import RpcWatch
from shadowmesh_client.observability.snapshot import Accumulator, Published, SnapshotBuilder, SnapshotCollector
from shadowmesh_client.relay.daemon import RelaySettings
from tests.client.node.helpers import Mesh
from tests.client.node.helpers import wait_for as node_wait_for
from tests.client.relay.helpers import no_gc_tuning, relay_lab, run_bounded, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of one scrape of ``127.0.0.1:port/metrics``."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(port: int, path: str) -> int:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


# ---- the catalogue ------------------------------------------------------------------------------------
def test_catalogue_names_follow_prometheus_conventions_and_have_no_per_device_labels():
    for m in ALL:
        assert m.name.startswith("shadowmesh_") and m.name == m.name.lower()
        assert not m.name.endswith("_total"), f"{m.name}: the _total suffix is added for counters"
        assert m.kind in ("counter", "gauge")
        assert set(m.labels) == set(m.values) and all(m.values[label] for label in m.labels)
        assert not set(m.labels) & {"device", "peer", "key", "address", "endpoint"}, m.name
        assert sum(len(v) for v in m.values.values()) <= 12, f"{m.name}: too many series"
    assert len(BY_NAME) == len(ALL)
    assert "shadowmesh_node_transport_bytes_total" in {m.exposed for m in NODE}


def test_builder_starts_every_series_at_zero_and_refuses_labels_outside_the_catalogue():
    b = SnapshotBuilder(RELAY)
    b.set("shadowmesh_relay_bytes", 10, direction="in")
    with pytest.raises(ValueError):
        b.set("shadowmesh_relay_bytes", 1, direction="sideways")
    with pytest.raises(KeyError):
        b.set("shadowmesh_node_sessions", 1)   # not a relay family
    snap = b.freeze(ready=True)
    values = {(n, lv): v for n, lv, v in snap.samples}
    assert values[("shadowmesh_relay_bytes", ("in",))] == 10
    assert values[("shadowmesh_relay_bytes", ("out",))] == 0
    assert values[("shadowmesh_relay_dropped_messages", ("queue_full",))] == 0


def test_accumulator_stays_monotonic_when_links_come_and_go():
    class L:   # a link's counter
        def __init__(self, n):
            self.n = n

    acc = Accumulator()
    a, b = L(100), L(5)
    assert acc.total([(a, a.n), (b, b.n)]) == 105
    a.n = 150
    assert acc.total([(a, a.n)]) == 155          # b closed: its last figure is kept
    c = L(1)
    assert acc.total([(c, c.n)]) == 156          # a closed too
    assert acc.total([]) == 156


def test_collector_serves_only_the_published_snapshot():
    published = Published()
    collector = SnapshotCollector(published, RELAY)
    b = SnapshotBuilder(RELAY)
    b.set("shadowmesh_relay_sessions", 3)
    first = b.freeze(True)
    published.snapshot = first
    b.set("shadowmesh_relay_sessions", 4)         # a builder is the loop's; the frozen snapshot is not affected
    families = {f.name: f for f in collector.collect()}
    assert families["shadowmesh_relay_sessions"].samples[0].value == 3


def test_healthz_and_livez_follow_the_snapshot():
    published = Published()
    server = serve("127.0.0.1", 0, [SnapshotCollector(published, DIRECTORY)], published)
    port = server.server_address[1]
    try:
        assert get(port, "/healthz") == 503 and get(port, "/livez") == 503     # nothing published yet
        published.snapshot = SnapshotBuilder(DIRECTORY).freeze(ready=False)
        assert get(port, "/healthz") == 503 and get(port, "/livez") == 200
        published.snapshot = SnapshotBuilder(DIRECTORY).freeze(ready=True)
        assert get(port, "/healthz") == 200
        samples = scrape(port)
        assert ("process_cpu_seconds_total", ()) in samples and ("process_resident_memory_bytes", ()) in samples
    finally:
        server.shutdown()
        server.server_close()


# ---- the relay daemon ---------------------------------------------------------------------------------
def test_relay_metrics_port_counts_handshakes_bytes_sessions_and_drops(monkeypatch):
    no_gc_tuning(monkeypatch)

    async def scenario():
        port = free_port()
        async with relay_lab(RelaySettings(metrics_port=port)) as lab:
            a, b = lab.device(), lab.device()
            lab.registry.sync()                   # the relay's directory learns the two devices
            await a.connect()
            await b.connect()
            sent = await a.forward(b, 4000)
            await b.recv()
            await a.forward(a, 10)                # to itself: dropped, reason to_self
            await wait_for(lambda: scrape(port)[("shadowmesh_relay_bytes_total", (("direction", "in"),))] >= sent,
                           timeout=5, what="bytes in the snapshot")
            m = await asyncio.to_thread(scrape, port)
            assert m[("shadowmesh_relay_sessions", ())] == 2
            assert m[("shadowmesh_relay_handshakes_total", (("result", "completed"),))] >= 2
            assert m[("shadowmesh_relay_bytes_total", (("direction", "out"),))] >= sent
            assert m[("shadowmesh_relay_dropped_messages_total", (("reason", "to_self"),))] == 1
            assert m[("shadowmesh_ready", ())] == 1
            assert not [k for k in m if "device" in dict(k[1])], "no per-device series by default"
            assert get(port, "/healthz") == 200 and get(port, "/livez") == 200
        with pytest.raises(OSError):                # the port is closed with the daemon
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)

    run_bounded(scenario())


# ---- the node daemon ----------------------------------------------------------------------------------
def test_node_metrics_port_counts_traffic_by_path_and_handshakes():
    async def scenario():
        mesh = Mesh()
        a, b = mesh.node("a"), mesh.node("b")
        port = free_port()
        a.daemon.metrics = ("127.0.0.1", port)
        mesh.start()
        await mesh.ready()
        try:
            packet = a.packet_to(b, b"x" * 1200)
            for _ in range(20):
                a.tun.inject(packet)
            await node_wait_for(lambda: b.tun.written.count(packet) == 20, 5, "packets through")

            key = ("shadowmesh_node_transport_bytes_total", (("direction", "out"), ("path", "direct")))

            def direct_out() -> float:
                return scrape(port)[key]
            await node_wait_for(lambda: direct_out() > 20 * 1200, 5, "bytes in the snapshot")
            m = await asyncio.to_thread(scrape, port)
            assert m[("shadowmesh_node_sessions", ())] == 1
            assert m[("shadowmesh_node_handshakes_total", (("result", "completed"),))] >= 1
            assert m[("shadowmesh_node_tun_packets_total", (("direction", "rx"),))] >= 20
            assert m[("shadowmesh_node_peer_paths", (("path", "direct"),))] == 1
            assert m[("shadowmesh_node_transport_bytes_total", (("direction", "out"), ("path", "relay")))] == 0
            assert m[("shadowmesh_directory_devices", ())] == 2
            assert get(port, "/healthz") == 200
        finally:
            await mesh.stop()

    run_bounded(scenario())


# ---- RPC watch, logs, tracing -------------------------------------------------------------------------
def test_rpc_watch_counts_a_refused_connection_of_the_real_json_rpc_client():
    from shadowmesh_client.directory.reader import JsonRpc
    from shadowmesh_client.errors import ChainError

    watch = RpcWatch()
    rpc = JsonRpc(f"http://127.0.0.1:{free_port()}", timeout=2, watch=watch)
    with pytest.raises(ChainError):
        rpc.call("eth_blockNumber", [])
    rpc.close()
    assert watch.counts() == (1, {"timeout": 0, "connection": 1, "other": 0})


def test_json_logs_use_spec_levels_and_redact_registered_secrets(capsys):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        redactor = configure("DEBUG", "json", ["/api/v1/ws/secret-k3"])
        redactor.add("ab" * 32)
        log = logging.getLogger("shadowmesh_client.test")
        log.warning("listening on %s", "ws://198.18.0.20:7443/api/v1/ws/secret-k3")
        log.critical("seed %s", "ab" * 32)
        try:
            raise RuntimeError("path /api/v1/ws/secret-k3")
        except RuntimeError:
            log.exception("boom")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert [r["level"] for r in lines] == ["WARN", "FATAL", "ERROR"]
    text = json.dumps(lines)
    assert "secret-k3" not in text and "ab" * 32 not in text and "[redacted]" in text
    assert {"ts", "level", "logger", "msg", "pid"} <= set(lines[0])
    assert isinstance(JsonFormatter(), logging.Formatter) and isinstance(redactor, Redactor)


def test_tracing_is_off_by_default_and_costs_nothing(monkeypatch):
    monkeypatch.delenv(tracing.ENV, raising=False)
    with tracing._reset():
        assert tracing.setup_tracing("test") is False
        assert not tracing.enabled()

        def hook(hello, source=None):
            return None
        assert tracing.traced(hook, "x") is hook
        with tracing.span("x") as s:
            assert s is None


def test_tracing_asked_for_without_the_sdk_stays_off_with_a_warning(monkeypatch, caplog):
    if "opentelemetry" in sys.modules or _installed("opentelemetry.sdk"):
        pytest.skip("opentelemetry-sdk is installed here")
    with tracing._reset(), caplog.at_level(logging.WARNING):
        assert tracing.setup_tracing("test", "otlp") is False
    assert "not installed" in caplog.text


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_snapshot_publish_is_one_attribute_store():
    """The collector's thread reads ``published.snapshot`` once; a publish replaces it whole."""
    published = Published()
    old = published.snapshot
    b = SnapshotBuilder(DIRECTORY)
    published.snapshot = b.freeze(True)
    assert published.snapshot is not old and isinstance(published.snapshot.samples, tuple)
    assert time.monotonic() - published.snapshot.taken_at < 5
