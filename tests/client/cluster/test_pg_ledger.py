"""PgReceiptLedger against a real, throwaway PostgreSQL: the same rules as the SQLite ledger, shared by
several members (concurrent counts are not lost, any member sees the latest receipt), durable commits."""

from __future__ import annotations

import threading

import pytest
from eth_account import Account

from shadowmesh_client.relay.cluster.ledger import PgReceiptLedger, redact
from shadowmesh_client.rewards import PaymentError, ReceiptLedger, ReceiptRejected
from shadowmesh_client.rewards.receipts import Receipt, ReceiptDomain, sign_receipt
from tests.client.cluster.postgres import throwaway_postgres

pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def pg_url():
    with throwaway_postgres() as server:
        yield server.url


@pytest.fixture
def setup(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as c:   # a clean database per test
        c.execute("DROP TABLE IF EXISTS channels, meta")
    return pg_url, _Parties()


class _Parties:
    """A fake chain/contract, relay address, payer key and device id (as tests/client/payments/helpers.py)."""

    DOMAIN = ReceiptDomain(31337, "0x" + "11" * 20)
    RELAY = "0x" + "22" * 20
    DEVICE_ID = bytes(range(32))
    PAYER = Account.from_key("0x" + "01" * 32)

    def receipt(self, cumulative: int):
        name = "price_per_byte" if "price_per_byte" in Receipt.__dataclass_fields__ else "max_price_per_byte"
        fields = {name: 0}
        return sign_receipt(self.DOMAIN, Receipt(self.PAYER.address, self.DEVICE_ID, self.RELAY, cumulative, **fields),
                            self.PAYER)


def _ledger(url, ph, **kw) -> PgReceiptLedger:
    return PgReceiptLedger.open(url, ph.DOMAIN, ph.RELAY, **kw)


def test_pg_ledger_is_a_receipt_ledger_with_the_same_public_methods():
    public = {n for n in dir(ReceiptLedger) if not n.startswith("_")}
    assert public <= set(dir(PgReceiptLedger)) and issubclass(PgReceiptLedger, ReceiptLedger)


def test_redact_hides_the_password():
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"


def test_two_members_share_counts_and_receipts(setup):
    url, ph = setup
    a, b = _ledger(url, ph), _ledger(url, ph)
    try:
        payer, device = ph.PAYER.address, ph.DEVICE_ID
        a.add_counted(payer, device, 600_000)
        assert b.add_counted(payer, device, 400_000) == 1_000_000     # member B adds to A's count
        signed = ph.receipt(900_000)
        assert a.accept(signed) == 900_000                           # stored (committed) by member A
        rec = b.channel(payer, device)                               # ... seen at once by member B
        assert rec.receipted == 900_000 and rec.counted == 1_000_000 and rec.latest == signed
        with pytest.raises(ReceiptRejected):
            b.accept(ph.receipt(800_000))                            # stale at any member
        b.set_paid(payer, device, 500_000)
        assert [r.paid for r in a.channels()] == [500_000]
    finally:
        a.close()
        b.close()


def test_concurrent_counts_from_members_are_not_lost(setup):
    url, ph = setup
    ledgers = [_ledger(url, ph) for _ in range(4)]

    def count(ledger):
        for _ in range(50):
            ledger.add_counted(ph.PAYER.address, ph.DEVICE_ID, 10)

    threads = [threading.Thread(target=count, args=(ledger,)) for ledger in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert ledgers[0].channel(ph.PAYER.address, ph.DEVICE_ID).counted == 4 * 50 * 10
    finally:
        for ledger in ledgers:
            ledger.close()


def test_a_database_of_another_relay_is_refused(setup):
    url, ph = setup
    _ledger(url, ph).close()
    with pytest.raises(PaymentError, match="belongs to relay"):
        PgReceiptLedger.open(url, ph.DOMAIN, Account.create().address)


def test_an_acknowledged_receipt_survives_a_database_crash(setup):
    """Commit before ack: once ``accept`` returned, a crash-like stop of PostgreSQL (``-m immediate``: no
    checkpoint) loses nothing. Its own server, since it is stopped."""
    _, ph = setup
    with throwaway_postgres() as server:
        ledger = _ledger(server.url, ph)
        ledger.add_counted(ph.PAYER.address, ph.DEVICE_ID, 10_000)
        assert ledger.accept(ph.receipt(8_000)) == 8_000
        ledger.close()
        server.crash_restart()
        again = _ledger(server.url, ph)
        try:
            assert again.channel(ph.PAYER.address, ph.DEVICE_ID).receipted == 8_000
        finally:
            again.close()
