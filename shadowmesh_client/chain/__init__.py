"""Everything that talks to the chain on behalf of a user: the web3 wrapper and deployment records
(``client``) and the DeviceRegistry operations the CLI runs (``registry``). The token's operations live in
``rewards.onchain``. The directory reads logs through its own JSON-RPC reader (``directory.reader``) and
does not import this package.

May import: errors, crypto, directory (events, proof), web3/eth-account. Never imported by protocol/,
transport/, relay core or tun/.
"""

from shadowmesh_client.chain.client import (
    STATUS_NAMES,
    Chain,
    Deployment,
    explain_error,
    load_deployment,
    load_owner_account,
)

__all__ = ["STATUS_NAMES", "Chain", "Deployment", "explain_error", "load_deployment", "load_owner_account"]
