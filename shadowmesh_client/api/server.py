"""The local HTTP API and dashboard of a running daemon (issue 16), on aiohttp inside the daemon's own loop.

Routes (all JSON; ``/api/v1/openapi.json`` documents them; ``/`` serves the dashboard's static files):

    GET  /api/v1/status  peers  traffic?seconds=N  earnings  sync  events?since=SEQ  findings  metrics
    GET  /api/v1/stream                 server-sent events: "sample" every interval, "finding", "event"
    GET  /api/v1/agents/suggestions     the network optimizer on this daemon's own figures
    POST /api/v1/agents/optimize        {metrics}      -> optimisations   (ShadowMeshAgent.suggestOptimizations)
    POST /api/v1/agents/placement       {rtt, candidates, existing?, k?} -> k-median relay sites
    POST /api/v1/agents/analyze         {config}       -> validation + review (analyzeConfiguration)
    POST /api/v1/agents/troubleshoot    {logs: [...]}  -> known problems + fixes (troubleshootConnection)
    GET  /api/v1/agents/terraform?cloud=aws|gcp|hetzner -> text               (generateTerraformModule)
    GET  /api/v1/agents/doctor          the configuration assistant's checks (needs ``config_path``)

Security (api/auth.py): loopback or a unix socket only; bearer token from a 0600 file; Origin and Host
checked before anything else; bodies capped at ``max_body_bytes``; at most ``max_inflight`` requests and
``max_streams`` SSE streams at once (503 beyond); idle connections closed after ``keepalive_s``. A request
without the token is answered 401 from the middleware: no handler, no body read, no allocation kept.

Lifecycle (owned by the daemon): ``await api.start()`` binds; ``api.run()`` is one task of the daemon's
TaskGroup/supervisor (the sampler: once per ``interval`` it reads the daemon through a view (api/views.py),
appends to the bounded history, feeds the security auditor and publishes to SSE subscribers);
``await api.close()`` after that task is done: ends every stream, stops the server (awaiting its
handlers), removes the log capture. A failed bind is logged and the daemon runs without the API.

May import: api.*, agents.*, aiohttp. Not task-safe beyond the daemon's loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from shadowmesh_client.agents import assistant, llm, optimizer
from shadowmesh_client.agents.auditor import SecurityAuditor, Signals
from shadowmesh_client.api.auth import allowed_origins, bearer_ok, ensure_token, host_ok
from shadowmesh_client.api.openapi import openapi_document
from shadowmesh_client.api.settings import ApiSettings
from shadowmesh_client.api.telemetry import Broadcast, EventLog, LogCapture, TrafficHistory

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
SSE_HEARTBEAT = 15.0
"""Seconds between SSE comment lines on an idle stream (keeps proxies and the browser from timing out)."""

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'none'")


class ApiServer:
    def __init__(self, settings: ApiSettings, view: Any, *, config_path: str | None = None,
                 auditor: SecurityAuditor | None = None) -> None:
        settings.check()
        self.settings = settings
        self.view = view
        self.config_path = config_path or settings.config_path
        self.auditor = auditor or SecurityAuditor(window=settings.audit_window)
        self.history = TrafficHistory(settings.history)
        self.events = EventLog(settings.max_events)
        self.broadcast = Broadcast(settings.max_streams)
        self.token = ""
        self.port: int | None = None
        self.url: str | None = None
        self.stats: Counter[str] = Counter()   # requests, unauthorized, forbidden, busy (for /metrics)
        self._inflight = 0
        self._runner: web.AppRunner | None = None
        self._capture: LogCapture | None = None
        self._unsubscribe: Any = None
        self._registry: Counter[str] = Counter()   # directory changes since the last sample
        self._refused_last: int | None = None
        self._peer_state: dict[str, tuple[str, str | None]] = {}
        self._sync_last: int | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> bool:
        """Bind and serve; False (logged) if the address cannot be bound: the daemon goes on without an API."""
        s = self.settings
        self.token = ensure_token(s.token_file)
        app = web.Application(middlewares=[self._guard], client_max_size=s.max_body_bytes)
        self._routes(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=s.keepalive_s,
                               shutdown_timeout=2.0)
        await runner.setup()
        try:
            if s.unix_path:
                site: web.BaseSite = web.UnixSite(runner, s.unix_path)
                await site.start()
                os.chmod(s.unix_path, 0o600)
                self.url = f"unix:{s.unix_path}"
            else:
                host, port = s.host_port()
                site = web.TCPSite(runner, host, port, backlog=16, reuse_address=True)
                await site.start()
                self.port = runner.addresses[0][1]
                self.url = f"http://{'[::1]' if ':' in host else host}:{self.port}"
        except OSError as exc:
            await runner.cleanup()
            log.warning("local API not started: cannot listen on %s: %s (the daemon runs without it; "
                        "choose another with --api HOST:PORT, or --api off)", s.listen, exc.strerror or exc)
            return False
        self._runner = runner
        self._capture = LogCapture(self.events)
        logging.getLogger("shadowmesh_client").addHandler(self._capture)
        self._unsubscribe = self.view.directory.subscribe(self._on_directory_change)
        log.info("local API and dashboard on %s (token in %s)", self.url, s.token_file)
        return True

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def run(self) -> None:
        """The sampler task: one sample per ``interval`` seconds until cancelled."""
        while True:
            try:
                self.sample(time.time())
            except Exception:  # noqa: BLE001 - a view bug must not take the daemon down; it is logged
                log.exception("api sample failed")
            await asyncio.sleep(self.settings.interval)

    async def close(self) -> None:
        """After ``run``'s task is done: end the streams, stop serving (awaits handlers), detach."""
        self.broadcast.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._capture is not None:
            logging.getLogger("shadowmesh_client").removeHandler(self._capture)
            self._capture = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ---- sampling --------------------------------------------------------------------------------------------
    def _on_directory_change(self, change: Any) -> None:
        self._registry[getattr(change.kind, "value", str(change.kind))] += 1
        self.events.add("directory", f"device {change.peer.public_key.hex()[:16]} {change.kind.value}",
                        key=change.peer.public_key.hex())

    def sample(self, t: float) -> dict:
        """One tick: traffic, peer/sync transitions, auditor input; publishes an SSE "sample"."""
        v = self.view
        sample = self.history.add(t, v.totals())
        peers = v.peers()
        for p in peers:
            key, state, path = p["public_key"], p.get("session"), p.get("path")
            before = self._peer_state.get(key)
            if before != (state, path):
                self._peer_state[key] = (state, path)
                if before is None or before[0] != state:
                    self.events.add("peer", f"peer {key[:16]} session {state}" + (f" via {path}" if path else ""),
                                    key=key)
                elif path:
                    self.events.add("path", f"peer {key[:16]} path {before[1]} -> {path}", key=key)
        sync = v.sync()
        block = sync.get("synced_block")
        if block is not None and block != self._sync_last:
            self.events.add("sync", f"directory synced to block {block} ({sync.get('devices')} devices)",
                            block=block, head=sync.get("head_block"))
            self._sync_last = block
        refused = v.refused()
        delta = refused - self._refused_last if self._refused_last is not None and refused >= self._refused_last \
            else 0
        self._refused_last = refused
        signals = Signals(refused=Counter({"*": delta}) if delta else Counter(),
                          traffic=Counter({k: n for k, n in self.history.deltas.items() if n}),
                          registrations=self._registry.pop("added", 0), revocations=self._registry.pop("revoked", 0))
        self._registry.clear()
        for f in self.auditor.observe(t, signals):
            level = "WARNING" if f.severity == "high" else "INFO"
            log.log(logging.WARNING if f.severity == "high" else logging.INFO, "security auditor: %s: %s",
                    f.kind, f.summary)
            self.events.add("finding", f.summary, level=level, finding=f.id)
            self.broadcast.publish({"event": "finding", "data": f.as_dict()})
        summary = v.summary()
        msg = {"t": sample["t"], "in_bps": sample["in_bps"], "out_bps": sample["out_bps"], "peers": sample["peers"],
               "peers_connected": summary.get("peers_connected"), "findings_open": len(self.auditor.active()),
               "last_event": self.events.items[-1]["seq"] if self.events.items else 0}
        self.broadcast.publish({"event": "sample", "data": msg})
        return msg

    # ---- HTTP ------------------------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler):
        self.stats["requests"] += 1
        if not host_ok(request.host, self.port):
            self.stats["forbidden"] += 1
            return _error(403, "wrong Host: use the loopback address the daemon printed")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in allowed_origins(self.port):
            self.stats["forbidden"] += 1
            return _error(403, "cross-origin requests are refused")
        if request.path.startswith("/api/") and request.path != "/api/v1/openapi.json":
            if not bearer_ok(request.headers.get("Authorization"), self.token):
                self.stats["unauthorized"] += 1
                return _error(401, f"send `Authorization: Bearer <token>`; the token is in {self.settings.token_file}")
        if self._inflight >= self.settings.max_inflight:
            self.stats["busy"] += 1
            return _error(503, "too many requests at once")
        self._inflight += 1
        try:
            resp = await handler(request)
        finally:
            self._inflight -= 1
        resp.headers.setdefault("Cache-Control", "no-store")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        return resp

    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self._index)
        r.add_get("/static/{name}", self._static)
        r.add_get("/api/v1/openapi.json", self._openapi)
        r.add_get("/api/v1/status", self._status)
        r.add_get("/api/v1/peers", self._peers)
        r.add_get("/api/v1/traffic", self._traffic)
        r.add_get("/api/v1/earnings", self._earnings)
        r.add_get("/api/v1/sync", self._sync)
        r.add_get("/api/v1/events", self._events)
        r.add_get("/api/v1/findings", self._findings)
        r.add_get("/api/v1/metrics", self._metrics)
        r.add_get("/api/v1/stream", self._stream)
        r.add_get("/api/v1/agents/suggestions", self._suggestions)
        r.add_post("/api/v1/agents/optimize", self._optimize)
        r.add_post("/api/v1/agents/placement", self._placement)
        r.add_post("/api/v1/agents/analyze", self._analyze)
        r.add_post("/api/v1/agents/troubleshoot", self._troubleshoot)
        r.add_get("/api/v1/agents/terraform", self._terraform)
        r.add_get("/api/v1/agents/doctor", self._doctor)

    async def _index(self, _request: web.Request) -> web.StreamResponse:
        return _page(STATIC / "index.html", "text/html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in types or not path.is_file():
            return _error(404, "no such file")
        return _page(path, types[path.suffix])

    async def _openapi(self, _request: web.Request) -> web.Response:
        return _json(openapi_document())

    async def _peers(self, _request: web.Request) -> web.Response:
        return _json({"peers": self.view.peers()})

    async def _earnings(self, _request: web.Request) -> web.Response:
        return _json(self.view.earnings())

    async def _status(self, _request: web.Request) -> web.Response:
        out = self.view.summary()
        out["api"] = {"url": self.url, "interval_s": self.settings.interval, "version": 1}
        out["findings_open"] = len(self.auditor.active())
        return _json(out)

    async def _traffic(self, request: web.Request) -> web.Response:
        seconds = _number(request.query.get("seconds"), 300.0)
        samples = self.history.since(time.time() - seconds)
        return _json({"interval_s": self.settings.interval, "samples": samples})

    async def _sync(self, _request: web.Request) -> web.Response:
        history = [e for e in self.events.items if e["kind"] == "sync"][-50:]
        return _json({**self.view.sync(), "history": history})

    async def _events(self, request: web.Request) -> web.Response:
        since = int(_number(request.query.get("since"), 0))
        kind = request.query.get("kind")
        items = [e for e in self.events.since(since, limit=self.settings.max_events) if not kind or e["kind"] == kind]
        return _json({"events": items[-200:]})

    async def _findings(self, request: web.Request) -> web.Response:
        a = self.auditor
        out = {"active": [f.as_dict() for f in a.active()], "recent": [f.as_dict() for f in list(a.findings)[-50:]],
               "raised": dict(a.raised), "windows": a.windows, "window_s": a.window, "summary": None}
        if request.query.get("summary") and llm.configured():
            out["summary"] = await asyncio.to_thread(llm.summarize, "security findings", out["recent"])
        return _json(out)

    async def _metrics(self, _request: web.Request) -> web.Response:
        a = self.auditor
        lines = ["# HELP shadowmesh_agent_findings_total Findings raised by the security auditor, by kind.",
                 "# TYPE shadowmesh_agent_findings_total counter"]
        lines += [f'shadowmesh_agent_findings_total{{kind="{k}"}} {n}' for k, n in sorted(a.raised.items())]
        lines += ["# HELP shadowmesh_agent_findings_open Findings open now.",
                  "# TYPE shadowmesh_agent_findings_open gauge",
                  f"shadowmesh_agent_findings_open {len(a.active())}",
                  "# HELP shadowmesh_api_requests_total Local API requests, by outcome.",
                  "# TYPE shadowmesh_api_requests_total counter"]
        lines += [f'shadowmesh_api_requests_total{{outcome="{k}"}} {n}' for k, n in sorted(self.stats.items())]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        q = self.broadcast.subscribe()
        if q is None:
            self.stats["busy"] += 1
            return _error(503, f"at most {self.settings.max_streams} streams at once")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        try:
            await resp.prepare(request)
            await resp.write(b": shadowmesh stream\n\n")
            while True:
                try:
                    msg = await asyncio.wait_for(q.get(), SSE_HEARTBEAT)
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if msg is None:
                    break
                await resp.write(f"event: {msg['event']}\ndata: {json.dumps(msg['data'], default=str)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.broadcast.unsubscribe(q)
        return resp

    async def _suggestions(self, _request: web.Request) -> web.Response:
        peers = self.view.peers()
        rates = self.history.rates
        for p in peers:
            rin, rout = rates.get(p["public_key"], (0.0, 0.0))
            p["rate_bps"] = max(rin, rout)
        return _json({"optimizations": optimizer.suggest({"peers": peers}),
                      "relays": self.view.relays()})

    async def _optimize(self, request: web.Request) -> web.Response:
        body = await _body(request)
        return _json({"optimizations": optimizer.suggest(body.get("metrics", body))})

    async def _placement(self, request: web.Request) -> web.Response:
        b = await _body(request)
        try:
            return _json(optimizer.place_relay(b["rtt"], b["candidates"], existing=b.get("existing", ()),
                                               k=int(b.get("k", 1))))
        except (KeyError, TypeError, ValueError) as exc:
            return _error(400, f"want {{rtt: {{a: {{b: ms}}}}, candidates: [...]}}: {exc}")

    async def _analyze(self, request: web.Request) -> web.Response:
        b = await _body(request)
        cfg = b.get("config", b)
        if isinstance(cfg, str):
            import yaml

            try:
                cfg = yaml.safe_load(cfg) or {}
            except yaml.YAMLError as exc:
                return _json({"valid": False, "issues": [{"severity": "error", "field": "", "problem": str(exc),
                                                          "fix": "fix the YAML syntax"}]})
        if not isinstance(cfg, dict):
            return _error(400, "config must be a mapping or YAML text")
        return _json(assistant.analyze_config(cfg))

    async def _troubleshoot(self, request: web.Request) -> web.Response:
        b = await _body(request)
        lines = b.get("logs") or [e["message"] for e in self.events.items]
        if not isinstance(lines, list):
            return _error(400, "logs must be a list of lines")
        return _json(assistant.troubleshoot([str(x) for x in lines[-2000:]]))

    async def _terraform(self, request: web.Request) -> web.Response:
        try:
            return web.Response(text=assistant.terraform_module(request.query.get("cloud", "")),
                                content_type="text/plain")
        except ValueError as exc:
            return _error(400, str(exc))

    async def _doctor(self, _request: web.Request) -> web.Response:
        if not self.config_path:
            return _error(404, "this daemon was started without a config file: run `shadowmesh-client doctor`")
        ctx = assistant.Context(self.config_path)
        checks = await asyncio.to_thread(assistant.run_checks, ctx)
        return _json({"checks": [c.as_dict() for c in checks]})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _page(path: Path, content_type: str) -> web.Response:
    return web.Response(body=path.read_bytes(), content_type=content_type,
                        headers={"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
                                 "Referrer-Policy": "no-referrer"})


def _number(text: str | None, default: float) -> float:
    try:
        return float(text) if text is not None else default
    except ValueError:
        return default


async def _body(request: web.Request) -> dict:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text='{"error": "the body must be JSON"}', content_type="application/json") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='{"error": "the body must be a JSON object"}', content_type="application/json")
    return data
