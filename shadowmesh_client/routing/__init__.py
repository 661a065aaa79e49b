"""Routing beyond the overlay's own addresses (issue 14; docs/routing.md).

overlay6.py   the network's ULA /48 and each device's IPv6 address (pure)
records.py    signed device records: name, exit advert, subnet routes; the admin's approval (eth-account)
names.py      NAME.NETWORK.SUFFIX -> overlay IPv4/IPv6, unique per network (pure)
table.py      RouteTable: subnet and exit routes, longest prefix, deterministic overlap resolution (pure)
qos.py        Classifier (DSCP, size, ports) and QosSender: per-peer, per-class send queues for the pump
manager.py    Routing: the above rebuilt from the directory and records; the pump's route/source hooks
settings.py   RoutingSettings
system.py     the OS side: routes through the TUN device, underlay pins, forwarding sysctls (pyroute2)
nft.py        nftables: exit NAT and refusal, subnet forwarding, kill switch
node.py       NodeRouting: what the ``up`` daemon starts and releases

May import: directory, crypto, errors, transport (qos), dns (node.py), pyroute2 (system.py only).
Nothing here is imported by the pump: the daemon installs the hooks.
"""
