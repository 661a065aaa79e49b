"""nftables rulesets of the routing features (issue 14): exit NAT, subnet forwarding, the kill switch.

Each feature owns one table (created with ``nft -f -``: one atomic transaction; re-applying replaces the
table, so applying is idempotent):

* ``inet shadowmesh_fwd`` (an exit node or subnet router): traffic from the TUN device is forwarded only
  from allowed devices to the uplink (exit; ``exit_clients``, source checked again here after the
  node's own source filter) or to approved subnets; everything else arriving from the TUN for
  forwarding is dropped and counted (``refused``); replies come back by conntrack; whatever leaves
  towards the uplink or a subnet from the overlay is masqueraded (the internet and the LAN need no route
  to the overlay). Deleted on clean shutdown.
* ``inet shadowmesh_killswitch`` (a device with ``--exit-node --kill-switch``): the output hook drops
  every packet that would leave outside the TUN device except loopback, the underlay addresses the node
  needs (peers, relays, RPC: ``underlay``), DHCP, IPv6 neighbour discovery and, with
  ``--exit-allow-lan``, the directly connected networks. It is deleted on clean shutdown only: after a
  crash it stays and keeps blocking (delete it with ``nft delete table inet shadowmesh_killswitch``).

Pure text builders plus ``apply``/``delete`` (subprocess ``nft``). May import: ipaddress, subprocess.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

from shadowmesh_client.errors import ConfigError

FWD_TABLE = "shadowmesh_fwd"
KILL_TABLE = "shadowmesh_killswitch"


def _split(items) -> tuple[list[str], list[str]]:
    v4: list[str] = []
    v6: list[str] = []
    for i in items:
        (v4 if ipaddress.ip_network(i, strict=False).version == 4 else v6).append(str(i))
    return v4, v6


def _set(items: list[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def forward_ruleset(tun: str, *, overlay6: str, exit_clients=(), serve_exit: bool = False,
                    subnets=()) -> str:
    """The exit/subnet-router table (see the module docstring)."""
    c4, c6 = _split(exit_clients)
    s4, s6 = _split(subnets)
    rules = [f'iifname "{tun}" oifname "{tun}" drop']
    if s4:
        rules.append(f'iifname "{tun}" ip daddr {_set(s4)} accept')
    if s6:
        rules.append(f'iifname "{tun}" ip6 daddr {_set(s6)} accept')
    if serve_exit and c4:
        rules.append(f'iifname "{tun}" ip saddr {_set(c4)} accept')
    if serve_exit and c6:
        rules.append(f'iifname "{tun}" ip6 saddr {_set(c6)} accept')
    rules.append(f'iifname "{tun}" counter name refused drop')
    rules.append(f'oifname "{tun}" ct state established,related accept')
    rules.append(f'oifname "{tun}" drop')
    body = "\n    ".join(rules)
    return f"""table inet {FWD_TABLE}
delete table inet {FWD_TABLE}
table inet {FWD_TABLE} {{
  counter refused {{ }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    {body}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 100.64.0.0/10 oifname != "{tun}" masquerade
    ip6 saddr {overlay6} oifname != "{tun}" masquerade
  }}
}}
"""


def killswitch_ruleset(tun: str, *, underlay=(), lan=()) -> str:
    """The kill switch table (see the module docstring). ``underlay``/``lan``: addresses or prefixes."""
    u4, u6 = _split(underlay)
    l4, l6 = _split(lan)
    rules = ['oifname "lo" accept', f'oifname "{tun}" accept', "udp sport 68 udp dport 67 accept",
             "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept"]
    for prefix, items in (("ip", u4), ("ip6", u6), ("ip", l4), ("ip6", l6)):
        if items:
            rules.append(f"{prefix} daddr {_set(items)} accept")
    rules.append("counter name leaked drop")
    body = "\n    ".join(rules)
    return f"""table inet {KILL_TABLE}
delete table inet {KILL_TABLE}
table inet {KILL_TABLE} {{
  counter leaked {{ }}
  chain output {{
    type filter hook output priority filter; policy accept;
    {body}
  }}
}}
"""


def apply(ruleset: str) -> None:
    """Load ``ruleset`` atomically (``ConfigError`` naming the package to install if nft is missing)."""
    if shutil.which("nft") is None:
        raise ConfigError("nft not found: install nftables (apt-get install nftables) for exit nodes, subnet "
                          "routes and the kill switch")
    done = subprocess.run(["nft", "-f", "-"], input=ruleset.encode(), capture_output=True, timeout=20)
    if done.returncode != 0:
        raise ConfigError(f"nft refused the ruleset: {done.stderr.decode(errors='replace').strip()}")


def delete(table: str) -> None:
    """Delete ``inet <table>`` if it exists (quietly)."""
    if shutil.which("nft") is not None:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, timeout=20)
