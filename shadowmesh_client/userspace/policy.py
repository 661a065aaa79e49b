"""What a peer may connect to through this node, and where such a stream really goes (issue 18).

The node that RECEIVES a stream (OPEN) or a datagram flow asks ``StreamPolicy.target(address, port)``:

* this node's own overlay address:
  - userspace node: only the ports listed in ``expose`` (config ``expose:``), each mapped to a local
    address (``127.0.0.1:PORT`` by default): nothing else of the machine is reachable;
  - TUN node: with ``expose`` set, only those ports; without it every port, connected to at the overlay
    address itself: exactly what a peer already reaches with IP packets through the TUN device (a service
    bound to 127.0.0.1 stays unreachable either way);
* an address in one of the ``allow_lan`` networks (config ``userspace.allow_lan``; none by default):
  connected to as is (this node acts as a subnet router for those networks, streams only);
* anything else (another peer's overlay address, the Internet, loopback): refused, NOT_ALLOWED.

Pure: no I/O. ``Expose.parse`` reads the config forms ``"22"``, ``"8080 -> 127.0.0.1:3000"``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from shadowmesh_client.errors import ConfigError


@dataclass(frozen=True)
class Expose:
    """Overlay port ``port`` of this node is served by ``host:target_port`` on this machine."""

    port: int
    host: str = "127.0.0.1"
    target_port: int = 0

    @classmethod
    def parse(cls, text: str) -> Expose:
        """``"PORT"`` or ``"PORT -> HOST:PORT"``; ConfigError saying the expected form otherwise."""
        left, arrow, right = str(text).partition("->")
        try:
            port = _port(left.strip())
            if not arrow:
                return cls(port, "127.0.0.1", port)
            host, _, tport = right.strip().rpartition(":")
            return cls(port, host.strip("[] ") or "127.0.0.1", _port(tport))
        except ValueError:
            raise ConfigError(f"expose entry {text!r}: write PORT or `PORT -> HOST:PORT`, e.g. `8080 -> "
                              "127.0.0.1:3000`") from None


@dataclass(frozen=True)
class Forward:
    """Local ``listen`` (HOST:PORT) -> ``peer`` (overlay address or name) port ``port``."""

    listen_host: str
    listen_port: int
    peer: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Forward:
        """``"127.0.0.1:8022 -> laptop:22"`` (a bare local port listens on 127.0.0.1)."""
        left, arrow, right = str(text).partition("->")
        try:
            if not arrow:
                raise ValueError
            lhost, _, lport = left.strip().rpartition(":")
            peer, _, pport = right.strip().rpartition(":")
            if not peer:
                raise ValueError
            return cls(lhost.strip("[] ") or "127.0.0.1", _port(lport), peer.strip(), _port(pport))
        except ValueError:
            raise ConfigError(f"forward entry {text!r}: write `LOCAL_HOST:PORT -> PEER:PORT`, e.g. "
                              "`127.0.0.1:8022 -> 100.64.0.7:22`") from None


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(port)
    return port


class StreamPolicy:
    """Decides the real target of a peer's stream. ``overlay``: this node's overlay address (IPv4 text);
    ``userspace``: no TUN device (own ports only through ``expose``)."""

    def __init__(self, overlay: str, *, userspace: bool, expose: tuple[Expose, ...] = (),
                 allow_lan: tuple[str, ...] = ()) -> None:
        self.overlay = ipaddress.IPv4Address(overlay).packed
        self._overlay_text = overlay
        self.userspace = userspace
        self.expose = {e.port: e for e in expose}
        try:
            self.lan = tuple(ipaddress.IPv4Network(n, strict=False) for n in allow_lan)
        except ValueError as exc:
            raise ConfigError(f"userspace.allow_lan: {exc} (write networks such as 192.168.1.0/24)") from None

    def target(self, address: bytes, port: int) -> tuple[str, int] | None:
        """(host, port) to connect to for a peer's stream to ``address`` (4 raw bytes) ``port``; None: refused."""
        if address == self.overlay:
            e = self.expose.get(port)
            if e is not None:
                return e.host, e.target_port
            if self.userspace or self.expose:
                return None
            return self._overlay_text, port
        ip = ipaddress.IPv4Address(address)
        if any(ip in net for net in self.lan) and not (ip.is_loopback or ip.is_unspecified or ip.is_multicast):
            return str(ip), port
        return None
