"""What a scanner sees, and the hello carried in the upgrade request.

Spec: "Cloudflare Proxy Compatibility" (path obfuscation); issue 12 "Camouflage". The server answers
EVERY request that is not an authenticated upgrade on the secret path exactly as Debian's nginx 1.22 with
its default site and ``server_tokens off`` would (the HTTP front is ``http.py``). A wrong path, a missing
hello and a hello that fails authentication get the same bytes (the secret path is just one more missing
file: 404, keep-alive), and every refusal on the secret path is answered after the same delay (server.py).

The hello (the protocol's first handshake message) travels in the upgrade request as a cookie
``<name>=<base64url without padding>``: that lets the server authenticate BEFORE it answers 101, so a
failed authentication gets an ordinary page instead of an upgrade that is then closed.

Per-host validators: the welcome page's ETag/Last-Modified come from ``site_mtime`` (the file date nginx
would show: its install time), never from the secret path, so two ShadowMesh hosts do not share them.

May import: the standard library, ws/http.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import sys

from shadowmesh_client.transport.ws.http import Request


def site_mtime(configured: int | None) -> int:
    """The welcome page's file date, in integer seconds: ``configured`` if given, else the time this
    Python environment was installed (the mtime of ``sys.prefix``: per host, stable across restarts,
    like the install time Debian's postinst gives ``/var/www/html/index.nginx-debian.html``)."""
    if configured is not None:
        return int(configured)
    try:
        return int(os.stat(sys.prefix).st_mtime)
    except OSError:
        return int(os.stat(__file__).st_mtime)


def encode_hello(hello: bytes) -> str:
    """Cookie value for ``hello``: base64url without padding (cookie-safe, proxy-safe)."""
    return base64.urlsafe_b64encode(hello).rstrip(b"=").decode("ascii")


def extract_hello(request: Request, cookie_name: str, max_bytes: int) -> bytes | None:
    """The hello from the request's Cookie header(s), or None if absent, malformed or too large."""
    prefix = cookie_name + "="
    max_chars = (max_bytes * 4 + 2) // 3
    for header in request.all("cookie"):
        for item in header.split(";"):
            item = item.strip()
            if not item.startswith(prefix):
                continue
            value = item[len(prefix):]
            if not value or len(value) > max_chars:
                return None
            try:
                hello = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
            except (binascii.Error, ValueError):
                return None
            return hello or None
    return None


def _tokens(values: list[str]) -> set[str]:
    return {t.strip().lower() for v in values for t in v.split(",")}


def is_websocket_upgrade(request: Request) -> bool:
    """True when the request is one websockets will accept as an RFC 6455 upgrade (GET, HTTP/1.1, no
    body, the four headers, a 16-byte key): checked before authenticating, so that websockets never
    answers an authenticated-but-broken upgrade with its own (non-nginx) error page."""
    if request.method != "GET" or request.version != (1, 1):
        return False
    if request.header("content-length") is not None or request.header("transfer-encoding") is not None:
        return False
    keys = request.all("sec-websocket-key")
    if len(keys) != 1 or request.all("sec-websocket-version") != ["13"]:
        return False
    try:
        if len(base64.b64decode(keys[0], validate=True)) != 16:
            return False
    except (binascii.Error, ValueError):
        return False
    return "upgrade" in _tokens(request.all("connection")) and _tokens(request.all("upgrade")) == {"websocket"}


def path_digest(path: str) -> bytes:
    """Digest used to compare request paths with the secret one in constant time."""
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).digest()
