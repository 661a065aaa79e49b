"""The relay daemon with billing over a real anvil (deployed token), in-process: MemoryTransport,
MemoryRegistry (devices owned by the payer, the relay by its own account), devices signing with
rewards.DevicePayments and counting their own bytes as node/payments.py does (link bytes out + DELIVERs).

Covers: receipts acknowledged only after the ledger commit; the credit gate stops forwarding for a device
over its credit and resumes it when it catches up; lost-count reconciliation (OVER_COUNT + RELAY_COUNT)."""

from __future__ import annotations

import asyncio
import time

import pytest

from lab.directory import MemoryRegistry
from shadowmesh_client.chain import load_deployment
from shadowmesh_client.relay import EnvelopeType, encode_local
from shadowmesh_client.relay.billing import BillingSettings
from shadowmesh_client.relay.daemon import RelaySettings
from shadowmesh_client.rewards import DevicePayments, IssuerConfig
from shadowmesh_client.rewards.ledger import LEDGER_FILE
from shadowmesh_client.rewards.messages import AckMessage, CountMessage, RejectReason, decode, is_control
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
                           max_price_per_byte=PRICE)
        self.pay = DevicePayments(env.chain.domain, parties.payer, parties.payer.address, self.registered.device_id,
                                  cfg)
        self.pay.add_relay(self.lab.relay.identity.public_key, relay_address, time.time())
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
            elif is_control(env.inner):
                self.controls.append(decode(bytes(env.inner)))
                for _key, payload in self.pay.on_control(self.lab.relay.identity.public_key, bytes(env.inner),
                                                        time.time()):
                    await self.link.send(encode_local(payload))

    async def pay_up(self) -> AckMessage:
        """Sign a receipt for everything counted, send it, return the relay's ack."""
        self.count()
        await asyncio.sleep(0.02)
        out = self.outbox + [p for _k, p in self.pay.poll(time.time())]
        self.outbox = []
        assert out, "nothing to sign"
        acks = len([c for c in self.controls if isinstance(c, AckMessage)])
        for payload in out[-1:]:   # the latest cumulative receipt covers the earlier ones
            await self.link.send(encode_local(payload))
        while len([c for c in self.controls if isinstance(c, AckMessage)]) == acks:
            await self.pump(0.05)
        return [c for c in self.controls if isinstance(c, AckMessage)][-1]


async def _start(env, tmp_path, parties, n_devices=2, **billing):
    settings = RelaySettings(payments=BillingSettings(
        env.url, load_deployment(env.record_path), tmp_path, credit_bytes=CREDIT,
        escrow_refresh_seconds=0.2, **billing))
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
            assert ack.status is RejectReason.STORED and ack.cumulative_bytes == a.issuer().signed
            # the moment the ack is here, another connection to the ledger file sees the receipt
            other = open_ledger(chain_env, tmp_path / LEDGER_FILE, parties.relay.address)
            try:
                latest = other.latest(parties.payer.address, a.registered.device_id)
                assert latest is not None and latest.receipt.cumulative_bytes == ack.cumulative_bytes
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
