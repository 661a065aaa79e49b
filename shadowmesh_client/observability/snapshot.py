"""The immutable picture of a daemon's figures, published by its event loop and served to Prometheus.

Threads: the daemon's objects (peers, links, usage books) are mutated on the event loop and are not safe to
read from another thread. So the LOOP builds a ``Snapshot`` (``SnapshotBuilder`` -> ``freeze()``) every
``PUBLISH_SECONDS`` (``publish_forever``, a task the daemon supervises) and stores it in ONE attribute of a
``Published`` holder; prometheus_client's HTTP thread (``SnapshotCollector.collect``) reads that attribute
once and formats it. A snapshot is never mutated after ``freeze()``, so no lock is needed and a scrape
always sees one consistent round. Figures lag by at most ``PUBLISH_SECONDS``.

``Accumulator``: counters summed over objects that come and go (links, sessions) stay monotonic: the last
value seen of an object that disappeared is kept (what it counted between the last publish and its end is
lost: at most ``PUBLISH_SECONDS`` of one link's traffic).

May import: observability.catalogue, prometheus_client, the standard library.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from shadowmesh_client.observability.catalogue import Metric

PUBLISH_SECONDS = 1.0
"""Seconds between two snapshots (the scrape interval should not be shorter)."""

Sample = tuple[str, tuple[str, ...], float]
"""(metric name, label values in the metric's label order, value)."""


@dataclass(frozen=True)
class Snapshot:
    samples: tuple[Sample, ...]
    ready: bool            # the /healthz answer: serving with a fresh directory
    taken_at: float        # time.monotonic() when built (the /livez answer: the loop still publishes)


EMPTY = Snapshot((), False, 0.0)


class Published:
    """Holder of the latest snapshot: written by the loop only (one attribute store), read by any thread."""

    def __init__(self) -> None:
        self.snapshot: Snapshot = EMPTY


class SnapshotBuilder:
    """Starts with every series of ``families`` at 0 (catalogue ``values``); ``set``/``add`` fill it."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = {m.name: m for m in families}
        self._values: dict[tuple[str, tuple[str, ...]], float] = {}
        for m in self._families.values():
            for labels in _combinations(m):
                self._values[(m.name, labels)] = 0.0

    def _key(self, name: str, labels: dict[str, str]) -> tuple[str, tuple[str, ...]]:
        m = self._families[name]   # KeyError: a metric missing from the catalogue is a bug
        key = (name, tuple(labels[label] for label in m.labels))
        if key not in self._values:
            raise ValueError(f"{name}: label values {labels} are not in the catalogue")
        return key

    def set(self, name: str, value: float, **labels: str) -> None:
        self._values[self._key(name, labels)] = float(value)

    def add(self, name: str, value: float, **labels: str) -> None:
        self._values[self._key(name, labels)] += float(value)

    def freeze(self, ready: bool) -> Snapshot:
        return Snapshot(tuple((n, lv, v) for (n, lv), v in self._values.items()), ready, time.monotonic())


def _combinations(m: Metric) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for label in m.labels:
        combos = [(*c, v) for c in combos for v in m.values[label]]
    return combos


class SnapshotCollector:
    """A prometheus_client collector serving ``published.snapshot`` for ``families`` (runs on the HTTP thread)."""

    def __init__(self, published: Published, families: Iterable[Metric]) -> None:
        self._published = published
        self._families = tuple(families)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        snap = self._published.snapshot   # one read: a consistent, immutable picture
        by_name: dict[str, list[Sample]] = {}
        for s in snap.samples:
            by_name.setdefault(s[0], []).append(s)
        for m in self._families:
            fam = _family(m)
            for _name, labels, value in by_name.get(m.name, ()):
                fam.add_metric(list(labels), value)
            yield fam

    def describe(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for m in self._families:
            yield _family(m)


def _family(m: Metric) -> CounterMetricFamily | GaugeMetricFamily:
    cls = CounterMetricFamily if m.kind == "counter" else GaugeMetricFamily
    return cls(m.name, m.help, labels=list(m.labels))


class Accumulator:
    """Monotonic sum of counters over objects that come and go (see module docstring). Loop only."""

    def __init__(self) -> None:
        self._retired = 0
        self._live: dict[int, tuple[Any, int]] = {}   # id(obj) -> (obj, last value); obj kept so its id is not reused

    def total(self, current: Iterable[tuple[Any, int]]) -> int:
        """``current``: (object, its counter now) for every live object; returns the monotonic total."""
        live: dict[int, tuple[Any, int]] = {}
        for obj, value in current:
            live[id(obj)] = (obj, value)
        for key, (_obj, value) in self._live.items():
            if key not in live:
                self._retired += value
        self._live = live
        return self._retired + sum(v for _o, v in live.values())


async def publish_forever(build: Callable[[], Snapshot], published: Published,
                          interval: float = PUBLISH_SECONDS) -> None:
    """The publishing task: ``published.snapshot = build()`` every ``interval`` seconds until cancelled."""
    while True:
        published.snapshot = build()
        await asyncio.sleep(interval)
