"""Stateful property tests (hypothesis) of the issue's invariants, against the real contracts:

1. Token supply is conserved by transfers, deposits, claims and withdrawals (changes only by mint).
2. Total paid to relays never exceeds total deposited; the token holds exactly the sum of escrows.
3. A revoked or expired device never verifies.
4. Overlay addresses never repeat within a network.

Each example starts from a chain snapshot and restores it afterwards.
"""

from __future__ import annotations

from ape.exceptions import ContractLogicError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from .conftest import DAY, WITHDRAWAL_DELAY, new_device_key, proof_for

PRICE = 1_000
SETTINGS = settings(max_examples=12, stateful_step_count=14, deadline=None,
                    suppress_health_check=list(HealthCheck))


def test_payment_invariants(token, admin, accounts, relay, chain, sign_receipt):
    payers = [accounts[i] for i in range(10, 14)]
    device = b"\x77" * 32

    class Payments(RuleBasedStateMachine):
        @initialize()
        def start(self):
            self.snapshot = chain.snapshot()
            token.setRelayPrice(PRICE, sender=relay)
            for p in payers:
                token.mint(p, 10**9, sender=admin)
            self.supply = token.totalSupply()
            self.deposited = 0  # every deposit ever (gross)
            self.withdrawn = 0
            self.paid = 0
            self.cumulative = {p.address: 0 for p in payers}

        def teardown(self):
            chain.restore(self.snapshot)

        @rule(i=st.integers(0, 3), amount=st.integers(1, 10**7))
        def deposit(self, i, amount):
            token.deposit(amount, sender=payers[i])
            self.deposited += amount

        @rule(i=st.integers(0, 3), extra=st.integers(1, 50_000), stale=st.booleans())
        def claim(self, i, extra, stale):
            p = payers[i]
            paid = token.paidBytes(p, device, relay)
            escrow = token.escrowOf(p).balance
            cumulative = paid if stale else paid + extra
            receipt = sign_receipt(p.private_key, p, device, relay, cumulative, PRICE)
            if stale or escrow < PRICE:
                try:
                    token.claim(receipt, sender=relay, raise_on_revert=True)
                except ContractLogicError:
                    return
                raise AssertionError("a stale or unfunded claim was paid")
            tx = token.claim(receipt, sender=relay)
            [event] = tx.decode_logs(token.Claimed)
            assert event.amount <= escrow
            assert event.cumulativeBytes <= cumulative
            self.paid += event.amount

        @rule(i=st.integers(0, 3), fraction=st.integers(1, 4))
        def withdraw(self, i, fraction):
            p = payers[i]
            balance = token.escrowOf(p).balance
            if balance == 0:
                return
            token.requestWithdrawal(max(1, balance // fraction), sender=p)
            chain.pending_timestamp += WITHDRAWAL_DELAY
            tx = token.withdraw(sender=p)
            self.withdrawn += tx.decode_logs(token.Withdrawn)[0].amount

        @rule(i=st.integers(0, 3), j=st.integers(0, 3), amount=st.integers(0, 10**6))
        def transfer(self, i, j, amount):
            token.transfer(payers[j], min(amount, token.balanceOf(payers[i])), sender=payers[i])

        @invariant()
        def supply_conserved(self):
            if hasattr(self, "supply"):
                assert token.totalSupply() == self.supply

        @invariant()
        def paid_within_deposits(self):
            if hasattr(self, "supply"):
                escrowed = sum(token.escrowOf(p).balance for p in payers)
                assert token.totalEscrowed() == token.balanceOf(token) == escrowed
                assert self.paid <= self.deposited
                assert self.paid + self.withdrawn + escrowed == self.deposited
                assert token.balanceOf(relay) == self.paid

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

    Registry.TestCase.settings = SETTINGS
    Registry.TestCase().runTest()
