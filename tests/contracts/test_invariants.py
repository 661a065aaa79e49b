"""Stateful property tests (hypothesis) of the issue's invariants, against the real contracts:

1. Token supply is conserved by transfers, deposits, claims and withdrawals (changes only by mint).
2. Total paid to relays never exceeds total deposited; the token holds exactly the sum of unallocated balances
   and reserves; a payer's reserves never exceed its deposits (and every token it put in is accounted for).
3. A relay's guaranteed amount is always claimable: a payer who drains its reserve as early as the contract
   lets it (waiting out the notice, then withdrawing before or after the relay's claim) never takes it; claims
   pay exactly min(owed, reserve, signer's cap left) in whole bytes.
4. A revoked or expired device never verifies.
5. Overlay addresses never repeat within a network; Pending devices hold none.

Each example starts from a chain snapshot and restores it afterwards.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from .conftest import DAY, WITHDRAWAL_DELAY, new_device_key, proof_for

PRICE = 1_000
SETTINGS = settings(max_examples=12, stateful_step_count=14, deadline=None,
                    suppress_health_check=list(HealthCheck))


def test_payment_invariants(token, admin, accounts, relay, hot, chain, sign_receipt):
    payers = [accounts[i] for i in range(10, 14)]
    relays = [relay, accounts[9]]
    device = b"\x77" * 32
    cap = 30 * PRICE * 1_000

    class Payments(RuleBasedStateMachine):
        @initialize()
        def start(self):
            self.snapshot = chain.snapshot()
            for p in payers:
                token.mint(p, 10**9, sender=admin)
                token.authorizeSigner(hot, device, cap, 3_600, sender=p)
            self.supply = token.totalSupply()
            self.deposited = {p.address: 0 for p in payers}  # every deposit ever (gross), per payer
            self.withdrawn = {p.address: 0 for p in payers}
            self.paid_by = {p.address: 0 for p in payers}
            self.paid_to = {r.address: 0 for r in relays}

        def teardown(self):
            chain.restore(self.snapshot)

        @rule(i=st.integers(0, 3), amount=st.integers(1, 10**7), direct=st.booleans(), r=st.integers(0, 1))
        def deposit(self, i, amount, direct, r):
            p = payers[i]
            if direct:
                token.depositToReserve(relays[r], amount, sender=p)
            else:
                token.deposit(amount, sender=p)
            self.deposited[p.address] += amount

        @rule(i=st.integers(0, 3), r=st.integers(0, 1), amount=st.integers(1, 10**7))
        def fund(self, i, r, amount):
            p = payers[i]
            amount = min(amount, token.depositOf(p))
            if amount:
                token.fundReserve(relays[r], amount, sender=p)

        @rule(i=st.integers(0, 3), amount=st.integers(1, 10**7))
        def withdraw_unallocated(self, i, amount):
            p = payers[i]
            amount = min(amount, token.depositOf(p))
            if amount:
                token.withdraw(amount, sender=p)
                self.withdrawn[p.address] += amount

        def _claim(self, p, r, cumulative, by_hot):
            receipt = sign_receipt((hot if by_hot else p).private_key, p, device, r, cumulative, PRICE)
            tx = token.claimBatch([receipt], sender=r)
            amount = sum(e.amount for e in tx.decode_logs(token.Claimed))
            self.paid_by[p.address] += amount
            self.paid_to[r.address] += amount
            return amount

        @rule(i=st.integers(0, 3), r=st.integers(0, 1), extra=st.integers(0, 50_000), by_hot=st.booleans())
        def claim(self, i, r, extra, by_hot):
            p, relay_ = payers[i], relays[r]
            paid = token.paidBytes(p, device, relay_)
            reserve = token.reserveOf(p, relay_).balance
            left = token.signerAllowance(p, hot if by_hot else p, device)
            amount = self._claim(p, relay_, paid + extra, by_hot)
            assert amount <= min(reserve, left, extra * PRICE)
            assert amount == min(extra, reserve // PRICE, left // PRICE) * PRICE

        @rule(i=st.integers(0, 3), r=st.integers(0, 1), fraction=st.integers(1, 4))
        def request_withdrawal(self, i, r, fraction):
            p = payers[i]
            balance = token.reserveOf(p, relays[r]).balance
            if balance:
                token.requestReserveWithdrawal(relays[r], max(1, balance // fraction), sender=p)

        @rule(i=st.integers(0, 3), r=st.integers(0, 1), claim_first=st.booleans())
        def drain_race(self, i, r, claim_first):
            """The payer drains everything it can as early as it can; the relay, owed exactly what the reserve
            guaranteed when it extended credit, is paid in full whichever transaction lands first."""
            p, relay_ = payers[i], relays[r]
            guaranteed = token.guaranteedAmount(p, relay_)
            owed = token.paidBytes(p, device, relay_) + guaranteed // PRICE
            reserve = token.reserveOf(p, relay_)
            if reserve.unlockAt:
                chain.pending_timestamp = max(chain.pending_timestamp, reserve.unlockAt)
            got = 0
            if claim_first and guaranteed >= PRICE:
                got = self._claim(p, relay_, owed, False)
            if reserve.unlockAt:
                tx = token.withdrawReserve(relay_, sender=p)
                self.withdrawn[p.address] += tx.decode_logs(token.ReserveWithdrawn)[0].amount
            if not claim_first and guaranteed >= PRICE:
                got = self._claim(p, relay_, owed, False)
            assert got == guaranteed // PRICE * PRICE

        @rule(seconds=st.sampled_from([60, 3_600, WITHDRAWAL_DELAY]))
        def time_passes(self, seconds):
            chain.pending_timestamp += seconds

        @rule(i=st.integers(0, 3), j=st.integers(0, 3), amount=st.integers(0, 10**6))
        def transfer(self, i, j, amount):
            token.transfer(payers[j], min(amount, token.balanceOf(payers[i])), sender=payers[i])

        @invariant()
        def supply_conserved(self):
            if hasattr(self, "supply"):
                assert token.totalSupply() == self.supply

        @invariant()
        def paid_within_deposits(self):
            if not hasattr(self, "supply"):
                return
            held = 0
            for p in payers:
                reserves = sum(token.reserveOf(p, r).balance for r in relays)
                unallocated = token.depositOf(p)
                held += reserves + unallocated
                # A payer's reserves never exceed its deposits; every token it put in is accounted for.
                assert reserves <= self.deposited[p.address]
                assert reserves + unallocated + self.paid_by[p.address] + self.withdrawn[p.address] \
                    == self.deposited[p.address]
                for r in relays:
                    reserve = token.reserveOf(p, r)
                    assert token.guaranteedAmount(p, r) == reserve.balance - min(reserve.pendingWithdrawal,
                                                                                   reserve.balance)
            assert token.totalEscrowed() == token.balanceOf(token) == held
            assert sum(self.paid_to.values()) <= sum(self.deposited.values())
            for r in relays:
                assert token.balanceOf(r) == self.paid_to[r.address]

    Payments.TestCase.settings = SETTINGS
    Payments.TestCase().runTest()


def test_registry_invariants(registry, netadmin, accounts, chain):
    owners = [accounts[i] for i in range(14, 17)]

    class Registry(RuleBasedStateMachine):
        @initialize()
        def start(self):
            self.snapshot = chain.snapshot()
            tx = registry.createNetwork("prop", 0, DAY, sender=netadmin)
            self.network = tx.decode_logs(registry.NetworkCreated)[0].networkId
            tx = registry.createNetwork("prop-approval", 1, DAY, sender=netadmin)
            self.approval = tx.decode_logs(registry.NetworkCreated)[0].networkId
            self.pending = []  # approval network: (deviceId, owner index), Pending or approved
            self.devices = []  # (deviceId, owner index)
            self.revoked = set()
            self.overlays = []

        def teardown(self):
            chain.restore(self.snapshot)

        @rule(i=st.integers(0, 2))
        def register(self, i):
            key = new_device_key()
            proof = proof_for(registry, key, self.network, owners[i].address)
            tx = registry.registerDevice(self.network, bytes(key.verify_key), False, "", proof, sender=owners[i])
            event = tx.decode_logs(registry.DeviceRegistered)[0]
            self.devices.append((event.deviceId, i))
            self.overlays.append(event.overlayAddress)

        @rule(i=st.integers(0, 2))
        def register_pending(self, i):
            key = new_device_key()
            proof = proof_for(registry, key, self.approval, owners[i].address)
            tx = registry.registerDevice(self.approval, bytes(key.verify_key), False, "", proof, sender=owners[i])
            event = tx.decode_logs(registry.DeviceRegistered)[0]
            assert event.overlayAddress == 0
            self.pending.append(event.deviceId)

        @precondition(lambda self: getattr(self, "pending", None))
        @rule(k=st.integers(0, 100))
        def approve(self, k):
            device_id = self.pending[k % len(self.pending)]
            if registry.devices(device_id).status != 2:
                registry.approveDevice(device_id, sender=netadmin)

        @precondition(lambda self: getattr(self, "devices", None))
        @rule(k=st.integers(0, 100), by_admin=st.booleans())
        def revoke(self, k, by_admin):
            device_id, i = self.devices[k % len(self.devices)]
            if device_id in self.revoked:
                return
            registry.revokeDevice(device_id, sender=netadmin if by_admin else owners[i])
            self.revoked.add(device_id)

        @precondition(lambda self: getattr(self, "devices", None))
        @rule(k=st.integers(0, 100))
        def renew(self, k):
            device_id, i = self.devices[k % len(self.devices)]
            if device_id not in self.revoked:
                registry.renewDevice(device_id, sender=owners[i])

        @rule(seconds=st.sampled_from([60, DAY // 2, DAY, 3 * DAY]))
        def time_passes(self, seconds):
            chain.pending_timestamp += seconds
            chain.mine()

        @invariant()
        def revoked_or_expired_never_verify(self):
            now = chain.blocks.head.timestamp
            for device_id, _ in getattr(self, "devices", []):
                record = registry.devices(device_id)
                if device_id in self.revoked or record.expiresAt <= now:
                    assert registry.verifyDevice(device_id) is False
                else:
                    assert registry.verifyDevice(device_id) is True

        @invariant()
        def overlays_unique(self):
            overlays = getattr(self, "overlays", [])
            assert len(overlays) == len(set(overlays))
            assert all(0x64400001 <= a <= 0x647FFFFE and a & 0xFF not in (0, 255) for a in overlays)
            records = [registry.devices(d) for d in getattr(self, "pending", [])]
            approved = [r.overlayAddress for r in records if r.status == 2]
            assert all(r.overlayAddress == 0 for r in records if r.status == 1)  # Pending: no address
            assert sorted(approved) == [0x64400001 + n for n in range(len(approved))]  # consecutive, unique

    Registry.TestCase.settings = SETTINGS
    Registry.TestCase().runTest()
