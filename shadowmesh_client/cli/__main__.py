"""``python -m shadowmesh_client.cli`` = the `shadowmesh-client` command."""

from shadowmesh_client.cli import main

main(prog_name="shadowmesh-client")
