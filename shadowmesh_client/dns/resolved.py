"""Point the system resolver at the node's DNS server for the names' zone (issue 14 "Names").

Where systemd-resolved runs (``/run/systemd/resolve`` exists and ``resolvectl`` is installed), the TUN link
gets per-link DNS: ``resolvectl dns <tun> <overlay addresses>`` and ``resolvectl domain <tun> ~<zone>``
(a routing-only domain: only names under the zone go there; everything else keeps the system's
resolvers). The settings vanish with the link when the daemon stops. Elsewhere nothing is changed and
``configure`` says what to do by hand (docs/routing.md "Names without systemd-resolved": a
``nameserver`` line, dnsmasq ``server=/<zone>/<address>``, or ``dig @<address>``).

May import: subprocess, shutil. Blocking (call through ``asyncio.to_thread``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

log = logging.getLogger(__name__)

RESOLVED_RUNTIME = "/run/systemd/resolve"


def available() -> bool:
    return os.path.isdir(RESOLVED_RUNTIME) and shutil.which("resolvectl") is not None


def configure(link: str, addresses: list[str], zone: str) -> str:
    """Configure per-link DNS for ``zone``; returns what was done (for the log)."""
    if not available():
        return (f"systemd-resolved is not running: names under {zone} resolve with `dig @{addresses[0]}` "
                f"or after adding `nameserver {addresses[0]}` (see docs/routing.md)")
    try:
        subprocess.run(["resolvectl", "dns", link, *addresses], check=True, capture_output=True, timeout=10)
        subprocess.run(["resolvectl", "domain", link, f"~{zone}"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"resolvectl failed ({exc}): names under {zone} resolve with `dig @{addresses[0]}`"
    return f"systemd-resolved sends {zone} to {', '.join(addresses)} on {link}"
