"""Property: two sessions driven by a random interleaving of send, receive, loss, duplication,
reordering and clock jumps never deliver a packet twice or one that was not sent; every frame that
arrives for the first time, in its window and within the key's grace period, is delivered; and after
the storm the pair always recovers (a fresh packet each way gets through)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowmesh_client.errors import ProtocolError
from shadowmesh_client.protocol import Identity, NetworkBinding, ProtocolConfig, ReplayError, peek_header

from .conftest import T0, make_pair

CFG = ProtocolConfig(NetworkBinding(31337, "0x" + "42" * 20, "home"), rekey_after_messages=12,
                     reject_after_messages=24, rekey_after_seconds=3600.0, grace_seconds=120.0)
A, B = Identity.from_seed(b"\xa1" * 32), Identity.from_seed(b"\xb0" * 32)

op = st.one_of(
    st.tuples(st.just("send"), st.integers(0, 1), st.integers(1, 3)),
    st.tuples(st.just("deliver"), st.integers(0, 1), st.integers(0, 50)),
    st.tuples(st.just("duplicate"), st.integers(0, 1), st.integers(0, 50)),
    st.tuples(st.just("drop"), st.integers(0, 1), st.integers(0, 50)),
    st.tuples(st.just("tick"), st.sampled_from([0.01, 1.0, 5.0, 11.0, 200.0, 5000.0]), st.just(0)),
)


class Harness:
    def __init__(self):
        self.s = make_pair(A, B, CFG)
        self.now = T0
        self.flight = ([], [])  # frames travelling towards session 0, towards session 1: (frame, sent_at)
        self.opened: set[bytes] = set()
        self.sent = (set(), set())  # packets sent by session 0, by session 1
        self.got = ([], [])
        self.counter = 0

    def emit(self, frm: int, frames) -> None:
        kp = self.s[frm]._current  # white-box: remember which key sealed each frame, for the oracle
        for f in frames:
            self.flight[1 - frm].append((bytes(f), self.now, kp.send_key if kp is not None else None))

    def send(self, side: int, n: int) -> None:
        packets = []
        for _ in range(n):
            self.counter += 1
            packets.append(f"{side}:{self.counter}".encode())
        self.sent[side].update(packets)
        self.emit(side, self.s[side].send_packets(packets, self.now))

    def deliver(self, to: int, index: int) -> None:
        flight = self.flight[to]
        if not flight:
            return
        frame, sent_at, key = flight.pop(index % len(flight))
        session = self.s[to]
        first_time = frame not in self.opened
        kind = peek_header(frame).type.name
        is_data = kind == "DATA"
        try:
            r = session.open(frame, self.now)
        except ReplayError:
            assert not first_time, "a frame never opened before was called a replay"
            return
        except ProtocolError:
            # allowed only if the key it needs is gone or was never agreed (lost handshake, expiry)
            assert not (is_data and first_time and self._receiver_holds(session, key, frame)), (
                "a frame never seen before, under a key the receiver holds, inside the window, was refused")
            return
        if kind != "HANDSHAKE_INIT":  # an initiation may be ignored (no error) in a simultaneous start
            assert first_time, "a frame was opened twice"
        self.opened.add(frame)
        self.got[to].extend(r.packets)
        self.emit(to, r.outgoing)

    def _receiver_holds(self, session, key, frame) -> bool:
        """Oracle: the receiver still has ``key`` (current, next, or previous within grace) and the
        frame's sequence number is newer than that key's window floor."""
        seq = int.from_bytes(frame[4:8], "big")
        for kp in (session._current, session._next, session._previous):
            if kp is None or kp.recv_key != key:
                continue
            if kp.retired_at is not None and self.now - kp.retired_at > CFG.grace_seconds:
                continue
            if self.now - kp.created > CFG.reject_after_seconds + CFG.grace_seconds:
                continue
            return seq > kp.replay.highest - 2048
        return False

    def tick(self, dt: float) -> None:
        self.now += dt
        for side in (0, 1):
            due = self.s[side].next_timer_at()
            if due is not None and due <= self.now:
                self.emit(side, self.s[side].on_timer(self.now))

    def settle(self) -> None:
        """Deliver everything in order; when nothing is in flight, let the next timer within 10 s fire
        (handshake retries, keepalives, dead-peer re-handshakes); stop when the link is quiet."""
        for _ in range(200):
            while self.flight[0] or self.flight[1]:
                self.deliver(0 if self.flight[0] else 1, 0)
            dues = [d for d in (s.next_timer_at() for s in self.s) if d is not None and d <= self.now + 30]
            if not dues:
                return
            self.now = max(self.now, min(dues))
            self.tick(0.0)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=80))
def test_random_interleavings_deliver_at_most_once_and_recover(ops):
    h = Harness()
    for kind, x, y in ops:
        if kind == "send":
            h.send(x, y)
        elif kind == "deliver":
            h.deliver(x, y)
        elif kind == "duplicate" and h.flight[x]:
            h.flight[x].append(h.flight[x][y % len(h.flight[x])])  # same frame, same key
        elif kind == "drop" and h.flight[x]:
            h.flight[x].pop(y % len(h.flight[x]))
        elif kind == "tick":
            h.tick(x)
    for side in (0, 1):
        assert len(h.got[side]) == len(set(h.got[side])), "a packet was delivered twice"
        assert set(h.got[side]) <= h.sent[1 - side], "a packet nobody sent was delivered"
    # recovery: whatever happened, a fresh packet each way gets through once the link behaves
    for side in (0, 1):
        if h.s[side].state.name == "FAILED":
            h.s = tuple(s if i != side else make_pair(A, B, CFG)[side] for i, s in enumerate(h.s))
    h.settle()
    # (a sender may first have to notice that its key is dead, so, like TCP, it may send twice)
    for side in (0, 1):
        marker = f"final-{side}".encode()
        h.sent[side].add(marker)
        for _attempt in range(2):
            h.emit(side, h.s[side].send_packets([marker], h.now))
            h.settle()
            if marker in h.got[1 - side]:
                break
        assert marker in h.got[1 - side], f"session {side} did not recover"
    for side in (0, 1):
        assert len(h.got[side]) == len(set(h.got[side])), "a packet was delivered twice"
