"""The namespace topology builder lives in shadowmesh_client.lab.netns (the demo and benchmarks use it too)."""

from shadowmesh_client.lab.netns import *  # noqa: F401,F403
from shadowmesh_client.lab.netns import Host, Segment, Topology, list_namespaces, mesh_topology, netns_pids, reap_stale, veth_pair  # noqa: F401
