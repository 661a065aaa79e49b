"""Coroutine tests run bounded on a fresh loop, with no process-wide GC tuning: the relay suite's hook and
fixture, re-exported here (pytest registers what a conftest module holds)."""

from tests.client.relay.conftest import _no_gc_tuning, pytest_pyfunc_call  # noqa: F401  (used by pytest)
