"""What a relay serves for discovery (issue 15): a DHT node, the observed address, candidate forwarding,
and its own load/price hints as a signed record.

Every message arrives and leaves SEALED in the device-relay session (relay/control.py; discovery/messages.py
for the format); the relay daemon hands ``on_message(device_key, payload)`` every 0xFC control message and
seals what it returns. The sender is the AUTHENTICATED key of the link (the door's handshake), so:

* DHT requests are served by ``dht_server.DhtServer`` (a ``kademlia.DhtNode`` over a ``store.RecordStore``
  that trusts the directory only): the same piece devices with endpoints serve (service.py); the trusted
  keys with an endpoint (relays and listening devices) are its routing contacts, seeded from the directory;
* PING is answered with PONG and OBSERVED: the (IP, port) this relay sees the device's link come from
  (the link's remote address: the NAT mapping of the device's punch port);
* CANDIDATES(to=B) from A is forwarded to B, if B has a link here, as CANDIDATES(from=A): the rendezvous
  of a hole punch. A device can only speak for itself (``from`` is the authenticated key).
* ``tick`` (each sweep) republishes the relay's own record every ``REFRESH_SECONDS``: kind RELAY, its
  endpoint, ``load`` (connected devices per mille of ``CAPACITY_DEVICES``) and ``price`` (token units per
  MiB when it bills); devices fetch it with FIND_VALUE and add a penalty to paths through busy or dear
  relays (service.py ``hint_penalty``; node/peers.py ``RelayPath.rtt_floor``).

Not task-safe beyond the relay's loop. May import: discovery.*, relay (envelope), transport.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from shadowmesh_client.discovery import messages as m
from shadowmesh_client.discovery.dht_server import DhtServer
from shadowmesh_client.discovery.records import DiscoveryError, RecordKind, sign
from shadowmesh_client.relay import encode_local

log = logging.getLogger(__name__)

REFRESH_SECONDS = 60.0
RECORD_TTL = 600
CAPACITY_DEVICES = 10_000
"""Devices a relay is sized for when it computes its load hint (per mille of this)."""


class RelayDiscovery:
    def __init__(self, daemon) -> None:
        self.daemon = daemon
        self.network = daemon.protocol.binding.digest()
        self.server = DhtServer(daemon.trust, daemon.identity.public_key, daemon.endpoint, self.network)
        self.dht = self.server.dht
        self._links: dict[bytes, Any] = {}
        self._seq = 0
        self._next_refresh = 0.0
        self.forwarded = 0
        self.unforwarded = 0
        self.observed_sent = 0
        self.malformed = 0

    # ---- messages from devices ----------------------------------------------------------------------
    def on_message(self, key: bytes, payload: bytes) -> list[bytes]:
        """One sealed discovery message from ``key``; returns the payloads to seal back to it."""
        try:
            msg = m.decode(payload)
        except DiscoveryError:
            self.malformed += 1
            return []
        now = time.time()
        if isinstance(msg, m.Candidates):
            if self._send(msg.peer, [m.encode(dataclasses.replace(msg, peer=key))]):
                self.forwarded += 1
            else:
                self.unforwarded += 1
            return []
        if isinstance(msg, m.Ping):
            out = [m.encode(m.Pong(msg.req_id))]
            addr = self._observed(key)
            if addr is not None:
                self.observed_sent += 1
                out.append(m.encode(m.Observed(*addr)))
            return out
        if isinstance(msg, (m.FindNode, m.FindValue, m.Store)):
            self._ensure_own_record(now)
            return [m.encode(self.server.handle(key, msg, now))]
        return []

    def _link(self, key: bytes):
        core = getattr(self.daemon.server, "core", None)
        if core is not None:   # the relay's route: the device's newest link (a replaced one may still be closing)
            link = core.link_of(key)
            return link if link is not None and not link.closed else None
        link = self._links.get(key)
        if link is None or link.closed or link.peer != key:
            server = self.daemon.server
            self._links = {lk.peer: lk for lk in server.links if not lk.closed} if server is not None else {}
            link = self._links.get(key)
        return link

    def _observed(self, key: bytes) -> tuple[str, int] | None:
        link = self._link(key)
        addr = getattr(link, "remote_address", None) if link is not None else None
        if isinstance(addr, tuple) and len(addr) >= 2 and isinstance(addr[1], int):
            return str(addr[0]), addr[1]
        return None

    def _send(self, key: bytes, payloads: list[bytes]) -> bool:
        link = self._link(key)
        if link is None:
            return False
        frames = self.daemon.door.seal(key, payloads)
        for f in frames:
            if not link.send_nowait(encode_local(f)):
                return False
        return bool(frames)

    # ---- the relay's own record ---------------------------------------------------------------------
    def seed(self) -> None:
        """Every trusted key with an endpoint is a DHT server contact (``DhtServer.seed``)."""
        self.server.seed()

    def tick(self, now: float | None = None) -> None:
        t = time.time() if now is None else now
        if t >= self._next_refresh:
            self.seed()
            self.publish(t)

    def _ensure_own_record(self, now: float) -> None:
        if now >= self._next_refresh:
            self.publish(now)

    def publish(self, now: float) -> None:
        d = self.daemon
        server = d.server
        devices = len(server.core) if server is not None else 0
        self._seq = max(self._seq + 1, int(now * 1000))
        payments = getattr(d.settings, "payments", None)
        price = int(getattr(payments, "price_per_mib", 0) or 0)
        rec = sign(d.identity, RecordKind.RELAY, self.network, self._seq, int(now) + RECORD_TTL,
                   endpoints=tuple(e for e in (d.endpoint,) if e), load=min(1000, devices * 1000 // CAPACITY_DEVICES),
                   price=price)
        self.server.put_own(rec.encode(), now)
        self._next_refresh = now + REFRESH_SECONDS

    def status(self) -> dict:
        return {**self.server.status(), "candidates_forwarded": self.forwarded,
                "candidates_unforwarded": self.unforwarded, "observed_sent": self.observed_sent}
