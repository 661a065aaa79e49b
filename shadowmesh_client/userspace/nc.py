"""The client side of ``shadowmesh-client nc NAME PORT``: pipe stdin/stdout to a peer's port through
the running node's SOCKS5 proxy (issue 18). Usable as an ssh ProxyCommand::

    ssh -o ProxyCommand='shadowmesh-client nc %h %p' 100.64.0.7

Blocking sockets and one thread for stdin -> socket (``select`` on stdin does not work on Windows):
stdin's EOF half-closes the connection (``shutdown(SHUT_WR)``), the peer's EOF ends the command.
The thread is a daemon thread joined for at most JOIN_SECONDS: a stdin that never ends (a terminal)
must not keep the process alive after the peer closed.

May import: errors, userspace.wire.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
from typing import BinaryIO

from shadowmesh_client.errors import ShadowMeshError
from shadowmesh_client.userspace.wire import Reason

CHUNK = 65536
"""Bytes read from stdin or the socket at a time."""

JOIN_SECONDS = 1.0
"""Seconds ``pipe`` waits for the stdin thread after the peer closed."""

_SOCKS_ERRORS = {int(Reason.GENERAL): "the node could not open the stream",
                 int(Reason.NOT_ALLOWED): "the peer's policy does not allow this port (see its `expose:`)",
                 int(Reason.NETWORK_UNREACHABLE): "no path to the peer right now (is it up? `shadowmesh-client "
                                                  "device peers`)",
                 int(Reason.HOST_UNREACHABLE): "no peer has that name or overlay address",
                 int(Reason.CONNECTION_REFUSED): "nothing listens on that port on the peer",
                 int(Reason.TTL_EXPIRED): "the peer did not answer in time",
                 7: "the proxy does not support this command", 8: "the proxy does not support this address"}


class NcError(ShadowMeshError, ConnectionError):
    """The stream could not be opened; the message says why and what to check."""


def connect(proxy: tuple[str, int], host: str, port: int, timeout: float = 15.0) -> socket.socket:
    """A socket connected through the SOCKS5 proxy at ``proxy`` to ``host:port`` (NcError otherwise)."""
    try:
        sock = socket.create_connection(proxy, timeout=timeout)
    except OSError as exc:
        raise NcError(f"cannot reach the node's SOCKS5 proxy at {proxy[0]}:{proxy[1]} ({exc.strerror or exc}): "
                      "is `shadowmesh-client up` running with the proxy on (config `userspace.socks`)?") from None
    try:
        sock.sendall(b"\x05\x01\x00")
        if _recv(sock, 2) != b"\x05\x00":
            raise NcError("the proxy refused the SOCKS5 greeting")
        try:
            addr = b"\x01" + ipaddress.IPv4Address(host).packed
        except ValueError:
            name = host.encode("idna")
            addr = b"\x03" + bytes([len(name)]) + name
        sock.sendall(b"\x05\x01\x00" + addr + struct.pack(">H", port))
        reply = _recv(sock, 10)
        if reply[1] != 0:
            raise NcError(f"{host}:{port}: {_SOCKS_ERRORS.get(reply[1], f'SOCKS error {reply[1]}')}")
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def _recv(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            raise NcError("the proxy closed the connection")
        out += data
    return out


def pipe(sock: socket.socket, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Copy ``stdin`` -> ``sock`` (then half-close) and ``sock`` -> ``stdout`` until the peer closes.
    Returns the bytes written to ``stdout``."""
    def pump_stdin() -> None:
        fd = stdin.fileno()
        try:
            while data := os.read(fd, CHUNK):
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    thread = threading.Thread(target=pump_stdin, name="nc stdin", daemon=True)
    thread.start()
    total = 0
    out = stdout.fileno()
    try:
        while data := sock.recv(CHUNK):
            view = memoryview(data)
            while view:
                view = view[os.write(out, view):]
            total += len(data)
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    thread.join(JOIN_SECONDS)
    return total
