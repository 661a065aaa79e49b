"""ClusterBilling: the relay's billing (relay/billing.py RelayBilling) over the cluster's shared ledger.

Selected by ``ClusterSettings.ledger_url`` (``relay --cluster-ledger postgresql://...``). Everything is
RelayBilling's (receipts acked after the ledger commit, credit gate, RECEIPT_STATE, claims); only the
ledger differs: after RelayBilling opened its usual ledger (which sets up the signer checks, tolerance and
price), the worker swaps in a PgReceiptLedger with the same settings, so every member reads and writes
the same channels. Credit is therefore enforced cluster-wide: a device's counted bytes are the sum of what
every member carried for it, its receipted bytes the latest receipt any member stored.

Runs on RelayBilling's worker thread (its ``_open``); the SQLite file RelayBilling opens first in the
member's state_dir is closed at once and stays empty of receipts.

Proposed follow-up (relay/billing.py is another change's): ``BillingSettings.ledger_url`` and
``ReceiptLedger``/``PgReceiptLedger`` chosen in ``RelayBilling._open``; this subclass then goes.

May import: relay.billing, relay.cluster.ledger, rewards.messages.
"""

from __future__ import annotations

from typing import Any

from shadowmesh_client.relay.billing import BillingSettings, RelayBilling
from shadowmesh_client.relay.cluster.ledger import PgReceiptLedger
from shadowmesh_client.rewards.messages import Kind, ReceiptMessage


class ClusterBilling(RelayBilling):
    ledger_url: str = ""

    @classmethod
    async def open_shared(cls, settings: BillingSettings, relay_owner: str, ledger_url: str) -> RelayBilling:
        bound: type[ClusterBilling] = type("ClusterBilling", (cls,), {"ledger_url": ledger_url})
        return await bound.open(settings, relay_owner)

    def _open(self) -> tuple[int, Any]:
        price, _state = super()._open()
        local = self.ledger
        shared = PgReceiptLedger.like(local, self.ledger_url)
        local.close()
        self.ledger = shared
        self.pay.ledger = shared
        state = {(rec.payer, rec.device_id): ReceiptMessage(rec.latest, Kind.RECEIPT_STATE).encode()
                 for rec in shared.channels() if rec.latest is not None}
        return price, state
