"""Bounded memory of what the API shows: traffic history, recent events and log lines, SSE subscribers.

* ``TrafficHistory``: per-sample rates (bits/s) in and out, total and per peer, from the byte TOTALS the
  daemon reports; a total that goes down (a new session) counts from zero. At most ``history`` samples and
  ``MAX_PEERS_PER_SAMPLE`` peers per sample (the busiest): memory is O(history x 32), whatever the mesh.
* ``EventLog``: the last ``size`` events (peer up/down, path changes, sync rounds, findings) and log lines
  (``LogCapture``, a logging.Handler). Each has a sequence number, so clients ask for what is new. Append
  is thread-safe (deque.append; log records may come from worker threads).
* ``Broadcast``: one bounded queue per SSE subscriber; a slow subscriber loses its oldest messages, it
  never grows memory or blocks the sampler.

Not task-safe beyond the event loop except where said. May import: the standard library only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Mapping

MAX_PEERS_PER_SAMPLE = 32
"""Peers whose own rates a sample keeps (the busiest); the totals count every peer."""

SUBSCRIBER_QUEUE = 64
"""Messages buffered per SSE subscriber before its oldest are dropped."""


class TrafficHistory:
    def __init__(self, size: int) -> None:
        self.samples: deque[dict] = deque(maxlen=size)
        self._last: dict[str, tuple[int, int]] = {}
        self._last_t: float | None = None
        self.rates: dict[str, tuple[float, float]] = {}   # latest per-peer (in, out) bits/s, every peer
        self.deltas: dict[str, int] = {}   # bytes per peer in the last interval (the auditor's traffic input)

    def add(self, t: float, totals: Mapping[str, tuple[int, int]]) -> dict:
        """``totals``: {peer: (bytes received, bytes sent)} since that peer's session began. Returns the sample."""
        dt = (t - self._last_t) if self._last_t is not None else 0.0
        rates: dict[str, tuple[float, float]] = {}
        deltas: dict[str, int] = {}
        for key, (rx, tx) in totals.items():
            prx, ptx = self._last.get(key, (0, 0))
            drx = rx - prx if rx >= prx else rx
            dtx = tx - ptx if tx >= ptx else tx
            deltas[key] = drx + dtx
            rates[key] = (drx * 8 / dt, dtx * 8 / dt) if dt > 0 else (0.0, 0.0)
        self._last = dict(totals)
        self._last_t = t
        self.rates = rates
        busiest = sorted(rates, key=lambda k: -(rates[k][0] + rates[k][1]))[:MAX_PEERS_PER_SAMPLE]
        sample = {"t": round(t, 3), "in_bps": round(sum(r[0] for r in rates.values()), 1),
                  "out_bps": round(sum(r[1] for r in rates.values()), 1),
                  "peers": {k: [round(rates[k][0], 1), round(rates[k][1], 1)] for k in busiest}}
        self.samples.append(sample)
        self.deltas = deltas
        return sample

    def since(self, t: float) -> list[dict]:
        return [s for s in self.samples if s["t"] > t]


class EventLog:
    def __init__(self, size: int) -> None:
        self.items: deque[dict] = deque(maxlen=size)
        self._seq = itertools.count(1)

    def add(self, kind: str, message: str, *, level: str = "INFO", t: float | None = None, **data) -> dict:
        item = {"seq": next(self._seq), "t": round(time.time() if t is None else t, 3), "kind": kind,
                "level": level, "message": message[:500], **data}
        self.items.append(item)
        return item

    def since(self, seq: int = 0, limit: int = 200) -> list[dict]:
        out = [e for e in list(self.items) if e["seq"] > seq]
        return out[-limit:]


class LogCapture(logging.Handler):
    """Copies log records of ``shadowmesh_client.*`` at INFO and above into an EventLog (kind "log")."""

    def __init__(self, events: EventLog, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.events.add("log", record.getMessage(), level=record.levelname, t=record.created,
                            source=record.name.removeprefix("shadowmesh_client."))
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


class Broadcast:
    """SSE fan-out: ``subscribe()`` -> queue (or None when ``limit`` subscribers exist); ``publish(msg)``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queues: set[asyncio.Queue[dict | None]] = set()
        self.dropped = 0

    def subscribe(self) -> asyncio.Queue[dict | None] | None:
        if len(self.queues) >= self.limit:
            return None
        q: asyncio.Queue[dict | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.queues.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict | None]) -> None:
        self.queues.discard(q)

    def publish(self, message: dict | None) -> None:
        for q in list(self.queues):
            if q.full():
                q.get_nowait()
                self.dropped += 1
            q.put_nowait(message)

    def close(self) -> None:
        """Every stream ends (its handler returns on the None)."""
        self.publish(None)
