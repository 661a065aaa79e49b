"""Directory core: trust rules, proofs, multiple registrations, notifications, expiry, rebuild (pure, no chain)."""

from __future__ import annotations

import ipaddress

import pytest

from shadowmesh_client.crypto import Identity
from shadowmesh_client.directory import events as ev
from shadowmesh_client.directory.core import ChangeKind, Directory
from shadowmesh_client.directory.events import DeviceStatus
from shadowmesh_client.directory.proof import device_id, proof_message

CHAIN = 31337
REGISTRY = "0x" + "ab" * 20
NET = 1
OWNER_A = bytes.fromhex("11" * 20)
OWNER_B = bytes.fromhex("22" * 20)
NOW = 1_000_000


class Chain:
    """Makes events in chain order, as the registry would emit them."""

    def __init__(self):
        self.block = 10
        self.overlay = 0x64400001

    def _base(self):
        self.block += 1
        return dict(block_number=self.block, log_index=0, block_hash=self.block.to_bytes(32, "big"), tx_hash=b"")

    def register(self, ident, owner=OWNER_A, *, net=NET, status=DeviceStatus.ACTIVE, expires=NOW + 3600,
                 endpoint="wss://a.example/ws", proof=None, registry=REGISTRY, chain=CHAIN):
        pk = ident.public_key
        if proof is None:
            proof = ident.sign(proof_message(chain, registry, net, owner, pk))
        overlay, self.overlay = self.overlay, self.overlay + 1
        return ev.DeviceRegistered(**self._base(), device_id=device_id(net, owner, pk), owner=owner, network_id=net,
                                   public_key=pk, overlay_address=overlay, expires_at=expires, status=int(status),
                                   relay=False, endpoint=endpoint, proof=proof)

    def simple(self, cls, reg, **kw):
        return cls(**self._base(), device_id=reg.device_id, network_id=reg.network_id, **kw)


@pytest.fixture
def chain():
    return Chain()


@pytest.fixture
def directory():
    return Directory(CHAIN, REGISTRY, NET)


def test_valid_registration_is_trusted_and_found_by_overlay(chain, directory):
    alice = Identity.generate()
    reg = chain.register(alice)
    directory.apply([reg], NOW)
    assert directory.is_trusted(alice.public_key, NOW)
    peer = directory.peer_by_overlay("100.64.0.1")
    assert peer.public_key == alice.public_key and peer.endpoint == "wss://a.example/ws"
    assert peer.overlay_address == ipaddress.IPv4Address("100.64.0.1")
    assert [p.device_id for p in directory.peers(NOW)] == [reg.device_id]


@pytest.mark.parametrize("forgery", ["other_key", "other_owner", "other_chain", "other_registry", "other_net", "junk"])
def test_forged_proof_is_never_trusted(chain, directory, forgery):
    victim, mallory = Identity.generate(), Identity.generate()
    msg = dict(chain=CHAIN, registry=REGISTRY, net=NET, owner=OWNER_A)
    if forgery == "other_owner":
        msg["owner"] = OWNER_B
    elif forgery == "other_chain":
        msg["chain"] = 1
    elif forgery == "other_registry":
        msg["registry"] = "0x" + "cd" * 20
    elif forgery == "other_net":
        msg["net"] = 2
    signer = mallory if forgery == "other_key" else victim
    proof = signer.sign(proof_message(msg["chain"], msg["registry"], msg["net"], msg["owner"], victim.public_key))
    if forgery == "junk":
        proof = bytes(64)
    reg = chain.register(victim, OWNER_A, proof=proof)
    directory.apply([reg, chain.simple(ev.DeviceApproved, reg, by=OWNER_A)], NOW)
    assert not directory.is_trusted(victim.public_key, NOW)
    assert directory.peer_by_overlay("100.64.0.1") is None
    assert reg.device_id in directory.rejected


def test_lifecycle_revoke_is_final(chain, directory):
    alice = Identity.generate()
    reg = chain.register(alice)
    directory.apply([reg, chain.simple(ev.DeviceRevoked, reg, by=OWNER_A)], NOW)
    assert not directory.is_trusted(alice.public_key, NOW)
    directory.apply([chain.simple(ev.DeviceApproved, reg, by=OWNER_A)], NOW)  # cannot come back
    assert not directory.is_trusted(alice.public_key, NOW)
    assert directory.device(reg.device_id).status == DeviceStatus.REVOKED


def test_pending_until_approved_then_suspended(chain, directory):
    alice = Identity.generate()
    reg = chain.register(alice, status=DeviceStatus.PENDING)
    directory.apply([reg], NOW)
    assert not directory.is_trusted(alice.public_key, NOW)
    directory.apply([chain.simple(ev.DeviceApproved, reg, by=OWNER_B)], NOW)
    assert directory.is_trusted(alice.public_key, NOW)
    directory.apply([chain.simple(ev.DeviceSuspended, reg, by=OWNER_B)], NOW)
    assert not directory.is_trusted(alice.public_key, NOW)


def test_expiry_and_renewal(chain, directory):
    alice = Identity.generate()
    reg = chain.register(alice, expires=NOW + 10)
    directory.apply([reg], NOW)
    assert directory.is_trusted(alice.public_key, NOW + 9)
    assert not directory.is_trusted(alice.public_key, NOW + 10)
    directory.apply([chain.simple(ev.DeviceRenewed, reg, expires_at=NOW + 100)], NOW)
    assert directory.is_trusted(alice.public_key, NOW + 99)


def test_earliest_live_registration_is_picked(chain, directory):
    key = Identity.generate()
    first, second = chain.register(key, OWNER_A), chain.register(key, OWNER_B)
    directory.apply([first, second], NOW)
    assert directory.peer_for_key(key.public_key, NOW).device_id == first.device_id
    assert len(directory.peers(NOW)) == 1
    directory.apply([chain.simple(ev.DeviceRevoked, first, by=OWNER_A)], NOW)
    assert directory.is_trusted(key.public_key, NOW)
    assert directory.peer_for_key(key.public_key, NOW).device_id == second.device_id


def test_other_networks_are_ignored(chain, directory):
    key = Identity.generate()
    directory.apply([chain.register(key, net=2)], NOW)
    assert not directory.is_trusted(key.public_key, NOW) and len(directory) == 0


def test_subscribers_see_added_changed_revoked_expired(chain, directory):
    seen = []
    directory.subscribe(lambda c: seen.append((c.kind, c.peer.overlay_address.exploded)))
    a, b = Identity.generate(), Identity.generate()
    ra, rb = chain.register(a, expires=NOW + 50), chain.register(b, expires=NOW + 10)
    directory.apply([ra, rb], NOW)
    directory.apply([chain.simple(ev.DeviceEndpointUpdated, ra, endpoint="wss://new/ws", relay=True)], NOW)
    directory.apply([chain.simple(ev.DeviceRevoked, ra, by=OWNER_A)], NOW)
    directory.tick(NOW + 10)
    directory.tick(NOW + 20)  # reported once
    assert seen == [
        (ChangeKind.ADDED, "100.64.0.1"), (ChangeKind.ADDED, "100.64.0.2"),
        (ChangeKind.CHANGED, "100.64.0.1"), (ChangeKind.REVOKED, "100.64.0.1"), (ChangeKind.EXPIRED, "100.64.0.2"),
    ]


def test_rebuild_after_reorg_reports_removed(chain, directory):
    seen = []
    a, b = Identity.generate(), Identity.generate()
    ra, rb = chain.register(a), chain.register(b)
    directory.apply([ra, rb], NOW)
    directory.subscribe(lambda c: seen.append((c.kind, c.peer.device_id)))
    directory.rebuild([ra], NOW)  # the block with rb was reorganised away
    assert seen == [(ChangeKind.REMOVED, rb.device_id)]
    assert not directory.is_trusted(b.public_key, NOW) and directory.is_trusted(a.public_key, NOW)


def test_a_failing_subscriber_does_not_break_others(chain, directory):
    seen = []
    directory.subscribe(lambda c: 1 / 0)
    directory.subscribe(seen.append)
    directory.apply([chain.register(Identity.generate())], NOW)
    assert len(seen) == 1


def test_events_applied_twice_are_ignored(chain, directory):
    a = Identity.generate()
    reg = chain.register(a)
    rev = chain.simple(ev.DeviceRevoked, reg, by=OWNER_A)
    directory.apply([reg, rev], NOW)
    directory.apply([reg], NOW)
    assert not directory.is_trusted(a.public_key, NOW)


def test_core_modules_do_no_io():
    """events/proof/core must stay pure: no network, database, asyncio or web3 imports."""
    import ast
    from pathlib import Path

    import shadowmesh_client.directory as pkg

    forbidden = {"socket", "sqlite3", "asyncio", "requests", "web3", "threading", "time", "urllib"}
    for name in ("events.py", "proof.py", "core.py"):
        tree = ast.parse((Path(pkg.__file__).parent / name).read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & forbidden, (name, imported & forbidden)
