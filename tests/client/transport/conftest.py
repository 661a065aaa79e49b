"""Fixtures for the transport tests: coroutine tests run on a fresh event loop each (asyncio.run),
bounded by ASYNC_TEST_TIMEOUT seconds; a throwaway PKI per session."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from transport_helpers import write_test_pki

ASYNC_TEST_TIMEOUT = 30.0  # seconds


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), ASYNC_TEST_TIMEOUT))
        return True
    return None


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """(cert_chain, key, ca) PEM paths for a server certificate valid for 127.0.0.1 and localhost."""
    return write_test_pki(str(tmp_path_factory.mktemp("pki")))
