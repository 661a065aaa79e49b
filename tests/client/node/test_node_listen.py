"""The listen address of `up` and `relay` (issue 11 trap 1: `up` listened on 0.0.0.0:443 whatever port the
device published, and its peers logged `dial failed` forever): 0.0.0.0 and the published endpoint's port
unless `listen` is set, a WARNING naming both when a set port differs; a port that cannot be bound is one
line naming the address (and the WebSocket server's close() after a failed bind no longer hides it)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from lab.directory import MemoryRegistry
from shadowmesh_client.daemon_common import listen_address
from shadowmesh_client.errors import ConfigError
from shadowmesh_client.node import Node, NodeSettings
from shadowmesh_client.transport.memory import MemoryTransport
from shadowmesh_client.tun import FakeTun
from tests.client.node.helpers import wait_for


def test_listen_address_comes_from_the_published_endpoint_unless_set(caplog):
    cases = [  # (listen set, endpoint) -> bound, warned
        ((None, "ws://10.99.0.1:7000/ws"), ("0.0.0.0:7000", False)),
        ((None, "wss://vpn.example.org/api/x1"), ("0.0.0.0:443", False)),
        ((None, "ws://[2001:db8::1]/ws"), ("0.0.0.0:80", False)),
        ((None, None), (None, False)),                           # no endpoint: no listener
        (("127.0.0.1:7000", "ws://10.99.0.1:7000/ws"), ("127.0.0.1:7000", False)),
        (("0.0.0.0:8443", "wss://vpn.example.org/secret"), ("0.0.0.0:8443", True)),   # behind a proxy, or a trap
        (("0.0.0.0:443", None), ("0.0.0.0:443", False)),
    ]
    for (listen, endpoint), (bound, warned) in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="shadowmesh_client.daemon_common"):
            assert listen_address(listen, endpoint) == bound, (listen, endpoint)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert bool(warnings) is warned, (listen, endpoint, warnings)
        if warned:
            (w,) = warnings
            assert "0.0.0.0:8443" in w and "port 443" in w and "vpn.example.org" in w
            assert "secret" not in w                             # the secret path is not logged


def _node(registry: MemoryRegistry, transport: MemoryTransport, endpoint: str, listen: str | None) -> Node:
    device = registry.register(endpoint=endpoint)
    return Node(device.identity, registry.source(), NodeSettings(tun_name="t", listen=listen), transport=transport,
                tun=FakeTun("t", mtu=1500))


def test_up_listens_on_the_published_port_and_warns_when_told_otherwise(caplog):
    async def scenario():
        registry, transport = MemoryRegistry(), MemoryTransport()
        derived = _node(registry, transport, "ws://a.example:7123/mesh", None)
        told = _node(registry, transport, "ws://b.example:7000/mesh", "0.0.0.0:9000")
        stops = [asyncio.Event(), asyncio.Event()]
        async with asyncio.TaskGroup() as group:
            for node, stop in zip((derived, told), stops, strict=True):
                group.create_task(node.run(stop))
            await wait_for(lambda: derived.ready_at and told.ready_at, 5, "both up")
            assert derived.listen_address == "0.0.0.0:7123" and derived.listen_port == 7123
            assert told.listen_address == "0.0.0.0:9000" and told.listen_port == 9000
            for stop in stops:
                stop.set()

    with caplog.at_level(logging.WARNING):
        asyncio.run(asyncio.wait_for(scenario(), 30))
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    warnings = [m for m in messages if "listens on" in m]
    assert len(warnings) == 1 and "0.0.0.0:9000" in warnings[0] and "port 7000" in warnings[0], warnings


def test_a_port_in_use_is_one_line_naming_the_address():
    """A real RelayDaemon on the WebSocket transport, through the CLI's runner: the OSError of the bind
    reaches the user as one ConfigError (before the fix, LinkServer.close() raised AttributeError over it)."""
    from shadowmesh_client.cli.mesh import _run_daemon
    from shadowmesh_client.relay.daemon import RelayDaemon, RelaySettings

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        registry = MemoryRegistry()
        device = registry.register(relay=True, endpoint=f"ws://127.0.0.1:{port}/relay")
        daemon = RelayDaemon(device.identity, registry.source(), RelaySettings(listen=None))
        with pytest.raises(ConfigError, match=rf"cannot listen on 0\.0\.0\.0:{port}: the port is already in use"):
            _run_daemon(daemon)
    finally:
        taken.close()
