"""The `shadowmesh-client` command (click). One module per command group, each thin: parse the options,
call one library function, print the result (text, or JSON with ``--json``). Errors: one line on stderr,
exit code 1; usage errors exit 2; Ctrl-C prints ``interrupted`` and exits 130; with ``--json`` errors are
JSON on stdout too (``common.ErrorsAsMessages``).

* ``device``: init, register, revoke, renew, set-endpoint, status, peers (device owners);
* ``network``: network create/approve/suspend, account new/import (network admins, owner accounts);
* ``mesh``: up, relay (the daemons);
* ``payments``: deposit, withdraw, balance, claim, earnings, set-price, authorize-signer;
* ``dev``: dev faucet (local chains only: ETH and test SMT for a new owner);
* ``nc``: nc NAME PORT (stdin/stdout to a peer's port through the node's SOCKS5 proxy).

This module only builds the root group from them; no command module imports another (no cycles).
May import: every shadowmesh_client package (the CLI is the top of the dependency graph).
"""

from __future__ import annotations

import click

from shadowmesh_client.cli import dev, device, doctor, mesh, nc, network, payments
from shadowmesh_client.cli.common import TIMEOUT_ENV, ErrorsAsMessages, State


@click.group(cls=ErrorsAsMessages, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (default: $XDG_CONFIG_HOME/shadowmesh/config.yaml).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False),
              help="File holding the device key passphrase (else $SHADOWMESH_PASSPHRASE, else a prompt).")
@click.option("--owner-password-file", type=click.Path(dir_okay=False),
              help="File holding the owner keystore password (else $SHADOWMESH_OWNER_PASSWORD, else a prompt).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True, max=3600), envvar=TIMEOUT_ENV,
              help=f"Overall deadline in seconds for the chain RPC of one command (else ${TIMEOUT_ENV}, else "
                   "config `rpc_timeout`, 60 s).")
@click.version_option(package_name="shadowmesh-client")
@click.pass_context
def main(ctx: click.Context, config_path, passphrase_file, owner_password_file, timeout) -> None:
    """ShadowMesh client: device identity, on-chain registration, the peer directory, the mesh and relay payments.

    Exit codes: 0 ok, 1 error (one `error:` line), 2 usage error, 130 interrupted."""
    ctx.obj = State(config_path, passphrase_file, owner_password_file, timeout)


for _module in (device, network, mesh, payments, dev, doctor, nc):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["main"]
