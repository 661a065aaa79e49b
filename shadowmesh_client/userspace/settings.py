"""Settings of the stream layer (issue 18), built by cli/mesh.py from the config's ``userspace:``,
``forward:`` and ``expose:`` keys. Pure data; no I/O.

May import: userspace.policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from shadowmesh_client.userspace.policy import Expose, Forward

WINDOW = 4 * 1024 * 1024
"""Bytes: default per-stream receive window (see userspace/streams.py WINDOW for the reasoning)."""


@dataclass(frozen=True)
class StreamSettings:
    """``socks``/``http``: "HOST:PORT" of the local SOCKS5 / HTTP CONNECT proxy, or None (off; port 0
    picks a free one, reported in the status file); ``forwards``: local ports forwarded to peers;
    ``expose``: this node's ports peers may open streams to (a userspace node exposes nothing else);
    ``allow_lan``: networks peers may reach through this node; ``lan_via``: (network, peer overlay
    address) pairs, the peer that serves a LAN network for our proxies."""

    socks: str | None = None
    http: str | None = None
    forwards: tuple[Forward, ...] = ()
    expose: tuple[Expose, ...] = ()
    allow_lan: tuple[str, ...] = ()
    lan_via: tuple[tuple[str, str], ...] = ()
    window: int = WINDOW
