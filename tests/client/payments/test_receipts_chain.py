"""Receipts against the real contract: the Python EIP-712 digest equals receiptDigest, and the contract
accepts exactly what receipts.py signs (and rejects an altered one)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowmesh_client.rewards.receipts import Receipt, ReceiptDomain, sign_receipt

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


def test_digest_matches_contract(chain_env):
    domain = chain_env.chain.domain
    rc = Receipt("0x" + "ab" * 20, bytes(range(32)), "0x" + "cd" * 20, 123_456_789, 7)
    onchain = chain_env.token.functions.receiptDigest(rc.payer, rc.device_id, rc.relay, rc.cumulative_bytes,
                                                     rc.price_per_byte).call()
    assert rc.digest(domain) == bytes(onchain)
    # Another chain id or contract gives another digest (what binds a receipt to this deployment).
    assert rc.digest(ReceiptDomain(domain.chain_id + 1, domain.contract)) != bytes(onchain)
    assert rc.digest(ReceiptDomain(domain.chain_id, "0x" + "11" * 20)) != bytes(onchain)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payer=addresses, relay=addresses, device=st.binary(min_size=32, max_size=32),
       cumulative=st.integers(0, 2**256 - 1), price=st.integers(0, 2**256 - 1))
def test_digest_matches_contract_for_any_fields(chain_env, payer, relay, device, cumulative, price):
    rc = Receipt(payer, device, relay, cumulative, price)
    onchain = chain_env.token.functions.receiptDigest(rc.payer, device, rc.relay, cumulative, price).call()
    assert rc.digest(chain_env.chain.domain) == bytes(onchain)


def test_compact_signature_recovers_on_chain_and_locally(chain_env):
    """Sign many receipts so both v = 27 and v = 28 occur; the contract and recover() agree on the signer."""
    from eth_account import Account

    acct = Account.create()
    domain = chain_env.chain.domain
    seen_v = set()
    for i in range(12):
        s = sign_receipt(domain, Receipt(acct.address, os.urandom(32), "0x" + "22" * 20, 1000 + i, 1), acct)
        seen_v.add(s.vs[0] >> 7)
        assert s.recover(domain) == acct.address
        assert s.with_receipt(cumulative_bytes=1001 + i).recover(domain) != acct.address
    assert seen_v == {0, 1}
