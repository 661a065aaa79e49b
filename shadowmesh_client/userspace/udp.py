"""UDP flows over the stream layer: what SOCKS5 UDP ASSOCIATE (DNS) needs (issue 18).

A flow is one (opener, target) pair: the opener (a SOCKS5 association, userspace/proxy.py) allocates a
flow id per target and sends DGRAM messages (userspace/wire.py) to the peer serving that target; the
peer asks its ``StreamPolicy`` (the same rules as for streams), opens a connected UDP socket to the
target, sends the payload and returns every reply as a DGRAM with the same id and the target as source.
Accepted flows close after UDP_IDLE seconds without traffic; an opener's flows close with its association.
Datagrams are unreliable: nothing here retransmits, a datagram to a peer without a path is dropped.

May import: userspace.wire, userspace.streams. Not task-safe beyond the event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable

from shadowmesh_client.userspace import wire
from shadowmesh_client.userspace.streams import UDP_IDLE, Mux
from shadowmesh_client.userspace.wire import THEIRS

MAX_FLOWS_PER_PEER = 256
"""UDP flows a peer may have open on this node at once (more are dropped)."""


class _Accepted(asyncio.DatagramProtocol):
    """A peer's flow on this node: a connected UDP socket to the target."""

    def __init__(self, udp: UdpFlows, peer_key: bytes, key: int, address: bytes, port: int) -> None:
        self.udp, self.peer_key, self.key = udp, peer_key, key
        self.address, self.port = address, port
        self.transport: asyncio.DatagramTransport | None = None
        self.queue: list[bytes] = []
        self.last = time.monotonic()

    def connection_made(self, transport) -> None:
        self.transport = transport
        for payload in self.queue:
            transport.sendto(payload)
        self.queue.clear()

    def datagram_received(self, data: bytes, addr) -> None:
        self.last = time.monotonic()
        self.udp.mux.send(self.peer_key, [wire.dgram(self.key, self.port, self.address, data[:wire.MAX_DATAGRAM])])

    def error_received(self, exc) -> None:   # ICMP port unreachable etc.: UDP has no error to pass on
        pass

    def send(self, payload: bytes) -> None:
        self.last = time.monotonic()
        if self.transport is None:
            self.queue.append(payload)
        else:
            self.transport.sendto(payload)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class UdpFlows:
    """The node's UDP flows, both roles; installs itself as ``mux.udp_handler``."""

    def __init__(self, mux: Mux) -> None:
        self.mux = mux
        mux.udp_handler = self.on_dgram
        self._accepted: dict[tuple[bytes, int], _Accepted] = {}
        self._opened: dict[tuple[bytes, int], Callable[[bytes, int, bytes], None]] = {}
        self._next = 0
        self.dropped = 0

    async def run(self) -> None:
        """Close idle accepted flows every UDP_IDLE / 4 seconds until cancelled; then close them all."""
        try:
            while True:
                await asyncio.sleep(UDP_IDLE / 4)
                limit = time.monotonic() - UDP_IDLE
                for key, flow in list(self._accepted.items()):
                    if flow.last < limit:
                        del self._accepted[key]
                        flow.close()
        finally:
            for flow in self._accepted.values():
                flow.close()
            self._accepted.clear()

    # ---- opener side ------------------------------------------------------------------------------
    def open(self, peer_key: bytes, on_reply: Callable[[bytes, int, bytes], None]) -> int:
        """A new flow to ``peer_key``; ``on_reply(address, port, payload)`` gets its replies. Returns its id."""
        while True:
            self._next = (self._next + 1) % THEIRS or 1
            if (peer_key, self._next) not in self._opened:
                break
        self._opened[(peer_key, self._next)] = on_reply
        return self._next

    def send(self, peer_key: bytes, fid: int, address: bytes, port: int, payload: bytes) -> None:
        self.mux.send(peer_key, [wire.dgram(fid, port, address, payload)])

    def close(self, peer_key: bytes, fid: int) -> None:
        self._opened.pop((peer_key, fid), None)

    # ---- both: DGRAM from a peer ------------------------------------------------------------------
    def on_dgram(self, peer_key: bytes, m: wire.Message) -> None:
        if m.id & THEIRS:   # a reply on a flow we opened
            reply = self._opened.get((peer_key, m.id ^ THEIRS))
            if reply is None:
                self.dropped += 1
            else:
                reply(m.address, m.port, m.payload)
            return
        key = m.id | THEIRS
        flow = self._accepted.get((peer_key, key))
        if flow is None:
            flow = self._accept(peer_key, key, m)
            if flow is None:
                self.dropped += 1
                return
        flow.send(m.payload)

    def _accept(self, peer_key: bytes, key: int, m: wire.Message) -> _Accepted | None:
        target = self.mux.policy.target(m.address, m.port)
        if target is None or sum(1 for k in self._accepted if k[0] == peer_key) >= MAX_FLOWS_PER_PEER:
            self.mux.refused += 1
            return None
        flow = _Accepted(self, peer_key, key, m.address, m.port)
        if self.mux.spawn(self._connect(flow, target), "udp flow") is None:
            return None
        self._accepted[(peer_key, key)] = flow
        return flow

    async def _connect(self, flow: _Accepted, target: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: flow, remote_addr=target)
        except OSError:
            self._accepted.pop((flow.peer_key, flow.key), None)


def packed(address: str) -> bytes:
    """4 raw bytes of an IPv4 address (ValueError if it is not one)."""
    return ipaddress.IPv4Address(address).packed
