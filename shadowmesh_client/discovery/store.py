"""The record store every DHT node keeps: bounded, and trusting only the chain (issue 15).

Rules, each checked in ``put`` before anything is kept:

* a record is stored only if its key is trusted NOW in this network's directory (``trusted(key)``, the
  node's or relay's one ``directory.trust.TrustPolicy.is_trusted``), it is of this network, live, not
  claiming more than ``records.MAX_LIFETIME``, and its signature verifies (records.py ``check``);
* one record per key: a newer ``seq`` replaces the older one; an equal or older one is refused (``STALE``),
  an identical copy is a no-op (``SAME``, no signature check: republishing costs no crypto);
* per source (the authenticated key that sent the STORE) at most ``per_source`` records of OTHER keys
  (its own record is always one slot); per store at most ``capacity`` records;
* nothing live and trusted is ever evicted to make room: when full, expired records and records whose
  key is no longer trusted are dropped first, then new keys are refused (``FULL``). So a flood of records
  from untrusted keys is refused before any crypto, and a flood from one trusted key only replaces its own
  record (or fills its source quota with other keys' genuine records): nobody else's record moves.

``get`` re-checks expiry and trust, so a record of a device revoked since it was stored is never served.

Pure and synchronous. Not task-safe beyond its owner's loop. May import: discovery.records.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from shadowmesh_client.discovery.records import DiscoveryError, EndpointRecord, decode

DEFAULT_CAPACITY = 65_536
"""Records per store (~1 KB each at most: <= 64 MiB; a device network of 10,000 needs 10,000 x k / nodes)."""
DEFAULT_PER_SOURCE = 1_024
"""Records of other keys one source may have stored here (replication by DHT neighbours fits in it)."""


class Verdict(enum.Enum):
    STORED = "stored"
    REPLACED = "replaced"
    SAME = "same"
    STALE = "stale"
    UNTRUSTED = "untrusted"
    INVALID = "invalid"
    SOURCE_FULL = "source_full"
    FULL = "full"

    @property
    def kept(self) -> bool:
        return self in (Verdict.STORED, Verdict.REPLACED, Verdict.SAME)


class _Entry:
    __slots__ = ("record", "raw", "source")

    def __init__(self, record: EndpointRecord, raw: bytes, source: bytes) -> None:
        self.record = record
        self.raw = raw
        self.source = source


class RecordStore:
    """``RecordStore(trusted, network)``; ``put(raw, source, now) -> Verdict``, ``get(key, now)``."""

    def __init__(self, trusted: Callable[[bytes], bool], network: bytes, *, capacity: int = DEFAULT_CAPACITY,
                 per_source: int = DEFAULT_PER_SOURCE) -> None:
        self.trusted = trusted
        self.network = network
        self.capacity = capacity
        self.per_source = per_source
        self._entries: dict[bytes, _Entry] = {}
        self._by_source: dict[bytes, int] = {}
        self.refused: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    def put(self, raw: bytes | bytearray | memoryview, source: bytes, now: float) -> Verdict:
        verdict = self._put(bytes(raw), source, now)
        if not verdict.kept:
            self.refused[verdict.value] = self.refused.get(verdict.value, 0) + 1
        return verdict

    def _put(self, raw: bytes, source: bytes, now: float) -> Verdict:
        try:
            record = decode(raw)
        except DiscoveryError:
            return Verdict.INVALID
        key = record.public_key
        if not self.trusted(key):                  # before any crypto: untrusted floods cost a dict lookup
            return Verdict.UNTRUSTED
        old = self._entries.get(key)
        if old is not None:
            if old.raw == raw:
                return Verdict.SAME
            if record.seq <= old.record.seq:
                return Verdict.STALE
        try:
            record.check(self.network, now)
        except DiscoveryError:
            return Verdict.INVALID
        if old is not None:                         # the key's own newer record: attribution unchanged
            old.record, old.raw = record, raw
            return Verdict.REPLACED
        charged = source != key
        if charged and self._by_source.get(source, 0) >= self.per_source:
            return Verdict.SOURCE_FULL
        if len(self._entries) >= self.capacity:
            self.purge(now)
            if len(self._entries) >= self.capacity:
                return Verdict.FULL
        self._entries[key] = _Entry(record, raw, source)
        if charged:
            self._by_source[source] = self._by_source.get(source, 0) + 1
        return Verdict.STORED

    def get(self, key: bytes, now: float) -> EndpointRecord | None:
        """The live record of a still-trusted ``key`` (None otherwise; a dead one is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.record.expires <= now or not self.trusted(key):
            self._drop(key)
            return None
        return entry.record

    def raw(self, key: bytes, now: float) -> bytes | None:
        return self._entries[key].raw if self.get(key, now) is not None else None

    def purge(self, now: float) -> int:
        """Drop expired records and records of keys no longer trusted; returns how many."""
        dead = [k for k, e in self._entries.items() if e.record.expires <= now or not self.trusted(k)]
        for k in dead:
            self._drop(k)
        return len(dead)

    def keys(self) -> list[bytes]:
        return list(self._entries)

    def source_count(self, source: bytes) -> int:
        return self._by_source.get(source, 0)

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        if entry.source != key:
            n = self._by_source.get(entry.source, 0) - 1
            if n > 0:
                self._by_source[entry.source] = n
            else:
                self._by_source.pop(entry.source, None)
