"""Cluster settings (what ``shadowmesh-client relay --cluster-...`` and ``--workers`` set) and constants.

Owns ``ClusterSettings`` and the mesh's link limits. Pure: no I/O; the daemon
(relay/daemon.py) builds a ``ClusterMesh`` (mesh.py) from these when ``RelaySettings.cluster`` is set.

May import: transport.config, crypto (the derived mesh path), errors.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace

from shadowmesh_client.crypto import Identity, blake2b
from shadowmesh_client.errors import ConfigError
from shadowmesh_client.transport.config import PATH_PREFIX, LinkLimits

MESH_EXTRA_BYTES = 1_024
"""Bytes a mesh FORWARD may exceed the largest device message by (type + source key, with room)."""


@dataclass(frozen=True)
class ClusterSettings:
    listen: str                       # HOST:PORT of this member's mesh listener (keep it off the internet)
    peers: tuple[str, ...] = ()       # ws(s)://host:port of the other members (path: ``path``); own URL skipped
    path: str | None = None           # mesh URL path; None: derived from the relay key (mesh_path)
    tls_cert: str | None = None       # mesh listener TLS (PEM), for members on several hosts
    tls_key: str | None = None
    ca_file: str | None = None        # trust roots for dialing wss:// peers
    ledger_url: str | None = None     # postgresql://... shared receipt ledger; None: each member's SQLite
    worker: int | None = None         # index of this worker among ``--workers N`` on one host (None: not one)

    def __post_init__(self) -> None:
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"cluster listen {self.listen!r} must be HOST:PORT")
        if self.ledger_url is not None and not self.ledger_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("cluster ledger URL must be postgresql://user@host:port/db (a shared PostgreSQL)")

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def mesh_path(identity: Identity) -> str:
    """A secret URL path every member holding the relay key derives alike (keyed BLAKE2b of the key's
    seed): the mesh listener looks like any relay path to a prober, and needs no extra setting."""
    digest = blake2b(b"mesh-path", key=identity.seed_bytes(), person=b"sm-cluster-path", size=18)
    return PATH_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def mesh_link_limits(device_limits: LinkLimits) -> LinkLimits:
    """Device link limits with room for the mesh FORWARD header, and a larger write buffer (one mesh link
    carries many devices' frames)."""
    return replace(device_limits, max_message_bytes=device_limits.max_message_bytes + MESH_EXTRA_BYTES,
                   write_limit=max(device_limits.write_limit, 1 << 20), max_queue=max(device_limits.max_queue, 16))


def worker_settings(base: ClusterSettings, index: int, workers: int, mesh_host: str = "127.0.0.1") -> ClusterSettings:
    """Settings of worker ``index`` of ``workers`` on one host: its mesh listener on ``port + index``, and
    every other worker of the host as a peer (plus ``base.peers``: other hosts' members)."""
    own = [f"ws://{mesh_host}:{base.port + i}" for i in range(workers) if i != index]
    return replace(base, listen=f"{base.host}:{base.port + index}", peers=(*own, *base.peers), worker=index)
