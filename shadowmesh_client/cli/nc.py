"""`shadowmesh-client nc NAME PORT`: stdin/stdout to a peer's port through the node's SOCKS5 proxy
(docs/userspace.md; usable as an ssh ProxyCommand). Thin: parse, ``userspace.nc.connect`` + ``pipe``."""

from __future__ import annotations

import sys

import click

from shadowmesh_client.errors import ConfigError


@click.command("nc")
@click.argument("name")
@click.argument("port", type=click.IntRange(1, 65535))
@click.option("--proxy", metavar="HOST:PORT",
              help="The node's SOCKS5 proxy (default: config `userspace.socks`, 127.0.0.1:1080).")
@click.pass_obj
def nc(state, name, port, proxy):
    """Pipe stdin/stdout to PORT on the peer NAME (an overlay address or a key prefix), e.g.
    `ssh -o ProxyCommand='shadowmesh-client nc %h %p' 100.64.0.7`."""
    from shadowmesh_client.userspace.nc import connect, pipe

    if proxy is None:
        try:
            proxy = state.config.userspace.socks or "127.0.0.1:1080"
        except ConfigError:  # no config file: the default proxy address
            proxy = "127.0.0.1:1080"
    host, _, pport = proxy.rpartition(":")
    sock = connect((host.strip("[]") or "127.0.0.1", int(pport)), name, port)
    pipe(sock, sys.stdin.buffer, sys.stdout.buffer)


COMMANDS = (nc,)
