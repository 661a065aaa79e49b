"""Errors of the payments package (rewards/). All derive from ShadowMeshError; messages say what to do next
and never contain key material."""

from shadowmesh_client.errors import ShadowMeshError


class PaymentError(ShadowMeshError):
    """A payment operation failed (bad amount, missing token contract, nothing to claim...)."""


class PaymentConfigError(PaymentError, ValueError):
    """A payments setting is out of range; the message names it."""


class ReceiptError(PaymentError, ValueError):
    """A receipt is malformed, not signed by its payer or an authorised signer, for another chain, contract or
    relay, older than one already stored, or claims more bytes than this relay counted."""


class ControlMessageError(PaymentError, ValueError):
    """A payments control message (docs/payments.md "Control messages") could not be decoded."""


class ReceiptRejected(ReceiptError):
    """The relay's ledger refused a receipt; ``reason`` is a messages.RejectReason sent back in the ack."""

    def __init__(self, message: str, reason) -> None:
        super().__init__(message)
        self.reason = reason
