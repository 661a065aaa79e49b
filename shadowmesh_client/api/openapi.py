"""The OpenAPI 3.1 document of the local API (served at /api/v1/openapi.json; docs/api.md explains it).

Kept next to the routes (api/server.py); tests/client/api checks that every route is documented and every
documented GET path answers. May import: the standard library only.
"""

from __future__ import annotations

from typing import Any

_OBJ: dict[str, Any] = {"type": "object"}


def _get(summary: str, schema: dict | None = None, params: list | None = None, text: bool = False) -> dict:
    content = {"text/plain": {"schema": {"type": "string"}}} if text else \
        {"application/json": {"schema": schema or _OBJ}}
    op: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "OK", "content": content},
                                                           "401": {"$ref": "#/components/responses/Unauthorized"}}}
    if params:
        op["parameters"] = params
    return {"get": op}


def _post(summary: str, body: dict) -> dict:
    return {"post": {"summary": summary, "requestBody": {"required": True,
                                                          "content": {"application/json": {"schema": body}}},
                     "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": _OBJ}}},
                                   "400": {"description": "bad request"},
                                   "401": {"$ref": "#/components/responses/Unauthorized"}}}}


def _q(name: str, kind: str, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind}, "description": description}


PEER = {"type": "object", "properties": {
    "public_key": {"type": "string"}, "overlay": {"type": ["string", "null"]},
    "session": {"type": "string"}, "path": {"type": ["string", "null"], "description": "direct | relay:<key8>"},
    "rtt_ms": {"type": ["number", "null"]}, "direct_rtt_ms": {"type": ["number", "null"]},
    "relay_paths": {"type": "array", "items": _OBJ}, "bytes_sent": {"type": "integer"},
    "bytes_received": {"type": "integer"}}}

FINDING = {"type": "object", "properties": {
    "id": {"type": "integer"}, "kind": {"type": "string"}, "severity": {"enum": ["low", "medium", "high"]},
    "subject": {"type": "string"}, "summary": {"type": "string"}, "evidence": _OBJ, "action": {"type": "string"},
    "first_seen": {"type": "number"}, "last_seen": {"type": "number"}, "count": {"type": "integer"},
    "open": {"type": "boolean"}}}


def openapi_document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "ShadowMesh local API", "version": "1",
                 "description": "Served by `shadowmesh-client up` and `relay` on loopback. Every /api path but this "
                                "document needs `Authorization: Bearer <token>` (the token file, mode 0600)."},
        "servers": [{"url": "http://127.0.0.1:7780", "description": "up (default)"},
                    {"url": "http://127.0.0.1:7781", "description": "relay (default)"}],
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "responses": {"Unauthorized": {"description": "missing or wrong token",
                                           "content": {"application/json": {"schema": _OBJ}}}},
        },
        "security": [{"token": []}],
        "paths": {
            "/api/v1/status": _get("daemon summary: kind, key, overlay, uptime, peers connected, sync"),
            "/api/v1/peers": _get("peers with session, path and RTTs", {"type": "object", "properties": {
                "peers": {"type": "array", "items": PEER}}}),
            "/api/v1/traffic": _get("traffic history (bits/s in and out, total and per peer)", None,
                                    [_q("seconds", "number", "how far back (default 300)")]),
            "/api/v1/earnings": _get("relay: metered bytes, price, receipts; node: receipts signed"),
            "/api/v1/sync": _get("directory sync state and recent sync rounds"),
            "/api/v1/events": _get("recent events and log lines (bounded)", None,
                                   [_q("since", "integer", "only events after this sequence number"),
                                    _q("kind", "string", "peer | path | sync | directory | finding | log")]),
            "/api/v1/findings": _get("security auditor findings", {"type": "object", "properties": {
                "active": {"type": "array", "items": FINDING}, "recent": {"type": "array", "items": FINDING}}},
                [_q("summary", "string", "1: add an LLM summary if one is configured")]),
            "/api/v1/metrics": _get("Prometheus text: findings and API counters", text=True),
            "/api/v1/stream": {"get": {"summary": "server-sent events: sample (every interval), finding",
                                       "responses": {"200": {"description": "text/event-stream",
                                                             "content": {"text/event-stream": {}}},
                                                     "503": {"description": "too many streams"}}}},
            "/api/v1/agents/suggestions": _get("network optimizer on this daemon's own figures"),
            "/api/v1/agents/optimize": _post("suggestOptimizations(metrics)", {"type": "object", "properties": {
                "metrics": {"type": "object", "properties": {"peers": {"type": "array", "items": PEER}}}}}),
            "/api/v1/agents/placement": _post("k-median relay placement from an RTT matrix (ms)", {
                "type": "object", "required": ["rtt", "candidates"], "properties": {
                    "rtt": _OBJ, "candidates": {"type": "array"}, "existing": {"type": "array"},
                    "k": {"type": "integer"}}}),
            "/api/v1/agents/analyze": _post("analyzeConfiguration(config): validation and review",
                                            {"type": "object", "properties": {"config": {}}}),
            "/api/v1/agents/troubleshoot": _post("troubleshootConnection(logs): known problems and fixes",
                                                 {"type": "object", "properties": {
                                                     "logs": {"type": "array", "items": {"type": "string"}}}}),
            "/api/v1/agents/terraform": _get("generateTerraformModule(cloud)", None,
                                             [_q("cloud", "string", "aws | gcp | hetzner")], text=True),
            "/api/v1/agents/doctor": _get("the configuration assistant's checks (doctor)"),
            "/api/v1/openapi.json": {"get": {"summary": "this document", "security": [],
                                             "responses": {"200": {"description": "OK"}}}},
        },
    }
