"""Directory sync benchmark (issue 4 "Benchmark"): N real registrations on anvil, then cold and incremental sync.

    python -m bench directory            # N = 10,000 (``--quick``: 2,000)
    python -m bench.directory --devices 100000

Set-up: an anvil (tests/support/chain.py; a repository checkout is needed) with a huge block gas limit,
both contracts deployed by the real deploy script, one open network. Registrations are real
``registerDevice`` calls with valid Ed25519 proofs, sent with automine off as JSON-RPC batches of
``eth_sendTransaction`` from anvil's unlocked accounts, then mined into a few large blocks.

Figures (seconds, MiB):
* ``cold_sync_s``: a fresh :class:`~shadowmesh_client.directory.syncer.Syncer` (empty SQLite) syncing
  from the deploy block: eth_getLogs in adaptive ranges, decoding, N proof verifications, SQLite commit.
* ``incremental_sync_s``: 100 more registrations, then one more round of the same syncer.
* ``restart_load_s``: opening the SQLite state again (replay of the stored events, no network).
* ``rss_growth_mib``: resident memory added by the cold sync; ``peak_rss_mib``: process peak.
Targets: cold 10,000 <= 10 s, 100,000 <= 60 s, incremental <= 1 s. The machine is shared (2 cores, other
engineers' test runs): figures are noisy; compare runs made close together.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector

from shadowmesh_client.crypto import Identity
from shadowmesh_client.directory.proof import proof_prefix
from shadowmesh_client.directory.syncer import open_syncer

DEFAULT_DEVICES = 10_000
QUICK_DEVICES = 2_000
INCREMENTAL = 100
BATCH = 500  # eth_sendTransaction calls per JSON-RPC batch
MINE_EVERY = 2_000  # transactions per mined block: anvil's pool slows down superlinearly when it holds more
TX_GAS = 400_000  # gas limit per registration (uses ~170k)
BLOCK_GAS_LIMIT = 100_000_000_000  # anvil --gas-limit: room for every registration in a few blocks

_REGISTER = function_signature_to_4byte_selector("registerDevice(uint64,bytes32,bool,string,bytes)")
_CREATE = function_signature_to_4byte_selector("createNetwork(string,uint8,uint32)")


def _rss_mib(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Rpc:
    def __init__(self, url: str) -> None:
        import requests

        self.url = url
        self.session = requests.Session()

    def call(self, method: str, params: list | None = None):
        r = self.session.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
        body = r.json()
        if "error" in body:
            raise RuntimeError(f"{method}: {body['error']}")
        return body["result"]

    def batch(self, calls: list[tuple[str, list]]) -> list:
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        out = self.session.post(self.url, json=payload, timeout=600).json()
        errors = [o["error"] for o in out if "error" in o]
        if errors:
            raise RuntimeError(f"{len(errors)} calls failed, first: {errors[0]}")
        return out


class Registrar:
    """Makes real registrations fast: automine off, batched eth_sendTransaction, explicit nonces."""

    def __init__(self, rpc: _Rpc, chain_id: int, registry: str) -> None:
        self.rpc = rpc
        self.registry = registry
        self.prefix = proof_prefix(chain_id, registry)
        self.accounts = rpc.call("eth_accounts")
        self.nonces = {a: int(rpc.call("eth_getTransactionCount", [a, "pending"]), 16) for a in self.accounts}
        self._turn = 0

    def _tx(self, sender: str, data: bytes) -> dict:
        nonce = self.nonces[sender]
        self.nonces[sender] = nonce + 1
        return {"from": sender, "to": self.registry, "data": "0x" + data.hex(), "gas": hex(TX_GAS),
                "nonce": hex(nonce)}

    def _mine_all(self) -> None:
        while True:
            self.rpc.call("evm_mine")
            pending = int(self.rpc.call("txpool_status")["pending"], 16)
            if pending == 0:
                return

    def create_network(self) -> int:
        sender = self.accounts[0]
        self.rpc.call("eth_sendTransaction", [self._tx(sender, _CREATE + abi_encode(["string", "uint8", "uint32"],
                                                                                     ["bench", 0, 2**32 - 1]))])
        self._mine_all()
        return int(self.rpc.call("eth_call", [{"to": self.registry, "data": "0x" + function_signature_to_4byte_selector(
            "networkCount()").hex()}, "latest"]), 16)

    def register(self, network_id: int, n: int) -> None:
        self.rpc.call("evm_setAutomine", [False])
        try:
            calls = []
            for _ in range(n):
                sender = self.accounts[self._turn % len(self.accounts)]
                self._turn += 1
                ident = Identity.generate()
                pk = ident.public_key
                owner = bytes.fromhex(sender[2:])
                proof = ident.sign(self.prefix + network_id.to_bytes(8, "big") + owner + pk)
                data = _REGISTER + abi_encode(["uint64", "bytes32", "bool", "string", "bytes"],
                                              [network_id, pk, False, "wss://bench.example/ws", proof])
                calls.append(("eth_sendTransaction", [self._tx(sender, data)]))
                if len(calls) == BATCH:
                    self.rpc.batch(calls)
                    calls = []
                if self._turn % MINE_EVERY == 0:
                    if calls:
                        self.rpc.batch(calls)
                        calls = []
                    self._mine_all()
            if calls:
                self.rpc.batch(calls)
            self._mine_all()
        finally:
            self.rpc.call("evm_setAutomine", [True])


def measure(devices: int, *, log=print) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lab.chain import anvil, deploy_contracts

    out: dict = {"devices": devices}
    with tempfile.TemporaryDirectory(prefix="shadowmesh-bench-dir-") as tmp, anvil(
        extra_args=("--gas-limit", str(BLOCK_GAS_LIMIT), "--silent")
    ) as url:
        record = deploy_contracts(url, output=Path(tmp) / "deployment.json")
        chain_id, deploy_block = record["chainId"], record["deployBlock"]
        registry = record["contracts"]["DeviceRegistry"]["address"]
        rpc = _Rpc(url)
        reg = Registrar(rpc, chain_id, registry)
        network_id = reg.create_network()
        t = time.perf_counter()
        reg.register(network_id, devices)
        out["setup_registrations_s"] = round(time.perf_counter() - t, 2)
        out["blocks"] = int(rpc.call("eth_blockNumber"), 16) - deploy_block
        log(f"  {devices} registrations made in {out['setup_registrations_s']} s ({out['blocks']} blocks)")

        state = Path(tmp) / "state"
        rss0 = _rss_mib()
        t = time.perf_counter()
        syncer = open_syncer(url, chain_id, registry, network_id, state, deploy_block=deploy_block)
        syncer.sync_once()
        out["cold_sync_s"] = round(time.perf_counter() - t, 3)
        out["rss_growth_mib"] = round(_rss_mib() - rss0, 1)
        now = time.time()
        out["trusted_after_cold"] = len(syncer.directory.peers(now))
        assert out["trusted_after_cold"] == devices, out

        reg.register(network_id, INCREMENTAL)
        t = time.perf_counter()
        applied = syncer.sync_once()
        out["incremental_sync_s"] = round(time.perf_counter() - t, 3)
        out["incremental_events"] = applied
        syncer.close()

        t = time.perf_counter()
        again = open_syncer(url, chain_id, registry, network_id, state, deploy_block=deploy_block)
        out["restart_load_s"] = round(time.perf_counter() - t, 3)
        assert len(again.directory) == devices + INCREMENTAL
        again.close()
        out["peak_rss_mib"] = round(_rss_mib("VmHWM"), 1)
        out["sqlite_mib"] = round(sum(f.stat().st_size for f in state.iterdir()) / 2**20, 1)
    target = 10.0 if devices <= 10_000 else 60.0 * devices / 100_000
    out["cold_target_s"] = round(target, 1)
    out["cold_within_target"] = out["cold_sync_s"] <= target
    out["incremental_within_target"] = out["incremental_sync_s"] <= 1.0
    return out


def _table(r: dict) -> str:
    rows = [
        ("devices", r["devices"], ""),
        ("cold full sync", f"{r['cold_sync_s']} s", f"target <= {r['cold_target_s']} s"),
        (f"incremental ({r['incremental_events']} events)", f"{r['incremental_sync_s']} s", "target <= 1 s"),
        ("restart (load SQLite)", f"{r['restart_load_s']} s", ""),
        ("memory added by sync", f"{r['rss_growth_mib']} MiB", f"peak RSS {r['peak_rss_mib']} MiB"),
        ("SQLite state", f"{r['sqlite_mib']} MiB", ""),
        ("(set-up: registrations)", f"{r['setup_registrations_s']} s", f"{r['blocks']} blocks"),
    ]
    return "\n".join(f"  {a:<34} {b!s:>12}   {c}" for a, b, c in rows)


def run(args) -> dict:
    """Entry point of ``python -m bench directory`` (``args.quick``, ``args.devices``)."""
    devices = getattr(args, "devices", None) or int(os.environ.get("SHADOWMESH_BENCH_DEVICES", 0)) or (
        QUICK_DEVICES if getattr(args, "quick", False) else DEFAULT_DEVICES)
    result = measure(devices)
    print(_table(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.directory", description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=None, help=f"registrations to make (default {DEFAULT_DEVICES})")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_DEVICES} registrations")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = p.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
