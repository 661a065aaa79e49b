"""Gas of the hot paths, measured from receipts, against the issue's hard targets.

Worst cases on purpose: a fresh owner's first device (its device list's length slot goes 0 -> 1), a first claim
on a new (payer, device, relay) channel by a relay whose SMT balance is zero, a batch of 10 first claims from
10 different payers. Steady-state figures are printed too. The table is printed (run with `-s`) and written
to build/gas-report.json; docs/contracts.md holds a copy.
"""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import ONE_SMT, new_device_key, proof_for

TARGETS = {"registerDevice": 150_000, "claim ": 90_000, "claimBatch(10)": 450_000}
PRICE = 10**9
REPORT = Path(__file__).resolve().parents[2] / "build" / "gas-report.json"


def _register(registry, network_id, sender):
    key = new_device_key()
    proof = proof_for(registry, key, network_id, sender.address)
    return registry.registerDevice(network_id, bytes(key.verify_key), True, "wss://relay-01.example.net:443/mesh",
                                   proof, sender=sender)


def test_gas_table(registry, token, open_network, admin, accounts, relay, sign_receipt, capsys):
    figures = {}
    fresh_owner = accounts[20]
    figures["registerDevice (owner's first device)"] = _register(registry, open_network, fresh_owner).gas_used
    figures["registerDevice (owner's next device)"] = _register(registry, open_network, fresh_owner).gas_used

    token.setRelayPrice(PRICE, sender=relay)
    payers = [accounts[i] for i in range(10, 20)]
    for p in payers + [accounts[21]]:
        token.mint(p, 100 * ONE_SMT, sender=admin)
        token.deposit(100 * ONE_SMT, sender=p)
    solo = accounts[21]
    device = b"\xaa" * 32
    assert token.balanceOf(relay) == 0
    figures["claim (new channel, relay balance 0)"] = token.claim(
        sign_receipt(solo.private_key, solo, device, relay, 10 * 2**30, PRICE), sender=relay).gas_used
    figures["claim (next receipt, same channel)"] = token.claim(
        sign_receipt(solo.private_key, solo, device, relay, 20 * 2**30, PRICE), sender=relay).gas_used
    batch = [sign_receipt(p.private_key, p, device, relay, 1_000, PRICE) for p in payers]
    figures["claimBatch(10) (10 new channels)"] = token.claimBatch(batch, sender=relay).gas_used
    batch = [sign_receipt(p.private_key, p, device, relay, 2_000, PRICE) for p in payers]
    figures["claimBatch(10) (next receipts)"] = token.claimBatch(batch, sender=relay).gas_used

    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({"targets": TARGETS, "figures": figures}, indent=2) + "\n")
    with capsys.disabled():
        print("\n| operation | gas | target |\n|---|---:|---:|")
        for name, gas in figures.items():
            target = next(v for k, v in TARGETS.items() if name.startswith(k))
            print(f"| {name} | {gas:,} | {target:,} |")

    for name, gas in figures.items():
        target = next(v for k, v in TARGETS.items() if name.startswith(k))
        assert gas <= target, f"{name}: {gas} gas > target {target}"
