"""The stream layer as one node service (issue 18): policy, Mux, UDP flows, proxies and forwards.

``Node`` (node/daemon.py) builds one ``Userspace`` per run, TUN mode or not, right after the pump:
``start()`` binds the local listeners (an address in use fails the start, as the peer listener does),
``run()`` is one service task that owns the stream tasks (a TaskGroup) until the node's shutdown
cancels it; then every listener is closed and every stream socket aborted. ``close()`` is idempotent
(``Node._release`` calls it in case ``run`` never started).

May import: userspace.*. Not task-safe beyond the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial

from shadowmesh_client.userspace.policy import StreamPolicy
from shadowmesh_client.userspace.proxy import Resolver, _Entry
from shadowmesh_client.userspace.settings import StreamSettings
from shadowmesh_client.userspace.streams import Mux
from shadowmesh_client.userspace.udp import UdpFlows

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024
"""Connections the proxy and forward listeners queue before accepting (asyncio's default, 100, drops SYNs
when a client opens hundreds at once: the 1,000-stream test did)."""


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Userspace:
    """``pump``: the node's Pump (``peers``, ``routes``, ``offer``, ``on_stream``); ``overlay``: our address."""

    def __init__(self, pump, overlay: str, settings: StreamSettings, *, userspace: bool) -> None:
        self.settings = settings
        self.policy = StreamPolicy(overlay, userspace=userspace, expose=settings.expose, allow_lan=settings.allow_lan)
        self.mux = Mux(pump, self.policy, window=settings.window)
        self.udp = UdpFlows(self.mux)
        self.resolver = Resolver(pump, settings.lan_via)
        pump.on_stream = self.mux.on_messages
        self.ports: dict[str, int] = {}     # "socks", "http", "forward HOST:PORT" -> the port bound
        self._servers: list[asyncio.base_events.Server] = []

    async def start(self) -> None:
        """Bind the SOCKS5, HTTP CONNECT and forward listeners (OSError if one cannot be bound)."""
        loop = asyncio.get_running_loop()
        mux, resolver, udp = self.mux, self.resolver, self.udp
        s = self.settings
        wanted: list[tuple[str, str, Callable[[], asyncio.Protocol]]] = []
        if s.socks:
            wanted.append(("socks", s.socks, lambda: _Entry(mux, resolver, "socks", udp)))
        if s.http:
            wanted.append(("http", s.http, lambda: _Entry(mux, resolver, "http")))
        for f in s.forwards:
            wanted.append((f"forward {f.listen_host}:{f.listen_port}", f"{f.listen_host}:{f.listen_port}",
                           partial(_Entry, mux, resolver, "forward", forward=(f.peer, f.port))))
        try:
            for name, where, factory in wanted:
                host, port = _split(where)
                server = await loop.create_server(factory, host, port, backlog=LISTEN_BACKLOG)
                self._servers.append(server)
                self.ports[name] = server.sockets[0].getsockname()[1]
                log.info("streams: %s listening on %s:%d", name, host, self.ports[name])
        except BaseException:
            self.close()
            raise

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.mux.run(), name="streams")
                group.create_task(self.udp.run(), name="udp flows")
        finally:
            self.close()

    def close(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()   # stops accepting; accepted connections are the Mux's (aborted below)
        self.mux.close()

    def status(self) -> dict:
        return {"ports": dict(self.ports), **self.mux.counters(), "udp_dropped": self.udp.dropped}
