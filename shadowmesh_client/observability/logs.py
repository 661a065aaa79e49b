"""Daemon log formats: ``text`` (one human line) or ``json`` (one JSON object per line), with redaction.

Spec "Logging Strategy": structured (JSON), levels DEBUG, INFO, WARN, ERROR, FATAL, no keys or other
secrets in logs. ``JsonFormatter`` writes ``{"ts", "level", "logger", "msg", "pid"}`` (+ ``exc`` with a
traceback); Python's WARNING and CRITICAL are written as the spec's WARN and FATAL. ``Redactor`` is a
handler filter that replaces every registered secret (the WebSocket secret path, key material) in the
final message, arguments and traceback with ``[redacted]``: a second line of defence behind the rule that
code never logs them (a test greps a real run's logs, tests/e2e/test_observability.py).

May import: the standard library.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

FORMATS = ("text", "json")
SPEC_LEVELS = {"WARNING": "WARN", "CRITICAL": "FATAL"}
REDACTED = "[redacted]"
MIN_SECRET_CHARS = 6
"""Characters. Shorter strings are not registered as secrets (redacting "/" or "ws" would mangle logs)."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": SPEC_LEVELS.get(record.levelname, record.levelname), "logger": record.name,
               "msg": record.getMessage(), "pid": record.process}
        if record.exc_text:          # already formatted (and scrubbed) by the Redactor
            out["exc"] = record.exc_text
        elif record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.levelname = SPEC_LEVELS.get(record.levelname, record.levelname)
        return super().format(record)


class Redactor(logging.Filter):
    """Replaces registered secrets in a record (message already merged with its args) before formatting."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        for s in secrets:
            if s and len(s) >= MIN_SECRET_CHARS and s not in self._secrets:
                self._secrets.append(s)
        self._secrets.sort(key=len, reverse=True)   # the longest first: a secret containing another

    def scrub(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        msg = record.getMessage()
        clean = self.scrub(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


def configure(level: str, fmt: str = "text", secrets: Iterable[str] = ()) -> Redactor:
    """Root logging to stderr at ``level`` in ``fmt`` with a Redactor of ``secrets`` (returned: more can be
    added later). Replaces handlers set before (a daemon configures logging once, at start)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    redactor = Redactor(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level))
    return redactor
