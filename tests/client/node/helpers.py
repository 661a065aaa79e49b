"""Whole node daemons in one event loop: MemoryTransport links, FakeTun devices, MemoryRegistry views
(in the style of wireguard-go's TestTwoDevicePing). No sockets, no root, no chain.

``Mesh`` registers devices, starts ``Node`` (and ``RelayDaemon``) tasks, and stops them all; ``ipv4``
builds the packets the tests inject into a FakeTun; ``wait_for`` polls a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lab.directory import MemoryRegistry
from shadowmesh_client.node import Node, NodeSettings
from shadowmesh_client.transport.errors import TransportError
from shadowmesh_client.transport.memory import MemoryTransport
from shadowmesh_client.tun import FakeTun

MTU = 65_000


def ipv4(src: str, dst: str, payload: bytes = b"", *, proto: int = 17, ttl: int = 64) -> bytes:
    """An IPv4 packet (RFC 791: 20-byte header without options, valid header checksum) around ``payload``."""
    total = 20 + len(payload)
    header = bytearray(bytes([0x45, 0]) + total.to_bytes(2, "big") + bytes(4) + bytes([ttl, proto]) + bytes(2)
                       + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed)
    s = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, 20, 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    header[10:12] = (~s & 0xFFFF).to_bytes(2, "big")
    return bytes(header) + payload


async def wait_for(condition, timeout: float = 5.0, what: str = "condition", step: float = 0.01):
    """Poll ``condition()`` until it is truthy (returned) or ``timeout`` seconds passed (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


class PartitionTransport(MemoryTransport):
    """MemoryTransport where dialling a host in ``unreachable`` fails like a refused connection (a network
    partition between the dialler and that host; links already open are cut with ``link.abort()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.unreachable: set[str] = set()

    async def dial(self, config, hello, *, peer=None):
        host = urlsplit(config.url).hostname
        if host in self.unreachable:
            raise TransportError(f"cannot reach {host}: partitioned (test)")
        return await super().dial(config, hello, peer=peer)


@dataclass
class Member:
    name: str
    device: object                 # lab.directory.Device
    tun: FakeTun
    daemon: object                 # Node or RelayDaemon
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None

    @property
    def key(self) -> bytes:
        return self.device.identity.public_key

    @property
    def overlay(self) -> str:
        return self.device.overlay

    def packet_to(self, other: Member, payload: bytes) -> bytes:
        return ipv4(self.overlay, other.overlay, payload)

    def peer(self, other: Member):
        return self.daemon.table.peers.get(other.key)

    def path(self, other: Member) -> str | None:
        p = self.peer(other)
        return p.path.name if p is not None and p.path is not None else None


class Mesh:
    """One network: a MemoryRegistry, a MemoryTransport, and the daemons started on them."""

    def __init__(self) -> None:
        self.registry = MemoryRegistry()
        self.transport = PartitionTransport()
        self.members: list[Member] = []

    def node(self, name: str, *, endpoint: bool = True, protocol=None, tun: FakeTun | None = None,
             payments=None, **settings) -> Member:
        """Register a device (listening on ``<name>:7000`` when ``endpoint``) and build its Node."""
        url = f"ws://{name}:7000/mesh-{name}" if endpoint else ""
        device = self.registry.register(endpoint=url)
        settings.setdefault("backoff_max", 0.3)
        ns = NodeSettings(tun_name=name, mtu=MTU, listen=f"{name}:7000" if endpoint else None, **settings)
        tun = tun or FakeTun(name, mtu=MTU)
        node = Node(device.identity, self.registry.source(), ns, protocol=protocol, transport=self.transport,
                    tun=tun, payments=payments)
        m = Member(name, device, tun, node)
        self.members.append(m)
        return m

    def relay(self, name: str = "relay") -> Member:
        from shadowmesh_client.relay.daemon import RelayDaemon, RelaySettings

        device = self.registry.register(relay=True, endpoint=f"ws://{name}:7000/relay")
        daemon = RelayDaemon(device.identity, self.registry.source(), RelaySettings(listen=f"{name}:7000"),
                             transport=self.transport)
        m = Member(name, device, None, daemon)
        self.members.append(m)
        return m

    def start(self, *members: Member) -> None:
        for m in members or self.members:
            if m.task is None:
                m.task = asyncio.get_running_loop().create_task(m.daemon.run(m.stop), name=f"daemon {m.name}")

    async def ready(self, *members: Member, timeout: float = 5.0) -> None:
        for m in members or [m for m in self.members if isinstance(m.daemon, Node)]:
            await wait_for(lambda m=m: m.daemon.ready_at is not None or m.task.done(), timeout, f"{m.name} up")
            if m.task.done():
                m.task.result()

    async def stop(self, *members: Member) -> None:
        """Stop the given daemons (default: all, nodes first) and await them; re-raises their errors."""
        chosen = list(members) or sorted(self.members, key=lambda m: not isinstance(m.daemon, Node))
        for m in chosen:
            if m.task is not None:
                m.stop.set()
                await asyncio.wait_for(asyncio.shield(m.task), 10.0)
