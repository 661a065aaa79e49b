"""Direct links through NATs: TCP simultaneous open plus a listener on the same port (issue 15).

One local TCP port P per device (``settings.punch_port``, or one chosen at start) carries everything that
must share a NAT mapping: the relay links are dialled FROM P (``relay_dial``), so the address a relay
observes is the mapping of P (like STUN); a listening socket on P (SO_REUSEPORT) accepts peers whose SYN
arrives from a port we could not predict (their NAT maps per destination: "symmetric").

``punch(peer, addresses, client=...)`` then, until a TCP connection exists or the deadline passes:

* connects from P to each of the peer's candidates every ``RETRY_SECONDS`` (both sides do it at the same
  time, after the candidate exchange through the relay, so the SYNs cross and each NAT has the mapping and
  the filter entry the other side's SYN needs: TCP simultaneous open, RFC 793 3.4 / RFC 5382);
* takes a connection accepted on P from one of the peer's addresses (same IP, any port);
* when exactly one side's NAT maps per destination and both can (CANDIDATES flags ``hard``/``birthday``,
  ``candidates``/``learn``), and no connection exists after ``HARD_DELAY``: a birthday round
  (discovery/hardnat.py: the hard side opens many flows to the easy side's mapped address, the easy side
  sends SYNs from P to many guessed ports of the hard side's public IP; a collision connects).

On the first TCP connection the roles are fixed by key order (``client``: the lower key): the client
speaks WebSocket client on it (its hello: a KEEPALIVE frame of the EXISTING session, so the link is
authenticated without a new handshake), the server adopts it into a link server (the same decoy front as
every listener) whose ``authenticate`` opens that frame with the existing session. Either way the link is
ws:// (the session encrypts; a device behind NAT has no certificate) on the same WebSocket framing.

Uses transport.ws's public ``dial`` with a pre-connected socket (``_SockLimits``: websockets' ``sock``
argument) and ``LinkServer`` with adopted sockets (``PunchLinkServer``; it reuses the private ``_Front`` of
transport/ws/server.py: a public ``LinkServer.adopt(sock)`` there would remove that coupling).

``MemoryPuncher`` is the in-process fake (transport.memory) for tests: same interface, no sockets; its
``blocked`` flag makes punching fail (a NAT pair that cannot be traversed).

Not task-safe beyond the event loop. Owned tasks: ``serve()`` (the accept loop, run by the discovery
service's task) and one task per punch attempt (the caller's).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from shadowmesh_client.discovery import hardnat
from shadowmesh_client.discovery import messages as m
from shadowmesh_client.discovery.hardnat import Role
from shadowmesh_client.protocol import peek_header
from shadowmesh_client.transport import ClientConfig, Link, LinkLimits, ServerConfig
from shadowmesh_client.transport.errors import TransportError

log = logging.getLogger(__name__)

RETRY_SECONDS = 0.2
"""Seconds between connect attempts to one candidate while punching."""
CONNECT_TIMEOUT = 1.0
"""Seconds one connect attempt waits (a SYN dropped by a NAT filter is retried, not waited on)."""
PUNCH_PATH = "/.well-known/sm-direct"
EARLY_SECONDS = 3.0
"""Seconds an accepted connection waits for our own punch to that peer to begin (the SYN may win the race)."""
MAX_EARLY = 64
MAX_HINTS = 1024
"""Peers whose CANDIDATES flags are remembered until their punch begins."""

Authenticate = Callable[[bytes], Any]
OnLink = Callable[[Link], Awaitable[None]]


def reusable_socket(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.setblocking(False)
    s.bind((host, port))
    return s


@dataclasses.dataclass(frozen=True)
class _SockLimits(LinkLimits):
    """LinkLimits that also hand websockets' connect() a pre-connected socket."""

    sock: Any = None

    def websockets_kwargs(self) -> dict:
        return {**super().websockets_kwargs(), "sock": self.sock}


class _Expect:
    __slots__ = ("key", "ips", "client", "hello", "authenticate", "on_link", "got")

    def __init__(self, key, ips, client, hello, authenticate, on_link) -> None:
        self.key, self.ips, self.client, self.hello = key, ips, client, hello
        self.authenticate, self.on_link = authenticate, on_link
        self.got: asyncio.Future = asyncio.get_running_loop().create_future()


class _Expecting:
    """The server role's hooks, shared by both punchers: dispatch an upgrade to the punch expecting it; and
    the NAT flags of CANDIDATES (``candidates`` builds ours, ``learn`` keeps the peer's for its punch)."""

    _expect: dict[bytes, _Expect]
    birthday = False           # can do a birthday round (discovery/hardnat.py)
    port: int
    me_hard = False
    _hints: dict[bytes, tuple[bool, bool]]

    def candidates(self, key: bytes, observed: list[tuple[str, int]], answer: bool) -> m.Candidates:
        """Our CANDIDATES for ``key``: the addresses relays observe, and whether our NAT is hard."""
        self.me_hard = hardnat.is_hard(self.port, observed)
        return m.Candidates(key, tuple(observed), answer, hard=self.me_hard, birthday=self.birthday)

    def learn(self, msg: m.Candidates) -> None:
        """A trusted peer's CANDIDATES arrived: remember its NAT flags for the punch that follows."""
        self._hints.pop(msg.peer, None)
        while len(self._hints) >= MAX_HINTS:
            del self._hints[next(iter(self._hints))]
        self._hints[msg.peer] = (msg.hard, msg.birthday)

    def _role(self, key: bytes) -> Role | None:
        hard, capable = self._hints.pop(key, (False, False))
        return hardnat.role(self.me_hard, self.birthday, hard, capable)

    # ---- server role: the adopted connection's upgrade ----------------------------------------------
    def _authenticate(self, hello: bytes):
        try:
            key = peek_header(hello).sender
        except Exception:
            return None
        expect = self._expect.get(key)
        if expect is None or expect.client or expect.got.done():
            return None
        return expect.authenticate(hello)

    async def _on_link(self, link: Link) -> None:
        expect = self._expect.get(link.peer)
        if expect is None or expect.got.done():
            await link.close()
            return
        expect.got.set_result(link)
        await expect.on_link(link)


class TcpPuncher(_Expecting):
    """``await start()``, ``serve()`` (accept loop task), ``relay_dial``, ``punch``, ``close()``."""

    birthday = True

    def __init__(self, port: int, limits: LinkLimits, *, host: str = "0.0.0.0") -> None:
        self.host = host
        self.port = port
        self.limits = limits
        self._listener: socket.socket | None = None
        self._server: Any = None
        self._expect: dict[bytes, _Expect] = {}
        self._early: dict[str, tuple] = {}    # peer IP -> (socket, address, loop time): accepted before our punch
        self.punched = 0
        self.accepted = 0
        self._hints = {}
        self._rng = random.SystemRandom()
        self.budget = hardnat.Budget()
        self.rounds = 0          # birthday rounds run (either role)
        self.syns = 0            # their initial SYNs (the hard flows' kernel retransmissions come on top)
        self.hits = 0            # their TCP connections (collisions)

    async def start(self) -> None:
        from shadowmesh_client.discovery.punch_server import PunchLinkServer  # transport.ws glue

        self._listener = reusable_socket(self.host, self.port)
        self.port = self._listener.getsockname()[1]
        self._listener.listen(64)
        self._server = PunchLinkServer(ServerConfig(host=self.host, port=self.port, path=PUNCH_PATH,
                                                    limits=self.limits), self._authenticate, self._on_link)
        await self._server.start()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
        if self._listener is not None:
            self._listener.close()

    # ---- relay links from P ------------------------------------------------------------------------
    async def relay_dial(self, config: ClientConfig, hello: bytes, *, peer: Any = None) -> Link:
        from urllib.parse import urlsplit

        from shadowmesh_client.transport.ws.client import dial

        u = urlsplit(config.url)
        port = u.port or (443 if u.scheme == "wss" else 80)
        sock = reusable_socket(self.host, self.port)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(u.hostname, port, family=socket.AF_INET,
                                                                  type=socket.SOCK_STREAM)
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, infos[0][4]), 5.0)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise TransportError(f"cannot reach {u.hostname}:{port} from port {self.port}: {exc}") from None
        limits = _SockLimits(**{f.name: getattr(config.limits, f.name) for f in dataclasses.fields(LinkLimits)},
                             sock=sock)
        return await dial(dataclasses.replace(config, limits=limits), hello, peer=peer)

    # ---- the accept loop -----------------------------------------------------------------------------
    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            sock, addr = await loop.sock_accept(self._listener)
            expect = next((e for e in self._expect.values() if addr[0] in e.ips and not e.got.done()), None)
            if expect is None:      # before our own punch began (the candidate answer raced it): park it
                self._early[addr[0]] = (sock, addr, loop.time())
                for ip, (s, _, at) in list(self._early.items()):
                    if loop.time() - at > EARLY_SECONDS or len(self._early) > MAX_EARLY:
                        s.close()
                        del self._early[ip]
                continue
            self.accepted += 1
            await self._connected(expect, sock, f"{addr[0]}:{addr[1]}")

    # ---- punching ------------------------------------------------------------------------------------
    async def punch(self, key: bytes, addresses: list[tuple[str, int]], *, client: bool,
                    hello: Callable[[], bytes], authenticate: Authenticate, on_link: OnLink,
                    timeout: float) -> Link | None:
        """Try to get a direct link to ``key`` at ``addresses``. Returns the link once it is up (the
        server role's link is already being served by ``on_link``; the client role's is for the caller to
        verify and serve), or None at the deadline."""
        if key in self._expect or not addresses:
            return None
        part = self._role(key)
        expect = self._expect[key] = _Expect(key, {a for a, _ in addresses}, client, hello, authenticate, on_link)
        for ip in expect.ips & set(self._early):     # the peer's SYN got here first
            sock, addr, _ = self._early.pop(ip)
            self.accepted += 1
            await self._connected(expect, sock, f"{addr[0]}:{addr[1]}")
        try:
            async with asyncio.timeout(timeout):
                async with asyncio.TaskGroup() as group:
                    tries = [group.create_task(self._connect_loop(expect, a)) for a in addresses]
                    if part is not None:
                        tries.append(group.create_task(self._birthday(expect, addresses, part)))
                    try:
                        return await asyncio.shield(expect.got)
                    finally:
                        for t in tries:
                            t.cancel()
        except TimeoutError:
            return None
        finally:
            self._expect.pop(key, None)

    async def _connect_loop(self, expect: _Expect, address: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        while not expect.got.done():
            sock = reusable_socket(self.host, self.port)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, address), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                sock.close()
                if isinstance(exc, OSError) and exc.errno not in (errno.ECONNREFUSED, errno.ETIMEDOUT,
                                                                  errno.EHOSTUNREACH, errno.ECONNRESET,
                                                                  errno.EADDRNOTAVAIL, errno.ENETUNREACH, None):
                    log.debug("punch %s: %s", address, exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self.punched += 1
            if await self._connected(expect, sock, f"{address[0]}:{address[1]}"):
                return
            await asyncio.sleep(RETRY_SECONDS)

    async def _connected(self, expect: _Expect, sock: socket.socket, where: str) -> bool:
        """A TCP connection to the peer: speak WebSocket on it in our role. False: try again."""
        if expect.got.done():
            sock.close()
            return True
        if not expect.client:
            await self._server.adopt(sock)      # the upgrade arrives; _authenticate/_on_link settle ``got``
            return True
        from shadowmesh_client.transport.ws.client import dial

        limits = _SockLimits(**{f.name: getattr(self.limits, f.name) for f in dataclasses.fields(LinkLimits)},
                             sock=sock)
        try:
            link = await dial(ClientConfig(f"ws://{where}{PUNCH_PATH}", limits=limits), expect.hello(),
                              peer=expect.key)
        except TransportError as exc:
            log.info("punch to %s: upgrade failed: %s", where, exc)
            with contextlib.suppress(OSError):
                sock.close()
            return False
        if expect.got.done():
            await link.close()
        else:
            expect.got.set_result(link)
        return True

    # ---- the birthday round (discovery/hardnat.py) ---------------------------------------------------
    async def _birthday(self, expect: _Expect, addresses: list[tuple[str, int]], part: Role) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(hardnat.HARD_DELAY)
        if expect.got.done() or not self.budget.begin(loop.time()):
            return
        self.rounds += 1
        try:
            if part is Role.EASY:      # from P to guessed ports of the hard side's public IP
                ip = addresses[0][0]
                targets = [(ip, p) for p in hardnat.guess_ports(self._rng, hardnat.GUESSES, {p for _, p in addresses})]
                local, hold = self.port, hardnat.HOLD_SECONDS
            else:                      # from fresh ports to the easy side's one mapped address
                targets, local, hold = [addresses[0]] * hardnat.HARD_SOCKETS, 0, None
            log.debug("peer %s: birthday round as the %s side, %d SYNs", expect.key.hex()[:8], part.value,
                      len(targets))
            opened = asyncio.Semaphore(hardnat.MAX_OPEN)
            hit = asyncio.Event()      # a collision connected: no more SYNs this round
            start = loop.time()
            async with asyncio.TaskGroup() as group:
                for at, i, j in hardnat.schedule(len(targets)):
                    await asyncio.sleep(max(0.0, start + at - loop.time()))
                    if expect.got.done() or hit.is_set():
                        break
                    for target in targets[i:j]:
                        await opened.acquire()
                        group.create_task(self._probe(expect, target, local, hold, opened, hit))
        finally:
            self.budget.end()

    async def _probe(self, expect: _Expect, address: tuple[str, int], local: int, hold: float | None,
                     opened: asyncio.Semaphore, hit: asyncio.Event) -> None:
        """One SYN of a round: from ``local`` (0: a fresh port) to ``address``; held ``hold`` seconds (None:
        until the round is cancelled). A connection is taken like any punched one."""
        try:
            if local:
                sock = reusable_socket(self.host, local)
            else:                  # connect() picks a fresh ephemeral port, unique for the 4-tuple
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, hardnat.HARD_SYNCNT)
        except OSError as exc:
            opened.release()
            log.debug("birthday probe: %s", exc)
            return
        try:
            self.syns += 1
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, address), hold)
        except (OSError, TimeoutError):
            sock.close()
            return
        except BaseException:
            sock.close()
            raise
        finally:
            opened.release()
        self.hits += 1
        hit.set()
        await self._connected(expect, sock, f"{address[0]}:{address[1]}")


class MemoryPuncher(_Expecting):
    """The in-process fake: the server role listens at ``punch-<key>:1`` on a MemoryTransport, the client
    role dials it (retrying until the deadline). ``blocked``: every punch fails (an untraversable pair)."""

    def __init__(self, transport, key: bytes) -> None:
        self.transport = transport
        self.key = key
        self.port = 1
        self.blocked = False
        self._hints = {}
        self._server: Any = None
        self._expect: dict[bytes, _Expect] = {}
        self.punched = 0
        self.accepted = 0

    async def start(self) -> None:
        cfg = ServerConfig(host=f"punch-{self.key.hex()[:12]}", port=1, path=PUNCH_PATH)
        self._server = self.transport.server(cfg, self._authenticate, self._on_link)
        await self._server.start()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    async def serve(self) -> None:
        await asyncio.Event().wait()

    relay_dial = None   # relay links: the transport's own dial

    async def punch(self, key: bytes, addresses, *, client: bool, hello, authenticate, on_link,
                    timeout: float) -> Link | None:
        self._hints.pop(key, None)
        if self.blocked or key in self._expect:
            return None
        expect = self._expect[key] = _Expect(key, set(), client, hello, authenticate, on_link)
        try:
            async with asyncio.timeout(timeout):
                if not client:
                    return await asyncio.shield(expect.got)
                url = f"ws://punch-{key.hex()[:12]}:1{PUNCH_PATH}"
                while True:
                    try:
                        link = await self.transport.dial(ClientConfig(url), hello(), peer=key)
                        self.punched += 1
                        return link
                    except TransportError:
                        await asyncio.sleep(RETRY_SECONDS)
        except TimeoutError:
            return None
        finally:
            self._expect.pop(key, None)
