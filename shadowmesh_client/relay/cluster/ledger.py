"""PgReceiptLedger: the receipt ledger of a relay CLUSTER in one shared PostgreSQL database (issue 13).

A device's cumulative receipts may land on any member, so the members keep ONE ledger: any member can
claim, a claim uses each device's latest receipt, and a device's credit (its counted minus receipted
bytes, rewards/credit.py) is computed from figures every member adds to. A single relay keeps the
embedded SQLite ledger (rewards/ledger.py ``ReceiptLedger``); ``ClusterSettings.ledger_url`` selects
this one (relay/cluster/billing.py).

Same class, other storage: ``PgReceiptLedger`` IS a ``ReceiptLedger`` (every check, every public method:
``channel``, ``channels``, ``payer_channels``, ``latest``, ``add_counted``, ``set_paid``, ``accept``,
``close``, and the attributes ``path``, ``domain``, ``relay``, ``price_per_byte``...) whose SQLite
connection is replaced by ``_PgConnection``, a thin adapter speaking the subset of the sqlite3 API the
ledger uses. So the ledger's rules live in one place and this one follows them as they change.

Semantics kept from SQLite:
  * ``BEGIN IMMEDIATE`` (SQLite: one writer at a time) becomes ``BEGIN`` + a transaction-scoped advisory
    lock (``pg_advisory_xact_lock(LEDGER_LOCK)``): the ledger's read-modify-write transactions
    (``add_counted``, ``accept``, ``set_paid``) of all members are serialised, so no update is lost;
  * durability: ``accept`` returns after COMMIT, and PostgreSQL's default ``synchronous_commit=on``
    flushes the WAL before COMMIT returns: an ack sent after ``accept`` survives the member, the database
    server process and the machine (fsync on). Do not run the ledger's database with
    ``synchronous_commit=off`` or ``fsync=off``.
  * identity: the ``meta`` table names the chain id, token contract and relay account; a member of
    another relay or chain refuses the database (PaymentError), as with the SQLite file.

Driver: psycopg 3 (sync API; the ledger lives on the billing worker thread, relay/billing.py "Threads").
One connection per ledger object; not thread-safe (one thread, as ReceiptLedger).

May import: rewards.ledger, rewards.errors, psycopg.
"""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shadowmesh_client.rewards.errors import PaymentError
from shadowmesh_client.rewards.ledger import _SCHEMA, ReceiptLedger

LEDGER_LOCK = 0x5348_4D45_5348   # advisory lock key of the ledger's write transactions ("SHMESH")
CONNECT_TIMEOUT = 10             # seconds


def _translate(sql: str) -> str:
    """SQLite -> PostgreSQL for the ledger's statements: placeholders and column types."""
    sql = sql.replace("%", "%%").replace("?", "%s")
    sql = re.sub(r"\bBLOB\b", "BYTEA", sql)
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql)


class _Empty:
    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list:
        return []


class _PgConnection:
    """The sqlite3.Connection subset ReceiptLedger uses, on one psycopg connection (autocommit: the
    ledger runs its own BEGIN/COMMIT/ROLLBACK, as with ``isolation_level=None``)."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise PaymentError("--cluster-ledger needs psycopg: pip install 'psycopg[binary]==3.3.9'") from None

        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            raise PaymentError(f"cannot reach the cluster's receipt ledger at {redact(url)}: {exc}; check "
                               "--cluster-ledger and that PostgreSQL accepts this member") from None

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        statement = sql.strip().rstrip(";").upper()
        if statement.startswith("PRAGMA"):
            return _Empty()
        if statement == "BEGIN IMMEDIATE":
            self.conn.execute("BEGIN")
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK,))
            return _Empty()
        return self.conn.execute(_translate(sql), tuple(params))

    def executemany(self, sql: str, rows: list) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_translate(sql), rows)

    def executescript(self, script: str) -> None:
        self.execute("BEGIN IMMEDIATE")   # several members may create the schema at once
        try:
            for statement in script.split(";"):
                if statement.strip():
                    self.conn.execute(_translate(statement))
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def redact(url: str) -> str:
    """The URL without its password (for logs and ``ledger.path``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class PgReceiptLedger(ReceiptLedger):
    """A ReceiptLedger in PostgreSQL. Build it with :meth:`like` (same settings as a ReceiptLedger the
    caller configured) or :meth:`open`."""

    url: str

    @classmethod
    def like(cls, ledger: ReceiptLedger, url: str) -> PgReceiptLedger:
        """A ledger with every setting of ``ledger`` (domain, relay, signer checks, tolerance, price...)
        but stored at ``url``. ``ledger`` itself is left open (its owner closes it)."""
        shared = copy.copy(ledger)
        shared.__class__ = cls
        assert isinstance(shared, PgReceiptLedger)
        shared._attach(url)
        return shared

    @classmethod
    def open(cls, url: str, *args: Any, **kwargs: Any) -> PgReceiptLedger:
        """``PgReceiptLedger.open(url, domain, relay, binding, ...)``: ReceiptLedger's arguments after the URL."""
        scratch = ReceiptLedger(":memory:", *args, **kwargs)   # settings only; its in-memory database goes
        try:
            return cls.like(scratch, url)
        finally:
            scratch.close()

    def _attach(self, url: str) -> None:
        from pathlib import Path

        self.url = url
        self.path = Path(redact(url))      # what logs print as the ledger's location
        self._db = _PgConnection(url)      # type: ignore[assignment]
        try:
            self._db.executescript(_SCHEMA)
            self._check_identity()
        except BaseException:
            self._db.close()
            raise
