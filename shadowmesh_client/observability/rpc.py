"""Chain RPC figures of the directory syncer: requests and failures by kind, and a trace span per request.

``RpcWatch`` is a ``JsonRpc.watch`` (directory/reader.py): ``JsonRpc`` enters ``watch(url, method)`` around
every HTTP request. It runs on the syncer's worker thread; the daemon's loop reads ``counts()`` when it
builds a snapshot. Both sides take ``_lock`` (a few integer updates), so the figures are exact.
A failure is what raised out of the request: ``requests`` timeouts and connection errors (an error *answer*
of the node is counted by the syncer as a failed round, ``shadowmesh_directory_sync_failing``).

May import: observability.tracing, the standard library.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from shadowmesh_client.observability import tracing

KINDS = ("timeout", "connection", "other")


def error_kind(exc: BaseException) -> str:
    """``timeout``, ``connection`` or ``other``, by the exception's class names (no import of requests)."""
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"Timeout", "TimeoutError", "ReadTimeout", "ConnectTimeout"}:
        return "timeout"
    if names & {"ConnectionError", "ConnectionRefusedError", "OSError"}:
        return "connection"
    return "other"


class RpcWatch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._errors = dict.fromkeys(KINDS, 0)

    @contextmanager
    def __call__(self, url: str, method: str) -> Iterator[None]:
        with self._lock:
            self._requests += 1
        with tracing.span("shadowmesh.directory.rpc", {"rpc.method": method}):
            try:
                yield
            except BaseException as exc:
                with self._lock:
                    self._errors[error_kind(exc)] += 1
                raise

    def counts(self) -> tuple[int, dict[str, int]]:
        """(requests, failures by kind) so far."""
        with self._lock:
            return self._requests, dict(self._errors)
