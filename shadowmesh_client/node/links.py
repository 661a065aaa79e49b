"""Direct links to peers, and frames arriving through relays: who may open one, and serving it.

Spec "Network Layer", "Security Architecture (Zero-Trust Model)". One job: turn links into peers' paths.

* ``authenticate(hello)`` (the link server's hook): the trust policy admits the hello (a HANDSHAKE_INIT
  from a trusted PEER, not a relay, not us; checked on the header, before any crypto), then the peer's
  Session opens it: the upgrade authentication IS the session handshake.
* ``dialer(peer, url)``: the ReconnectingClient of a peer we dial (``peers.should_dial``); its hello is a
  fresh HANDSHAKE_INIT of that peer's session. node/reconcile.py decides when, and runs it as a task.
* ``run_direct(peer, link)``: serves one direct link for its lifetime (either side dialled it): every
  frame is handed to the pump in the link's data callback (no task wake-up per frame), answers go back
  with ``send_nowait`` and only when the link has no room from a task of the node's group.
* ``incoming(key, frame)``: the pump's hook for a frame from a key we have no peer for (through a relay):
  only a trusted PEER's handshake initiation creates one.
* ``on_relay_delivery``: an end-to-end frame a relay delivered; answers go back through that relay. A
  source whose last ``BLOCK_AFTER_BAD_FRAMES`` relayed frames were all rejected (garbage with valid
  headers, wrong tags) is blocked at that relay for ``BLOCK_SECONDS`` (sealed BLOCK, relay/control.py).

Abuse bounds (issue 12): the accept hook runs the flood guard (relay/guard.py: per-source handshake rate,
cookies under load) before the Session's signature check; a Challenge answer is the link's only message
(the cookie reply), then the link closes with CLOSE_COOKIE and our dialer retries with the cookie. Every
peer Session shares the node's handshake floors (protocol/floors.py), so a recorded hello is refused
after the peer's session closed, and after a restart when ``settings.state_dir`` is set.

May import: protocol, transport, directory.trust, node.peers, node.settings, node.tasks. Not task-safe
beyond the event loop.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from shadowmesh_client.directory.trust import Role, TrustPolicy
from shadowmesh_client.errors import ProtocolError
from shadowmesh_client.node.peers import PeerState, PeerTable, RelayPath, now
from shadowmesh_client.node.relays import send_all
from shadowmesh_client.node.settings import BLOCK_AFTER_BAD_FRAMES, BLOCK_SECONDS, NodeSettings
from shadowmesh_client.node.tasks import Spawner

if TYPE_CHECKING:
    from shadowmesh_client.node.pump import Pump
from shadowmesh_client.protocol import FrameType, SessionEvent
from shadowmesh_client.protocol.cookie import CLOSE_COOKIE, parse_reply, split_hello, with_cookie
from shadowmesh_client.relay.guard import Challenge, HelloGuard, Verdict
from shadowmesh_client.transport import (
    CLOSE_REPLACED,
    CLOSE_REVOKED,
    ClientConfig,
    Link,
    LinkClosedError,
    ReconnectingClient,
    Transport,
)

log = logging.getLogger(__name__)

_HANDSHAKE_INIT = int(FrameType.HANDSHAKE_INIT)
_TYPE_MASK = 0x0F  # spec "Frame Format": the low nibble of byte 0 is the frame type
COOKIE_REPLY_BYTES = 18   # protocol/cookie.py REPLY_BYTES (a frame is never shorter than 80 bytes)
MAX_TRACKED_SOURCES = 4_096
"""Relayed sources whose run of rejected frames is counted at once (memory bound of ``_bad``)."""


class PeerLinks:
    """``pump`` (node.pump.Pump) must be set before any link is served; ``on_session()`` is told when a
    session starts a handshake or reports an event (the timer task reschedules)."""

    def __init__(self, table: PeerTable, trust: TrustPolicy, settings: NodeSettings, transport: Transport,
                 spawn: Spawner, on_session: Callable[[object | None], None]) -> None:
        self.table = table
        self.trust = trust
        self.settings = settings
        self.transport = transport
        self._spawn = spawn
        self._on_session = on_session
        self.pump: Pump = None  # type: ignore[assignment]  # set by the node before any link is served
        self.auth_refused = 0
        self.challenged = 0   # hellos answered with a cookie reply (under load)
        self.guard = HelloGuard(settings.handshake_guard, now=now()) if settings.handshake_guard else None
        self._bad: dict[bytes, int] = {}   # relayed source -> consecutive rejected frames (bounded)
        self.blocks_sent = 0
        self.on_established: Callable[[PeerState], None] | None = None   # issue 15 hook (node/daemon.py)

    def client_config(self, url: str, *, relay: bool = False) -> ClientConfig:
        """Dial settings for ``url``; a relay link keeps its pings short when idle (they find a renumbered
        NAT and measure the relay path: daemon_common.IDLE_PING_INTERVAL)."""
        s = self.settings
        limits = dataclasses.replace(s.limits, idle_ping_interval=None) if relay else s.limits
        return ClientConfig(url, ca_file=s.ca_file if url.startswith("wss:") else None, limits=limits,
                            backoff_max=s.backoff_max, stable_after=2.0)

    # ---- opening links --------------------------------------------------------------------------------
    def authenticate(self, hello: bytes, source: object = None):
        """Link server hook: a peer's HANDSHAKE_INIT in the upgrade. Returns (response frames, key), a
        cookie challenge under load, or None (the prober's answer: a decoy page). ``source``: the
        initiator's address when the transport gives it (else the guard keys on the claimed key)."""
        frame, cookie = split_hello(hello)
        key = self.trust.admit_hello(frame, role=Role.PEER)
        if key is None:
            self.auth_refused += 1
            return None
        t = now()
        if self.guard is not None:
            check = self.guard.check(frame, cookie, source, t)
            if check.verdict is Verdict.COOKIE:
                assert check.reply is not None
                self.challenged += 1
                return [check.reply], Challenge(check.reply)
            if check.verdict is Verdict.DROP:
                self.auth_refused += 1
                return None
        peer = self.table.peer(key)
        try:
            received = peer.usable_session().open(frame, t)
        except ProtocolError:
            self.auth_refused += 1
            return None
        self.on_events(peer, received.events, t)
        return received.outgoing, key

    def dialer(self, peer: PeerState, url: str) -> ReconnectingClient:
        """The (not yet running) client that keeps a direct link to ``peer`` at ``url`` up."""
        def hello() -> bytes:
            cookie, peer.cookie = peer.cookie, None
            frame = with_cookie(peer.usable_session().initiate(now()), cookie)
            self._on_session(peer)   # one peer's deadline changed: the timer heap looks at it alone
            return frame

        async def on_link(link: Link) -> None:
            await self.run_direct(peer, link)

        return ReconnectingClient(self.client_config(url), hello, on_link, dial=self.transport.dial, peer=peer.key)

    async def on_server_link(self, link: Link) -> None:
        if isinstance(link.peer, Challenge):   # the cookie reply went out with the upgrade: nothing more
            await link.close(CLOSE_COOKIE, "")
            return
        peer = self.table.peers.get(link.peer)
        if peer is None:  # revoked between the upgrade and now
            await link.close(CLOSE_REVOKED, "")
            return
        await self.run_direct(peer, link)

    # ---- serving links --------------------------------------------------------------------------------
    async def run_direct(self, peer: PeerState, link: Link) -> None:
        """Serve one direct link for its lifetime (either side dialled it)."""
        old = peer.attach_direct(link)
        if old is not None:
            self._spawn(old.close(CLOSE_REPLACED, ""), "close replaced link")
        log.info("peer %s: direct link up (%s)", peer.key.hex()[:8], "dialled" if link.is_client else "accepted")
        on_frame = self.pump.on_frame
        key = peer.key
        spawn = self._spawn

        def deliver(frame) -> None:  # called from the link's data_received: no task wake-up per frame
            if len(frame) == COOKIE_REPLY_BYTES and link.is_client:
                cookie = parse_reply(frame)
                if cookie is not None:   # the peer is under load: our dialer retries with its cookie
                    peer.cookie = cookie
                    spawn(link.close(CLOSE_COOKIE, ""), "cookie close")
                    return
            out = on_frame(frame, key)
            if out:
                for i, f in enumerate(out):
                    if not link.send_nowait(f):
                        spawn(send_all(link, out[i:]), "direct send")
                        break

        try:
            link.deliver_to(deliver)
            await link.wait_closed()
        finally:
            peer.detach_direct(link)
            log.info("peer %s: direct link down", key.hex()[:8])

    def on_relay_delivery(self, source: bytes, inner, relay) -> bool:
        """RelayClient hook: ``inner`` from ``source`` through ``relay``; answers go back the same way.
        Returns whether the frame opened (a trusted peer's session took it: billable, issue 10)."""
        pump = self.pump
        bad_before = pump.rejected + pump.unknown_sender
        out = pump.on_frame(inner)
        if pump.rejected + pump.unknown_sender != bad_before:
            self._rejected_from(source, relay)
            return False
        if self._bad:
            self._bad.pop(source, None)
        if out:
            path = RelayPath(relay, source)
            for i, f in enumerate(out):
                if not path.send_nowait(f):
                    self._spawn(_send_path(path, out[i:]), "relay reply")
                    return True
        return True

    def _rejected_from(self, source: bytes, relay) -> None:
        """One more rejected frame from ``source`` through ``relay``: block it there after a run of them."""
        bad = self._bad
        n = bad.get(source, 0) + 1
        if n < BLOCK_AFTER_BAD_FRAMES:
            if len(bad) >= MAX_TRACKED_SOURCES and source not in bad:
                bad.clear()   # bounded memory; a real flooder is counted again from zero
            bad[source] = n
            return
        bad.pop(source, None)
        if relay.block(source, BLOCK_SECONDS):
            self.blocks_sent += 1
            log.warning("relay %s: blocking frames from %s for %d s (only rejected frames)",
                        relay.host, source.hex()[:8], BLOCK_SECONDS)

    # ---- the pump's hooks -----------------------------------------------------------------------------
    def incoming(self, key: bytes, frame) -> PeerState | None:
        """A frame from a key we have no peer for: only a trusted PEER's handshake initiation creates one."""
        if frame[0] & _TYPE_MASK != _HANDSHAKE_INIT or self.trust.peer_role(key) is not Role.PEER:
            return None
        return self.table.peer(key)

    def on_events(self, peer: PeerState, events: list, t: float) -> None:
        if not events:
            return
        for ev in events:
            if ev is SessionEvent.ESTABLISHED:
                peer.established_at = t
                log.info("peer %s: session established", peer.key.hex()[:8])
                if self.on_established is not None:   # issue 15: discovery (on-demand dialer, NAT upgrade)
                    self.on_established(peer)
            elif ev is SessionEvent.CLOSED:
                log.info("peer %s: session closed by the peer", peer.key.hex()[:8])
        self._on_session(peer)


async def _send_path(path: RelayPath, frames: list) -> None:
    """Send ``frames`` through a relay in order, waiting for room; stop quietly if the link closed."""
    try:
        for f in frames:
            await path.send(f)
    except LinkClosedError:
        pass
