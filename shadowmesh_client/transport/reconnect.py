"""Reconnecting: keep one link to a server up, with exponential backoff and jitter, over any transport.

Spec: "Network Layer", issue 5 "Survives restarts of peers and relays (reconnects with backoff)". Every
attempt asks the ``hello`` factory for a FRESH hello: handshakes carry timestamps and ephemeral keys and
must not be replayed. ``dial`` is ``Transport.dial`` (WebSocket or in-memory).

May import: transport.base, transport.config. Runs on one event loop; ``run()`` is the client's only
task, owned by whoever awaits it (``start()`` makes and keeps it, ``close()`` cancels and awaits it).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shadowmesh_client.transport.base import Link, OnLink
from shadowmesh_client.transport.config import ClientConfig

log = logging.getLogger(__name__)

HelloFactory = Callable[[], bytes | Awaitable[bytes]]
Dial = Callable[..., Awaitable[Link]]
"""``dial(config, hello, *, peer) -> Link`` (``Transport.dial``)."""


class Backoff:
    """Exponential backoff with jitter and a cap. Pure: the random source is injected.

    Delay n (0-based) = min(max, initial * multiplier**n) scaled by a factor drawn uniformly from
    [1 - jitter, 1]. ``reset()`` after a link proved stable. Not task-safe (one owner).
    """

    def __init__(self, initial: float, maximum: float, multiplier: float = 2.0, jitter: float = 0.5,
                 rng: Callable[[], float] = random.random) -> None:
        self.initial, self.maximum, self.multiplier, self.jitter = initial, maximum, multiplier, jitter
        self._rng = rng
        self.attempt = 0

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; advances the schedule."""
        base = min(self.maximum, self.initial * self.multiplier ** min(self.attempt, 64))
        self.attempt += 1
        return base * (1.0 - self.jitter * self._rng())

    def reset(self) -> None:
        self.attempt = 0


class ReconnectingClient:
    """Keeps one link to a server up until ``close()``: dial, hand the link to ``on_link``, and when it
    ends (link closed, server restarted, heartbeat timeout) wait with backoff and dial again.

    ``on_link(link)`` is awaited for the link's lifetime (typically ``async for frame in link: ...``);
    ``link`` is also available as ``client.link`` while it is up. Counters: ``attempts``,
    ``connects``, ``failures``; ``last_error`` is the last failure's message.
    """

    def __init__(self, config: ClientConfig, hello: HelloFactory, on_link: OnLink, *, dial: Dial,
                 peer: Any = None, rng: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._hello = hello
        self._on_link = on_link
        self._dial = dial
        self._peer = peer
        self._clock = clock
        self.backoff = Backoff(config.backoff_initial, config.backoff_max, config.backoff_multiplier,
                               config.backoff_jitter, rng)
        self.link: Link | None = None
        self.attempts = 0
        self.connects = 0
        self.failures = 0
        self.last_error: str | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self.connected = asyncio.Event()  # set while a link is up

    def start(self) -> None:
        """Start the background task (call from a running event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        while not self._closing:
            self.attempts += 1
            try:
                hello = self._hello()
                if inspect.isawaitable(hello):
                    hello = await hello
                link = await self._dial(self.config, hello, peer=self._peer)
            except Exception as exc:  # TransportError, or the hello factory failed (e.g. no identity yet)
                self.failures += 1
                self.last_error = str(exc)
                log.info("dial failed (attempt %d): %s", self.attempts, exc)
                await asyncio.sleep(self.backoff.next_delay())
                continue
            self.connects += 1
            self.link = link
            self.connected.set()
            started = self._clock()
            try:
                await self._on_link(link)
            except Exception as exc:
                if not link.closed:
                    log.warning("on_link ended with %s: %s", type(exc).__name__, exc)
            finally:
                self.connected.clear()
                self.link = None
                await link.close()
            if self._clock() - started >= self.config.stable_after:
                self.backoff.reset()
            if not self._closing:
                await asyncio.sleep(self.backoff.next_delay())

    async def close(self) -> None:
        """Stop reconnecting and close the current link."""
        self._closing = True
        if self.link is not None:
            await self.link.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
