"""Transport settings: link limits, server and client configuration, TLS contexts.

Spec: "Network Layer" (WS/WSS), "Cloudflare Proxy Compatibility" (random path, heartbeat, TLS).
Every constant names its unit. Validation raises TransportConfigError naming the setting.
"""

from __future__ import annotations

import os
import secrets
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from shadowmesh_client.transport.errors import TransportConfigError

# ---- implementation constants -------------------------------------------------------------------
PATH_PREFIX = "/api/v1/ws/"          # spec "Path Obfuscation": /api/v1/ws/{random}
PATH_RANDOM_BYTES = 18               # bytes of randomness in a generated path (24 base64url chars)
DEFAULT_MAX_MESSAGE_BYTES = 65_536 + 1_024  # bytes: a 64 KiB inner frame plus envelope and header
DEFAULT_MAX_QUEUE = 4                # messages buffered on receive before reading pauses (TCP pushes back)
DEFAULT_WRITE_LIMIT = 256 * 1024     # bytes: write-buffer high-water mark; send() waits above it
DEFAULT_PING_INTERVAL = 20.0         # seconds between heartbeat pings (Cloudflare idles out at 100 s)
DEFAULT_PING_TIMEOUT = 20.0          # seconds without pong before the link is declared dead
DEFAULT_CLOSE_TIMEOUT = 2.0          # seconds to wait for the closing handshake
DEFAULT_OPEN_TIMEOUT = 10.0          # seconds for TCP + TLS + HTTP upgrade (+ authenticate on servers)
DEFAULT_MAX_HELLO_BYTES = 4_096      # bytes: largest first message carried in the upgrade request
DEFAULT_HELLO_COOKIE = "sid"         # cookie that carries the hello (base64url, no padding)
DEFAULT_HEADER_TIMEOUT = 60.0       # seconds: nginx's client_header_timeout / client_body_timeout
DEFAULT_KEEPALIVE_TIMEOUT = 65.0    # seconds: nginx's keepalive_timeout (idle decoy connection)
DEFAULT_REFUSAL_FLOOR = 0.005       # seconds: every refused hello on the secret path is answered no sooner
DEFAULT_MAX_PREAUTH_PER_SOURCE = 256   # connections: pre-authentication, per source address (IPv6: per /64)
DEFAULT_MAX_PREAUTH_TOTAL = 4_096      # connections: pre-authentication, all sources (nginx: worker_connections)
DEFAULT_USER_AGENT = (               # what a browser would send; the library default is a fingerprint
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
)


SITE_STAMP_FILE = "decoy-site-installed"  # in a daemon's state dir: its mtime is the decoy page's file date


def site_mtime_for(state_dir: str | os.PathLike[str] | None) -> int | None:
    """``ServerConfig.site_mtime`` for a daemon: the mtime (integer seconds) of ``<state_dir>/``
    SITE_STAMP_FILE, created empty on the first start (as Debian's postinst stamps
    index.nginx-debian.html at install time): per installation, stable across restarts, not a secret.
    None without a state dir (LinkServer then uses the install time of the Python environment)."""
    if state_dir is None:
        return None
    stamp = Path(state_dir) / SITE_STAMP_FILE
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))  # first start only
        except FileExistsError:
            pass  # keep its date (Path.touch would move it to now)
        return int(stamp.stat().st_mtime)
    except OSError as exc:
        raise TransportConfigError(f"cannot create {stamp}: {exc}; check the state directory's permissions") from None


def random_path() -> str:
    """A fresh server path ``/api/v1/ws/<24 random base64url chars>`` (keep it secret: it is a filter)."""
    return PATH_PREFIX + secrets.token_urlsafe(PATH_RANDOM_BYTES)


@dataclass(frozen=True)
class LinkLimits:
    """Per-connection limits, the same on both ends. Memory per link is bounded by roughly
    ``max_queue * max_message_bytes`` (receive) + ``write_limit`` (send) + websockets' own state."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_queue: int = DEFAULT_MAX_QUEUE
    write_limit: int = DEFAULT_WRITE_LIMIT
    ping_interval: float | None = DEFAULT_PING_INTERVAL
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    open_timeout: float = DEFAULT_OPEN_TIMEOUT
    idle_ping_interval: float | None = None
    """Seconds between pings while a link carries no messages (WebSocket links: ``Link.ping_when_idle``);
    None: always ``ping_interval``. Above ``ping_interval`` it saves the idle links' wake-ups."""

    def __post_init__(self) -> None:
        if self.max_message_bytes < 256:
            raise TransportConfigError("transport.max_message_bytes must be at least 256 bytes")
        if self.max_queue < 1:
            raise TransportConfigError("transport.max_queue must be at least 1 message")
        if self.write_limit < 1_024:
            raise TransportConfigError("transport.write_limit must be at least 1024 bytes")
        for name in ("ping_interval", "ping_timeout", "idle_ping_interval"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise TransportConfigError(f"transport.{name} must be positive seconds or null (off)")
        if self.close_timeout <= 0 or self.open_timeout <= 0:
            raise TransportConfigError("transport.close_timeout and open_timeout must be positive seconds")

    def websockets_kwargs(self) -> dict:
        """Keyword arguments shared by websockets' serve() and connect()."""
        return {
            "compression": None,  # permessage-deflate off: ciphertext doesn't compress; ~39 KB/link
            "max_size": self.max_message_bytes,
            "max_queue": self.max_queue,
            "write_limit": self.write_limit,
            "ping_interval": self.ping_interval,
            "ping_timeout": self.ping_timeout,
            "close_timeout": self.close_timeout,
            "open_timeout": self.open_timeout,
        }


@dataclass(frozen=True)
class ServerConfig:
    """Where and how a node or relay listens. ``port=0`` picks a free port (see LinkServer.port)."""

    host: str = "127.0.0.1"
    port: int = 0
    path: str = field(default_factory=random_path)
    tls_cert: str | None = None      # PEM certificate chain file; with tls_key: WSS, else plain WS
    tls_key: str | None = None       # PEM private key file
    limits: LinkLimits = field(default_factory=LinkLimits)
    hello_cookie: str = DEFAULT_HELLO_COOKIE
    max_hello_bytes: int = DEFAULT_MAX_HELLO_BYTES
    server_name: str = "nginx"       # Server header of every response, decoys included
    # decoy web server (ws/http.py): nginx's timeouts, and the welcome page's file date (integer seconds
    # since the epoch; sets ETag/Last-Modified). None: the install time of this Python environment (see
    # ws/server.py site_mtime); daemons should pass the first-start time of their state directory.
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    site_mtime: int | None = None
    # constant-time refusal: a failed hello is answered ``refusal_floor`` seconds after its request was
    # read (or when authenticate() returns, if later), so the hook's cost does not tell keys apart
    refusal_floor: float = DEFAULT_REFUSAL_FLOOR
    # pre-authentication bounds (issue 12 "Slowloris"): connections counted from accept until the
    # upgrade or the close (authenticated links are not counted). Over the total, the oldest idle ones
    # (no byte of a request yet, or idle keep-alive) are closed first as nginx does when it runs out of
    # worker_connections; a new connection over either cap is closed at once. Behind a CDN or proxy
    # every client shares its addresses: raise max_preauth_per_source to max_preauth_total there.
    max_preauth_per_source: int = DEFAULT_MAX_PREAUTH_PER_SOURCE
    max_preauth_total: int = DEFAULT_MAX_PREAUTH_TOTAL

    def __post_init__(self) -> None:
        if not 1 <= self.max_preauth_per_source <= self.max_preauth_total:
            raise TransportConfigError("transport.max_preauth_per_source must be at least 1 connection and at "
                                       "most transport.max_preauth_total")
        if not self.path.startswith("/") or any(c in self.path for c in "?# \r\n"):
            raise TransportConfigError(
                f"transport.path must be an absolute URL path without query, e.g. {PATH_PREFIX}<random>")
        if not 0 <= self.port <= 65_535:
            raise TransportConfigError("transport.port must be 0..65535 (0 = pick a free port)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise TransportConfigError("transport.tls_cert and transport.tls_key go together: set both or neither")
        if self.header_timeout <= 0 or self.keepalive_timeout <= 0 or self.refusal_floor < 0:
            raise TransportConfigError("transport.header_timeout/keepalive_timeout must be positive seconds, "
                                       "refusal_floor zero or more seconds")
        if not self.hello_cookie.isidentifier():
            raise TransportConfigError("transport.hello_cookie must be a simple token such as 'sid'")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """Server TLS context (TLS 1.2+, certificate chain from the files), or None for plain WS."""
        if self.tls_cert is None:  # not self.tls
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])  # as nginx without http2: a browser offering h2,http/1.1 gets 1.1
        try:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise TransportConfigError(
                f"cannot load TLS certificate {self.tls_cert!r} / key {self.tls_key!r}: {exc}; "
                "check the paths and that the key matches the certificate") from None
        return ctx


@dataclass(frozen=True)
class ClientConfig:
    """Where and how to dial. ``url`` is ws:// or wss://host:port/path; for wss, ``ca_file`` (PEM)
    pins the trust roots, otherwise the system store is used."""

    url: str
    ca_file: str | None = None
    server_hostname: str | None = None  # TLS name to verify, when it differs from the URL host
    limits: LinkLimits = field(default_factory=LinkLimits)
    hello_cookie: str = DEFAULT_HELLO_COOKIE
    user_agent: str = DEFAULT_USER_AGENT
    backoff_initial: float = 0.25      # seconds before the first retry
    backoff_max: float = 30.0          # seconds: cap of the retry delay
    backoff_multiplier: float = 2.0
    backoff_jitter: float = 0.5        # fraction of the delay drawn at random (0 = none, 1 = full jitter)
    stable_after: float = 5.0          # seconds a link must live before the backoff resets

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise TransportConfigError(f"transport url {self.url!r} must look like wss://host:port/path")
        if self.ca_file is not None and parts.scheme != "wss":
            raise TransportConfigError("transport.ca_file only makes sense with a wss:// url")
        if not (0 < self.backoff_initial <= self.backoff_max) or self.backoff_multiplier < 1:
            raise TransportConfigError("transport backoff: need 0 < initial <= max and multiplier >= 1")
        if not 0 <= self.backoff_jitter <= 1:
            raise TransportConfigError("transport.backoff_jitter must be between 0 and 1")

    @property
    def tls(self) -> bool:
        return self.url.startswith("wss:")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TransportConfigError(f"cannot load CA file {self.ca_file!r}: {exc}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx
