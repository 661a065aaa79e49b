"""Give a TUN device its overlay address, MTU, routes and link state over netlink (pyroute2).

Spec "Network Layer": each device has one IPv4 address in the overlay 100.64.0.0/10 (RFC 6598),
configured with the overlay prefix length so the kernel routes the whole overlay into the device.
IPv6 is switched off on the device (sysctl ``disable_ipv6``) before the link comes up, so the kernel
sends no router solicitations into the tunnel; with ``address6`` (issue 14: the network's ULA address,
routing/overlay6.py) IPv6 stays on without a link-local address or router advertisements. Every step
is idempotent: calling ``configure`` again with the same arguments changes nothing and does not fail.

Two entry points: ``configure`` (blocking, for scripts and tests without an event loop) and
``configure_async`` (what the daemons await: the netlink work runs in the loop's default executor, so the
loop keeps serving while the kernel answers). pyroute2's synchronous API runs an event loop of its own,
which cannot run in a thread whose loop is running: ``configure`` called from a coroutine therefore hands
the work to ONE module-wide helper thread (created on first use, never per call) and blocks on it.

May import: tun.base, tun.linux, tun.netns, errors, pyroute2.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from shadowmesh_client.errors import ConfigError, TunError

from .base import check_mtu
from .linux import check_ifname
from .netns import enter_netns


def _parse_address(address: str | ipaddress.IPv4Interface) -> ipaddress.IPv4Interface:
    try:
        iface = ipaddress.ip_interface(address)
    except ValueError:
        raise ConfigError(f"tun address must look like 100.64.0.1/10, got {address!r}") from None
    if not isinstance(iface, ipaddress.IPv4Interface):
        raise ConfigError(f"tun address must be IPv4 (the overlay is 100.64.0.0/10), got {address!r}")
    return iface


def _parse_route(route: str | ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(route, strict=True)
    except ValueError:
        raise ConfigError(f"tun route must be an IPv4 network like 100.64.8.0/24, got {route!r}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ConfigError(f"tun route must be IPv4, got {route!r}")
    return net


def _disable_ipv6(name: str, netns: str | None) -> None:
    path = f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"
    with enter_netns(netns):
        try:
            with open(path, "w") as f:
                f.write("1")
        except FileNotFoundError:
            pass  # kernel without IPv6: nothing to switch off


def _parse6(address6: str | None) -> ipaddress.IPv6Interface | None:
    if address6 is None:
        return None
    try:
        iface = ipaddress.ip_interface(address6)
    except ValueError:
        iface = None
    if not isinstance(iface, ipaddress.IPv6Interface):
        raise ConfigError(f"tun IPv6 address must look like fd00:1::6440:1/48, got {address6!r}")
    return iface


def _ipv6_quiet(name: str, netns: str | None) -> None:
    """IPv6 on, but no autoconfigured link-local address (addr_gen_mode 1) and no router advertisements."""
    with enter_netns(netns):
        for key, value in (("disable_ipv6", "0"), ("addr_gen_mode", "1"), ("accept_ra", "0")):
            try:
                with open(f"/proc/sys/net/ipv6/conf/{name}/{key}", "w") as f:
                    f.write(value)
            except FileNotFoundError:
                pass


_helper: ThreadPoolExecutor | None = None
_helper_lock = threading.Lock()


def _helper_pool() -> ThreadPoolExecutor:
    """The one helper thread of ``configure`` called from a running loop (created once, reused)."""
    global _helper
    with _helper_lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(1, thread_name_prefix="tun-configure")
        return _helper


def _checked(name: str, address, mtu: int | None, routes) -> tuple[ipaddress.IPv4Interface, list]:
    check_ifname(name)
    iface = _parse_address(address)
    nets = [_parse_route(r) for r in routes]
    if mtu is not None:
        check_mtu(mtu)
    return iface, nets


def configure(
    name: str,
    address: str | ipaddress.IPv4Interface,
    *,
    mtu: int | None = None,
    routes: Iterable[str | ipaddress.IPv4Network] = (),
    netns: str | None = None,
    up: bool = True,
    disable_ipv6: bool = True,
    address6: str | None = None,
) -> None:
    """Configure the existing device ``name``: address (e.g. ``"100.64.0.7/10"``), MTU in bytes,
    extra ``routes`` through the device (the address's own prefix is routed already), link up.

    ``netns``: the namespace the device lives in (default: ours). Raises ``ConfigError`` for bad
    values and ``TunError`` when the kernel refuses (no such device, no permission). Blocking (a few
    milliseconds). From a coroutine, await ``configure_async`` instead: called there, this blocks the
    loop on the module's helper thread (see the module docstring).
    """
    iface, nets = _checked(name, address, mtu, routes)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _configure(name, iface, mtu, nets, netns, up, disable_ipv6, _parse6(address6))
    return _helper_pool().submit(_configure, name, iface, mtu, nets, netns, up, disable_ipv6,
                                 _parse6(address6)).result()


def _configure(
    name: str,
    iface: ipaddress.IPv4Interface,
    mtu: int | None,
    nets: list[ipaddress.IPv4Network],
    netns: str | None,
    up: bool,
    disable_ipv6: bool,
    iface6: ipaddress.IPv6Interface | None = None,
) -> None:
    if iface6 is not None:    # issue 14: the overlay's IPv6 address, no link-local, no router solicitations
        _ipv6_quiet(name, netns)
    elif disable_ipv6:
        _disable_ipv6(name, netns)
    step = "connect to netlink"
    try:
        with IPRoute(netns=netns, flags=0, groups=0) as ipr:
            step = "find the device"
            found = ipr.link_lookup(ifname=name)
            if not found:
                raise TunError(errno.ENODEV, f"no network device {name!r}: open the tun device first")
            index = found[0]
            if mtu is not None:
                step = f"set MTU {mtu}"
                ipr.link("set", index=index, mtu=mtu)
            step = f"add address {iface}"
            try:
                ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise
            if up:
                step = "set link up"
                ipr.link("set", index=index, state="up")
            if iface6 is not None:
                step = f"add address {iface6}"
                try:
                    ipr.addr("add", index=index, address=str(iface6.ip), prefixlen=iface6.network.prefixlen,
                             family=socket.AF_INET6)
                except NetlinkError as e:
                    if e.code != errno.EEXIST:
                        raise
            for net in nets:
                step = f"add route {net}"
                ipr.route("replace", dst=str(net.network_address), dst_len=net.prefixlen, oif=index)
    except NetlinkError as e:
        raise TunError(e.code, f"cannot {step} on {name}: {e}") from None
    except OSError as e:
        if isinstance(e, TunError):
            raise
        raise TunError(e.errno, f"cannot {step} on {name}: {e.strerror}") from None


async def configure_async(
    name: str,
    address: str | ipaddress.IPv4Interface,
    *,
    mtu: int | None = None,
    routes: Iterable[str | ipaddress.IPv4Network] = (),
    netns: str | None = None,
    up: bool = True,
    disable_ipv6: bool = True,
    address6: str | None = None,
) -> None:
    """``configure`` without blocking the event loop: arguments are checked here (ConfigError at once),
    the netlink work runs in the loop's default executor (no executor of its own per call).
    ``address6``: the overlay's IPv6 address with its prefix (issue 14, e.g. ``fd12:3456:789a::6440:7/48``):
    IPv6 stays on, without a link-local address or router solicitations."""
    iface, nets = _checked(name, address, mtu, routes)
    await asyncio.to_thread(_configure, name, iface, mtu, nets, netns, up, disable_ipv6, _parse6(address6))
