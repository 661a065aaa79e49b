"""The mesh node: the `shadowmesh-client up` daemon. Wiring only (docs/mesh.md).

Spec "Network Layer", "Data Plane", "Security Architecture"; issue 5 "Node". Split by job:

    settings.py   NodeSettings and the implementation constants (MTU, frame size, ticks), with units
    peers.py      PeerState (one end-to-end Session per peer), DirectPath / RelayPath, path choice by RTT,
                  the dial tie-break (should_dial)
    relays.py     RelayClient: one authenticated link to a relay, envelopes in and out
    manager.py    PeerManager: directory -> peers, routes, dialers, relay links; authenticate; trust sweep
    pump.py       Pump: TUN -> sessions -> paths and back; drop counters
    daemon.py     Node: start-up order, housekeeping, status file, clean shutdown

Public API::

    Node(identity, syncer, settings: NodeSettings, *, endpoint: str | None = None,
         protocol: ProtocolConfig | None = None)
        await node.run(stop: asyncio.Event)   # until stop is set (SIGINT/SIGTERM in the CLI)
        node.status() -> dict                  # also written to settings.status_file every second
    NodeSettings(tun_name="sm0", mtu=DEFAULT_MTU, listen=None, path=None, tls_cert=None, tls_key=None,
                 ca_file=None, relays=(), status_file=None, limits=node_link_limits(), backoff_max=8.0,
                 directory_interval=1.0)
"""

from shadowmesh_client.node.daemon import Node
from shadowmesh_client.node.settings import DEFAULT_MTU, MAX_FRAME_BYTES, NodeSettings, node_link_limits

__all__ = ["DEFAULT_MTU", "MAX_FRAME_BYTES", "Node", "NodeSettings", "node_link_limits"]
