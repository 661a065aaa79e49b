"""A relay cluster in-process: N RelayDaemons sharing one relay identity over one MemoryTransport, with a
MemoryRegistry; devices dial a chosen member with a real protocol Session."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from lab.directory import MemoryRegistry
from shadowmesh_client.daemon_common import node_link_limits
from shadowmesh_client.protocol import NetworkBinding, ProtocolConfig, Session
from shadowmesh_client.relay import EnvelopeType, decode, encode_forward, encode_local
from shadowmesh_client.relay.cluster import ClusterSettings
from shadowmesh_client.relay.daemon import RelayDaemon, RelaySettings
from shadowmesh_client.transport import ClientConfig
from shadowmesh_client.transport.memory import MemoryTransport
from tests.client.relay.helpers import inner_frame, wait_for

PATH = "/relay-secret"


def member_url(i: int) -> str:
    return f"ws://relay-{i}.test:443{PATH}"


class Member:
    def __init__(self, lab: ClusterLab, i: int) -> None:
        self.lab, self.i = lab, i
        peers = tuple(f"ws://mesh-{j}.test:7000" for j in range(lab.n) if j != i)
        settings = RelaySettings(listen=f"relay-{i}.test:443", path=PATH, handshake_guard=None,
                                 cluster=ClusterSettings(listen=f"mesh-{i}.test:7000", peers=peers))
        self.daemon = RelayDaemon(lab.relay.identity, lab.registry.source(), settings, transport=lab.transport)
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.daemon.run(self.stop))
        await wait_for(lambda: self.task.done() or (self.daemon.cluster is not None and self.daemon._port()),
                       what=f"member {self.i} listening")
        if self.task.done():
            self.task.result()

    async def kill(self) -> None:
        """Stop the member (its links close as a dead process's would, from the others' side)."""
        self.stop.set()
        await asyncio.wait_for(self.task, 10)

    @property
    def mesh(self):
        return self.daemon.cluster

    @property
    def core(self):
        return self.daemon.server.core


class Device:
    def __init__(self, lab: ClusterLab) -> None:
        self.lab = lab
        self.registered = lab.registry.register()
        self.identity = self.registered.identity
        self.key = self.identity.public_key
        self.link = None

    async def connect(self, member: int) -> Device:
        lab = self.lab
        relay_key = lab.relay.identity.public_key
        session = Session(self.identity, relay_key, lab.protocol, lambda k: k == relay_key)
        self.link = await lab.transport.dial(ClientConfig(member_url(member), limits=node_link_limits()),
                                             session.initiate(time.time()))
        env = decode(await asyncio.wait_for(self.link.recv(), 5))
        assert env.type is EnvelopeType.LOCAL
        received = session.open(bytes(env.inner), time.time())
        for frame in received.outgoing:
            await self.link.send(encode_local(frame))
        await wait_for(lambda: self.key in lab.members[member].mesh.local, what="device attached")
        return self

    async def forward(self, to: Device, n: int = 1000) -> bytes:
        frame = inner_frame(self.key, n)
        await self.link.send(encode_forward(to.key, frame))
        return frame

    async def recv_deliver(self, timeout: float = 3.0):
        while True:
            env = decode(await asyncio.wait_for(self.link.recv(), timeout))
            if env.type is EnvelopeType.DELIVER:
                return env


class ClusterLab:
    def __init__(self, n: int) -> None:
        self.n = n
        self.registry = MemoryRegistry()
        self.relay = self.registry.register(relay=True, endpoint=member_url(0))
        self.transport = MemoryTransport()
        d = self.registry.source().directory
        self.protocol = ProtocolConfig(NetworkBinding(d.chain_id, d.registry, d.network_id))
        self.members = [Member(self, i) for i in range(n)]

    def device(self) -> Device:
        return Device(self)

    async def meshed(self) -> None:
        """Wait until every member has a link to every other one (both directions)."""
        want = self.n - 1
        await wait_for(lambda: all(m.task.done() or (len(m.mesh.dialed) == want and len(m.mesh._outboxes) == want)
                                   for m in self.members), timeout=5, what="full mesh")


@asynccontextmanager
async def cluster_lab(n: int = 3):
    lab = ClusterLab(n)
    lab.registry.sync()
    for m in lab.members:
        await m.start()
    await lab.meshed()
    try:
        yield lab
    finally:
        for m in lab.members:
            if m.task is not None and not m.task.done():
                await m.kill()
