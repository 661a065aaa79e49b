"""Routing settings of the ``up`` daemon (issue 14), each with its default and the reason for it.

Built by ``cli/mesh.py`` from the config's ``routing:`` section (config.RoutingConfig) and the ``up``
options (``--exit-node``, ``--exit-allow-lan``, ``--advertise-routes``, ``--advertise-exit``...). Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass

from shadowmesh_client.routing.names import DEFAULT_SUFFIX
from shadowmesh_client.routing.qos import DEFAULT_PORTS

DNS_PORT = 53
RECORDS_SECONDS = 2.0
"""Seconds between looks at the records folder (a stat of each file; re-read only when one changed)."""


@dataclass(frozen=True)
class RoutingSettings:
    ipv6: bool = True                     # the TUN carries IPv6; this device gets its ULA address
    name: str | None = None               # the name this device claims (its signed record); None: none
    advertise_exit: bool = False          # offer this device as an exit node (NAT to its uplink)
    advertise_routes: tuple[str, ...] = ()   # prefixes behind this device (its LAN), for the admin to approve
    exit_allow: tuple[str, ...] = ()      # devices (names, overlay addresses, key prefixes) allowed to use our
                                          # exit; () = every member of the network
    uplink: str | None = None             # exit/subnet NAT interface; None: the default route's interface
    exit_node: str | None = None          # use this device (name or overlay address) as our exit
    exit_allow_lan: bool = False          # with exit_node: keep directly connected networks direct
    include: tuple[str, ...] = ()         # with exit_node: only these prefixes go through it (() = everything)
    exclude: tuple[str, ...] = ()         # with exit_node: these prefixes stay outside the tunnel
    kill_switch: bool = False             # with exit_node: nftables blocks traffic leaving outside the tunnel
    records_dir: str | None = None        # signed device records (routing/records.py); None: state_dir/records
    dns: bool = True                      # serve NAME.NETWORK.SUFFIX on our overlay address
    dns_suffix: str = DEFAULT_SUFFIX
    dns_forward: str | None = "system"    # other names: "system" (the resolv.conf servers), "IP[:PORT]", None
    dns_port: int = DNS_PORT              # (tests use a high port; resolvers only speak to 53)
    dns_addresses: tuple[str, ...] = ()   # where the DNS server listens; () = our overlay IPv4 and IPv6
    configure_resolver: bool = True       # systemd-resolved per-link DNS for the suffix when available
    qos: bool = False                     # per-peer, per-class send queues (routing/qos.py)
    qos_ports: frozenset[int] = DEFAULT_PORTS
    apply_system: bool = True             # routes, sysctls, nftables (False: in-process tests with FakeTun)
    rpc_url: str | None = None            # the chain endpoint: kept outside the tunnel with an exit node
