"""What goes into the daemons' snapshots: ``NodeFigures`` (the ``up`` daemon) and ``RelayFigures``.

Each ``build()`` runs ON THE EVENT LOOP (``publish_forever``) and reads the daemon's objects through the
attributes they document (duck typing: this module imports nothing of node/ or relay/), then freezes a
Snapshot for the HTTP thread. Cost: O(peers + links) or O(devices) once per ``PUBLISH_SECONDS``, nothing
on the packet path.

Readiness (``/healthz``, ``shadowmesh_ready``): the daemon is serving (node: ``ready_at`` set; relay: its
server listening) and its directory is fresh: the last successful sync round is at most
``READY_LAG_SECONDS`` old (a source without a clock, lab.directory.MemoryRegistry, is fresh while it is
not failing).

May import: observability.catalogue, observability.snapshot, observability.rpc.
"""

from __future__ import annotations

from typing import Any

from shadowmesh_client.observability.catalogue import DIRECTORY, NODE, RELAY
from shadowmesh_client.observability.rpc import KINDS, RpcWatch
from shadowmesh_client.observability.snapshot import Accumulator, Snapshot, SnapshotBuilder

READY_LAG_SECONDS = 60.0
"""Seconds. A daemon whose directory has not synced for longer reports not ready: a revocation older than
this might not be enforced yet (the directory follows the chain every second when all is well)."""

_LINK_COUNTERS = (("bytes_in", "shadowmesh_node_transport_bytes", "in"),
                  ("bytes_out", "shadowmesh_node_transport_bytes", "out"),
                  ("messages_in", "shadowmesh_node_transport_messages", "in"),
                  ("messages_out", "shadowmesh_node_transport_messages", "out"))


def directory_figures(b: SnapshotBuilder, source: Any, rpc: RpcWatch | None) -> bool:
    """Fill the DIRECTORY family from ``source.status()`` (a SyncStatus) and ``rpc``; True if fresh."""
    st = source.status()
    synced, head = st.synced_block, st.head_block
    if synced is not None:
        b.set("shadowmesh_directory_synced_block", synced)
    if head is not None:
        b.set("shadowmesh_directory_head_block", head)
    if synced is not None and head is not None:
        b.set("shadowmesh_directory_lag_blocks", max(0, head - synced))
    b.set("shadowmesh_directory_lag_seconds", st.stale_seconds if st.stale_seconds is not None else -1)
    b.set("shadowmesh_directory_sync_failing", 1 if st.error else 0)
    b.set("shadowmesh_directory_devices", st.devices)
    if rpc is not None:
        requests, errors = rpc.counts()
        b.set("shadowmesh_rpc_requests", requests)
        for kind in KINDS:
            b.set("shadowmesh_rpc_errors", errors[kind], kind=kind)
    if st.stale_seconds is None:
        return st.error is None and st.last_success is None   # no clock (memory source): fresh unless failing
    return st.stale_seconds <= READY_LAG_SECONDS


class NodeFigures:
    """``NodeFigures(node, rpc).build()``: the ``up`` daemon's snapshot (node.daemon.Node, duck-typed)."""

    def __init__(self, node: Any, rpc: RpcWatch | None = None) -> None:
        self.node = node
        self.rpc = rpc
        self._links = {(path, attr): Accumulator() for path in ("direct", "relay") for attr, _m, _d in _LINK_COUNTERS}
        self._handshakes = Accumulator()
        self._session_drops = Accumulator()

    def build(self) -> Snapshot:
        n = self.node
        b = SnapshotBuilder(DIRECTORY + NODE)
        fresh = directory_figures(b, n.ds, self.rpc)
        table, pump = n.table, n.pump
        peers = list(table.peers.values())
        links = {"direct": [p.direct.link for p in peers if p.direct is not None],
                 "relay": [r.link for r in table.relays.values() if r.link is not None]}
        for path, live in links.items():
            for attr, metric, direction in _LINK_COUNTERS:
                total = self._links[(path, attr)].total((link, getattr(link, attr)) for link in live)
                b.set(metric, total, path=path, direction=direction)
        sessions = [p.session for p in peers]
        b.set("shadowmesh_node_handshakes", self._handshakes.total((s, s.counters.handshakes) for s in sessions),
              result="completed")
        b.set("shadowmesh_node_sessions", sum(1 for s in sessions if s.state.value == "established"))
        b.set("shadowmesh_node_peers", len(peers))
        for p in peers:
            name = p.path.name if p.path is not None else "none"
            b.add("shadowmesh_node_peer_paths", 1, path="relay" if name.startswith("relay") else name)
        b.set("shadowmesh_node_relay_links", sum(1 for r in table.relays.values() if r.ready))
        b.set("shadowmesh_node_dropped_packets", self._session_drops.total((s, s.counters.dropped) for s in sessions),
              reason="session_rejected")
        if n.links is not None:
            b.set("shadowmesh_node_handshakes", n.links.auth_refused, result="refused")
        if pump is not None:
            for reason, value in (("no_route", pump.no_route), ("no_path", pump.no_path),
                                  ("rejected_frame", pump.rejected), ("unknown_sender", pump.unknown_sender),
                                  ("send_error", pump.send_errors)):
                b.set("shadowmesh_node_dropped_packets", value, reason=reason)
        if n.timers is not None:
            b.set("shadowmesh_node_dropped_packets", n.timers.unsent, reason="timer_unsent")
        if n.tun is not None:
            b.set("shadowmesh_node_tun_packets", n.tun.stats.rx_packets, direction="rx")
            b.set("shadowmesh_node_tun_packets", n.tun.stats.tx_packets, direction="tx")
        if n.payments is not None:
            st = n.payments.status()
            # an unpaid node keeps only the relays' notices (node/payments.py RelayNotices): no receipts
            b.set("shadowmesh_node_receipts", st.get("receipts_sent", 0), result="sent")
            b.set("shadowmesh_node_receipts", st.get("send_failed", 0), result="send_failed")
            for fig in st["relays"].values():
                for state in ("counted", "signed", "acked"):
                    b.add("shadowmesh_node_receipt_bytes", fig.get(state) or 0, state=state)
        ready = n.ready_at is not None and fresh
        b.set("shadowmesh_ready", 1 if ready else 0)
        return b.freeze(ready)


class RelayFigures:
    """``RelayFigures(relay, rpc).build()``: the relay daemon's snapshot (relay.daemon.RelayDaemon, duck-typed)."""

    def __init__(self, relay: Any, rpc: RpcWatch | None = None) -> None:
        self.relay = relay
        self.rpc = rpc
        self._handshakes = Accumulator()

    def build(self) -> Snapshot:
        r = self.relay
        b = SnapshotBuilder(DIRECTORY + RELAY)
        fresh = directory_figures(b, r.ds, self.rpc)
        bytes_in = bytes_out = messages_in = messages_out = 0
        for tot in r.usage.totals.values():   # [bytes_in, messages_in, bytes_out, messages_out] since start
            bytes_in += tot[0]
            messages_in += tot[1]
            bytes_out += tot[2]
            messages_out += tot[3]
        b.set("shadowmesh_relay_bytes", bytes_in, direction="in")
        b.set("shadowmesh_relay_bytes", bytes_out, direction="out")
        b.set("shadowmesh_relay_messages", messages_in, direction="in")
        b.set("shadowmesh_relay_messages", messages_out, direction="out")
        for reason, value in r.usage.drops.items():
            b.set("shadowmesh_relay_dropped_messages", value, reason=reason)
        sessions = list(r.sessions.values())
        b.set("shadowmesh_relay_handshakes", self._handshakes.total((s, s.counters.handshakes) for s in sessions),
              result="completed")
        b.set("shadowmesh_relay_handshakes", r.refused, result="refused")
        b.set("shadowmesh_relay_disconnects", r.disconnected)
        server = r.server
        serving = _listening(server)
        if server is not None:
            b.set("shadowmesh_relay_sessions", len(server.core))
            b.set("shadowmesh_relay_decoys_served", _decoys(server))
        billing = r.billing
        if billing is not None:
            b.set("shadowmesh_relay_receipts", billing.stored, result="stored")
            b.set("shadowmesh_relay_receipts", billing.rejected, result="rejected")
            b.set("shadowmesh_relay_credit_cutoffs", billing.cutoffs)
            for fig in billing.status()["devices"].values():
                for state in ("counted", "receipted", "paid"):
                    b.add("shadowmesh_relay_receipt_bytes", fig.get(state) or 0, state=state)
        ready = serving and fresh
        b.set("shadowmesh_ready", 1 if ready else 0)
        return b.freeze(ready)


def _listening(server: Any) -> bool:
    """True once the relay's link server has a bound port (RelayServer.port raises before ``start``)."""
    if server is None:
        return False
    try:
        return bool(server.port)
    except (AssertionError, AttributeError, IndexError, TypeError, RuntimeError):
        return False


def _decoys(server: Any) -> int:
    """The link server's ``decoys_served`` (transport.base.Server), wherever the RelayServer exposes it."""
    for obj in (server, getattr(server, "server", None), getattr(server, "_server", None)):
        value = getattr(obj, "decoys_served", None) if obj is not None else None
        if isinstance(value, int):
            return value
    return 0
