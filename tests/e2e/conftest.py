"""Fixtures for end-to-end tests: topologies that are torn down whatever the test does.

``topology``  an empty ``Topology`` to build on (factory methods add_switch/add_host/add_nat_router...)
``mesh``      the issue-5 mesh (``netns.mesh_topology``): hosts anvil, relay, a, nat1, b, nat2, c
``veth``      two namespaces a and b on one veth pair (``netns.veth_pair``)
``nginx_factory``  start_nginx(...) with every nginx stopped at teardown (see nginx.py)

Every test here needs root and /dev/net/tun; without them the tests are skipped with that reason.
Each fixture's finalizer tears down what it built also when the test fails; atexit covers the rest,
and stale namespaces of dead test processes are reaped once per session.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lab.netns import Topology, mesh_topology, reap_stale, veth_pair

_HERE = Path(__file__).parent


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN devices)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (make debs)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _reap_stale_namespaces() -> None:
    if _missing() is None:
        reap_stale()


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> Topology:
    topo = Topology()
    request.addfinalizer(topo.teardown)
    return topo


@pytest.fixture
def mesh(request: pytest.FixtureRequest) -> Topology:
    topo = mesh_topology()
    request.addfinalizer(topo.teardown)
    return topo


@pytest.fixture
def veth(request: pytest.FixtureRequest) -> Topology:
    topo = veth_pair()
    request.addfinalizer(topo.teardown)
    return topo


@pytest.fixture
def nginx_factory(request: pytest.FixtureRequest):
    """``nginx_factory(backend, **kwargs) -> Nginx`` (see nginx.start_nginx); all stopped at teardown."""
    from .nginx import start_nginx

    started = []

    def factory(backend: str, **kwargs):
        n = start_nginx(backend, **kwargs)
        started.append(n)
        return n

    def stop_all() -> None:
        for n in started:
            n.stop()

    request.addfinalizer(stop_all)
    return factory
