"""TUN devices (spec "Network Layer"): the interface, the Linux implementation, an in-memory fake.

    dev = open_tun("smt0", mtu=65000)            # /dev/net/tun, non-blocking, IFF_TUN | IFF_NO_PI
    configure(dev.name, "100.64.0.7/10", mtu=65000)
    loop.add_reader(dev.fileno(), on_readable)   # on_readable calls dev.read_batch(64)
    dst = ipv4_dst(packet)                       # int, or None for anything that is not IPv4

``configure``/``configure_async`` (netlink: pyroute2) are imported on first use only (PEP 562 module
``__getattr__``): importing this package, or the node, must not import pyroute2 (the userspace mode runs
without it; tests/client/userspace checks).
"""

from typing import Any

from .base import DEFAULT_BATCH, MAX_MTU, MIN_MTU, TunDevice, TunStats, check_mtu
from .fake import FakeTun
from .linux import LinuxTun, check_ifname, open_tun
from .netns import enter_netns
from .packet import ip_version, ipv4_dst, ipv4_src

__all__ = [
    "DEFAULT_BATCH",
    "MAX_MTU",
    "MIN_MTU",
    "FakeTun",
    "LinuxTun",
    "TunDevice",
    "TunStats",
    "check_ifname",
    "check_mtu",
    "configure",
    "configure_async",
    "enter_netns",
    "ip_version",
    "ipv4_dst",
    "ipv4_src",
    "open_tun",
]


def __getattr__(name: str) -> Any:
    """``configure`` and ``configure_async`` on first use (they import pyroute2)."""
    if name in ("configure", "configure_async"):
        import importlib

        module = importlib.import_module(".configure", __name__)
        # importing the submodule bound the package attribute ``configure`` to it: bind the functions
        globals().update(configure=module.configure, configure_async=module.configure_async)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
