"""The packet pump: TUN -> sessions -> paths, and frames from any path -> sessions -> TUN.

Spec "Data Plane". Hot path rules (issue 5 performance): per TUN wake-up, every packet the burst
delivered is read (``read_batch``), routed by its destination overlay address with ONE dict lookup
keyed by the 4 raw address bytes (no int or ipaddress objects), and each peer's packets go out as as
few frames as fit ``MAX_FRAME_BYTES`` (one AEAD call and one WebSocket message per frame). No logging
and no awaits while the path has room (``send_nowait``); a full WebSocket write buffer is the
backpressure: TUN reads stop until it drains (the kernel queue then drops and the inner TCP slows down).

Counters (monotonic, in ``counters()``): packets dropped for no route (unknown destination) or no path
(peer known but unreachable right now), frames rejected by the protocol (forged, replayed,
untrusted...), send errors.

May import: protocol, transport, errors, node.peers, node.settings. Not task-safe beyond the event loop;
one ``run()`` task per node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from shadowmesh_client.errors import ProtocolError, TunError
from shadowmesh_client.node.peers import now
from shadowmesh_client.node.settings import MAX_FRAME_BYTES, READ_BATCH
from shadowmesh_client.protocol import FrameType, SessionState
from shadowmesh_client.protocol import constants as C
from shadowmesh_client.transport import LinkClosedError
from shadowmesh_client.tun.gso import to_plain

log = logging.getLogger(__name__)

# DATA frame payload layout (spec "Frame Format", protocol/frames.py seal_packets): a u16 packet count, then
# one u16 (length - 1) per packet, then the packets.
DATA_COUNT_BYTES = 2
"""Bytes of the packet count at the start of a DATA payload."""
DATA_LENGTH_BYTES = 2
"""Bytes of the length prefix of each packet in a DATA payload."""

_PAYLOAD_LIMIT = min(MAX_FRAME_BYTES - C.OVERHEAD, C.MAX_SHORT_PAYLOAD) - DATA_COUNT_BYTES
"""Bytes of packets (each plus DATA_LENGTH_BYTES) in one frame: at most the spec's 65,535-byte payload, so
the node never sends a JUMBO frame unless one packet alone is larger (MTU above 65,531; issue 12 "Spec
conformance of JUMBO frames", measured in docs/protocol.md: ~5-8 % of seal+open CPU at MTU 1,400, none at
65,000, and the WebSocket path as fast or faster with the smaller messages)."""

IPV4_DST = slice(16, 20)
"""RFC 791 section 3.1: the destination address is bytes 16..20 of the IPv4 header. The raw 4 bytes are
the routes' key (one dict lookup per packet, no int or ipaddress object; tun/packet.py has the checked
helpers for everything that is not the hot path)."""

_SENDER = slice(8, 40)
"""Spec "Frame Format" (protocol/frames.py HEADER): the sender's 32-byte key at bytes 8..40."""
_TYPE_MASK = 0x0F   # the frame type is the low nibble of byte 0
_HANDSHAKE_INIT = int(FrameType.HANDSHAKE_INIT)
_NOT_V4 = 0x50
"""A packet whose first byte is this or more is not IPv4 (version nibble above 4: IPv6 is 0x6_), so its
bytes 16..20 are not a destination: only ``route_miss`` may route it (issue 14)."""


def _no_route(packet) -> None:
    """``Pump.route_miss`` without routing (issue 14): nothing but overlay IPv4 has a route."""
    return None


class Pump:
    """``routes``: {4-byte overlay address: PeerState}; ``peers``: {public key: PeerState};
    ``incoming(key, frame)`` -> PeerState | None creates a peer for a trusted sender's handshake;
    ``on_events(peer, events, now)`` is told about session events; ``on_handshake()`` when sending had to
    start a handshake (off the fast path: the session had no usable key)."""

    def __init__(self, tun, routes: dict, peers: dict, incoming, on_events, on_handshake=lambda: None) -> None:
        self.tun = tun
        self._tun_offload = tun.offload  # reads are in offload form (tun/gso.py)
        self._on_handshake = on_handshake
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
        self.soft_segments = 0   # extra packets cut from super-packets in software for peers without offload
        self._blocked: asyncio.Future | None = None
        # ---- routing hooks (issue 14, shadowmesh_client/routing/; the daemon sets them when routing is on) ----
        self.route_miss = _no_route   # (packet) -> PeerState | None: IPv6, subnet and exit destinations
        self.src_filter = None        # (peer, packets) -> the packets that peer may send us (anti-spoofing)
        self._out = self._send_now    # routing.qos.QosSender.send with QoS on (``set_qos``): never blocks the reader

    def set_qos(self, qos) -> None:
        """Send through ``qos`` (routing/qos.py QosSender: per-peer, per-class queues) from now on."""
        self._out = qos.send

    def counters(self) -> dict:
        return {"dropped_no_route": self.no_route, "dropped_no_path": self.no_path, "rejected_frames": self.rejected,
                "unknown_sender_frames": self.unknown_sender, "send_errors": self.send_errors,
                "frames_out": self.frames_out, "frames_in": self.frames_in,
                "tun_rx_packets": self.tun.stats.rx_packets, "tun_tx_packets": self.tun.stats.tx_packets,
                "tun_rx_super_packets": self.tun.stats.rx_super_packets, "soft_segments": self.soft_segments}

    # ---- TUN -> peers ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Read the TUN device until it fails (TunError) or the task is cancelled.

        The reading happens in a reader callback registered once (``_on_readable``: read, route, seal,
        ``path.send_nowait``), not in this task: no future, task switch or add/remove_reader per wake-up.
        Only when a path has no room (backpressure) or is closing does the callback hand the rest of its
        burst to this task, which stops reading until those frames are sent with ``await path.send``."""
        loop = asyncio.get_running_loop()
        fd = self.tun.fileno()
        while True:
            blocked = self._blocked = loop.create_future()
            loop.add_reader(fd, self._on_readable)
            try:
                backlog = await blocked
            finally:
                loop.remove_reader(fd)
            for peer, path, frames, groups in backlog:
                if frames:
                    await self._send_frames(peer, path, frames)
                for other, batch in groups:
                    await self.send(other, batch)

    def _on_readable(self) -> None:
        blocked = self._blocked
        if blocked is None or blocked.done():
            return
        try:
            self._read_and_send(blocked)
        except TunError as exc:
            log.error("TUN device failed: %s", exc)
            blocked.set_exception(exc)
        except Exception as exc:  # a bug: end run() with it (as an exception in a task would), not loop forever
            blocked.set_exception(exc)

    def _read_and_send(self, blocked: asyncio.Future) -> None:
        packets = self.tun.read_batch(READ_BATCH)
        if not packets:
            return
        routes = self.routes
        if len(packets) == 1:
            p = packets[0]
            peer = routes.get(p[IPV4_DST]) if p[0] < _NOT_V4 else None
            if peer is None:
                peer = self.route_miss(p)
                if peer is None:
                    self.no_route += 1
                    return
            rest = self._out(peer, packets)
            if rest is not None:
                blocked.set_result([(*rest, ())])
            return
        groups: dict = {}
        for p in packets:
            peer = routes.get(p[IPV4_DST]) if p[0] < _NOT_V4 else None
            if peer is None:
                peer = self.route_miss(p)
                if peer is None:
                    self.no_route += 1
                    continue
            batch = groups.get(peer)
            if batch is None:
                groups[peer] = [p]
            else:
                batch.append(p)
        items = list(groups.items())
        for i, (peer, batch) in enumerate(items):
            rest = self._out(peer, batch)
            if rest is not None:
                blocked.set_result([(*rest, items[i + 1:])])
                return

    def _frames(self, peer, packets: list) -> list:
        """``packets`` sealed for ``peer`` into as few frames as fit (plus a handshake if one is needed).

        With a TUN in offload mode (issue 17), a peer whose handshake offered offload gets the packets as
        read (TCP super-packets whole, in OFFLOAD frames); any other peer gets them segmented and
        checksummed in software (``gso.to_plain``), exactly as a TUN without offload would have read them."""
        t = now()
        offload = self._tun_offload
        if offload and not peer.session.peer_offload:
            packets = self._plain(packets)
            offload = False
        chunks: Sequence[list]
        if len(packets) == 1:
            chunks = (packets,)
        else:
            split: list[list] = []
            chunk: list = []
            size = 0
            chunks = split
            for p in packets:
                n = len(p) + DATA_LENGTH_BYTES
                if chunk and size + n > _PAYLOAD_LIMIT:
                    split.append(chunk)
                    chunk, size = [], 0
                chunk.append(p)
                size += n
            split.append(chunk)
        session = peer.session
        out = []
        for chunk in chunks:
            if offload and not session.peer_offload:  # the session was replaced below
                chunk = self._plain(chunk)
            try:
                out.append(session.seal_packets(chunk, t, offload and session.peer_offload))
            except ProtocolError:  # no key yet (queue + handshake), or closed/failed (fresh session)
                session = peer.usable_session()
                out.extend(session.send_packets(self._plain(chunk) if offload else chunk, t))  # queued: plain
                self._on_handshake()
        return out

    def _plain(self, packets: list) -> list:
        """``gso.to_plain(packets)``, counting the extra segments cut in software."""
        out = to_plain(packets)
        self.soft_segments += len(out) - len(packets)
        return out

    def _send_now(self, peer, packets: list):
        """Seal and send without waiting. None when done (sent, or dropped for no path); else
        ``(peer, path, frames not sent yet)`` for ``_send_frames``."""
        path = peer.path
        if path is None:
            self.no_path += len(packets)
            return None
        frames = self._frames(peer, packets)
        nowait = path.send_nowait
        for i, frame in enumerate(frames):
            if not nowait(frame):
                return peer, path, frames[i:]
            self.frames_out += 1
        return None

    async def _send_frames(self, peer, path, frames: list) -> None:
        for frame in frames:
            try:
                await path.send(frame)
            except LinkClosedError:
                self.send_errors += 1
                peer.select()
                return
            self.frames_out += 1

    async def send(self, peer, packets: list) -> None:
        """Seal ``packets`` for ``peer`` into as few frames as fit and send them on its current path
        (without waiting while the path has room; then waiting for it)."""
        rest = self._send_now(peer, packets)
        if rest is not None:
            await self._send_frames(*rest)

    # ---- userspace streams (issue 18; shadowmesh_client/userspace/) --------------------------------------
    on_stream = None
    """``on_stream(peer, messages)``, set by the stream layer (userspace/streams.py Mux): the stream
    messages of a frame (packets whose first byte is below 0x10, never IP; userspace/wire.py) go there
    instead of to the TUN device. Stream messages are always sent in frames of their own."""

    def offer(self, peer, packets: list):
        """Seal ``packets`` (stream messages) for ``peer`` and send what its path takes now. None when all
        went out; else a coroutine sending the rest: await it before offering more (frames stay in order)."""
        rest = self._send_now(peer, packets)
        return None if rest is None else self._send_frames(*rest)

    # ---- paths -> TUN ---------------------------------------------------------------------------------
    def on_frame(self, frame, expected: bytes | None = None) -> list | None:
        """One end-to-end frame from a path. Writes delivered packets to the TUN device; returns frames to
        send back on the same path (handshake answers), or None. ``expected``: the sender a direct link
        is authenticated as (a frame from anyone else on it is dropped)."""
        if len(frame) < C.OVERHEAD:
            self.rejected += 1
            return None
        key = bytes(frame[_SENDER])
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
            if session.state in (SessionState.CLOSED, SessionState.FAILED) and frame[0] & _TYPE_MASK == _HANDSHAKE_INIT:
                try:
                    received = peer.usable_session().open(frame, t)
                except ProtocolError:
                    self.rejected += 1
                    return None
            else:
                self.rejected += 1
                return None
        packets = received.packets
        if packets:
            if packets[0][0] < 0x10 and self.on_stream is not None:   # stream messages (issue 18), never IP
                self.on_stream(peer, packets)
            else:
                if self.src_filter is not None:   # routing on: drop packets with a source that peer may not use
                    packets = self.src_filter(peer, packets)
                if received.offload:   # only offered (protocol config) when the TUN has offload on
                    self.tun.write_offloaded(packets)
                else:
                    self.tun.write_batch(packets)
        if received.events:
            self._on_events(peer, received.events, t)
        return received.outgoing or None
