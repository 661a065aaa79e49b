"""TUN devices (spec "Network Layer"): the interface, the Linux implementation, an in-memory fake.

    dev = open_tun("smt0", mtu=65000)            # /dev/net/tun, non-blocking, IFF_TUN | IFF_NO_PI
    configure(dev.name, "100.64.0.7/10", mtu=65000)
    loop.add_reader(dev.fileno(), on_readable)   # on_readable calls dev.read_batch(64)
    dst = ipv4_dst(packet)                       # int, or None for anything that is not IPv4
"""

from .base import DEFAULT_BATCH, MAX_MTU, MIN_MTU, TunDevice, TunStats, check_mtu
from .configure import configure, configure_async
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
