"""The local API (api/) on real daemons in one event loop: a Node and a RelayDaemon over MemoryTransport,
FakeTun and a MemoryRegistry (tests/client/node/helpers.py), the API on a real loopback socket, queried
with a real HTTP client. Auth, Origin/Host checks, bounds, every GET route, SSE, an injected handshake
flood turning into a finding, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import aiohttp
import pytest

from shadowmesh_client.api import ApiSettings
from shadowmesh_client.api.auth import ensure_token
from shadowmesh_client.api.openapi import openapi_document
from shadowmesh_client.transport import ClientConfig
from shadowmesh_client.transport.errors import HandshakeRejectedError, TransportError
from tests.client.node.helpers import Mesh, wait_for

pytestmark = pytest.mark.timeout(60)


def run(coro):
    async def bounded():
        async with asyncio.timeout(45):
            return await coro
    return asyncio.run(bounded())


def api_settings(tmp_path, name="a", **kw) -> ApiSettings:
    kw.setdefault("interval", 0.1)
    kw.setdefault("audit_window", 0.5)
    return ApiSettings(listen="127.0.0.1:0", token_file=str(tmp_path / f"{name}-token"), **kw)


class Api:
    """An HTTP client of one daemon's API with its token."""

    def __init__(self, server, session: aiohttp.ClientSession) -> None:
        self.server, self.session = server, session
        self.base = server.url
        self.auth = {"Authorization": f"Bearer {server.token}"}

    async def get(self, path: str, *, headers=None, status=200):
        async with self.session.get(self.base + path, headers={**self.auth, **(headers or {})}) as r:
            assert r.status == status, (path, r.status, await r.text())
            return await r.json() if r.content_type == "application/json" else await r.text()

    async def post(self, path: str, body, status=200):
        async with self.session.post(self.base + path, headers=self.auth, json=body) as r:
            assert r.status == status, (path, r.status, await r.text())
            return await r.json()


async def two_nodes_and_relay(tmp_path, **api_kw):
    mesh = Mesh()
    relay = mesh.relay()
    a = mesh.node("a", api=api_settings(tmp_path, "a", **api_kw))
    b = mesh.node("b")
    mesh.start()
    await mesh.ready()
    await wait_for(lambda: a.daemon.api is not None, 5, "a's api")
    return mesh, relay, a, b


async def traffic(a, b, n=20, size=20_000):
    for i in range(n):
        a.tun.inject(a.packet_to(b, bytes([i % 256]) * size))
    await wait_for(lambda: len(b.tun.written) >= n, 5, "packets through")


def test_token_file_is_created_0600_reused_and_tightened(tmp_path):
    path = tmp_path / "state" / "api-token"
    token = ensure_token(path)
    assert len(token) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o644)
    assert ensure_token(path) == token                    # reused across restarts...
    assert stat.S_IMODE(path.stat().st_mode) == 0o600     # ...and a loose mode is tightened


def test_the_api_refuses_wrong_tokens_origins_and_hosts_and_serves_the_rest(tmp_path):
    async def scenario():
        mesh, relay, a, b = await two_nodes_and_relay(tmp_path)
        try:
            server = a.daemon.api
            async with aiohttp.ClientSession() as s:
                api = Api(server, s)
                base = server.url
                async with s.get(base + "/api/v1/status") as r:
                    assert r.status == 401
                async with s.get(base + "/api/v1/status", headers={"Authorization": "Bearer " + "x" * 43}) as r:
                    assert r.status == 401
                await api.get("/api/v1/status", headers={"Origin": "http://evil.example"}, status=403)
                await api.get("/api/v1/status", headers={"Host": "attacker.example:80"}, status=403)
                await api.get("/api/v1/status", headers={"Origin": base})      # the dashboard's own origin
                async with s.get(base + "/") as r:                                 # the page itself: public, no data
                    assert r.status == 200 and "ShadowMesh dashboard" in await r.text()
                    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
                for name in ("app.js", "style.css"):
                    async with s.get(f"{base}/static/{name}") as r:
                        assert r.status == 200
                async with s.get(base + "/static/..%2Fserver.py") as r:
                    assert r.status == 404
                async with s.post(base + "/api/v1/agents/troubleshoot", headers=api.auth,
                                  data=b"x" * (server.settings.max_body_bytes + 1)) as r:
                    assert r.status == 413                                          # bodies are capped
                assert server.stats["unauthorized"] == 2 and server.stats["forbidden"] == 2
        finally:
            await mesh.stop()
    run(scenario())


def test_every_documented_get_route_answers_with_real_figures(tmp_path):
    async def scenario():
        mesh, relay, a, b = await two_nodes_and_relay(tmp_path)
        try:
            await traffic(a, b)
            server = a.daemon.api
            await wait_for(lambda: any(s["in_bps"] + s["out_bps"] > 0 for s in server.history.samples), 5,
                           "a sample with traffic")
            async with aiohttp.ClientSession() as s:
                api = Api(server, s)
                doc = await api.get("/api/v1/openapi.json")
                routes = {r.resource.canonical for r in server._runner.app.router.routes()
                          if r.resource.canonical.startswith("/api/")}
                assert routes == set(doc["paths"])                              # every route documented
                for path, ops in doc["paths"].items():
                    if "get" in ops and path not in ("/api/v1/stream", "/api/v1/agents/doctor",
                                                     "/api/v1/agents/terraform"):
                        await api.get(path)
                st = await api.get("/api/v1/status")
                assert st["kind"] == "node" and st["overlay"] == a.overlay and st["peers_connected"] >= 1
                peers = (await api.get("/api/v1/peers"))["peers"]
                pb = next(p for p in peers if p["public_key"] == b.key.hex())
                assert pb["session"] == "established" and pb["path"] == "direct" and pb["bytes_sent"] > 20 * 20_000
                tr = await api.get("/api/v1/traffic?seconds=60")
                assert max(x["out_bps"] for x in tr["samples"]) > 0
                assert any(b.key.hex() in x["peers"] for x in tr["samples"])
                events = (await api.get("/api/v1/events"))["events"]
                assert any(e["kind"] == "peer" and "established" in e["message"] for e in events)
                assert (await api.get("/api/v1/sync"))["devices"] == 3
                assert (await api.get("/api/v1/earnings"))["role"] == "payer"
                assert "shadowmesh_api_requests_total" in await api.get("/api/v1/metrics")
                tf = await api.get("/api/v1/agents/terraform?cloud=hetzner")
                assert 'resource "hcloud_server"' in tf
                await api.get("/api/v1/agents/terraform?cloud=nowhere", status=400)
                sol = await api.post("/api/v1/agents/troubleshoot",
                                     {"logs": ["error: cannot listen on 0.0.0.0:443: address already in use"]})
                assert sol["problems"][0]["problem"] == "listen port taken"
                an = await api.post("/api/v1/agents/analyze", {"config": "rpc_url: http://10.0.0.5:8545\n"
                                                                          "network_id: 1\nregistry: '0x" + "11" * 20
                                                                          + "'\nchain_id: 137\n"})
                assert an["valid"] and any(i["field"] == "rpc_url" for i in an["issues"])
                pl = await api.post("/api/v1/agents/placement", {"rtt": {"x": {"far": 90, "near": 10},
                                                                         "y": {"far": 90, "near": 12}},
                                                                 "candidates": ["far", "near"]})
                assert pl["chosen"] == ["near"]
        finally:
            await mesh.stop()
    run(scenario())


def test_sse_streams_samples_and_findings_and_is_bounded(tmp_path):
    async def scenario():
        mesh, relay, a, b = await two_nodes_and_relay(tmp_path, max_streams=1)
        try:
            server = a.daemon.api
            async with aiohttp.ClientSession() as s:
                api = Api(server, s)
                async with s.get(server.url + "/api/v1/stream", headers=api.auth) as stream:
                    assert stream.status == 200 and stream.content_type == "text/event-stream"
                    async with s.get(server.url + "/api/v1/stream", headers=api.auth) as second:
                        assert second.status == 503                           # max_streams=1
                    # a handshake flood: garbage hellos at a's listener (refused, counted by the node)
                    for _ in range(40):
                        with pytest.raises((HandshakeRejectedError, TransportError)):
                            await mesh.transport.dial(ClientConfig("ws://a:7000/mesh-a"), os.urandom(120))
                    kinds = set()
                    async with asyncio.timeout(10):
                        while "finding" not in kinds:
                            line = (await stream.content.readline()).decode()
                            if line.startswith("event: "):
                                kinds.add(line[7:].strip())
                    assert "sample" in kinds
                findings = await api.get("/api/v1/findings")
                f = findings["recent"][0]
                assert f["kind"] == "handshake_flood" and f["severity"] == "high" and f["action"]
                assert f["evidence"]["value"] >= 10
        finally:
            await mesh.stop()
    run(scenario())


def test_a_clean_run_raises_no_finding(tmp_path):
    async def scenario():
        mesh, relay, a, b = await two_nodes_and_relay(tmp_path)
        try:
            for _ in range(10):
                await traffic(a, b, n=5, size=2_000)
                b.tun.written.clear()
                await asyncio.sleep(0.2)
            assert a.daemon.api.auditor.windows >= 3
            assert list(a.daemon.api.auditor.findings) == []
        finally:
            await mesh.stop()
    run(scenario())


def test_relay_api_reports_devices_usage_and_earnings(tmp_path):
    async def scenario():
        from shadowmesh_client.relay.daemon import RelayDaemon, RelaySettings

        mesh = Mesh()
        device = mesh.registry.register(relay=True, endpoint="ws://relay:7000/relay")
        settings = RelaySettings(listen="relay:7000", api=api_settings(tmp_path, "relay"))
        daemon = RelayDaemon(device.identity, mesh.registry.source(), settings, transport=mesh.transport)
        from tests.client.node.helpers import Member

        relay = Member("relay", device, None, daemon)
        mesh.members.append(relay)
        b, c = mesh.node("b", endpoint=False), mesh.node("c", endpoint=False)   # no endpoints: relayed
        mesh.start()
        await mesh.ready()
        try:
            await wait_for(lambda: daemon.api is not None, 5, "relay api")
            await traffic(b, c, n=10)
            async with aiohttp.ClientSession() as s:
                api = Api(daemon.api, s)
                await wait_for(lambda: daemon.usage_totals(), 5, "usage")
                st = await api.get("/api/v1/status")
                assert st["kind"] == "relay" and st["peers_connected"] == 2
                earn = await api.get("/api/v1/earnings")
                assert earn["role"] == "relay" and earn["metered_bytes"] > 10 * 20_000
                peers = (await api.get("/api/v1/peers"))["peers"]
                assert {p["public_key"] for p in peers} == {b.key.hex(), c.key.hex()}
        finally:
            await mesh.stop()
        with pytest.raises(aiohttp.ClientConnectionError):   # stopped with the daemon
            async with aiohttp.ClientSession() as s:
                await s.get(f"http://127.0.0.1:{api.server.port}/api/v1/status")
    run(scenario())


def test_shutdown_stops_the_api_and_a_taken_port_only_disables_it(tmp_path, caplog):
    async def scenario():
        mesh, relay, a, b = await two_nodes_and_relay(tmp_path)
        port = a.daemon.api.port
        taken = ApiSettings(listen=f"127.0.0.1:{port}", token_file=str(tmp_path / "c-token"))
        c = mesh.node("c", api=taken)
        mesh.start(c)
        await mesh.ready(c)                                   # c runs without an API: the port is a's
        assert c.daemon.api is None
        await mesh.stop()
        assert a.daemon.api is None
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert leftover == []
    with caplog.at_level("WARNING"):
        run(scenario())
    assert "local API not started" in caplog.text


def test_openapi_document_is_valid_json_with_security():
    doc = json.loads(json.dumps(openapi_document()))
    assert doc["openapi"].startswith("3.1") and doc["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
