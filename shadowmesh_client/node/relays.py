"""The node's links to relays (spec "Data Plane", relay fallback; envelope: relay_core/envelope.py).

A ``RelayClient`` keeps one authenticated link to one relay with ``ReconnectingClient`` (backoff, fresh
hello per attempt). The hello is the HANDSHAKE_INIT of a Session between this device and the relay's
own registry key, so the relay admits only devices its directory trusts, and we talk only to a relay
our directory lists (the relay's answer must verify under its registered key). After the upgrade every
message is an envelope: LOCAL frames belong to that device-relay session; DELIVER frames carry another
device's end-to-end frame and go to ``on_frame(inner, path)`` of the node. LOCAL payloads that are
payments control messages (rewards.messages.is_control) go to ``on_control(relay_key, payload)`` (set by
the node when it signs receipts; node/payments.py), whose returned payloads are sent back as LOCAL.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from shadowmesh_client.errors import ProtocolError
from shadowmesh_client.protocol import ProtocolConfig, Session
from shadowmesh_client.relay import EnvelopeError, EnvelopeType, decode, encode_local, open_delivery
from shadowmesh_client.rewards.messages import is_control
from shadowmesh_client.transport import ClientConfig, Link, LinkClosedError, ReconnectingClient
from shadowmesh_client.transport.reconnect import Dial
from shadowmesh_client.node.peers import now

log = logging.getLogger(__name__)

_DELIVER = int(EnvelopeType.DELIVER)
_LOCAL = int(EnvelopeType.LOCAL)


class RelayClient:
    """One relay: ``start()``, ``close()``; ``link``/``ready`` while connected. ``on_delivery(source_key,
    inner_frame, relay_client)`` is called for each DELIVER (may return a coroutine to await);
    ``on_change()`` after the link goes up or down."""

    def __init__(self, identity, key: bytes, url: str, config: ProtocolConfig, trust: Callable[[bytes], bool],
                 client_config: ClientConfig, on_delivery, on_change: Callable[[], None], *, dial: Dial) -> None:
        self.key = key
        self.url = url
        self._identity = identity
        self._config = config
        self._trust = trust
        self.session = Session(identity, key, config, self._trusted_relay)
        self._on_delivery = on_delivery
        self._on_change = on_change
        self.ready = False
        self.deliveries = 0
        self.delivered_bytes = 0   # DELIVER message bytes, all links (billable: node/payments.py)
        self.malformed = 0
        self.on_control = None     # (relay_key, payload) -> payloads to send back; payments
        self._tasks: set[asyncio.Task] = set()   # replies in flight (kept referenced until done)
        self._client = ReconnectingClient(client_config, self._hello, self._on_link, dial=dial, peer=key)

    def _trusted_relay(self, key: bytes) -> bool:
        return key == self.key and self._trust(key)

    @property
    def link(self) -> Link | None:
        return self._client.link

    @property
    def attempts(self) -> int:
        return self._client.attempts

    def start(self) -> None:
        self._client.start()

    async def close(self) -> None:
        self.ready = False
        await self._client.close()

    def _hello(self) -> bytes:
        s = self.session
        if s.state.value in ("closed", "failed"):
            s = self.session = Session(self._identity, self.key, self._config, self._trusted_relay)
        return s.initiate(now())

    async def _on_link(self, link: Link) -> None:
        try:
            # The relay's handshake response is the first message (a LOCAL envelope).
            first = await asyncio.wait_for(link.recv(), 10.0)
            env = decode(first)
            if env.type is not EnvelopeType.LOCAL:
                raise EnvelopeError("relay did not answer the handshake first")
            received = self.session.open(bytes(env.inner), now())
            if not self.session.is_established:
                raise ProtocolError("relay handshake did not complete")
            for frame in received.outgoing:
                await link.send(encode_local(frame))
        except (asyncio.TimeoutError, ProtocolError, EnvelopeError, LinkClosedError) as exc:
            log.warning("relay %s: handshake failed: %s", self.url.split("/")[2], exc)
            await link.close()
            return
        self.ready = True
        log.info("relay %s connected", self.url.split("/")[2])
        self._on_change()
        try:
            # Like the direct path (node/manager.py run_direct): each message is handled in the link's
            # data_received, no task wake-up per message (``bench mesh`` relayed).
            link.deliver_to(lambda message: self._deliver(link, message))
            await link.wait_closed()
        finally:
            self.ready = False
            log.info("relay %s disconnected", self.url.split("/")[2])
            self._on_change()

    def _deliver(self, link: Link, message: bytes) -> None:
        """One message from the relay (synchronous; must not raise). DELIVER -> ``on_delivery``; LOCAL
        payments control -> ``on_control``, replies sent as LOCAL; other LOCAL -> the relay session."""
        kind = message[0] if message else 0
        if kind == _DELIVER:
            try:
                source, inner = open_delivery(message)
            except EnvelopeError:
                self.malformed += 1
                return
            self.deliveries += 1
            self.delivered_bytes += len(message)
            pending = self._on_delivery(source, inner, self)
            if pending is not None:
                self._spawn(pending)
        elif kind == _LOCAL and self.on_control is not None and is_control(message[1:]):
            replies = [encode_local(reply) for reply in self.on_control(self.key, message[1:])]
            if replies:
                self._spawn(_send_all(link, replies))
        elif kind == _LOCAL:
            try:
                self.session.open(message[1:], now())
            except ProtocolError:
                self.malformed += 1
        else:
            self.malformed += 1

    def _spawn(self, awaitable) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def status(self) -> dict:
        link = self.link
        return {"public_key": self.key.hex(), "url_host": self.url.split("/")[2], "connected": self.ready,
                "rtt_ms": round(link.latency * 1000, 3) if link is not None else None,
                "attempts": self._client.attempts, "deliveries": self.deliveries}


async def _send_all(link: Link, messages: list) -> None:
    for m in messages:
        try:
            await link.send(m)
        except LinkClosedError:
            return
