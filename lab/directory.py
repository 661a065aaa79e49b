"""An in-process registry for tests and benchmarks: devices registered, revoked and renewed as registry
events (with real proofs of possession) fed to the pure ``directory.core.Directory``.

``MemoryRegistry`` implements ``directory.DirectorySource``, so a node or relay daemon runs on it in
process, over ``transport.memory`` and ``tun.FakeTun``: no chain, no root. One registry is one network;
give every daemon of a test its own ``source()`` view (each has its own Directory, like separate
machines following one chain), and ``sync()`` pushes pending events to all of them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from shadowmesh_client.crypto import Identity
from shadowmesh_client.directory import events as ev
from shadowmesh_client.directory.core import Directory
from shadowmesh_client.directory.proof import device_id as compute_device_id
from shadowmesh_client.directory.proof import proof_message
from shadowmesh_client.directory.syncer import SyncStatus
from shadowmesh_client.errors import ChainError

CHAIN_ID = 31337
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
NETWORK_ID = 1
OWNER = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")
YEAR = 365 * 86400
OVERLAY_BASE = 0x64400000  # 100.64.0.0


@dataclass
class Device:
    identity: Identity
    device_id: bytes
    overlay: str
    relay: bool
    endpoint: str


class MemoryRegistry:
    """The chain side: ``register``, ``revoke``, ``set_endpoint`` append events; views follow them."""

    def __init__(self, chain_id: int = CHAIN_ID, registry: str = REGISTRY, network_id: int = NETWORK_ID,
                 owner: bytes = OWNER, clock: Callable[[], float] = time.time) -> None:
        self.chain_id, self.registry, self.network_id, self.owner = chain_id, registry, network_id, owner
        self.clock = clock
        self.events: list[ev.Event] = []
        self._blocks = itertools.count(1)
        self._overlay = itertools.count(1)
        self.views: list[MemorySource] = []
        self._emit(ev.NetworkCreated, network_id=network_id, admin=owner, policy=0, registration_period=YEAR,
                   name="lab")

    def _emit(self, cls: type, **fields: object) -> None:
        self.events.append(cls(next(self._blocks), 0, bytes(32), bytes(32), **fields))

    def register(self, identity: Identity | None = None, *, relay: bool = False, endpoint: str = "",
                 expires_in: float = YEAR) -> Device:
        ident = identity or Identity.generate()
        pk = ident.public_key
        did = compute_device_id(self.network_id, self.owner, pk)
        n = next(self._overlay)
        self._emit(ev.DeviceRegistered, device_id=did, owner=self.owner, network_id=self.network_id,
                   public_key=pk, overlay_address=OVERLAY_BASE + n, expires_at=int(self.clock() + expires_in),
                   status=2, relay=relay, endpoint=endpoint,
                   proof=ident.sign(proof_message(self.chain_id, self.registry, self.network_id, self.owner, pk)))
        return Device(ident, did, f"100.64.{n >> 8}.{n & 0xFF}", relay, endpoint)

    def revoke(self, device: Device) -> None:
        self._emit(ev.DeviceRevoked, device_id=device.device_id, network_id=self.network_id, by=self.owner)

    def set_endpoint(self, device: Device, endpoint: str) -> None:
        device.endpoint = endpoint
        self._emit(ev.DeviceEndpointUpdated, device_id=device.device_id, network_id=self.network_id,
                   endpoint=endpoint, relay=device.relay)

    def source(self, interval: float = 0.05) -> MemorySource:
        """A new follower of this registry (one per daemon), synced to now."""
        view = MemorySource(self, interval)
        self.views.append(view)
        view.pull()
        return view

    def sync(self) -> None:
        """Every view applies the events it has not seen (subscribers are notified, as after a sync round)."""
        for view in self.views:
            view.pull()


class MemorySource:
    """``directory.DirectorySource`` over a MemoryRegistry. ``down = True`` makes rounds fail like a dead
    RPC endpoint."""

    def __init__(self, registry: MemoryRegistry, interval: float) -> None:
        self._registry = registry
        self.interval = interval
        self._directory = Directory(registry.chain_id, registry.registry, registry.network_id)
        self._seen = 0
        self.down = False
        self.closed = False
        self.rounds = 0

    @property
    def directory(self) -> Directory:
        return self._directory

    @property
    def has_state(self) -> bool:
        return self._seen > 0

    def pull(self) -> int:
        new = self._registry.events[self._seen:]
        self._seen += len(new)
        if new:
            self._directory.apply(new, self._registry.clock())
        self._directory.tick(self._registry.clock())
        return len(new)

    async def sync_once(self) -> int:
        if self.down:
            raise ChainError("cannot reach the chain (lab: source is down)")
        self.rounds += 1
        return self.pull()

    async def run(self) -> None:
        import asyncio

        while True:
            try:
                await self.sync_once()
            except ChainError:
                pass
            await asyncio.sleep(self.interval)

    def status(self, now: float | None = None) -> SyncStatus:
        return SyncStatus(synced_block=len(self._registry.events), head_block=len(self._registry.events),
                          last_success=None, stale_seconds=None, error="down" if self.down else None,
                          devices=len(self._directory))

    def close(self) -> None:
        self.closed = True
