"""Settings of the local API (``ApiSettings``), each with its unit. Pure data; no I/O.

``listen`` is "HOST:PORT" on a loopback address, or "unix:/path/to/socket". The daemons take
``NodeSettings.api`` / ``RelaySettings.api`` (None: no API); the CLI (`up --api`, `relay --api`) builds it.

May import: the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NODE_API = "127.0.0.1:7780"
DEFAULT_RELAY_API = "127.0.0.1:7781"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ApiSettings:
    listen: str = DEFAULT_NODE_API
    token_file: str = "api-token"   # created 0600 if missing; the dashboard and the extension read it
    interval: float = 1.0           # seconds between samples (traffic history, SSE updates, auditor input)
    history: int = 600              # samples kept (600 x 1 s = 10 min of traffic history)
    max_events: int = 500           # recent events / log lines kept
    max_streams: int = 8            # concurrent SSE streams; more get 503
    max_inflight: int = 32          # concurrent requests being served; more get 503
    keepalive_s: float = 5.0        # seconds an idle HTTP connection stays open
    max_body_bytes: int = 256 * 1024
    audit_window: float = 10.0      # seconds per security-auditor window (agents/auditor.py)
    config_path: str | None = None  # the daemon's config file, for /api/v1/agents/doctor

    @property
    def unix_path(self) -> str | None:
        return self.listen[5:] if self.listen.startswith("unix:") else None

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def check(self) -> None:
        """ValueError unless ``listen`` is a unix socket or a loopback HOST:PORT (the API is local only)."""
        if self.unix_path:
            return
        try:
            host, port = self.host_port()
        except ValueError:
            raise ValueError(f"api {self.listen!r}: write HOST:PORT (e.g. {DEFAULT_NODE_API}) or unix:/PATH") from None
        if host not in LOOPBACK:
            raise ValueError(f"api {self.listen!r}: the local API listens on loopback only (127.0.0.1 or ::1); "
                             "use SSH port forwarding to reach it from elsewhere")
        if not 0 <= port <= 65535:
            raise ValueError(f"api {self.listen!r}: port out of range")
