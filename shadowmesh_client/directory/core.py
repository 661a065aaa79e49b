"""The directory of one ShadowMesh network as a pure function of DeviceRegistry events (no I/O).

Spec: "Blockchain Smart Contract Architecture" and "Security Architecture (Zero-Trust Model)": a peer is
trusted only while the chain says so. This module never reads a clock, a socket or the chain: the syncer
(``syncer.py``) feeds it decoded events in chain order and passes ``now`` (unix seconds, wall clock,
compared with the contract's ``block.timestamp``-based ``expiresAt``).

Rules (docs/directory.md "Trust rules"):
- A registration counts only if its proof of possession verifies (Ed25519 by the registered key over
  ``proofMessage``). A failing one is ignored and logged once; later events for that device id are ignored
  too, so a key registered with a bad proof is never trusted.
- A device is *live* at ``now`` when its status is Active and ``now < expires_at``. Pending (approval
  networks), Suspended and Revoked devices are not live; Revoked is final.
- One key may hold several valid registrations in the network (one per owner: each needs its own proof,
  so the key holder consented to each). The key is trusted while any of them is live, and the directory
  *picks the earliest-registered live one* (lowest (block, log index)) as the key's peer: ``peer_for_key``
  and ``peers`` return that one, so a key maps to exactly one overlay address at a time.
- Overlay addresses are never reused by the contract, so ``peer_by_overlay`` is unambiguous.

Notifications: ``subscribe(callback)``; the callback receives a :class:`Change` per device whose
trusted view changed: ADDED (became live), CHANGED (live, and its endpoint, relay flag or expiry
changed), REVOKED (was live; now revoked or suspended: ``change.peer.status`` says which), EXPIRED (was
live; its registration ran out, reported by ``tick(now)``), REMOVED (was live; a chain reorganisation
took its registration away). Changes are per *device*: when a key has several registrations, re-check
``is_trusted(key, now)`` before closing its sessions.

Not thread-safe: one owner (the syncer, or the event loop through ``DirectorySyncer``) mutates it.
Readers on the event loop may call the query methods between mutations.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from shadowmesh_client.directory import events as ev
from shadowmesh_client.directory.events import DeviceStatus
from shadowmesh_client.directory.proof import address_bytes, proof_prefix, verify_proof

log = logging.getLogger(__name__)

_ACTIVE = int(DeviceStatus.ACTIVE)


@dataclass(frozen=True, slots=True)
class Peer:
    """A snapshot of one registered device, as the tunnel layer sees it."""

    device_id: bytes
    public_key: bytes  # 32-byte Ed25519 key
    owner: str  # 0x-prefixed lower-case hex address
    network_id: int
    overlay_address: ipaddress.IPv4Address
    endpoint: str | None  # WebSocket URL, or None when the device published none
    relay: bool
    expires_at: int  # unix seconds
    status: DeviceStatus
    registered_at: tuple[int, int]  # (block number, log index) of the registration

    def is_live(self, now: float) -> bool:
        return self.status == DeviceStatus.ACTIVE and now < self.expires_at


class ChangeKind(str, Enum):  # noqa: UP042 - StrEnum would change str(kind) in logs and status output
    ADDED = "added"
    CHANGED = "changed"
    REVOKED = "revoked"
    EXPIRED = "expired"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    peer: Peer


@dataclass(slots=True)
class NetworkInfo:
    network_id: int
    admin: bytes
    policy: int
    registration_period: int  # seconds
    name: str


_View = tuple[str, bool, int]  # (endpoint, relay, expires_at): what a CHANGED notification is about


@dataclass(slots=True)
class _Device:
    device_id: bytes
    owner: bytes
    public_key: bytes
    overlay: int
    expires_at: int
    status: int
    relay: bool
    endpoint: str
    pos: tuple[int, int]

    def live(self, now: float) -> bool:
        return self.status == _ACTIVE and now < self.expires_at

    def view(self) -> _View:
        return (self.endpoint, self.relay, self.expires_at)


Callback = Callable[[Change], None]


def _ip_int(ip: ipaddress.IPv4Address | str | int) -> int:
    if isinstance(ip, int):
        return ip
    return int(ipaddress.IPv4Address(ip))


class Directory:
    """Trust and peers of network ``network_id`` of the registry at ``registry`` on chain ``chain_id``."""

    def __init__(self, chain_id: int, registry: bytes | str, network_id: int) -> None:
        self.chain_id = chain_id
        self.registry = address_bytes(registry)
        self.network_id = network_id
        self._prefix = proof_prefix(chain_id, self.registry)
        self._subscribers: list[Callback] = []
        self._proofs: dict[bytes, bool] = {}
        self._reset()

    def _reset(self) -> None:
        self.network: NetworkInfo | None = None
        self._devices: dict[bytes, _Device] = {}
        self._by_key: dict[bytes, list[bytes]] = {}
        self._by_overlay: dict[int, bytes] = {}
        self._expiry: list[tuple[int, bytes]] = []  # heap of (expires_at, device_id) for tick()
        self.rejected: set[bytes] = set()
        self.last_pos: tuple[int, int] = (-1, -1)

    # ------------------------------------------------------------------ mutation

    def preload_proofs(self, results: Mapping[bytes, bool]) -> None:
        """Known proof verification results (device id -> ok), e.g. from the SQLite store."""
        self._proofs.update(results)

    def proof_result(self, device_id: bytes) -> bool | None:
        """Whether the registration ``device_id``'s proof verified (None if not seen)."""
        return self._proofs.get(device_id)

    def apply(self, events: Iterable[ev.Event], now: float) -> list[Change]:
        """Apply events (in chain order, each after ``last_pos``) and notify subscribers of changes."""
        notify = bool(self._subscribers)
        changes: list[Change] = []
        for e in events:
            if e.pos <= self.last_pos:
                continue  # already applied (a re-fetched range)
            self.last_pos = e.pos
            if getattr(e, "network_id", None) != self.network_id:
                continue
            if notify and isinstance(e, ev.DEVICE_EVENTS):
                d = self._devices.get(e.device_id)
                before = d.live(now) and d.view() if d else False
                self._apply_one(e)
                self._diff(e.device_id, before, now, changes)
            else:
                self._apply_one(e)
        self._notify(changes)
        return changes

    def _apply_one(self, e: ev.Event) -> None:
        if isinstance(e, ev.DeviceRegistered):
            self._register(e)
            return
        if isinstance(e, ev.NetworkCreated):
            self.network = NetworkInfo(e.network_id, e.admin, e.policy, e.registration_period, e.name)
            return
        if isinstance(e, ev.NetworkAdminTransferred):
            if self.network is not None:
                self.network.admin = e.new_admin
            return
        assert isinstance(e, ev.DEVICE_EVENTS), f"not a registry event: {e!r}"
        d = self._devices.get(e.device_id)
        if d is None:
            return  # unknown or rejected registration: ignore
        if d.status == DeviceStatus.REVOKED:
            return  # final
        if isinstance(e, ev.DeviceRevoked):
            d.status = DeviceStatus.REVOKED
        elif isinstance(e, ev.DeviceRenewed):
            d.expires_at = e.expires_at
            heapq.heappush(self._expiry, (d.expires_at, d.device_id))
        elif isinstance(e, ev.DeviceApproved):
            d.status = _ACTIVE
            if e.overlay_address and not d.overlay:   # registry v2: a Pending device's address comes now
                d.overlay = e.overlay_address
                self._by_overlay[d.overlay] = d.device_id
        elif isinstance(e, ev.DeviceSuspended):
            d.status = DeviceStatus.SUSPENDED
        elif isinstance(e, ev.DeviceEndpointUpdated):
            d.endpoint = e.endpoint
            d.relay = e.relay

    def _register(self, e: ev.DeviceRegistered) -> None:
        if e.device_id in self._devices or e.device_id in self.rejected:
            return
        ok = self._proofs.get(e.device_id)
        if ok is None:
            ok = verify_proof(self._prefix, e.network_id, e.owner, e.public_key, e.proof)
            self._proofs[e.device_id] = ok
        if not ok:
            self.rejected.add(e.device_id)
            log.warning(
                "ignoring registration %s in network %d (block %d): its proof of possession does not verify",
                "0x" + e.device_id.hex(), e.network_id, e.block_number,
            )
            return
        d = _Device(e.device_id, e.owner, e.public_key, e.overlay_address, e.expires_at, e.status, e.relay,
                    e.endpoint, e.pos)
        self._devices[e.device_id] = d
        self._by_key.setdefault(e.public_key, []).append(e.device_id)
        if e.overlay_address:   # 0: Pending in an Approval network, no address until approved
            self._by_overlay[e.overlay_address] = e.device_id
        heapq.heappush(self._expiry, (d.expires_at, d.device_id))

    def _diff(self, device_id: bytes, before: _View | bool, now: float, out: list[Change]) -> None:
        """Append the change of ``device_id`` since ``before`` (its view when it was live, else False)."""
        d = self._devices.get(device_id)
        after = d.live(now) and d.view() if d else False
        if before == after:
            return
        assert d is not None  # it was or is live: apply() never removes a device (rebuild() starts afresh)
        if not before:
            out.append(Change(ChangeKind.ADDED, self._peer(d)))
        elif after:
            out.append(Change(ChangeKind.CHANGED, self._peer(d)))
        else:
            out.append(Change(ChangeKind.REVOKED, self._peer(d)))

    def tick(self, now: float) -> list[Change]:
        """Report devices whose registration expired by ``now`` (call it periodically)."""
        changes: list[Change] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expires_at, device_id = heapq.heappop(heap)
            d = self._devices.get(device_id)
            if d is not None and d.expires_at == expires_at and d.status == _ACTIVE:
                changes.append(Change(ChangeKind.EXPIRED, self._peer(d)))
        self._notify(changes)
        return changes

    def rebuild(self, events: Iterable[ev.Event], now: float) -> list[Change]:
        """Replace the whole state by the fold of ``events`` (after a reorg) and notify the differences."""
        before = {i: (self._peer(d), d.view()) for i, d in self._devices.items() if d.live(now)}
        self._reset()
        subscribers, self._subscribers = self._subscribers, []
        try:
            self.apply(events, now)
        finally:
            self._subscribers = subscribers
        changes: list[Change] = []
        after = {i: d for i, d in self._devices.items() if d.live(now)}
        for i, (peer, view) in before.items():
            if i not in after:
                d = self._devices.get(i)
                gone = d is None or d.status in (DeviceStatus.NONE, DeviceStatus.PENDING)
                changes.append(Change(ChangeKind.REMOVED if gone else ChangeKind.REVOKED,
                                      peer if d is None else self._peer(d)))
            elif after[i].view() != view:
                changes.append(Change(ChangeKind.CHANGED, self._peer(after[i])))
        for i, d in after.items():
            if i not in before:
                changes.append(Change(ChangeKind.ADDED, self._peer(d)))
        self._notify(changes)
        return changes

    # ------------------------------------------------------------------ subscribers

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(change)`` for every change from now on; returns a function that unsubscribes.

        Callbacks run synchronously inside apply()/tick()/rebuild(); an exception in one is logged and
        does not stop the others.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def _notify(self, changes: list[Change]) -> None:
        for change in changes:
            for cb in list(self._subscribers):
                try:
                    cb(change)
                except Exception:  # a subscriber's bug must not break the directory
                    log.exception("directory subscriber %r failed", cb)

    # ------------------------------------------------------------------ queries

    def _peer(self, d: _Device) -> Peer:
        return Peer(
            device_id=d.device_id,
            public_key=d.public_key,
            owner="0x" + d.owner.hex(),
            network_id=self.network_id,
            overlay_address=ipaddress.IPv4Address(d.overlay),
            endpoint=d.endpoint or None,
            relay=d.relay,
            expires_at=d.expires_at,
            status=DeviceStatus(d.status),
            registered_at=d.pos,
        )

    def _chosen(self, public_key: bytes, now: float) -> _Device | None:
        for device_id in self._by_key.get(bytes(public_key), ()):
            d = self._devices[device_id]
            if d.live(now):
                return d
        return None

    def is_trusted(self, public_key: bytes, now: float) -> bool:
        """True iff ``public_key`` has a live registration with a valid proof in this network at ``now``."""
        return self._chosen(public_key, now) is not None

    def peer_for_key(self, public_key: bytes, now: float) -> Peer | None:
        """The key's peer (its earliest live registration), or None if it is not trusted at ``now``."""
        d = self._chosen(public_key, now)
        return self._peer(d) if d else None

    def peer_by_overlay(self, ip: ipaddress.IPv4Address | str | int, now: float | None = None) -> Peer | None:
        """The device holding overlay address ``ip``; with ``now``, only if it is live at ``now``."""
        device_id = self._by_overlay.get(_ip_int(ip))
        if device_id is None:
            return None
        d = self._devices[device_id]
        if now is not None and not d.live(now):
            return None
        return self._peer(d)

    def device(self, device_id: bytes) -> Peer | None:
        """The registration ``device_id`` in any status (None if unknown or rejected)."""
        d = self._devices.get(bytes(device_id))
        return self._peer(d) if d else None

    def peers(self, now: float) -> list[Peer]:
        """Every trusted key's peer at ``now`` (one per key, see module docstring), by overlay address."""
        out = []
        for ids in self._by_key.values():
            for device_id in ids:
                d = self._devices[device_id]
                if d.live(now):
                    out.append(self._peer(d))
                    break
        out.sort(key=lambda p: int(p.overlay_address))
        return out

    def all_devices(self) -> list[Peer]:
        """Every accepted registration in any status, by overlay address (for `status`/`peers --all`)."""
        return sorted((self._peer(d) for d in self._devices.values()), key=lambda p: int(p.overlay_address))

    def __len__(self) -> int:
        return len(self._devices)
