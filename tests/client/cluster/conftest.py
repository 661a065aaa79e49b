"""Coroutine tests run bounded on a fresh loop (tests/client/relay/conftest.py); no process-wide GC tuning."""

from __future__ import annotations

import inspect

import pytest

from tests.client.relay.helpers import no_gc_tuning, run_bounded


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        run_bounded(pyfuncitem.obj(**kwargs))
        return True
    return None


@pytest.fixture(autouse=True)
def _no_gc_tuning(monkeypatch):
    no_gc_tuning(monkeypatch)
