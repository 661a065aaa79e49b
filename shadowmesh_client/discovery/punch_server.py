"""``PunchLinkServer``: transport.ws's ``LinkServer`` serving sockets that are already connected (a TCP
simultaneous open has no accept). discovery/punch.py uses it for the server role.

It reuses ``LinkServer``'s decoy front (``_Front``, private to transport/ws/server.py) through
``loop.connect_accepted_socket``: the upgrade is read, the hello authenticated and the connection handed to
websockets exactly as on a listener. ``start`` lets LinkServer bind a throwaway loopback listener (its
websockets Server needs one to wrap; nothing connects to it). A public ``LinkServer.adopt(sock)`` in
transport/ws would replace this module (suggested to the transport's owner).
May import: transport.ws.server (no websockets: that stays inside transport/ws).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket

from shadowmesh_client.transport.ws.server import LinkServer, _Front


class PunchLinkServer(LinkServer):
    async def start(self) -> None:
        real = self.config
        self.config = dataclasses.replace(real, host="127.0.0.1", port=0)
        try:
            await super().start()
        finally:
            self.config = real

    async def adopt(self, sock: socket.socket) -> None:
        """Serve one connected socket like an accepted connection."""
        await asyncio.get_running_loop().connect_accepted_socket(lambda: _Front(self), sock)
