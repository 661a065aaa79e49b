"""Optional OpenTelemetry traces: spans around handshakes and directory sync requests. Off by default.

``setup_tracing(service)`` turns tracing on when ``SHADOWMESH_TRACING`` is ``otlp`` (spans exported with
the OTLP exporter; its endpoint from the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``) or ``console`` (spans
printed, for a quick look). Without that variable, or without the ``opentelemetry-sdk`` (and, for otlp,
``opentelemetry-exporter-otlp``) packages installed, it returns False and every ``span()`` is a shared
no-op context manager: the daemons never import opentelemetry and pay one global read per span site.
The packages are not in requirements.lock (docs/observability.md "Traces" says what to install).

``span(name, attributes)`` may be entered from any thread (the SDK's tracer is thread-safe).

May import: the standard library; opentelemetry only inside ``setup_tracing`` (guarded).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

ENV = "SHADOWMESH_TRACING"
_tracer: Any = None   # an opentelemetry Tracer once setup_tracing succeeded; None: tracing off
_NOOP = contextlib.nullcontext()


def enabled() -> bool:
    return _tracer is not None


def setup_tracing(service: str, mode: str | None = None) -> bool:
    """Turn tracing on per ``mode`` (default: ``$SHADOWMESH_TRACING``); True if spans will be recorded."""
    global _tracer
    mode = (mode if mode is not None else os.environ.get(ENV, "")).strip().lower()
    if mode in ("", "off", "0", "none"):
        return False
    try:
        from opentelemetry import trace  # type: ignore[import-not-found,unused-ignore]
        from opentelemetry.sdk.resources import Resource  # type: ignore[import-not-found,unused-ignore]
        from opentelemetry.sdk.trace import TracerProvider  # type: ignore[import-not-found,unused-ignore]
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        log.warning("%s=%s but the opentelemetry-sdk package is not installed: tracing stays off", ENV, mode)
        return False
    if mode == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            log.warning("%s=otlp needs opentelemetry-exporter-otlp-proto-http: tracing stays off", ENV)
            return False
        exporter: Any = OTLPSpanExporter()
    elif mode == "console":
        exporter = ConsoleSpanExporter()
    else:
        log.warning("%s=%s is not one of otlp, console, off: tracing stays off", ENV, mode)
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("shadowmesh_client")
    log.info("tracing on: %s exporter, service %s", mode, service)
    return True


def span(name: str, attributes: Mapping[str, Any] | None = None) -> contextlib.AbstractContextManager[Any]:
    """A span (current-span context manager) when tracing is on, else a shared no-op."""
    tracer = _tracer
    if tracer is None:
        return _NOOP
    return tracer.start_as_current_span(name, attributes=dict(attributes or {}))


def traced(fn: Any, name: str, attributes: Mapping[str, Any] | None = None) -> Any:
    """``fn`` wrapped in ``span(name)`` when tracing is on; ``fn`` itself otherwise (no cost when off).
    For synchronous hooks such as a link server's ``authenticate``."""
    if _tracer is None:
        return fn

    @functools.wraps(fn)   # inspect.signature(wrapper) is fn's: hooks are introspected (``source``)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with span(name, attributes) as s:
            result = fn(*args, **kwargs)
            if s is not None and hasattr(s, "set_attribute"):
                s.set_attribute("shadowmesh.accepted", result is not None)
            return result

    return wrapper


@contextlib.contextmanager
def _reset() -> Iterator[None]:   # tests: restore the module state
    global _tracer
    saved = _tracer
    try:
        yield
    finally:
        _tracer = saved
