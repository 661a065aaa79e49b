"""The relay daemon with billing over a real anvil (deployed token), in-process: MemoryTransport,
MemoryRegistry (devices owned by the payer, the relay by its own account), devices signing with
rewards.DevicePayments and counting their own bytes as node/payments.py does (link bytes out + DELIVERs).

Control messages travel sealed in the device-relay session (relay/control.py), as node/relays.py sends them.

Covers: receipts acknowledged only after the ledger commit; the credit gate stops forwarding for a device
over its credit and resumes it when it catches up; lost-count reconciliation (OVER_COUNT + RELAY_COUNT);
payments v2 (issue 10): the relay tells a device why it stopped carrying it (RELAY_NOTICE, issue 11 item
2), claims on its own when a payer asks to withdraw its reserve, and its loss to a payer who drains
everything is at most credit x price."""

from __future__ import annotations

import asyncio
import time

import pytest

from lab.directory import MemoryRegistry
from shadowmesh_client.chain import load_deployment
from shadowmesh_client.relay import EnvelopeType, encode_local
from shadowmesh_client.relay.billing import BillingSettings
from shadowmesh_client.relay.control import open_local, seal_controls
from shadowmesh_client.relay.daemon import RelaySettings
from shadowmesh_client.rewards import DevicePayments, IssuerConfig
from shadowmesh_client.rewards.ledger import LEDGER_FILE
from shadowmesh_client.rewards.messages import (
    AckMessage,
    CountMessage,
    NoticeMessage,
    NoticeReason,
    RejectReason,
    decode,
    is_control,
)
from tests.client.payments.helpers import open_ledger, setup_parties
from tests.client.relay.helpers import RELAY_URL, Device, RelayLab, no_gc_tuning, run_bounded, wait_for

PRICE = 10          # base units per byte
CREDIT = 400_000    # bytes


@pytest.fixture(autouse=True)
def _no_gc(monkeypatch):
    no_gc_tuning(monkeypatch)


class PayingDevice(Device):
    """A Device that pays: counts its bytes, signs receipts, handles the relay's control messages."""

    def start_paying(self, env, parties, relay_address: str, tolerance: int = 256 * 1024) -> None:
        cfg = IssuerConfig(every_bytes=10**12, every_seconds=0.01, tolerance_bytes=tolerance,
                           max_price_per_byte=10**12)
        self.pay = DevicePayments(env.chain.domain, parties.payer, parties.payer.address, self.registered.device_id,
                                  cfg)
        key = self.lab.relay.identity.public_key
        self.pay.add_relay(key, relay_address, time.time())
        # The session's price: relayPrice read on chain at connect (node/payments.py does the same).
        self.pay.start_session(key, env.token.functions.relayPrice(relay_address).call(),
                               env.token.functions.paidBytes(parties.payer.address, self.registered.device_id,
                                                             relay_address).call())
        self.delivered = []
        self.controls = []
        self._counted_out = 0
        self.outbox: list[bytes] = []   # receipts signed by on_usage, sent by pay_up

    def issuer(self):
        return self.pay.issuers[self.lab.relay.identity.public_key]

    def count(self, extra: int = 0) -> None:
        """Fold this device's billable bytes in (as NodePayments does): what it sent + DELIVERs."""
        n = self.link.bytes_out - self._counted_out + extra
        self._counted_out = self.link.bytes_out
        if n:
            self.outbox += [p for _k, p in self.pay.on_usage(self.lab.relay.identity.public_key, n, time.time())]

    async def pump(self, duration: float) -> None:
        """Read what the relay sends for ``duration`` seconds: DELIVERs counted, control messages handled."""
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        while (left := end - loop.time()) > 0:
            try:
                env = await self.recv(left)
            except TimeoutError:
                return
            if env.type is EnvelopeType.DELIVER:
                self.delivered.append(bytes(env.inner))
                self.outbox += [p for _k, p in self.pay.on_usage(self.lab.relay.identity.public_key,
                                                                 33 + len(env.inner), time.time())]
            elif env.type is EnvelopeType.LOCAL:
                opened = open_local(self.session, env.inner, time.time())   # sealed control messages
                for frame in opened.outgoing:
                    await self.link.send(encode_local(frame))
                for message in opened.controls:
                    if not is_control(message):
                        continue
                    self.controls.append(decode(message))
                    for _key, payload in self.pay.on_control(self.lab.relay.identity.public_key, message,
                                                            time.time()):
                        await self.send_control(payload)

    async def send_control(self, payload: bytes) -> None:
        for frame in seal_controls(self.session, [payload], time.time()):
            await self.link.send(encode_local(frame))

    async def pay_up(self) -> AckMessage:
        """Sign a receipt for everything counted, send it, return the relay's ack."""
        self.count()
        await asyncio.sleep(0.02)
        out = self.outbox + [p for _k, p in self.pay.poll(time.time())]
        self.outbox = []
        assert out, "nothing to sign"
        acks = len([c for c in self.controls if isinstance(c, AckMessage)])
        for payload in out[-1:]:   # the latest cumulative receipt covers the earlier ones
            await self.send_control(payload)
        while len([c for c in self.controls if isinstance(c, AckMessage)]) == acks:
            await self.pump(0.05)
        return [c for c in self.controls if isinstance(c, AckMessage)][-1]


async def _start(env, tmp_path, parties, n_devices=2, **billing):
    billing.setdefault("credit_bytes", CREDIT)
    billing.setdefault("message_slack", 61_000)   # the largest message these tests send
    settings = RelaySettings(accept_cleartext_control=False, payments=BillingSettings(
        env.url, load_deployment(env.record_path), tmp_path, escrow_refresh_seconds=0.2, watch_seconds=0.2,
        **billing))
    registry = MemoryRegistry(owner=bytes.fromhex(parties.relay.address[2:]))   # the relay: its own account
    relay = registry.register(relay=True, endpoint=RELAY_URL)
    registry.owner = bytes.fromhex(parties.payer.address[2:])                   # devices: owned by the payer
    lab = RelayLab(settings, registry=registry, relay=relay)
    devices = [PayingDevice(lab, lab.registry.register()) for _ in range(n_devices)]
    lab.registry.sync()
    await lab.start()
    for d in devices:
        await d.connect()
        d.start_paying(env, parties, parties.relay.address, **({"tolerance": billing["tolerance_bytes"]}
                                                              if "tolerance_bytes" in billing else {}))
    return lab, devices


def test_receipts_are_acknowledged_only_after_the_ledger_commit(chain_env, tmp_path):
    parties = setup_parties(chain_env, deposit=10**12, price=PRICE)

    async def main():
        lab, (a, b) = await _start(chain_env, tmp_path, parties)
        try:
            for _ in range(5):
                await a.forward(b, 10_000)
            await b.pump(0.3)
            await lab.daemon.billing.settle([])          # let the relay count what it relayed
            await asyncio.sleep(SETTLE)
            ack = await a.pay_up()
            # (under load another receipt may already be signed: every_seconds is 0.01 here)
            assert ack.status is RejectReason.STORED and 0 < ack.cumulative_bytes <= a.issuer().signed
            # the moment the ack is here, another connection to the ledger file sees the receipt
            other = open_ledger(chain_env, tmp_path / LEDGER_FILE, parties.relay.address)
            try:
                latest = other.latest(parties.payer.address, a.registered.device_id)
                assert latest is not None and latest.receipt.cumulative_bytes >= ack.cumulative_bytes
            finally:
                other.close()
            st = lab.daemon.status()["payments"]
            assert st["receipts_stored"] >= 1 and st["price_per_byte"] == PRICE
        finally:
            await lab.shutdown()
        assert lab.source.closed and lab.daemon.billing.ledger is not None

    run_bounded(main(), 60)


SETTLE = 0.6   # seconds: a bit more than SETTLE_SECONDS


def test_credit_gate_stops_a_device_over_its_credit_and_resumes_it_when_it_pays(chain_env, tmp_path):
    parties = setup_parties(chain_env, deposit=10**12, price=PRICE)

    async def main():
        lab, (a, b) = await _start(chain_env, tmp_path, parties)
        try:
            await asyncio.sleep(SETTLE)                  # budgets set for both devices
            for _ in range(12):                          # 12 x 60 KB > CREDIT: cut off within one message
                await a.forward(b, 60_000)
            await b.pump(0.5)
            assert 0 < len(b.delivered) < 12
            await wait_for(lambda: lab.daemon.drops.get("unpaid"), 3, "unpaid drops counted")
            st = lab.daemon.status()["payments"]
            assert a.key.hex() in st["blocked"] and st["cutoffs"] >= 1
            got = len(b.delivered)
            await a.forward(b, 1000)
            await b.pump(0.2)
            assert len(b.delivered) == got               # still stopped
            for d in (a, b):                              # both catch up: receipts for all they counted
                ack = await d.pay_up()
                assert ack.status is RejectReason.STORED
            await asyncio.sleep(SETTLE)
            await a.forward(b, 1000)
            await b.pump(0.3)
            assert len(b.delivered) == got + 1           # resumed
            assert a.key.hex() not in lab.daemon.status()["payments"]["blocked"]
        finally:
            await lab.shutdown()

    run_bounded(main(), 60)


def test_lost_count_is_reconciled_with_relay_count(chain_env, tmp_path):
    parties = setup_parties(chain_env, deposit=10**12, price=PRICE)

    async def main():
        lab, (a, b) = await _start(chain_env, tmp_path, parties, tolerance_bytes=1000)
        try:
            await a.forward(b, 20_000)
            await b.pump(0.2)
            a.count(extra=50_000)                        # the device counted bytes the relay never saw
            await a.pay_up()
            acks = [c for c in a.controls if isinstance(c, AckMessage)]
            assert acks[0].status is RejectReason.OVER_COUNT and acks[0].relay_counted < a.issuer().highest
            await wait_for(lambda: any(isinstance(c, CountMessage) for c in a.controls), 3, "RELAY_COUNT")
            while not any(isinstance(c, AckMessage) and c.status is RejectReason.STORED for c in a.controls):
                await a.pump(0.05)                       # the device wrote off and resent a receipt
            assert a.issuer().written_off > 0
            st = lab.daemon.status()["payments"]
            assert st["count_answers"] == 1 and st["receipts_stored"] >= 1 and st["receipts_rejected"] == 1
        finally:
            await lab.shutdown()

    run_bounded(main(), 60)


def _all_controls(devices, kind):
    return [c for d in devices for c in d.controls if isinstance(c, kind)]


def test_draining_payer_costs_the_relay_at_most_its_credit_and_the_device_is_told_why(chain_env, tmp_path):
    """Attacks 3 and 5 (issue 10) and issue 11 item 2. The payer's reserve guarantees 300 000 bytes; its two
    devices run into that bound and the relay stops them with a sealed RELAY_NOTICE saying why. The payer then
    asks to withdraw the whole reserve: the relay sees ReserveWithdrawalRequested and claims at once, before
    the notice ends, so the payer's later withdrawal (whatever its tip) takes only what the relay is not owed.
    The relay's loss (bytes it carried minus bytes paid) stays within its credit."""
    from shadowmesh_client.rewards import onchain
    from tests.client.payments.conftest import WITHDRAWAL_DELAY

    reserve = 300_000 * PRICE
    parties = setup_parties(chain_env, deposit=reserve, price=PRICE)

    async def main():
        lab, (a, b) = await _start(chain_env, tmp_path, parties, claim_account=parties.relay, claim_threshold=1.0)
        try:
            await asyncio.sleep(SETTLE)
            for _ in range(12):
                await a.forward(b, 30_000)
                await b.pump(0.05)
                for d in (a, b):
                    await d.pay_up()
                await asyncio.sleep(SETTLE)
                if _all_controls((a, b), NoticeMessage):
                    break
            await wait_for(lambda: _all_controls((a, b), NoticeMessage) or None, 3, "a RELAY_NOTICE")
            for d in (a, b):
                await d.pump(0.3)
            notice = _all_controls((a, b), NoticeMessage)[0]
            assert notice.reason is NoticeReason.RESERVE_EXHAUSTED and notice.guaranteed == reserve
            assert notice.price_per_byte == PRICE and reserve - notice.owed < 2 * 61_000 * PRICE
            assert "deposit --relay" in notice.advice
            st = lab.daemon.status()["payments"]
            assert st["notices_sent"] >= 1 and {a.key.hex(), b.key.hex()} & set(st["blocked"])
            assert st["claims"] == [] and st["auto_claim"]      # nothing claimed yet (threshold 1.0)

            # The payer drains: request a withdrawal of everything. The relay claims on the event.
            onchain.withdraw(chain_env.chain, parties.payer, reserve, parties.relay.address)
            await wait_for(lambda: lab.daemon.status()["payments"]["claims"], 10, "an automatic claim")
            claim = lab.daemon.status()["payments"]["claims"][0]
            assert claim["reasons"] == ["reserve withdrawal requested"] and claim["skipped_on_chain"] == []
            total = claim["total_base"]
        finally:
            await lab.shutdown()
        ledger = open_ledger(chain_env, tmp_path / LEDGER_FILE, parties.relay.address)
        try:
            recs = ledger.payer_channels(parties.payer.address)
            carried, paid = sum(r.counted for r in recs), sum(r.paid for r in recs)
            receipted = sum(r.receipted for r in recs)
        finally:
            ledger.close()
        assert paid == receipted and total == paid * PRICE          # every acknowledged byte, in full
        assert a.issuer().acked + b.issuer().acked <= receipted   # acks the devices saw: all paid
        chain_env.increase_time(WITHDRAWAL_DELAY)
        back = onchain.withdraw(chain_env.chain, parties.payer, None, parties.relay.address)
        assert back["amount_base"] == reserve - paid * PRICE
        assert 0 <= carried - paid <= CREDIT                         # the relay's loss <= credit x price
        print(f"\nrelay carried {carried:,} bytes for the payer, was paid for {paid:,}: loss "
              f"{(carried - paid) * PRICE} base units <= credit x price {CREDIT * PRICE}")

    run_bounded(main(), 90)
