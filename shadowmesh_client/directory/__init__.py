"""The chain-backed peer directory: trust and peers of one network as a pure function of DeviceRegistry events.

Layers (docs/directory.md):
  events.py   event dataclasses + decoding of raw eth_getLogs entries (pure)
  proof.py    device id and proof-of-possession message, byte-identical to the contract (pure)
  core.py     Directory: state, queries, subscriptions (pure; time passed in as ``now``)
  store.py    SQLite persistence of the events and the sync point (thin)
  reader.py   JSON-RPC eth_getLogs in adaptive ranges with retry/backoff (thin)
  syncer.py   Syncer (blocking rounds: confirmations, reorgs, persistence) and DirectorySyncer (asyncio)

Public API for the tunnel layer::

    directory.is_trusted(public_key: bytes, now: float) -> bool
    directory.peer_for_key(public_key: bytes, now: float) -> Peer | None
    directory.peer_by_overlay(ip, now: float | None = None) -> Peer | None
    directory.peers(now: float) -> list[Peer]
    directory.subscribe(callback: Callable[[Change], None]) -> Callable[[], None]   # returns unsubscribe
    await DirectorySyncer(syncer).sync_once() / .run();  syncer.status(now) -> SyncStatus
"""

from shadowmesh_client.directory.core import Change, ChangeKind, Directory, NetworkInfo, Peer
from shadowmesh_client.directory.events import DeviceStatus, JoinPolicy
from shadowmesh_client.directory.syncer import DirectorySource, DirectorySyncer, Syncer, SyncStatus
from shadowmesh_client.directory.trust import Role, TrustPolicy

__all__ = [
    "Change", "ChangeKind", "DeviceStatus", "Directory", "DirectorySource", "DirectorySyncer", "JoinPolicy",
    "NetworkInfo", "Peer",
    "Role", "SyncStatus", "Syncer", "TrustPolicy",
]
