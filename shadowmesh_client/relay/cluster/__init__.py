"""Relay clusters (issue 13 "Cluster"; docs/cluster.md): N relay processes sharing ONE relay identity.

wire.py      member authentication (proof of the registered relay key) and mesh messages      pure
settings.py  ClusterSettings, the derived mesh path, per-worker settings                         pure
mesh.py      ClusterMesh: full mesh of member links, presence, one-hop forwarding (RemoteRoute) asyncio
ledger.py    PgReceiptLedger: the receipt ledger in a shared PostgreSQL (psycopg 3)             database
billing.py   ClusterBilling: RelayBilling over the shared ledger (cluster-wide credit and claims)
workers.py   ``relay --workers N``: N worker processes on one port (SO_REUSEPORT), supervised  processes

The relay daemon (relay/daemon.py) builds a ClusterMesh when ``RelaySettings.cluster`` is set.
May import: relay, directory, transport, crypto, rewards (ledger.py, billing.py only).
"""

from shadowmesh_client.relay.cluster.mesh import ClusterMesh, RemoteRoute
from shadowmesh_client.relay.cluster.settings import ClusterSettings, mesh_path, worker_settings


def network_binding(directory) -> bytes:
    """What mesh signatures bind to: the network (chain id, registry address, network id)."""
    return f"{directory.chain_id}:{str(directory.registry).lower()}:{directory.network_id}".encode()


__all__ = ["ClusterMesh", "ClusterSettings", "RemoteRoute", "mesh_path", "network_binding", "worker_settings"]
