"""Relay payments: EIP-712 usage receipts, the device's issuer, the relay's durable ledger and credit policy,
the control messages between them, and the on-chain escrow/claim operations. Spec: "Token System",
"User Cost Model"; issue 6; docs/payments.md.

receipts.py  Receipt / ReceiptDomain / SignedReceipt, sign_receipt (EIP-712, EIP-2098 compact)   pure
issuer.py    ReceiptIssuer: when and for how much the device signs                               pure
credit.py    CreditPolicy: stop/resume relaying for a payer (all its devices), per reserve        pure
messages.py  RECEIPT / RECEIPT_ACK / RECEIPT_STATE / RELAY_COUNT / RELAY_NOTICE (sealed)         pure
ledger.py    ReceiptLedger: verified receipts in SQLite (WAL, synchronous=FULL)                  file I/O
hooks.py     DevicePayments / RelayPayments: what the node and relay daemons call                no sockets
onchain.py   deposits, reserves, signers, balance, claim (claimBatch), earnings                 chain
watch.py     the token events a relay acts on (reserve withdrawals, signer revocations)           pure
"""

from shadowmesh_client.rewards.credit import ChannelFigures, CreditConfig, CreditPolicy, Decision, PayerFigures
from shadowmesh_client.rewards.errors import (
    ControlMessageError,
    PaymentConfigError,
    PaymentError,
    ReceiptError,
    ReceiptRejected,
)
from shadowmesh_client.rewards.hooks import DevicePayments, Grant, RelayPayments
from shadowmesh_client.rewards.issuer import IssuerConfig, ReceiptIssuer
from shadowmesh_client.rewards.ledger import ReceiptLedger, SignerCache
from shadowmesh_client.rewards.receipts import Receipt, ReceiptDomain, SignedReceipt, sign_receipt

__all__ = [
    "ChannelFigures", "ControlMessageError", "CreditConfig", "CreditPolicy", "Decision", "DevicePayments", "Grant",
    "IssuerConfig", "PayerFigures", "PaymentConfigError", "PaymentError", "Receipt", "ReceiptDomain", "ReceiptError",
    "ReceiptIssuer", "ReceiptLedger", "ReceiptRejected", "RelayPayments", "SignedReceipt", "SignerCache",
    "sign_receipt",
]
