"""A relay that lost part of its own count (killed before it persisted its usage, or a link that died with
data it never received) and an honest device converge in the device's favour instead of the device being
cut off forever (docs/payments.md "Lost counts"). The device's hooks and the relay's hooks over a real
SQLite ledger, driven against each other in memory; no chain, no sockets."""

from __future__ import annotations

import pytest

from shadowmesh_client.rewards import (
    CreditConfig,
    CreditPolicy,
    DevicePayments,
    IssuerConfig,
    ReceiptIssuer,
    ReceiptLedger,
    RelayPayments,
)
from shadowmesh_client.rewards.errors import ControlMessageError
from shadowmesh_client.rewards.messages import AckMessage, RejectReason, decode
from shadowmesh_client.rewards.receipts import Receipt, sign_receipt
from tests.client.payments.helpers import DEVICE, DOMAIN, KEY, RELAY

DEV_KEY, RELAY_KEY = b"D" * 32, b"R" * 32
TOL = 1000
EVERY = 10_000
CREDIT = 30_000


class Pair:
    """A device and a relay exchanging receipts; ``lose(n)``: bytes the device counts, the relay never does."""

    def __init__(self, tmp_path, *, relay_tolerance: int = TOL) -> None:
        self.ledger = ReceiptLedger(tmp_path / "r.sqlite", DOMAIN, RELAY, tolerance_bytes=relay_tolerance,
                                    price_per_byte=5)
        self.relay = RelayPayments(self.ledger, CreditPolicy(CreditConfig(credit_bytes=CREDIT)),
                                   lambda k: (KEY.address, DEVICE) if k == DEV_KEY else None, lambda p: 10**15,
                                   lambda *a: 0, 5)
        self.device = self.new_device()
        self.raw = 0        # every byte the device counted in this process
        self.now = 0.0
        self.acks: list[AckMessage] = []

    def new_device(self) -> DevicePayments:
        d = DevicePayments(DOMAIN, KEY, KEY.address, DEVICE,
                           IssuerConfig(every_bytes=EVERY, every_seconds=60, tolerance_bytes=TOL, max_price_per_byte=5))
        d.add_relay(RELAY_KEY, RELAY)
        d.start_session(RELAY_KEY, 5)     # the relay's advertised price, read at connect
        return d

    @property
    def issuer(self) -> ReceiptIssuer:
        return self.device.issuers[RELAY_KEY]

    def deliver(self, to_relay) -> None:
        """Receipts to the relay; its answers back to the device (and their answers, until quiet)."""
        while to_relay:
            for _, payload in to_relay:   # the device's guarantee: never above its own count + tolerance
                assert decode(payload).signed.receipt.cumulative_bytes <= self.raw + TOL
            replies = [r for _, p in to_relay for r in self.relay.on_control(DEV_KEY, p, self.now)]
            to_relay = []
            for r in replies:
                msg = decode(r)
                if isinstance(msg, AckMessage):
                    self.acks.append(msg)
                to_relay += self.device.on_control(RELAY_KEY, r, self.now)

    def traffic(self, n: int, *, lost: int = 0) -> None:
        self.now += 0.1
        self.raw += n + lost
        self.relay.on_usage(DEV_KEY, n, self.now)
        self.deliver(self.device.on_usage(RELAY_KEY, n + lost, self.now))

    @property
    def channel(self):
        return self.ledger.channel(KEY.address, DEVICE)


def test_device_is_not_cut_off_after_the_relay_lost_part_of_its_count(tmp_path):
    p = Pair(tmp_path)
    for _ in range(4):
        p.traffic(5000)
    assert p.channel.receipted == 20_000
    p.traffic(3000, lost=50_000)          # e.g. the relay was killed before it persisted 50 kB of usage
    for _ in range(40):                   # 160 kB afterwards, > 5 x the relay's credit
        p.traffic(4000)
        assert p.relay.allowed(DEV_KEY, p.now), p.relay.decision(DEV_KEY, p.now)
    ch = p.channel
    assert ch.counted == 183_000 and ch.counted - ch.receipted < EVERY + TOL   # the relay is paid what it counted
    assert p.issuer.written_off == 50_000
    assert [a.status for a in p.acks].count(RejectReason.OVER_COUNT) == 1     # converged at the first rejection


def test_loss_reported_by_several_receipts_in_flight_is_written_off_once(tmp_path):
    p = Pair(tmp_path)
    p.traffic(EVERY)
    first = p.device.on_usage(RELAY_KEY, 15_000, 1.0)   # the relay receives only 4000 of these: 11000 lost
    p.relay.on_usage(DEV_KEY, 4000, 1.0)
    answers = [r for _, m in first for r in p.relay.on_control(DEV_KEY, m, 1.0)]
    second = p.device.on_usage(RELAY_KEY, 10_000, 1.0)  # signed before the first one's answers arrive
    p.relay.on_usage(DEV_KEY, 10_000, 1.0)
    answers += [r for _, m in second for r in p.relay.on_control(DEV_KEY, m, 1.0)]
    assert len(first) == len(second) == 1
    assert [decode(a).status for a in answers if isinstance(decode(a), AckMessage)] == [RejectReason.OVER_COUNT] * 2
    resent = [m for a in answers for m in p.device.on_control(RELAY_KEY, a, 1.0)]
    # Both rejections report the same 11000 missing bytes: written off once, not once per rejected receipt.
    assert p.issuer.written_off == 11_000 and p.issuer.counted == 35_000 - 11_000
    assert len(resent) == 1
    p.raw = 35_000
    p.deliver(resent)
    assert p.channel.receipted == p.channel.counted == 24_000


def test_relay_claiming_more_than_the_device_counted_is_never_signed(tmp_path):
    p = Pair(tmp_path)
    p.traffic(5000)
    i = p.issuer
    assert i.on_relay_count(5000, 5000, 10**9) == 0          # "I counted more": nothing written off or raised
    assert i.on_relay_count(4321, 0, 0) == 0                 # an answer to a receipt we never signed
    p.relay.on_usage(DEV_KEY, 10**9, 1.0)                    # the relay counts far more than it carried
    p.traffic(EVERY)                                         # signed for 15000; the ack says 10**9 + 15000
    p.traffic(EVERY)
    assert p.channel.receipted == 25_000 + TOL == p.raw + TOL  # rounded up within the tolerance, no further
    assert p.issuer.counted == p.raw


def test_relay_reporting_no_count_cannot_push_the_device_below_what_it_acknowledged(tmp_path):
    p = Pair(tmp_path)
    p.traffic(12_000)
    assert p.issuer.acked == 12_000
    p.device.on_usage(RELAY_KEY, 15_000, 1.0)
    rejected = p.issuer.signed
    assert rejected == 27_000
    assert p.issuer.on_relay_count(rejected, 12_000, 0) == 15_000  # floor: the stored 12000
    assert p.issuer.counted == p.issuer.acked == 12_000
    assert p.issuer.on_relay_count(rejected, 12_000, 0) == 0       # the same answer again: ignored


def test_relay_with_a_smaller_tolerance_than_the_device_still_converges(tmp_path):
    p = Pair(tmp_path, relay_tolerance=0)
    p.traffic(EVERY)
    p.traffic(100, lost=TOL // 2)         # within the device's tolerance, above the relay's
    for _ in range(10):
        p.traffic(4000)
    assert p.relay.allowed(DEV_KEY, p.now)
    assert p.channel.counted - p.channel.receipted < EVERY


def test_restarted_device_resumes_on_the_relays_scale_after_a_write_off(tmp_path):
    p = Pair(tmp_path)
    p.traffic(EVERY)
    p.traffic(EVERY, lost=20_000)
    assert p.issuer.written_off == 20_000
    # The device restarts: it adopts the relay's stored receipt (its own signature) as its baseline, which is
    # already on the relay's scale: no new write-off, no rejection.
    p.device = p.new_device()
    for payload in p.relay.on_connect(DEV_KEY):
        p.device.on_control(RELAY_KEY, payload, p.now)
    assert p.issuer.counted == p.issuer.signed == p.channel.receipted == 20_000
    p.raw = 20_000                        # this process's count: the baseline it proved it signed, then its own
    rejected_before = [a.status for a in p.acks].count(RejectReason.OVER_COUNT)
    for _ in range(10):
        p.traffic(4000)
    assert [a.status for a in p.acks].count(RejectReason.OVER_COUNT) == rejected_before
    assert p.issuer.written_off == 0 and p.channel.counted == 60_000
    assert p.channel.counted - p.channel.receipted < EVERY


def test_relay_count_message_round_trip_and_pinned_bytes():
    from shadowmesh_client.rewards.messages import CountMessage, Kind

    m = CountMessage(KEY.address, DEVICE, 70_000, 20_000, 50_123)
    wire = m.encode()
    assert len(wire) == 151 and wire[:3] == bytes([0xFA, 0x01, Kind.RELAY_COUNT]) == b"\xfa\x01\x04"
    assert wire[55:87] == (70_000).to_bytes(32, "big") and wire[-32:] == (50_123).to_bytes(32, "big")
    assert decode(wire) == m
    for bad in (wire[:-1], wire + b"\x00"):
        with pytest.raises(ControlMessageError, match="RELAY_COUNT"):
            decode(bad)


def test_relay_count_for_another_channel_is_ignored():
    from shadowmesh_client.rewards.messages import CountMessage

    d = DevicePayments(DOMAIN, KEY, KEY.address, DEVICE, IssuerConfig(every_bytes=100, tolerance_bytes=0))
    d.add_relay(RELAY_KEY, RELAY)
    d.on_usage(RELAY_KEY, 500, 0.0)
    other = CountMessage(KEY.address, bytes(32), 500, 0, 0).encode()
    assert d.on_control(RELAY_KEY, other, 0.0) == [] and d.issuers[RELAY_KEY].counted == 500
    mine = sign_receipt(DOMAIN, Receipt(KEY.address, DEVICE, RELAY, 1, 5), KEY)
    assert mine.receipt.cumulative_bytes == 1
