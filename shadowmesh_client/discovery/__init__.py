"""Discovery without chain writes (issue 15): signed endpoint records in a Kademlia DHT, NAT traversal, and
sessions on demand. docs/discovery.md explains the design; each module states what it owns:

* records.py: the signed endpoint record (wire format, signature, network binding); pure;
* store.py: the bounded record store every DHT node keeps (trust from the directory only); pure;
* kademlia.py: node ids, routing table, iterative lookup, the DHT node's request handler; pure;
* messages.py: DHT RPCs and NAT control messages (observed address, candidates), sealed in sessions; pure;
* relay_side.py: what a relay serves (DHT node, observed address, candidate forwarding, load/price hints);
* service.py: what ``up`` runs (publish/refresh its record, lookups, candidate exchange, direct upgrade);
* punch.py: TCP simultaneous open (+ listener on the same port) and the WebSocket link over it;
* ondemand.py: sessions made on first packet or incoming hello, dropped when idle.

May import: protocol, crypto, directory.trust, transport (base; punch.py: transport.ws public API), relay
(envelope/control), node (service.py and ondemand.py only, for the PeerTable hooks).
"""

from shadowmesh_client.discovery.records import DiscoveryError, EndpointRecord, RecordKind

__all__ = ["DiscoveryError", "EndpointRecord", "RecordKind"]
