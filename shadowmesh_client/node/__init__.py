"""The mesh node: the `shadowmesh-client up` daemon. Wiring only (docs/mesh.md).

Spec "Network Layer", "Data Plane", "Security Architecture"; issue 5 "Node". Split by job:

    settings.py   NodeSettings and the implementation constants (MTU, frame size, periods), with units
    peers.py      PeerState (one end-to-end Session per peer), DirectPath / RelayPath, path choice by RTT,
                  the dial tie-break (should_dial), PeerTable (peers, routes, relay clients)
    tasks.py      Spawner (every task in the node's TaskGroup), Running (a reconnecting client as a task)
    reconcile.py  Reconciler: directory -> peers, routes, dialers, relay clients; trust sweep; closing
    links.py      PeerLinks: authenticate, serve and dial direct links; frames arriving through relays
    timers.py     SessionTimers: one task sleeping until the earliest session ``next_timer_at()``
    relays.py     RelayClient: one authenticated link to a relay, envelopes in and out, its session timers
    pump.py       Pump: TUN -> sessions -> paths and back; drop counters
    payments.py   NodePayments: receipts for relays (signing in a worker thread)
    daemon.py     Node: start-up order, TaskGroup, housekeeping, status file, clean shutdown

Every trust decision asks directory.trust.TrustPolicy (one per node).

Public API::

    Node(identity, source: DirectorySource, settings: NodeSettings, *, endpoint: str | None = None,
         protocol: ProtocolConfig | None = None, payments: PaymentSetup | None = None,
         transport: Transport | None = None (WebSocket), tun: TunDevice | None = None (open + configure))
        await node.run(stop: asyncio.Event)   # until stop is set (SIGINT/SIGTERM in the CLI)
        node.status() -> dict                  # also written to settings.status_file every second
    NodeSettings(tun_name="sm0", mtu=DEFAULT_MTU, listen=None, path=None, tls_cert=None, tls_key=None,
                 ca_file=None, relays=(), status_file=None, limits=node_link_limits(), backoff_max=8.0,
                 directory_interval=1.0)
"""

from shadowmesh_client.node.daemon import Node
from shadowmesh_client.node.settings import DEFAULT_MTU, MAX_FRAME_BYTES, NodeSettings, node_link_limits

__all__ = ["DEFAULT_MTU", "MAX_FRAME_BYTES", "Node", "NodeSettings", "node_link_limits"]
