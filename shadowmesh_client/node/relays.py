"""The node's links to relays (spec "Data Plane", relay fallback; envelope: relay/envelope.py).

A ``RelayClient`` keeps one authenticated link to one relay with ``ReconnectingClient`` (backoff, fresh
hello per attempt), run as a task of the node's TaskGroup (node/tasks.py). The hello is the
HANDSHAKE_INIT of a Session between this device and the relay's own registry key, so the relay admits
only devices its directory trusts, and we talk only to a device the trust policy says is a RELAY (the
relay's answer must verify under its registered key). After the upgrade every message is an envelope:
LOCAL frames belong to that device-relay session (its rekeys and keepalives: ``on_timer``, driven by
node/timers.py, and the answers to them); DELIVER frames carry another device's end-to-end frame and go
to ``on_delivery(source, inner, client)``. Control messages travel SEALED in the device-relay session
(relay/control.py, issue 12): a LOCAL DATA frame of that session carries them; payments ones
(rewards.messages.is_control) go to the awaitable ``on_control(relay_key, payload)`` (set by the node
when it signs receipts; node/payments.py), whose returned payloads are sealed and sent back, in order
(``send_controls``); ``block(source)`` asks the relay to stop forwarding a garbage-only source to us. A
bare (cleartext) control payload from the relay is refused (``cleartext_refused``).

Under load the relay may answer the hello with a cookie reply (protocol/cookie.py) instead of the
handshake response, then close: the cookie is kept and echoed in the next hello (one more dial).

May import: protocol, relay (envelope), rewards.messages, transport, directory.trust, node.peers,
node.tasks. Not task-safe beyond the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shadowmesh_client.directory.trust import Role, TrustPolicy
from shadowmesh_client.errors import ProtocolError
from shadowmesh_client.node.peers import now
from shadowmesh_client.node.tasks import Running, Spawner
from shadowmesh_client.protocol import ProtocolConfig, Session, SessionState
from shadowmesh_client.protocol.cookie import CLOSE_COOKIE, parse_reply, with_cookie
from shadowmesh_client.protocol.floors import HandshakeFloors
from shadowmesh_client.relay import EnvelopeError, EnvelopeType, decode, encode_local, open_delivery
from shadowmesh_client.relay.control import encode_block, is_bare_control, open_local, seal_controls
from shadowmesh_client.rewards.messages import is_control
from shadowmesh_client.transport import ClientConfig, Link, LinkClosedError, ReconnectingClient
from shadowmesh_client.transport.reconnect import Dial

log = logging.getLogger(__name__)

_DELIVER = int(EnvelopeType.DELIVER)
_LOCAL = int(EnvelopeType.LOCAL)
HANDSHAKE_TIMEOUT = 10.0
"""Seconds to wait for the relay's handshake response after the upgrade."""


class RelayClient:
    """One relay: ``start()``, ``close()``; ``link``/``ready`` while connected. ``on_delivery(source_key,
    inner_frame, relay_client) -> bool`` is called for each DELIVER (synchronously; it sends what it must;
    True when the frame opened under a session with a trusted peer: only then are its bytes billable);
    ``on_change()`` after the link goes up or down; ``on_session()`` when the device-relay session starts
    a handshake (the timer task reschedules)."""

    def __init__(self, identity, key: bytes, url: str, config: ProtocolConfig, trust: TrustPolicy,
                 client_config: ClientConfig, on_delivery, on_change: Callable[[], None], *, dial: Dial,
                 spawn: Spawner, on_session: Callable[[], None] = lambda: None,
                 floors: HandshakeFloors | None = None) -> None:
        self.key = key
        self._floors = floors
        self.cookie: bytes | None = None   # the relay's last cookie reply, echoed in the next hello once
        self.cookies = 0                   # cookie replies received
        self.cleartext_refused = 0         # bare control payloads from the relay (refused)
        self.blocks_sent = 0
        self.url = url
        self.host = url.split("/")[2]
        self._identity = identity
        self._config = config
        self._trust = trust
        self.session = Session(identity, key, config, self._trusted_relay, floors=floors)
        self._on_delivery = on_delivery
        self._on_change = on_change
        self._on_session = on_session
        self._spawn = spawn
        self.ready = False
        self.deliveries = 0
        self.delivered_bytes = 0   # DELIVER bytes whose frame opened (billable: node/payments.py), all links
        self.unbillable_dropped = 0   # DELIVERs whose frame did not open (junk, replay, no session): not billed
        self.malformed = 0
        self.on_control: Callable[[bytes, bytes], Awaitable[list[bytes]]] | None = None   # payments
        self.on_discovery: Callable[[RelayClient, bytes], None] | None = None   # issue 15 (discovery/service.py)
        self.hint_penalty = 0.0   # seconds added to paths through this relay: its load/price hints (issue 15)
        self._client = ReconnectingClient(client_config, self._hello, self._on_link, dial=dial, peer=key)
        self._running: Running | None = None

    def _trusted_relay(self, key: bytes) -> bool:
        return key == self.key and self._trust.peer_role(key) is Role.RELAY

    @property
    def link(self) -> Link | None:
        return self._client.link

    @property
    def attempts(self) -> int:
        return self._client.attempts

    def start(self) -> None:
        if self._running is None:
            self._running = Running(self._client, self._spawn, f"relay {self.host}")

    async def close(self) -> None:
        self.ready = False
        if self._running is not None:
            await self._running.close()
        else:
            await self._client.close()

    def _hello(self) -> bytes:
        s = self.session
        if s.state is SessionState.CLOSED or s.state is SessionState.FAILED:
            s = self.session = Session(self._identity, self.key, self._config, self._trusted_relay,
                                       floors=self._floors)
        cookie, self.cookie = self.cookie, None
        hello = with_cookie(s.initiate(now()), cookie)
        self._on_session()
        return hello

    async def _on_link(self, link: Link) -> None:
        try:
            # The relay's handshake response is the first message (a LOCAL envelope).
            first = await asyncio.wait_for(link.recv(), HANDSHAKE_TIMEOUT)
            env = decode(first)
            if env.type is not EnvelopeType.LOCAL:
                raise EnvelopeError("relay did not answer the handshake first")
            cookie = parse_reply(env.inner)
            if cookie is not None:   # the relay is under load: dial again with its cookie
                self.cookie = cookie
                self.cookies += 1
                await link.close(CLOSE_COOKIE, "")
                return
            received = self.session.open(bytes(env.inner), now())
            if not self.session.is_established:
                raise ProtocolError("relay handshake did not complete")
            for frame in received.outgoing:
                await link.send(encode_local(bytes(frame)))
        except (TimeoutError, ProtocolError, EnvelopeError, LinkClosedError) as exc:
            log.warning("relay %s: handshake failed: %s", self.host, exc)
            await link.close()
            return
        self.ready = True
        log.info("relay %s connected", self.host)
        self._on_session()
        self._on_change()
        try:
            # Like the direct path (node/links.py run_direct): each message is handled in the link's
            # data_received, no task wake-up per message (``bench mesh`` relayed).
            link.deliver_to(lambda message: self._deliver(link, message))
            await link.wait_closed()
        finally:
            self.ready = False
            log.info("relay %s disconnected", self.host)
            self._on_change()

    def _deliver(self, link: Link, message: bytes) -> None:
        """One message from the relay (synchronous; must not raise). DELIVER -> ``on_delivery``; LOCAL
        payments control -> ``on_control`` (a task per message, answered in order); other LOCAL -> the
        relay session, whose answers (a rekey response's confirmation) go back as LOCAL."""
        kind = message[0] if message else 0
        if kind == _DELIVER:
            try:
                source, inner = open_delivery(message)
            except EnvelopeError:
                self.malformed += 1
                return
            self.deliveries += 1
            # Billable only once the end-to-end frame opened under a session with a trusted peer (issue 10:
            # junk, replays and frames from peers we have no session with are not paid for).
            if self._on_delivery(source, inner, self):
                self.delivered_bytes += len(message)
            else:
                self.unbillable_dropped += 1
        elif kind == _LOCAL:
            if is_bare_control(message[1:]):   # the old cleartext form: refused
                self.cleartext_refused += 1
                return
            try:
                opened = open_local(self.session, message[1:], now())
            except ProtocolError:
                self.malformed += 1
                return
            if opened.events:
                self._on_session()
            if opened.outgoing:
                self.send([encode_local(bytes(f)) for f in opened.outgoing], link)
            for payload in opened.controls:
                if self.on_control is not None and is_control(payload):
                    self._spawn(self._control(link, payload), "relay control")
                elif self.on_discovery is not None and payload[:1] == b"\xfc":   # issue 15: discovery/messages.py
                    self.on_discovery(self, payload)
        else:
            self.malformed += 1

    async def _control(self, link: Link, payload: bytes) -> None:
        if self.on_control is None:
            return
        replies = await self.on_control(self.key, payload)
        if replies:
            try:
                await self.send_controls(link, replies)
            except LinkClosedError:
                pass

    async def send_controls(self, link: Link, payloads: list[bytes]) -> None:
        """Seal ``payloads`` (control messages) in the device-relay session and send them on ``link`` in
        order, waiting for room. Raises LinkClosedError if the link closed."""
        for frame in seal_controls(self.session, payloads, now()):
            await link.send(encode_local(frame))

    def block(self, source: bytes, seconds: int) -> bool:
        """Ask the relay (sealed BLOCK) to drop ``source``'s frames to us for ``seconds``; False if no link."""
        link = self.link
        if link is None or not self.ready:
            return False
        frames = seal_controls(self.session, [encode_block(source, seconds)], now())
        if not frames:
            return False
        self.send([encode_local(f) for f in frames], link)
        self.blocks_sent += 1
        self._on_session()   # the session now expects an answer (dead-peer timer)
        return True

    # ---- the device-relay session's timers (node/timers.py) -------------------------------------------
    def next_timer_at(self) -> float | None:
        """When the device-relay session needs ``on_timer`` (None while no link is up: the reconnect loop
        then makes a fresh handshake per attempt)."""
        return self.session.next_timer_at() if self.ready else None

    def on_timer(self, t: float) -> None:
        """Run the session's due timers (rekey, keepalive) and send what they produce as LOCAL frames."""
        frames = self.session.on_timer(t)
        link = self.link
        if frames and link is not None and self.ready:
            self.send([encode_local(bytes(f)) for f in frames], link)

    def send(self, messages: list, link: Link) -> None:
        """Send ``messages`` on ``link`` in order without waiting; what finds no room goes out from a task."""
        for i, m in enumerate(messages):
            if not link.send_nowait(m):
                self._spawn(send_all(link, messages[i:]), "relay send")
                return

    def status(self) -> dict:
        link = self.link
        return {"public_key": self.key.hex(), "url_host": self.host, "connected": self.ready,
                "rtt_ms": round(link.latency * 1000, 3) if link is not None else None,
                "attempts": self._client.attempts, "deliveries": self.deliveries,
                "unbillable_dropped": self.unbillable_dropped,
                "rekeys": self.session.counters.rekeys}


async def send_all(link: Link, messages: list) -> None:
    """Send ``messages`` in order, waiting for room; stop quietly if the link closed."""
    try:
        for m in messages:
            await link.send(m)
    except LinkClosedError:
        pass
