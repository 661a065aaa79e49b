"""The packet pump: TUN -> sessions -> paths, and frames from any path -> sessions -> TUN.

Spec "Data Plane". Hot path rules (issue 5 performance): per TUN wake-up, every packet the burst
delivered is read (``read_batch``), routed by its destination overlay address with ONE dict lookup
keyed by the 4 raw address bytes (no int or ipaddress objects), and each peer's packets go out as as
few frames as fit ``MAX_FRAME_BYTES`` (one AEAD call and one WebSocket message per frame). No logging
and no per-packet awaits: the only await is one ``send`` per frame, which is also the backpressure (a
full WebSocket write buffer stops TUN reads; the kernel queue then drops and the inner TCP slows down).

Counters (monotonic, in ``counters()``): packets dropped for no route (unknown destination) or no path
(peer known but unreachable right now), frames rejected by the protocol (forged, replayed,
untrusted...), send errors.

Not task-safe beyond the event loop; one ``run()`` task per node.
"""

from __future__ import annotations

import asyncio
import logging

from shadowmesh_client.errors import ProtocolError, TunError
from shadowmesh_client.protocol import SessionState
from shadowmesh_client.transport import LinkClosedError
from shadowmesh_client.node.peers import now
from shadowmesh_client.node.settings import MAX_FRAME_BYTES, READ_BATCH

log = logging.getLogger(__name__)

_PAYLOAD_LIMIT = MAX_FRAME_BYTES - 80 - 2   # bytes of packets (+2 per packet) in one frame
_MIN_FRAME = 80                              # spec "Frame Format": 64-byte header + 16-byte tag
_HANDSHAKE_INIT = 1


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class Pump:
    """``routes``: {4-byte overlay address: PeerState}; ``peers``: {public key: PeerState};
    ``incoming(key, frame)`` -> PeerState | None creates a peer for a trusted sender's handshake;
    ``on_events(peer, events, now)`` is told about session events."""

    def __init__(self, tun, routes: dict, peers: dict, incoming, on_events) -> None:
        self.tun = tun
        self.routes = routes
        self.peers = peers
        self._incoming = incoming
        self._on_events = on_events
        self.no_route = 0
        self.no_path = 0
        self.rejected = 0
        self.unknown_sender = 0
        self.send_errors = 0
        self.frames_out = 0
        self.frames_in = 0

    def counters(self) -> dict:
        return {"dropped_no_route": self.no_route, "dropped_no_path": self.no_path, "rejected_frames": self.rejected,
                "unknown_sender_frames": self.unknown_sender, "send_errors": self.send_errors,
                "frames_out": self.frames_out, "frames_in": self.frames_in,
                "tun_rx_packets": self.tun.stats.rx_packets, "tun_tx_packets": self.tun.stats.tx_packets}

    # ---- TUN -> peers ---------------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        tun = self.tun
        fd = tun.fileno()
        read = tun.read_batch
        routes = self.routes
        while True:
            try:
                packets = read(READ_BATCH)
            except TunError as exc:
                log.error("TUN device failed: %s", exc)
                raise
            if not packets:
                fut = loop.create_future()
                loop.add_reader(fd, _wake, fut)
                try:
                    await fut
                finally:
                    loop.remove_reader(fd)
                continue
            if len(packets) == 1:
                peer = routes.get(packets[0][16:20])
                if peer is None:
                    self.no_route += 1
                else:
                    await self.send(peer, packets)
                continue
            groups: dict = {}
            for p in packets:
                peer = routes.get(p[16:20])
                if peer is None:
                    self.no_route += 1
                    continue
                batch = groups.get(peer)
                if batch is None:
                    groups[peer] = [p]
                else:
                    batch.append(p)
            for peer, batch in groups.items():
                await self.send(peer, batch)

    async def send(self, peer, packets: list) -> None:
        """Seal ``packets`` for ``peer`` into as few frames as fit and send them on its current path."""
        path = peer.path
        if path is None:
            self.no_path += len(packets)
            return
        t = now()
        if len(packets) == 1:
            chunks = (packets,)
        else:
            chunks, chunk, size = [], [], 0
            for p in packets:
                n = len(p) + 2
                if chunk and size + n > _PAYLOAD_LIMIT:
                    chunks.append(chunk)
                    chunk, size = [], 0
                chunk.append(p)
                size += n
            chunks.append(chunk)
        session = peer.session
        for chunk in chunks:
            try:
                frames = (session.seal_packets(chunk, t),)
            except ProtocolError:  # no key yet (queue + handshake), or closed/failed (fresh session)
                session = peer.usable_session()
                frames = session.send_packets(chunk, t)
            for frame in frames:
                try:
                    await path.send(frame)
                except LinkClosedError:
                    self.send_errors += 1
                    peer.select()
                    return
                self.frames_out += 1

    # ---- paths -> TUN ---------------------------------------------------------------------------------
    def on_frame(self, frame, expected: bytes | None = None) -> list | None:
        """One end-to-end frame from a path. Writes delivered packets to the TUN device; returns frames to
        send back on the same path (handshake answers), or None. ``expected``: the sender a direct link
        is authenticated as (a frame from anyone else on it is dropped)."""
        if len(frame) < _MIN_FRAME:
            self.rejected += 1
            return None
        key = bytes(frame[8:40])
        if expected is not None and key != expected:
            self.rejected += 1
            return None
        peer = self.peers.get(key)
        if peer is None:
            peer = self._incoming(key, frame)
            if peer is None:
                self.unknown_sender += 1
                return None
        self.frames_in += 1
        t = now()
        session = peer.session
        try:
            received = session.open(frame, t)
        except ProtocolError:
            if session.state in (SessionState.CLOSED, SessionState.FAILED) and frame[0] & 0x0F == _HANDSHAKE_INIT:
                try:
                    received = peer.usable_session().open(frame, t)
                except ProtocolError:
                    self.rejected += 1
                    return None
            else:
                self.rejected += 1
                return None
        if received.packets:
            self.tun.write_batch(received.packets)
        if received.events:
            self._on_events(peer, received.events, t)
        return received.outgoing or None
