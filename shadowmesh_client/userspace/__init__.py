"""Userspace networking (issue 18; docs/userspace.md): TCP streams and UDP flows carried inside the
end-to-end sessions, the local SOCKS5 / HTTP CONNECT proxies and port forwards that open them, the policy
that decides what a peer may reach through this node, and the packet sink that replaces the TUN device
when ``up --userspace`` runs without privileges.

* ``wire``: the stream messages (pure);
* ``policy``: ``StreamPolicy``, ``Expose``, ``Forward`` (pure);
* ``settings``: ``StreamSettings`` (pure);
* ``streams``: ``Mux`` and ``Stream`` (flow control, half-close, resets);
* ``udp``: UDP flows (SOCKS5 UDP ASSOCIATE, e.g. DNS);
* ``proxy``: SOCKS5, HTTP CONNECT, forwards, name resolution;
* ``sink``: ``PacketSink`` (ping replies, TCP RSTs: no kernel interface);
* ``service``: ``Userspace``, the node service that ties them together;
* ``nc``: the client side of ``shadowmesh-client nc`` (a SOCKS5 client piping stdin/stdout).

Nothing here imports pyroute2 or opens /dev/net/tun (tests/client/userspace checks). May import: errors,
tun.base (the sink's interface). Importing this package imports no submodule.
"""
