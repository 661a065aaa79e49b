"""A small DNS server for device names (issue 14 "Names"): server.py answers ``NAME.NETWORK.SUFFIX`` from
routing/names.py on the node's overlay addresses; resolved.py tells systemd-resolved to send that suffix
there. May import: routing.names, dnslib (pinned: see server.py), asyncio."""

from shadowmesh_client.dns.server import DnsServer, answer

__all__ = ["DnsServer", "answer"]
