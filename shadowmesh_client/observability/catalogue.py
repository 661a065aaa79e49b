"""Every metric the daemons export: name, type, unit, labels and help, in one table.

Conventions (Prometheus "Metric and label naming"): one ``shadowmesh_`` prefix, then the component
(``node``, ``relay``, ``directory``, ``rpc``); counters end in ``_total``; units are base units named in
the metric (``_bytes``, ``_seconds``, ``_blocks``). Labels take a small fixed set of values each (listed
in ``values``): no per-device, per-peer or per-address label, so a relay with 10,000 devices exports the
same number of series as one with 1. Every series of a family is exported from the start (at 0), so a
dashboard query or an alert's ``rate()`` has data as soon as the target is scraped.

The process collector of prometheus_client adds ``process_cpu_seconds_total``,
``process_resident_memory_bytes``, ``process_open_fds`` ... in the daemon's own registry (observability/http.py).

Pure data. May import: the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Metric:
    name: str                     # full name; counters WITHOUT the ``_total`` suffix (prometheus_client adds it)
    kind: str                     # "counter" | "gauge"
    help: str
    labels: tuple[str, ...] = ()
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)   # label -> every value it takes

    @property
    def exposed(self) -> str:
        """The name as scraped (what dashboards and rules use)."""
        return self.name + "_total" if self.kind == "counter" else self.name


def _m(name: str, kind: str, help_: str, /, **values: tuple[str, ...]) -> Metric:
    return Metric(name, kind, help_, tuple(values), dict(values))


PATHS = ("direct", "relay")
DIRECTIONS = ("in", "out")

# ---- both daemons --------------------------------------------------------------------------------------
DIRECTORY = (
    _m("shadowmesh_directory_synced_block", "gauge", "Last block the directory is synced to"),
    _m("shadowmesh_directory_head_block", "gauge", "Chain head block at the last sync round"),
    _m("shadowmesh_directory_lag_blocks", "gauge", "Blocks the directory is behind the chain head"),
    _m("shadowmesh_directory_lag_seconds", "gauge",
       "Seconds since the last successful sync round (-1: never synced)"),
    _m("shadowmesh_directory_sync_failing", "gauge", "1 while the last sync round failed, else 0"),
    _m("shadowmesh_directory_devices", "gauge", "Devices in the directory (every status)"),
    _m("shadowmesh_rpc_requests", "counter", "Chain JSON-RPC requests sent by the directory syncer"),
    _m("shadowmesh_rpc_errors", "counter", "Chain JSON-RPC requests that failed (no answer)",
       kind=("timeout", "connection", "other")),
    _m("shadowmesh_ready", "gauge", "1 when the daemon serves with a fresh directory (the /healthz answer)"),
)

# ---- node (`up`) ---------------------------------------------------------------------------------------
NODE_DROP_REASONS = ("no_route", "no_path", "rejected_frame", "unknown_sender", "send_error", "timer_unsent",
                     "session_rejected")
NODE = (
    _m("shadowmesh_node_transport_bytes", "counter",
       "WebSocket message bytes on peer links (direct) and relay links (relay)", path=PATHS, direction=DIRECTIONS),
    _m("shadowmesh_node_transport_messages", "counter", "WebSocket messages (protocol frames) on links",
       path=PATHS, direction=DIRECTIONS),
    _m("shadowmesh_node_tun_packets", "counter", "IP packets read from (rx) and written to (tx) the TUN device",
       direction=("rx", "tx")),
    _m("shadowmesh_node_handshakes", "counter", "Peer handshakes: completed sessions and refused hellos",
       result=("completed", "refused")),
    _m("shadowmesh_node_sessions", "gauge", "Peer sessions established now"),
    _m("shadowmesh_node_peers", "gauge", "Trusted peers the node knows now"),
    _m("shadowmesh_node_peer_paths", "gauge", "Peers by the path their frames take now", path=(*PATHS, "none")),
    _m("shadowmesh_node_relay_links", "gauge", "Relay links up (ready) now"),
    _m("shadowmesh_node_dropped_packets", "counter", "Packets or frames the node dropped, by reason",
       reason=NODE_DROP_REASONS),
    _m("shadowmesh_node_receipts", "counter", "Relay receipts signed and sent, or failed to send",
       result=("sent", "send_failed")),
    _m("shadowmesh_node_receipt_bytes", "gauge", "Relayed bytes per receipt state, over every relay",
       state=("counted", "signed", "acked")),
)

# ---- relay ---------------------------------------------------------------------------------------------
RELAY_DROP_REASONS = ("malformed", "spoofed", "no_route", "to_self", "rate_limited", "queue_full", "not_attached",
                      "unpaid", "message_rate", "blocked")
RELAY = (
    _m("shadowmesh_relay_bytes", "counter", "Relayed WebSocket message bytes (envelopes included)",
       direction=DIRECTIONS),
    _m("shadowmesh_relay_messages", "counter", "Relayed WebSocket messages", direction=DIRECTIONS),
    _m("shadowmesh_relay_handshakes", "counter", "Device handshakes: completed, and refused hellos (probes too)",
       result=("completed", "refused")),
    _m("shadowmesh_relay_sessions", "gauge", "Devices connected now"),
    _m("shadowmesh_relay_dropped_messages", "counter", "Messages the relay dropped, by reason",
       reason=RELAY_DROP_REASONS),
    _m("shadowmesh_relay_disconnects", "counter", "Devices disconnected because the directory stopped trusting them"),
    _m("shadowmesh_relay_decoys_served", "counter", "Requests answered with the decoy page (probes, bad hellos)"),
    _m("shadowmesh_relay_receipts", "counter", "Device receipts: stored (acknowledged) or rejected",
       result=("stored", "rejected")),
    _m("shadowmesh_relay_credit_cutoffs", "counter", "Devices stopped for running past their credit"),
    _m("shadowmesh_relay_receipt_bytes", "gauge",
       "Bytes per ledger state over every channel: counted by the relay, receipted by devices, paid by claims",
       state=("counted", "receipted", "paid")),
)

CLAIM = (
    _m("shadowmesh_claim_transactions", "counter", "Claim transactions sent by `shadowmesh-client claim`",
       result=("succeeded", "failed")),
)
"""Written by a one-shot ``claim`` run as a textfile (observability/textfile.py) for node_exporter's
textfile collector: a command that exits cannot be scraped."""

ALL = DIRECTORY + NODE + RELAY + CLAIM
BY_NAME = {m.name: m for m in ALL}
