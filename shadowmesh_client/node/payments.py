"""The device side of relay payments in the ``up`` daemon (docs/payments.md "Integration"; issue 6).

``NodePayments`` feeds ``rewards.DevicePayments`` with this node's OWN byte counts per relay, sends the
receipts it signs to that relay in LOCAL envelopes, and hands the relay's control messages (RECEIPT_ACK,
RECEIPT_STATE, RELAY_COUNT) back to it; a RELAY_COUNT (the relay lost part of its count) makes the device
lower its count to the relay's and answer with a receipt at once (status ``written_off``).

Billable bytes: every WebSocket message this node sends on the relay link (``Link.bytes_out``, per link,
summed across reconnects; FORWARDs, LOCAL frames and the receipts themselves) plus every DELIVER message the
relay sends it whose end-to-end frame then OPENED under a session with a trusted peer
(``RelayClient.delivered_bytes``; issue 10 "only authenticated bytes are billable"): junk, replays and frames
from peers without a session are dropped before counting (``unbillable_dropped`` in the status). The relay
counts every DELIVER it sends, so a relay (or whoever floods us through it) cannot make us pay for garbage;
the difference shows as bytes the relay carried without a receipt, bounded by its credit. LOCAL messages
from the relay are not counted (the relay does not count them either).

Price (payments v2): when the link to a relay (re)connects, the next tick reads ``relayPrice(relay)`` and
``paidBytes`` on chain (``PaymentSetup.chain_reads``, in a worker thread) and starts the session with it
(``DevicePayments.start_session``): receipts carry that price and never a higher one until the next
session. Until it is read, nothing is signed (the bytes stay counted). A relay that stops carrying this
device says why (RELAY_NOTICE): logged as a WARNING with what to do, and shown in ``status()``
(``relays.<key>.notice``) and so in the status file.

Hooks (a few lines in the mesh code): ``RelayClient.on_control`` (LOCAL payloads with
``messages.is_control``) -> :meth:`NodePayments.on_control` (awaited in a task per message); the node runs
:meth:`NodePayments.run`, which every ``RECEIPT_TICK_SECONDS`` (node/settings.py) reads the counters, signs
when ``every_bytes`` / ``every_seconds`` say so, and sends. The tick bounds how far a receipt lags the
traffic (at 2 Gbit/s, 0.1 s = 25 MB: keep the relay's ``credit_bytes`` above that plus ``every_bytes``).

Threads: signing costs ~0.2-4 ms of CPU per receipt, so it runs off the event loop (``asyncio.to_thread``).
What is shared: the ``rewards.DevicePayments`` object (issuer figures, signer account), which is not
thread-safe. How: every call into it that may sign (``on_usage``, ``poll``, ``on_control``) runs in a worker
thread while this object's ``asyncio.Lock`` is held, so exactly one thread touches it at a time and calls
keep their order (the lock is FIFO); relays are added (``add_relay``, which changes the issuers dict) on the
loop under the same lock. The loop only reads ints for ``status()``. Link counters are read on the loop.

Who signs (``load_device_payments``, from the config's ``payments:`` section; config.PaymentsConfig): the
owner key, or a hot key the owner authorised with ``shadowmesh-client authorize-signer``, unlocked from its
keystore with a password from a file or the environment, never from the command line. Without one
(``sign_receipts: auto`` and no password available, or ``false``) the node runs unpaid: free relays (price 0)
carry its traffic as before; relays that charge stop after their credit.

Not task-safe beyond the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from eth_utils import to_checksum_address

from shadowmesh_client.errors import ConfigError, KeystoreError
from shadowmesh_client.node.peers import now
from shadowmesh_client.node.settings import RECEIPT_TICK_SECONDS
from shadowmesh_client.rewards import DevicePayments, IssuerConfig, ReceiptDomain
from shadowmesh_client.rewards.messages import NoticeMessage
from shadowmesh_client.transport import LinkClosedError

log = logging.getLogger(__name__)

SIGNER_PASSWORD_ENV = "SHADOWMESH_SIGNER_PASSWORD"


@dataclass(frozen=True)
class PaymentSetup:
    """What the node needs to sign receipts: where they are valid, the signing account, when to sign."""

    domain: ReceiptDomain
    signer: object               # eth-account LocalAccount (never logged)
    issuer: IssuerConfig
    chain_reads: Callable[[str, str, bytes], tuple[int, int]] | None = None
    """``(relay, payer, device_id) -> (relayPrice(relay), paidBytes(payer, device_id, relay))``, blocking
    (run in a worker thread at each session start); None: no chain (every session signs nothing)."""

    def __repr__(self) -> str:   # keep the key out of any log line or traceback
        signer = getattr(self.signer, "address", "?")
        return f"PaymentSetup(domain={self.domain}, signer={signer}, issuer={self.issuer})"


class NodePayments:
    """``trust``: the node's directory.trust.TrustPolicy (whose owner address a relay's receipts name)."""

    def __init__(self, setup: PaymentSetup, payer: str, device_id: bytes, trust) -> None:
        self.pay = DevicePayments(setup.domain, setup.signer, to_checksum_address(payer), device_id, setup.issuer)
        self.chain_reads = setup.chain_reads
        self.trust = trust
        self._relays: dict = {}               # the node's relay clients (the dict run() is given), for status
        self._sessions: dict[bytes, object] = {}   # relay key -> the link whose session price was accepted
        self.price_reads_failed = 0
        self._seen: dict[bytes, list] = {}    # relay key -> [link, its bytes_out counted, delivered counted]
        self._lock = asyncio.Lock()           # held around every use of self.pay (see module docstring)
        self.sent = 0
        self.send_failed = 0

    def _ensure(self, relay_key: bytes) -> bool:
        """Call with the lock held (on the loop)."""
        if relay_key in self.pay.issuers:
            return True
        peer = self.trust.peer(relay_key)
        if peer is None:
            return False
        self.pay.add_relay(relay_key, to_checksum_address(peer.owner), now())
        return True

    def _delta(self, key: bytes, client) -> int:
        st = self._seen.setdefault(key, [None, 0, 0])
        link = client.link
        n = 0
        if link is not st[0]:
            if st[0] is not None:
                n += st[0].bytes_out - st[1]   # what the old link sent after our last look
            st[0], st[1] = link, 0
        if link is not None:
            n += link.bytes_out - st[1]
            st[1] = link.bytes_out
        n += client.delivered_bytes - st[2]
        st[2] = client.delivered_bytes
        return n

    async def on_control(self, relay_key: bytes, payload: bytes) -> list[bytes]:
        """RelayClient hook: a payments control message from that relay; returns payloads to send back."""
        async with self._lock:
            if not self._ensure(relay_key):
                return []
            out = await asyncio.to_thread(self.pay.on_control, relay_key, bytes(payload), now())
        self.sent += len(out)
        return [p for k, p in out if k == relay_key]

    def _fold_and_sign(self, usage: list, t: float) -> list:
        """Worker thread, lock held: fold the byte counts in and sign what is due."""
        out = []
        for key, n in usage:
            out += self.pay.on_usage(key, n, t)
        out += self.pay.poll(t)
        return out

    def _read_prices(self, todo: list) -> list:
        """Worker thread: (key, link, price, paid) per relay whose session starts; failures are skipped (retried
        at the next tick)."""
        out = []
        for key, link, relay in todo:
            try:
                price, paid = self.chain_reads(relay, self.pay.payer, self.pay.device_id)  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - RPC errors: no session price yet, nothing signed
                self.price_reads_failed += 1
                log.warning("cannot read the price of relay %s on chain (%s): no receipts until it is read",
                            relay, type(exc).__name__)
                continue
            out.append((key, link, int(price), int(paid)))
        return out

    async def _sessions_started(self, relays: dict) -> None:
        """Lock held: accept the advertised price of every relay whose link changed since the last look."""
        todo = []
        for key, client in relays.items():
            link = client.link if client.ready else None
            if self._sessions.get(key) is link:
                continue
            if link is None:
                self._sessions.pop(key, None)
                self.pay.end_session(key)
            elif self.chain_reads is not None and key in self.pay.issuers:
                todo.append((key, link, self.pay.issuers[key].channel.relay))
        if todo:
            for key, link, price, paid in await asyncio.to_thread(self._read_prices, todo):
                self._sessions[key] = link
                self.pay.start_session(key, price, paid)

    async def tick(self, relays: dict) -> None:
        """Fold the byte counters in, start sessions (price read on chain), sign what is due (in a worker
        thread), send it."""
        self._relays = relays
        t = now()
        async with self._lock:
            usage = []
            for key, client in list(relays.items()):
                if self._ensure(key):
                    n = self._delta(key, client)
                    if n:
                        usage.append((key, n))
            await self._sessions_started(relays)
            out = await asyncio.to_thread(self._fold_and_sign, usage, t)
        for key, payload in out:
            client = relays.get(key)
            link = client.link if client is not None else None
            if client is None or link is None or not client.ready:
                self.send_failed += 1   # the next receipt is cumulative: nothing is lost but time
                continue
            try:
                await client.send_controls(link, [payload])   # sealed in the device-relay session
                self.sent += 1
            except LinkClosedError:
                self.send_failed += 1

    async def run(self, relays: dict) -> None:
        """The node's payments task: :meth:`tick` every RECEIPT_TICK_SECONDS until cancelled."""
        self._relays = relays
        while True:
            await asyncio.sleep(RECEIPT_TICK_SECONDS)
            await self.tick(relays)

    def status(self) -> dict:
        relays = {}
        for k, i in self.pay.issuers.items():
            client = self._relays.get(k)
            notice = self.pay.notices.get(k)
            relays[k.hex()] = {
                "counted": i.counted, "signed": i.signed, "acked": i.acked, "relay_counted": i.relay_counted,
                "written_off": i.written_off, "price": i.price, "refused_price": i.refused_price,
                "unbillable_dropped": getattr(client, "unbillable_dropped", 0),
                "notice": None if notice is None else {
                    "carrying": notice.reason.value == 0, "reason": notice.reason.name.lower(),
                    "owed_base": notice.owed, "guaranteed_base": notice.guaranteed,
                    "price": notice.price_per_byte,
                    "what_to_do": notice.advice.replace("RELAY_ADDRESS", i.channel.relay)}}
        return {"payer": self.pay.payer, "signer": self.pay._account.address, "receipts_sent": self.sent,
                "send_failed": self.send_failed, "price_reads_failed": self.price_reads_failed,
                "unbillable_dropped": sum(getattr(c, "unbillable_dropped", 0) for c in self._relays.values()),
                "relays": relays}


def load_device_payments(state) -> PaymentSetup | None:
    """The node's receipt signer from the config (cli_common.State), or None to run unpaid (logged).
    Raises ConfigError / KeystoreError only with ``payments.sign_receipts: true``, or for a signer the owner
    has not authorised on chain."""
    cfg = state.config
    pc = cfg.payments
    required = pc.sign_receipts is True

    def unpaid(why: str) -> PaymentSetup | None:   # always None: ``return unpaid(...)`` = "no payments"
        if required:
            raise ConfigError(f"payments.sign_receipts is true but {why}")
        log.warning("relay payments off: %s; free relays still carry this device's traffic, paid relays stop "
                    "after their credit (docs/payments.md)", why)
        return None

    if pc.sign_receipts is False:
        log.info("relay payments off (payments.sign_receipts: false)")
        return None
    if cfg.deployments is None:
        return unpaid("the config has no `deployments:` record (the token contract's address)")
    dep = state.deployment()
    if not dep.token:
        return unpaid(f"the deployment record {dep.path} has no ShadowMeshToken")
    keystore = pc.signer_keystore or cfg.owner_keystore
    if keystore is None:
        return unpaid("no receipt signer: set `payments.signer_keystore` or `owner_keystore`")
    password = _password(pc.signer_password_file, state.owner_password_file)
    if password is None:
        if required and sys.stdin.isatty():
            import click

            password = click.prompt(f"Password of the receipt signer keystore {keystore}", hide_input=True)
        else:
            return unpaid(f"no password for the signer keystore {keystore} (set payments.signer_password_file, "
                          f"--owner-password-file, {SIGNER_PASSWORD_ENV} or SHADOWMESH_OWNER_PASSWORD)")
    from shadowmesh_client.chain import load_owner_account

    try:
        signer = load_owner_account(keystore, password)
    except KeystoreError as exc:
        if required:
            raise
        return unpaid(str(exc))
    setup = PaymentSetup(ReceiptDomain(dep.chain_id, dep.token), signer,
                         IssuerConfig(pc.every_bytes, pc.every_seconds, pc.tolerance_bytes, pc.max_price_per_byte),
                         chain_reads=_chain_reads(state.config.rpc_url, dep))
    _check_signer(state, dep, signer.address)
    log.info("relay payments on: receipts signed by %s every %d bytes or %.0f s, at each relay's advertised "
             "price when its session starts (at most %d base units/byte)", signer.address, pc.every_bytes,
             pc.every_seconds, pc.max_price_per_byte)
    return setup


def _chain_reads(rpc_url: str, dep) -> Callable[[str, str, bytes], tuple[int, int]]:
    """``PaymentSetup.chain_reads`` over the token (connected lazily, in the worker thread that calls it)."""
    chain: list = []

    def read(relay: str, payer: str, device_id: bytes) -> tuple[int, int]:
        if not chain:
            from shadowmesh_client.rewards.onchain import TokenChain

            chain.append(TokenChain(rpc_url, dep, timeout=5.0))
        token = chain[0].token
        return (int(token.functions.relayPrice(relay).call()),
                int(token.functions.paidBytes(payer, device_id, relay).call()))

    return read


def _password(signer_file, owner_file) -> str | None:
    for path in (signer_file, owner_file):
        if path:
            try:
                return open(os.path.expanduser(str(path))).read().rstrip("\r\n")
            except OSError as exc:
                raise KeystoreError(f"cannot read the password file {path}: {exc.strerror}") from None
    return os.environ.get(SIGNER_PASSWORD_ENV) or os.environ.get("SHADOWMESH_OWNER_PASSWORD") or None


def _check_signer(state, dep, signer: str) -> None:
    """A hot signer must be bound to this device by the owner; say so now rather than after the relay's credit."""
    try:
        owner = state.owner_address()
        device_id = _device_id(state, dep, owner)
    except (ConfigError, KeystoreError):
        return
    if owner == signer:
        return
    try:
        from shadowmesh_client.rewards.onchain import TokenChain

        chain = TokenChain(state.config.rpc_url, dep, timeout=5.0)
        ok = chain.token.functions.isReceiptSigner(owner, signer, device_id).call()
    except Exception as exc:  # noqa: BLE001 - chain unreachable: the relay will tell (BAD_SIGNATURE acks)
        log.warning("cannot check on chain that %s may sign receipts for %s (%s)", signer, owner, type(exc).__name__)
        return
    if not ok:
        raise ConfigError(f"the receipt signer {signer} is not bound to this device by the owner {owner}: run "
                          f"`shadowmesh-client authorize-signer {signer} --cap SMT --period SECONDS` with the owner "
                          "account")


def _device_id(state, dep, owner: str) -> bytes:
    from shadowmesh_client.directory.proof import device_id

    if state.config.network_id is None:
        raise ConfigError("no network_id")
    return device_id(state.config.network_id, owner, state.identity().public_key)


class RelayNotices:
    """A node that signs no receipts still hears why a relay stops carrying it (issue 11 item 2): RELAY_NOTICEs
    are logged as a WARNING with what to do and shown in ``status()`` like NodePayments shows them. Other
    payments messages are ignored (the node pays nobody). Same hooks as NodePayments."""

    def __init__(self, trust) -> None:
        self.trust = trust
        self.notices: dict[bytes, NoticeMessage] = {}   # relay key -> its latest RELAY_NOTICE

    async def on_control(self, relay_key: bytes, payload: bytes) -> list[bytes]:
        from shadowmesh_client.rewards.messages import NoticeReason, decode

        try:
            msg = decode(payload)
        except ValueError:
            return []
        if isinstance(msg, NoticeMessage):
            self.notices[relay_key] = msg
            peer = self.trust.peer(relay_key)
            relay = to_checksum_address(peer.owner) if peer is not None else relay_key.hex()[:16]
            if msg.reason is not NoticeReason.RESUMED:
                log.warning("relay %s stopped carrying this device: %s; what to do: %s", relay,
                            msg.reason.name.lower().replace("_", " "), msg.advice.replace("RELAY_ADDRESS", relay))
        return []

    async def run(self, relays: dict) -> None:
        """Nothing to do on a timer: waits until cancelled (the node supervises it like NodePayments.run)."""
        await asyncio.Event().wait()

    def status(self) -> dict:
        return {"signing": False, "relays": {k.hex(): {"notice": {
            "carrying": n.reason.value == 0, "reason": n.reason.name.lower(), "owed_base": n.owed,
            "guaranteed_base": n.guaranteed, "price": n.price_per_byte, "what_to_do": n.advice}}
            for k, n in self.notices.items()}}
