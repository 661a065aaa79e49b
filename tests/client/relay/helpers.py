"""A relay daemon in-process: RelayDaemon over MemoryTransport with MemoryRegistry sources, and devices
that dial it with a real protocol Session (HANDSHAKE_INIT hello, LOCAL key confirmation)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import replace

from lab.directory import MemoryRegistry
from shadowmesh_client.daemon_common import node_link_limits
from shadowmesh_client.protocol import NetworkBinding, ProtocolConfig, Session
from shadowmesh_client.relay import EnvelopeType, decode, encode_forward, encode_local
from shadowmesh_client.relay import daemon as relay_daemon
from shadowmesh_client.relay.daemon import RelayDaemon, RelaySettings
from shadowmesh_client.transport import ClientConfig
from shadowmesh_client.transport.memory import MemoryTransport

RELAY_HOST = "relay.test"
RELAY_PORT = 443
RELAY_PATH = "/relay-secret"
RELAY_URL = f"ws://{RELAY_HOST}:{RELAY_PORT}{RELAY_PATH}"


ASYNC_TEST_TIMEOUT = 30.0  # seconds


def run_bounded(coro, timeout: float = ASYNC_TEST_TIMEOUT):
    """``asyncio.run(coro)`` in ONE task, bounded by ``timeout`` seconds."""
    async def main():
        async with asyncio.timeout(timeout):
            return await coro
    return asyncio.run(main())


def inner_frame(sender: bytes, n: int = 1000) -> bytes:
    """An end-to-end frame as the relay sees it: a 64-byte header naming ``sender``, then ciphertext."""
    return bytes([0x13, 0, 0, 0]) + (7).to_bytes(4, "big") + sender + bytes(24) + b"x" * n


async def wait_for(predicate, timeout: float = 3.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


class Device:
    """A device's link to the relay, by hand: ``await connect()``, then ``forward``/``recv``."""

    def __init__(self, lab: RelayLab, registered) -> None:
        self.lab = lab
        self.registered = registered
        self.identity = registered.identity
        self.key = registered.identity.public_key
        self.session: Session | None = None
        self.link = None
        self.hello: bytes | None = None

    async def connect(self):
        relay_key = self.lab.relay.identity.public_key
        self.session = Session(self.identity, relay_key, self.lab.protocol, lambda k: k == relay_key)
        self.hello = self.session.initiate(time.time())
        self.link = await self.lab.transport.dial(ClientConfig(RELAY_URL, limits=node_link_limits()), self.hello)
        env = decode(await asyncio.wait_for(self.link.recv(), 5))
        assert env.type is EnvelopeType.LOCAL
        received = self.session.open(bytes(env.inner), time.time())
        assert self.session.is_established
        for frame in received.outgoing:
            await self.link.send(encode_local(frame))
        await wait_for(lambda: self.lab.daemon.server.core.link_of(self.key) is not None, what="route")
        return self

    async def forward(self, to: Device, n: int = 1000) -> int:
        message = encode_forward(to.key, inner_frame(self.key, n))
        await self.link.send(message)
        return len(message)

    async def recv(self, timeout: float = 3.0):
        return decode(await asyncio.wait_for(self.link.recv(), timeout))


class RelayLab:
    def __init__(self, settings: RelaySettings, daemon_cls=RelayDaemon, *, registry: MemoryRegistry | None = None,
                 relay=None) -> None:
        """``registry``/``relay``: a registry with the relay already registered (e.g. by another owner)."""
        self.registry = registry or MemoryRegistry()
        self.relay = relay or self.registry.register(relay=True, endpoint=RELAY_URL)
        self.transport = MemoryTransport()
        self.source = self.registry.source()
        self.settings = replace(settings, listen=f"{RELAY_HOST}:{RELAY_PORT}")
        self.daemon = daemon_cls(self.relay.identity, self.source, self.settings, transport=self.transport)
        d = self.source.directory
        self.protocol = ProtocolConfig(NetworkBinding(d.chain_id, d.registry, d.network_id))
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    def device(self, registered=None) -> Device:
        return Device(self, registered or self.registry.register())

    async def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.daemon.run(self.stop))
        await wait_for(lambda: self.task.done() or (self.daemon.server is not None and self.daemon._port()),
                       what="relay listening")
        if self.task.done():
            self.task.result()

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


@asynccontextmanager
async def relay_lab(settings: RelaySettings | None = None, daemon_cls=RelayDaemon):
    lab = RelayLab(settings or RelaySettings(), daemon_cls)
    await lab.start()
    try:
        yield lab
    finally:
        if not lab.task.done():
            await lab.shutdown()


def no_gc_tuning(monkeypatch) -> None:
    """RelayDaemon.run freezes the process's GC (meant for a relay process): not in the test process."""
    monkeypatch.setattr(relay_daemon, "tune_gc", lambda: None)
