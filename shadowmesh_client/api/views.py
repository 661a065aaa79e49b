"""What the API reads from a running daemon: one adapter per daemon kind, same shape for both.

``NodeView(node)`` and ``RelayView(relay)`` read only what the daemons already expose (``status()``, the peer
table, counters), on the daemon's own event loop, once per sample: the packet path is never touched.

Shape (every method returns JSON-ready data):

* ``summary()``: kind, public key, overlay, uptime, peers connected/total, listening port, sync state;
* ``peers()``: per peer: session state, path (direct / relay:<key>), RTTs of every path (ms), bytes;
* ``totals()``: {peer hex: (bytes received, bytes sent)} (the traffic history and the auditor's input);
* ``refused()``: handshakes refused since start (node: links; relay: door + decoy pages served);
* ``earnings()``: relay: metered bytes, price, receipts; node: receipts signed per relay;
* ``sync()``: the directory follower's state; ``directory``: the Directory (for registry events);
* ``relays()``: node: its relay links (RTT, connected) for the optimizer.

May import: nothing of node/ or relay/ at import time (duck-typed on the daemon objects).
"""

from __future__ import annotations

import time
from typing import Any


class NodeView:
    kind = "node"

    def __init__(self, node: Any) -> None:
        self.node = node

    @property
    def directory(self):
        return self.node.trust.directory

    def summary(self) -> dict:
        n = self.node
        peers = list(n.table.peers.values())
        return {"kind": self.kind, "public_key": n.identity.public_key.hex(), "overlay": n.overlay,
                "tun": n.tun.name if n.tun is not None else None, "listening": n.listen_port,
                "started_at": n.started_at, "ready_at": n.ready_at, "uptime_s": round(time.time() - n.started_at, 1),
                "peers_total": len(peers),
                "peers_connected": sum(1 for p in peers if p.session.state.value == "established"),
                "relays_connected": sum(1 for r in n.table.relays.values() if r.ready),
                "counters": n.pump.counters() if n.pump is not None else {}, "directory": self.sync()}

    def peers(self) -> list[dict]:
        from shadowmesh_client.node.peers import now

        t = now()
        out = []
        for p in self.node.table.peers.values():
            d = p.status(t)
            c = p.session.counters
            d["bytes_sent"], d["bytes_received"] = c.bytes_sent, c.bytes_received
            path = d.get("path")
            if path == "direct":
                d["rtt_ms"] = d.get("direct_rtt_ms")
            else:
                d["rtt_ms"] = next((r["rtt_ms"] for r in d.get("relay_paths", []) if r["name"] == path), None)
            out.append(d)
        return out

    def totals(self) -> dict[str, tuple[int, int]]:
        return {p.key.hex(): (p.session.counters.bytes_received, p.session.counters.bytes_sent)
                for p in self.node.table.peers.values()}

    def refused(self) -> int:
        links = self.node.links
        return links.auth_refused if links is not None else 0

    def earnings(self) -> dict:
        p = self.node.payments
        return {"role": "payer", "payments": p.status() if p is not None else None}

    def sync(self) -> dict:
        return dict(vars(self.node.ds.status()))

    def relays(self) -> list[dict]:
        return [r.status() for r in self.node.table.relays.values()]


class RelayView:
    kind = "relay"

    def __init__(self, relay: Any) -> None:
        self.relay = relay

    @property
    def directory(self):
        return self.relay.ds.directory

    def summary(self) -> dict:
        r = self.relay
        st = r.status()
        return {"kind": self.kind, "public_key": st["public_key"], "overlay": None, "listening": st["port"],
                "started_at": st["started_at"], "uptime_s": round(time.time() - st["started_at"], 1),
                "peers_total": len(st["usage"]), "peers_connected": st["devices_connected"],
                "counters": {"refused": st["refused"], "disconnected": st["disconnected"],
                             "decoys_served": st["decoys_served"], **{f"drop_{k}": v for k, v in st["drops"].items()}},
                "directory": self.sync()}

    def peers(self) -> list[dict]:
        st = self.relay.status()
        connected = set(st["connected_devices"])
        return [{"public_key": k, "session": "established" if k in connected else "idle",
                 "path": "relayed" if k in connected else None, "bytes_received": u["bytes_in"],
                 "bytes_sent": u["bytes_out"], "messages_in": u["messages_in"], "messages_out": u["messages_out"]}
                for k, u in st["usage"].items()]

    def totals(self) -> dict[str, tuple[int, int]]:
        return {k: (u["bytes_in"], u["bytes_out"]) for k, u in self.relay.usage_totals().items()}

    def refused(self) -> int:
        r = self.relay
        decoys = r.server.server.decoys_served if r.server is not None else 0
        return r.refused + decoys

    def earnings(self) -> dict:
        r = self.relay
        usage = r.usage_totals()
        metered = sum(u["bytes_in"] for u in usage.values())
        billing = r.billing.status() if r.billing is not None else None
        price = billing["price_per_byte"] if billing else 0
        return {"role": "relay", "metered_bytes": metered, "price_per_byte": price,
                "estimated_earnings_base_units": metered * (price or 0), "billing": billing,
                "per_device": usage}

    def sync(self) -> dict:
        return dict(vars(self.relay.ds.status()))

    def relays(self) -> list[dict]:
        return []
