"""Optional plain-language summary from an OpenAI-compatible endpoint (issue 16: "an LLM may add prose on
top, never be required"). Off unless ``SHADOWMESH_LLM_URL`` is set (e.g. http://127.0.0.1:11434/v1 for a
local Ollama); ``SHADOWMESH_LLM_MODEL`` (default "llama3") and ``SHADOWMESH_LLM_KEY`` (optional bearer
key) complete it. Any failure returns None: the agents' own findings are the answer, the prose is extra.

Blocking (urllib): call it from a worker thread (``asyncio.to_thread``). May import: the standard library.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request

log = logging.getLogger(__name__)

TIMEOUT = 20.0
"""Seconds for the whole request."""


def configured() -> bool:
    return bool(os.environ.get("SHADOWMESH_LLM_URL"))


def summarize(topic: str, data: object, *, timeout: float = TIMEOUT) -> str | None:
    """A few sentences about ``data`` (findings, doctor results) for a user; None when not configured or failing."""
    base = os.environ.get("SHADOWMESH_LLM_URL")
    if not base:
        return None
    body = {"model": os.environ.get("SHADOWMESH_LLM_MODEL", "llama3"), "temperature": 0.2,
            "messages": [{"role": "system", "content": "You explain a mesh VPN's diagnostics to its user in at most "
                          "four plain sentences. Only restate what the data says; give the suggested actions."},
                         {"role": "user", "content": f"{topic}:\n{json.dumps(data, default=str)[:12000]}"}]}
    req = urllib.request.Request(base.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    key = os.environ.get("SHADOWMESH_LLM_KEY")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:   # noqa: S310 - a URL the user configured
            reply = json.loads(r.read())
        return str(reply["choices"][0]["message"]["content"]).strip()
    except Exception as exc:  # noqa: BLE001 - optional prose: never an error for the caller
        log.info("LLM summary unavailable (%s): %s", base, exc)
        return None
