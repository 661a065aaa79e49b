"""RelayCore.budgets, the relay's payments gate (relay_billing sets it): every FORWARD spends its length from
the sender's and the destination's budget; at <= 0 FORWARDs from or to that device are dropped as UNPAID and
counted; LOCAL messages (receipts) always reach the relay; devices without a budget are not limited."""

from shadowmesh_client.relay import Dropped, DropReason, Forwarded, Local, RelayCore, encode_forward, encode_local

A, B, C = bytes([0xA1]) * 32, bytes([0xB2]) * 32, bytes([0xC3]) * 32


def frame(sender: bytes, n: int = 1000) -> bytes:
    return bytes([0x13, 0, 0, 0]) + (7).to_bytes(4, "big") + sender + bytes(24) + b"x" * n


def core() -> RelayCore:
    c = RelayCore()
    for key in (A, B, C):
        c.attach(key, object(), 0.0)
    return c


def test_forwarding_stops_when_the_budget_is_spent_and_receipts_still_arrive():
    c = core()
    msg = encode_forward(B, frame(A))
    c.budgets = {A: 2 * len(msg)}
    assert c.on_message(A, msg, 0) == Forwarded(B)
    assert c.on_message(A, msg, 0) == Forwarded(B)
    assert c.on_message(A, msg, 0) == Dropped(DropReason.UNPAID)
    assert c.drops[DropReason.UNPAID] == 1 and c.usage(A).bytes_in == 3 * len(msg)   # still counted
    assert isinstance(c.on_message(A, encode_local(b"\xfa\x01\x01" + bytes(200)), 0), Local)
    assert c.on_message(C, encode_forward(B, frame(C)), 0) == Forwarded(B)              # others unaffected
    c.budgets = {A: 10 * len(msg)}                                                       # caught up
    assert c.on_message(A, msg, 0) == Forwarded(B)


def test_traffic_to_a_device_out_of_budget_is_dropped_too():
    c = core()
    c.budgets = {B: 0}
    assert c.on_message(A, encode_forward(B, frame(A)), 0) == Dropped(DropReason.UNPAID)
    assert c.on_message(A, encode_forward(C, frame(A)), 0) == Forwarded(C)
