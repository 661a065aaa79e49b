"""Who may use the local API: a bearer token from a file only the owner can read, plus Origin and Host checks.

* Token file (``ensure_token``): created with mode 0600 (O_EXCL, so never a world-readable moment); an
  existing file is reused (the dashboard URL and the VS Code extension keep working across restarts) and
  its mode tightened to 0600 if it was looser. The token is 256 random bits, URL-safe base64.
* ``Authorization: Bearer <token>`` on every /api request, compared in constant time. The dashboard page
  itself (static files, no data) is public; its script sends the token it got from the URL fragment
  (``#token=...``, never sent to the server or logged).
* Origin: a request carrying an ``Origin`` header must come from the API's own origin (the dashboard);
  a page on any other site gets 403 even with a stolen token. Host must be a loopback name with our port
  (no DNS rebinding).

May import: the standard library only.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def ensure_token(path: str | os.PathLike[str]) -> str:
    """The token in ``path``, created (0600) if missing."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            log.warning("api token file %s had mode %o: tightened to 600", p, mode)
            os.chmod(p, 0o600)
        token = p.read_text().strip()
        if len(token) >= 32:
            return token
        log.warning("api token file %s held no usable token: writing a new one", p)
        fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def bearer_ok(header: str | None, token: str) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def allowed_origins(port: int | None) -> set[str]:
    if port is None:
        return set()
    return {f"http://{h}:{port}" for h in LOOPBACK_HOSTS}


def host_ok(host: str | None, port: int | None) -> bool:
    """True for a loopback Host with our port (or any Host on a unix socket, where ``port`` is None)."""
    if port is None:
        return True
    return host in {f"{h}:{port}" for h in LOOPBACK_HOSTS}
