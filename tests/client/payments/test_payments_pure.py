"""Pure logic of payments: the device's issuer, the credit policy, control messages, and the device <->
relay hooks wired together in memory (real SQLite ledger in a temp dir; no chain, no sockets)."""

from __future__ import annotations

import pytest
from eth_account import Account

from shadowmesh_client.rewards import (
    CreditConfig,
    CreditPolicy,
    DevicePayments,
    IssuerConfig,
    PayerFigures,
    ReceiptIssuer,
    ReceiptLedger,
    RelayPayments,
)
from shadowmesh_client.rewards.errors import ControlMessageError, PaymentConfigError, ReceiptError
from shadowmesh_client.rewards.messages import (
    AckMessage,
    Kind,
    ReceiptMessage,
    RejectReason,
    decode,
    is_control,
)
from shadowmesh_client.rewards.receipts import Receipt, SignedReceipt, sign_receipt
from tests.client.payments.helpers import DEVICE, DOMAIN, KEY, RELAY


def issuer(price: int = 5, **cfg) -> ReceiptIssuer:
    cfg = {"every_bytes": 1000, "every_seconds": 10.0, "tolerance_bytes": 50, "max_price_per_byte": 5, **cfg}
    i = ReceiptIssuer(IssuerConfig(**cfg), DOMAIN, KEY, KEY.address, DEVICE, RELAY)
    i.start_session(price)   # the relay's advertised price, read at connect
    return i


# ------------------------------------------------------------------ issuer


def test_issuer_signs_every_n_bytes_for_exactly_what_it_counted():
    i = issuer()
    i.record(999)
    assert i.poll(1.0) is None
    i.record(1)
    s = i.poll(1.0)
    assert s.receipt.cumulative_bytes == 1000 and s.recover(DOMAIN) == KEY.address
    assert s.receipt.price_per_byte == 5 and s.receipt.relay == RELAY
    assert i.poll(1.0) is None  # nothing new


def test_issuer_signs_after_t_seconds_only_if_there_is_something_new():
    i = issuer()
    assert i.poll(100.0) is None
    i.record(10)
    assert i.poll(9.0) is None
    assert i.poll(10.0).receipt.cumulative_bytes == 10
    assert i.poll(50.0) is None


def test_issuer_follows_relay_count_only_within_tolerance():
    i = issuer()
    i.record(1000)
    i.poll(0.0)
    i.on_ack(1000, relay_counted=10**9)  # a greedy relay claims it carried far more
    i.record(1000)
    s = i.poll(0.0)
    assert s.receipt.cumulative_bytes == 2000 + 50  # own count + tolerance, never more
    i.on_ack(2050, relay_counted=2030)
    i.record(1100)
    assert i.poll(0.0).receipt.cumulative_bytes == 3100  # relay figure below own count: own count
    assert i.signed <= i.limit()


def test_issuer_adopts_only_its_own_stored_receipt():
    i = issuer()
    mine = sign_receipt(DOMAIN, Receipt(KEY.address, DEVICE, RELAY, 5000, 5), KEY)
    assert i.adopt(mine) and i.counted == 5000 and i.signed == 5000
    i.record(1000)
    assert i.poll(0.0).receipt.cumulative_bytes == 6000
    stranger = Account.create()
    forged = sign_receipt(DOMAIN, Receipt(KEY.address, DEVICE, RELAY, 10**9, 5), stranger)
    with pytest.raises(ReceiptError, match="not signed by this device"):
        i.adopt(forged)
    with pytest.raises(ReceiptError, match="another channel"):
        i.adopt(sign_receipt(DOMAIN, Receipt(KEY.address, DEVICE, "0x" + "33" * 20, 10, 5), KEY))
    assert i.counted == 6000


@pytest.mark.parametrize("bad", [{"every_bytes": 0}, {"every_seconds": 0}, {"tolerance_bytes": -1},
                                 {"max_price_per_byte": 0}])
def test_issuer_config_errors_name_the_setting(bad):
    with pytest.raises(PaymentConfigError, match="payments."):
        IssuerConfig(**bad)


# ------------------------------------------------------------------ credit


def test_credit_cuts_off_past_credit_and_resumes_below_resume_threshold():
    policy = CreditPolicy(CreditConfig(credit_bytes=1000, resume_bytes=400))
    fig = PayerFigures(guaranteed=10**6, owed=0, unreceipted=1000, price=1)
    assert policy.decide("p", fig).allowed
    fig.unreceipted = 1001
    assert policy.decide("p", fig).reason == "credit exceeded"
    fig.unreceipted = 501  # caught up partly: 501 unreceipted > resume threshold 400
    assert not policy.decide("p", fig).allowed
    fig.unreceipted = 400
    assert policy.decide("p", fig).allowed


def test_credit_is_bounded_by_what_the_reserve_guarantees():
    policy = CreditPolicy(CreditConfig(credit_bytes=1000))
    fig = PayerFigures(guaranteed=100 * 3, owed=100 * 3, unreceipted=0, price=3)
    assert policy.decide("p", fig).reason == "reserve exhausted"  # nothing left for one more byte
    fig.guaranteed += 3
    d = policy.decide("p", fig)
    assert d.allowed and d.budget == 1                             # exactly one byte of room
    fig.unreceipted = 1                                            # ... now used: unreceipted bytes count too
    assert policy.decide("p", fig).reason == "reserve exhausted"
    fig.guaranteed = 10**9                                          # room is the credit, not the reserve
    assert policy.decide("p", fig).budget == 999


def test_issuer_signs_the_session_price_never_a_higher_one():
    i = issuer(price=2, max_price_per_byte=10)
    i.record(1000)
    assert i.poll(0.0).receipt.price_per_byte == 2
    i.end_session()
    i.record(1000)
    assert i.poll(20.0) is None                                    # between sessions: nothing signed
    assert not i.start_session(11) and i.refused_price == 11       # above the cap: refused, nothing signed
    assert i.poll(30.0) is None
    assert i.start_session(7, paid=0)                              # a rise with unpaid receipts at 2 ...
    assert i.poll(40.0).receipt.price_per_byte == 2                # ... keeps the old, lower price
    assert i.start_session(7, paid=2000)                           # once the chain paid them: the new one
    i.record(1000)
    assert i.poll(50.0).receipt.price_per_byte == 7
    assert i.start_session(3, paid=3000) and (i.record(10) or i.poll(60.0)).receipt.price_per_byte == 3


# ------------------------------------------------------------------ control messages


def test_control_messages_round_trip_and_pinned_bytes():
    s = sign_receipt(DOMAIN, Receipt(KEY.address, DEVICE, RELAY, 123456, 5), KEY)
    wire = ReceiptMessage(s).encode()
    assert len(wire) == 203 and wire[:3] == b"\xfa\x01\x01" and is_control(wire)
    assert wire[3:23] == bytes.fromhex(KEY.address[2:]) and wire[23:55] == DEVICE
    assert wire[75:107] == (123456).to_bytes(32, "big")
    back = decode(wire)
    assert back.signed == s and back.kind is Kind.RECEIPT
    ack = AckMessage(KEY.address, DEVICE, 123456, 200000, RejectReason.STALE)
    wire = ack.encode()
    assert len(wire) == 96 and wire[:3] == b"\xfa\x01\x02" and wire[-1] == 3
    assert decode(wire) == ack
    state = ReceiptMessage(s, Kind.RECEIPT_STATE).encode()
    assert state[2] == 3 and decode(state).kind is Kind.RECEIPT_STATE


@pytest.mark.parametrize("wire", [b"", b"\xfa", b"\xfa\x02\x01" + bytes(200), b"\xfa\x01\x09", b"\xfb\x01\x01",
                                  b"\xfa\x01\x01" + bytes(199), b"\xfa\x01\x02" + bytes(94),
                                  b"\xfa\x01\x02" + bytes(92) + b"\x63"])
def test_control_message_errors(wire):
    with pytest.raises(ControlMessageError):
        decode(wire)


def test_protocol_frames_are_not_control_messages():
    assert not is_control(bytes([0x11]) + bytes(63))


# ------------------------------------------------------------------ hooks wired together


def test_device_and_relay_hooks_exchange_receipts_and_credit_resumes(tmp_path):
    device_key, relay_key = b"D" * 32, b"R" * 32
    ledger = ReceiptLedger(tmp_path / "r.sqlite", DOMAIN, RELAY, tolerance_bytes=100, price_per_byte=5)
    relay = RelayPayments(ledger, CreditPolicy(CreditConfig(credit_bytes=3000, resume_bytes=1000)),
                          lambda k: (KEY.address, DEVICE) if k == device_key else None, lambda payer: 10**12,
                          lambda *a: 0, 5)
    device = DevicePayments(DOMAIN, KEY, KEY.address, DEVICE,
                            IssuerConfig(every_bytes=2000, every_seconds=60, tolerance_bytes=100, max_price_per_byte=5))
    device.add_relay(relay_key, RELAY)
    device.start_session(relay_key, 5)

    def traffic(n, now):
        relay.on_usage(device_key, n, now)
        out = device.on_usage(relay_key, n, now)
        for _, payload in out:
            for ack in relay.on_control(device_key, payload, now):
                device.on_control(relay_key, ack, now)
        return out

    assert traffic(1500, 1.0) == []
    assert relay.allowed(device_key, 1.0)
    assert len(traffic(1500, 2.0)) == 1  # 3000 >= every 2000: signed and acked
    assert ledger.latest(KEY.address, DEVICE).receipt.cumulative_bytes == 3000
    assert device.issuers[relay_key].acked == 3000

    # The device stops signing (e.g. a broken or malicious client): cut off past the credit.
    relay.on_usage(device_key, 3001, 3.0)
    assert relay.decision(device_key, 3.0).reason == "credit exceeded"
    # It catches up: one receipt for what it counted brings it back.
    device.issuers[relay_key].record(3001)
    for _, payload in device.poll(100.0):
        relay.on_control(device_key, payload, 100.0)
    assert relay.allowed(device_key, 100.0)

    # A restarted device resumes from the relay's stored receipt, which it verifies is its own.
    fresh = DevicePayments(DOMAIN, KEY, KEY.address, DEVICE, device.config)
    fresh.add_relay(relay_key, RELAY)
    fresh.start_session(relay_key, 5)
    for payload in relay.on_connect(device_key):
        fresh.on_control(relay_key, payload, 0.0)
    assert fresh.issuers[relay_key].signed == 6001

    # A device may not send receipts for another payer/device.
    other = sign_receipt(DOMAIN, Receipt(KEY.address, bytes(32), RELAY, 10, 5), KEY)
    ack = decode(relay.on_control(device_key, ReceiptMessage(other).encode(), 0.0)[0])
    assert ack.status is RejectReason.UNKNOWN_DEVICE
    assert not relay.allowed(b"?" * 32, 0.0)


def test_signed_receipt_rejects_bad_signature_parts():
    rc = Receipt(KEY.address, DEVICE, RELAY, 1, 1)
    with pytest.raises(ReceiptError):
        SignedReceipt(rc, b"\x00" * 31, b"\x00" * 32)
    with pytest.raises(ReceiptError, match="not a valid secp256k1"):
        SignedReceipt(rc, b"\x00" * 32, b"\x00" * 32).recover(DOMAIN)
    with pytest.raises(ReceiptError, match="device id"):
        Receipt(KEY.address, b"short", RELAY, 1, 1)


def test_relay_does_not_ack_when_it_cannot_check_the_signer(tmp_path):
    from shadowmesh_client.rewards import SignerCache

    def chain_down(payer, signer, device_id):
        raise ConnectionError("connection refused")

    hot = Account.create()
    ledger = ReceiptLedger(tmp_path / "r.sqlite", DOMAIN, RELAY, SignerCache(chain_down), price_per_byte=5)
    ledger.add_counted(KEY.address, DEVICE, 100)
    relay = RelayPayments(ledger, CreditPolicy(CreditConfig()), lambda k: (KEY.address, DEVICE), lambda p: 10**9,
                          lambda *a: 0, 5)
    by_hot = sign_receipt(DOMAIN, Receipt(KEY.address, DEVICE, RELAY, 100, 5), hot)
    assert relay.on_control(b"D" * 32, ReceiptMessage(by_hot).encode(), 0.0) == []
    assert ledger.latest(KEY.address, DEVICE) is None
    by_payer = sign_receipt(DOMAIN, Receipt(KEY.address, DEVICE, RELAY, 100, 5), KEY)  # needs no lookup
    assert decode(relay.on_control(b"D" * 32, ReceiptMessage(by_payer).encode(), 0.0)[0]).status is RejectReason.STORED


def test_relay_notice_round_trips_and_the_device_shows_it(tmp_path, caplog):
    from shadowmesh_client.rewards.messages import NoticeMessage, NoticeReason

    n = NoticeMessage(NoticeReason.RESERVE_EXHAUSTED, 7, 10**18, 5 * 10**17)
    wire = n.encode()
    assert len(wire) == 100 and wire[:3] == b"\xfa\x01\x05" and decode(wire) == n
    device = DevicePayments(DOMAIN, KEY, KEY.address, DEVICE, IssuerConfig())
    device.add_relay(b"R" * 32, RELAY)
    with caplog.at_level("WARNING"):
        assert device.on_control(b"R" * 32, wire, 0.0) == []
    assert device.notices[b"R" * 32] == n
    line = next(r for r in caplog.records if "stopped carrying" in r.getMessage()).getMessage()
    assert "reserve exhausted" in line and f"deposit --relay {RELAY}" in line   # the reason and what to do


def test_sybil_devices_of_one_payer_share_one_credit(tmp_path):
    """Attack 7: a dust reserve and N devices of one payer get ONE credit between them, not N."""
    keys = [bytes([i]) * 32 for i in range(1, 6)]
    devices = {k: (KEY.address, bytes([i]) * 32) for i, k in enumerate(keys, 1)}
    ledger = ReceiptLedger(tmp_path / "r.sqlite", DOMAIN, RELAY, price_per_byte=1)
    relay = RelayPayments(ledger, CreditPolicy(CreditConfig(credit_bytes=10_000)), devices.get,
                          lambda payer: 10**12, lambda *a: 0, 1)
    grants = relay.budgets(keys, 0.0)
    assert sum(g.budget for g in grants.values()) <= 10_000          # 5 devices, one credit
    for k in keys[:2]:
        relay.on_usage(k, 4_000, 0.0)                                  # two devices used 8 000 of it
    grants = relay.budgets(keys, 0.0)
    assert sum(g.budget for g in grants.values()) <= 2_000
    relay.on_usage(keys[2], 2_001, 0.0)                                # the third one passes it: all stop
    assert all(g.budget == 0 and g.reason == "credit exceeded" for g in relay.budgets(keys, 0.0).values())
    dust = RelayPayments(ledger, CreditPolicy(CreditConfig(credit_bytes=10**9)), devices.get,
                         lambda payer: 5, lambda *a: 0, 1)
    assert all(g.reason == "reserve exhausted" for g in dust.budgets(keys, 0.0).values())   # 5 base units
