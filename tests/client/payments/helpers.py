"""Shared set-up for payment tests: a funded payer with a reserve for a relay (payments v2), a relay with a
price, a ledger."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account

from shadowmesh_client.rewards.ledger import ReceiptLedger, SignerCache
from shadowmesh_client.rewards.receipts import Receipt, ReceiptDomain, sign_receipt

# Fixed parties for the pure (no chain) tests: a fake chain/contract, relay address, device id and payer key.
DOMAIN = ReceiptDomain(31337, "0x" + "11" * 20)
RELAY = "0x" + "22" * 20
DEVICE = bytes(range(32))
KEY = Account.from_key("0x" + "01" * 32)


@dataclass
class Parties:
    payer: object
    relay: object
    device_id: bytes
    price: int
    deposit: int


def setup_parties(env, *, deposit: int, price: int, wallet: int | None = None) -> Parties:
    """``deposit``: put in the payer's reserve for the relay (only that relay can claim from it)."""
    payer = env.new_account(smt=wallet if wallet is not None else deposit)
    relay = env.new_account()
    if deposit:
        env.chain.transact(payer, env.token.functions.depositToReserve(relay.address, deposit))
    env.chain.transact(relay, env.token.functions.setRelayPrice(price))
    return Parties(payer, relay, os.urandom(32), price, deposit)


def binding_of(env):
    token = env.token

    def binding(payer, signer, device_id):
        return (token.functions.isReceiptSigner(payer, signer, device_id).call(),
                token.functions.signerBinding(payer, signer, device_id).call()[4])
    return binding


def open_ledger(env, path: Path, relay: str, **kw) -> ReceiptLedger:
    return ReceiptLedger(path, env.chain.domain, relay, SignerCache(binding_of(env)), **kw)


def signed(env, p: Parties, cumulative: int, *, signer=None, device_id: bytes | None = None,
           price: int | None = None):
    rc = Receipt(p.payer.address, device_id or p.device_id, p.relay.address, cumulative,
                 price if price is not None else p.price)
    return sign_receipt(env.chain.domain, rc, signer or p.payer)


def token_balance(env, address: str) -> int:
    return env.token.functions.balanceOf(address).call()
