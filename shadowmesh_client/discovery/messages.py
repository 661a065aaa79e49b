"""Discovery messages: DHT RPCs and NAT control messages, as they travel SEALED inside sessions.

Transport (docs/discovery.md "Why over the links we have"): every message here is one packet of a DATA
frame of an existing Session (device-relay session in a LOCAL envelope: relay/control.py), never a
packet of its own on the wire: to an observer the DHT and NAT signalling are WebSocket messages of the
links that already exist, the same sizes and timing classes as keepalives and receipts. Family byte
0xFC (relay/control.py: 0xFA payments, 0xFB BLOCK; no protocol frame or IP packet starts with 0xFC).
Between two devices (a DHT request to a device with an endpoint, and its answer) the same messages are
packets of DATA frames of their device-device session, each in a frame of its own, with family byte
``PEER_MAGIC`` 0x0F instead: node/pump.py hands a frame whose first packet starts below 0x10 (never IP)
to ``on_stream``, which service.py ``attach`` chains (0x0F: discovery; else the stream layer,
userspace/wire.py types 1..8). A node without discovery hands it to its stream layer, which counts it
malformed: the asker's request times out.

    0xFC | type u8 | req_id u32 | body
    PING 0x01 -, FIND_NODE 0x02 target 32, FIND_VALUE 0x03 key 32, STORE 0x04 record
    PONG 0x81 -, NODES 0x82 n u8 + contacts, VALUE 0x83 len u16 + record + n u8 + contacts, STORED 0x84 verdict u8
    OBSERVED 0x10 (relay -> device): the device's address as the relay sees it: len u8 + IP text, port u16
    CANDIDATES 0x11 (device -> relay -> device): peer key 32 (to, or from once forwarded), flags u8
      (1: answer, 2: hard: the sender's NAT maps per destination, 4: birthday: the sender can do the
      many-sockets round of discovery/hardnat.py; older decoders ignore bits 2 and 4, older relays drop
      them: no round, plain simultaneous open), n u8 + (len u8 + "IP:PORT")*
    contact = key 32 | len u8 | address (ASCII; a relay's URL host, or empty for a client-only node)

Pure. May import: discovery.records (errors), discovery.store (verdicts).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from shadowmesh_client.discovery.records import DiscoveryError
from shadowmesh_client.discovery.store import Verdict

MAGIC = 0xFC
PEER_MAGIC = 0x0F
"""Family byte of these messages inside a device-device session (see above)."""
_HEAD = struct.Struct(">BBI")
MAX_CONTACTS = 32
MAX_CANDIDATES = 8
_VERDICTS = list(Verdict)


@dataclass(frozen=True, slots=True)
class Contact:
    key: bytes
    address: str = ""


@dataclass(frozen=True, slots=True)
class Ping:
    req_id: int = 0


@dataclass(frozen=True, slots=True)
class FindNode:
    target: bytes
    req_id: int = 0


@dataclass(frozen=True, slots=True)
class FindValue:
    key: bytes
    req_id: int = 0


@dataclass(frozen=True, slots=True)
class Store:
    record: bytes
    req_id: int = 0


@dataclass(frozen=True, slots=True)
class Pong:
    req_id: int = 0


@dataclass(frozen=True, slots=True)
class Nodes:
    contacts: tuple[Contact, ...]
    req_id: int = 0


@dataclass(frozen=True, slots=True)
class Value:
    record: bytes
    contacts: tuple[Contact, ...] = ()
    req_id: int = 0


@dataclass(frozen=True, slots=True)
class Stored:
    verdict: Verdict
    req_id: int = 0


@dataclass(frozen=True, slots=True)
class Observed:
    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class Candidates:
    peer: bytes                                    # to (device -> relay) or from (relay -> device)
    addresses: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    answer: bool = False
    hard: bool = False                             # the sender's NAT maps per destination (hardnat.is_hard)
    birthday: bool = False                         # the sender can do a birthday round (discovery/hardnat.py)


Request = Ping | FindNode | FindValue | Store
Response = Pong | Nodes | Value | Stored
Message = Request | Response | Observed | Candidates
REQUESTS = (Ping, FindNode, FindValue, Store)
RESPONSES = (Pong, Nodes, Value, Stored)
_TYPES = {Ping: 0x01, FindNode: 0x02, FindValue: 0x03, Store: 0x04, Pong: 0x81, Nodes: 0x82, Value: 0x83,
          Stored: 0x84, Observed: 0x10, Candidates: 0x11}


def is_discovery(payload: bytes | bytearray | memoryview) -> bool:
    return len(payload) >= _HEAD.size and payload[0] == MAGIC


def _contacts(cs: tuple[Contact, ...]) -> bytes:
    out = [bytes([len(cs)])]
    for c in cs[:MAX_CONTACTS]:
        a = c.address.encode("ascii")
        out += [c.key, bytes([len(a)]), a]
    return b"".join(out)


def encode(msg: Message, family: int = MAGIC) -> bytes:
    """``family``: ``MAGIC`` (device-relay session) or ``PEER_MAGIC`` (device-device session)."""
    req = getattr(msg, "req_id", 0)
    head = _HEAD.pack(family, _TYPES[type(msg)], req)
    if isinstance(msg, (Ping, Pong)):
        return head
    if isinstance(msg, FindNode):
        return head + msg.target
    if isinstance(msg, FindValue):
        return head + msg.key
    if isinstance(msg, Store):
        return head + msg.record
    if isinstance(msg, Nodes):
        return head + _contacts(msg.contacts[:MAX_CONTACTS])
    if isinstance(msg, Value):
        return head + struct.pack(">H", len(msg.record)) + msg.record + _contacts(msg.contacts[:MAX_CONTACTS])
    if isinstance(msg, Stored):
        return head + bytes([_VERDICTS.index(msg.verdict)])
    if isinstance(msg, Observed):
        ip = msg.ip.encode("ascii")
        return head + bytes([len(ip)]) + ip + struct.pack(">H", msg.port)
    assert isinstance(msg, Candidates)
    flags = (1 if msg.answer else 0) | (2 if msg.hard else 0) | (4 if msg.birthday else 0)
    parts = [head, msg.peer, bytes([flags, min(len(msg.addresses), MAX_CANDIDATES)])]
    for host, port in msg.addresses[:MAX_CANDIDATES]:
        a = f"{host}:{port}".encode("ascii")
        parts += [bytes([len(a)]), a]
    return b"".join(parts)


class _Reader:
    __slots__ = ("data", "i")

    def __init__(self, data: bytes, i: int) -> None:
        self.data, self.i = data, i

    def take(self, n: int) -> bytes:
        chunk = self.data[self.i:self.i + n]
        if len(chunk) != n:
            raise DiscoveryError("truncated discovery message")
        self.i += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def contacts(self) -> tuple[Contact, ...]:
        n = self.byte()
        if n > MAX_CONTACTS:
            raise DiscoveryError("too many contacts")
        out = []
        for _ in range(n):
            key = self.take(32)
            out.append(Contact(key, self.take(self.byte()).decode("ascii", "replace")))
        return tuple(out)

    def end(self) -> None:
        if self.i != len(self.data):
            raise DiscoveryError("trailing bytes in discovery message")


def decode(payload: bytes | bytearray | memoryview) -> Message:
    """Parse one message (exact lengths); raises DiscoveryError."""
    data = bytes(payload)
    if len(data) < _HEAD.size or data[0] not in (MAGIC, PEER_MAGIC):
        raise DiscoveryError("not a discovery message")
    _, kind, req = _HEAD.unpack_from(data)
    r = _Reader(data, _HEAD.size)
    msg: Message
    if kind == 0x01:
        msg = Ping(req)
    elif kind == 0x81:
        msg = Pong(req)
    elif kind == 0x02:
        msg = FindNode(r.take(32), req)
    elif kind == 0x03:
        msg = FindValue(r.take(32), req)
    elif kind == 0x04:
        rec = data[r.i:]
        r.i = len(data)
        msg = Store(rec, req)
    elif kind == 0x82:
        msg = Nodes(r.contacts(), req)
    elif kind == 0x83:
        (size,) = struct.unpack(">H", r.take(2))
        rec = r.take(size)
        msg = Value(rec, r.contacts(), req)
    elif kind == 0x84:
        v = r.byte()
        if v >= len(_VERDICTS):
            raise DiscoveryError("unknown verdict")
        msg = Stored(_VERDICTS[v], req)
    elif kind == 0x10:
        ip = r.take(r.byte()).decode("ascii", "replace")
        (port,) = struct.unpack(">H", r.take(2))
        msg = Observed(ip, port)
    elif kind == 0x11:
        peer = r.take(32)
        flags, n = r.byte(), r.byte()
        if n > MAX_CANDIDATES:
            raise DiscoveryError("too many candidates")
        addrs = []
        for _ in range(n):
            host, _, port = r.take(r.byte()).decode("ascii", "replace").rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise DiscoveryError("bad candidate address")
            addrs.append((host, int(port)))
        msg = Candidates(peer, tuple(addrs), bool(flags & 1), bool(flags & 2), bool(flags & 4))
    else:
        raise DiscoveryError(f"unknown discovery message type {kind:#x}")
    r.end()
    return msg
