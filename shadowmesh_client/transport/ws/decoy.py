"""What a scanner sees: static nginx-like HTTP pages, and the hello carried in the upgrade request.

Spec: "Cloudflare Proxy Compatibility" (path obfuscation). The server answers EVERY request that is not
an authenticated upgrade on the secret path with the same kind of response a stock nginx (``server_tokens
off``) gives: ``/`` and ``/index.html`` get a 200 welcome page, anything else a 404 page. The bytes of a
decoy depend only on the request path (and the Date header), never on why the request was refused, so a
wrong path, a missing hello and a hello that fails authentication are indistinguishable in content.

The hello (the protocol's first handshake message) travels in the upgrade request as a cookie
``<name>=<base64url without padding>``: that lets the server authenticate BEFORE it answers 101, so a
failed authentication gets an ordinary page instead of an upgrade that is then closed.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import time

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

NOT_FOUND_BODY_TEMPLATE = (
    "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    "<center><h1>404 Not Found</h1></center>\r\n<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n"
)
WELCOME_BODY = (
    "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\n"
    "html { color-scheme: light dark; }\nbody { width: 35em; margin: 0 auto;\n"
    "font-family: Tahoma, Verdana, Arial, sans-serif; }\n</style>\n</head>\n<body>\n"
    "<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully installed and\n"
    "working. Further configuration is required.</p>\n\n<p><em>Thank you for using nginx.</em></p>\n"
    "</body>\n</html>\n"
)
INDEX_PATHS = ("/", "/index.html")
_LAST_MODIFIED_EPOCH = 1_700_000_000  # seconds: a fixed "file date" for the welcome page


class Decoy:
    """Builds the static responses. Stateless apart from constant bodies; safe to share."""

    def __init__(self, server_name: str = "nginx") -> None:
        self.server_name = server_name
        self.not_found_body = NOT_FOUND_BODY_TEMPLATE.format(server=server_name).encode()
        self.welcome_body = WELCOME_BODY.encode()
        self._etag = f'"{_LAST_MODIFIED_EPOCH:x}-{len(self.welcome_body):x}"'
        self._last_modified = email.utils.formatdate(_LAST_MODIFIED_EPOCH, usegmt=True)

    def response(self, request: Request) -> Response:
        """The page for ``request`` (path only; query string ignored like nginx's static handler)."""
        path = request.path.split("?", 1)[0]
        date = email.utils.formatdate(time.time(), usegmt=True)
        if path in INDEX_PATHS:
            headers = Headers([
                ("Server", self.server_name), ("Date", date), ("Content-Type", "text/html"),
                ("Content-Length", str(len(self.welcome_body))), ("Last-Modified", self._last_modified),
                ("Connection", "close"), ("ETag", self._etag), ("Accept-Ranges", "bytes"),
            ])
            return Response(200, "OK", headers, self.welcome_body)
        headers = Headers([
            ("Server", self.server_name), ("Date", date), ("Content-Type", "text/html"),
            ("Content-Length", str(len(self.not_found_body))), ("Connection", "close"),
        ])
        return Response(404, "Not Found", headers, self.not_found_body)


def encode_hello(hello: bytes) -> str:
    """Cookie value for ``hello``: base64url without padding (cookie-safe, proxy-safe)."""
    return base64.urlsafe_b64encode(hello).rstrip(b"=").decode("ascii")


def extract_hello(request: Request, cookie_name: str, max_bytes: int) -> bytes | None:
    """The hello from the request's Cookie header(s), or None if absent, malformed or too large."""
    prefix = cookie_name + "="
    max_chars = (max_bytes * 4 + 2) // 3
    for header in request.headers.get_all("Cookie"):
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


def is_websocket_upgrade(request: Request) -> bool:
    """True when the request carries the headers RFC 6455 requires (checked before authenticating so
    that websockets never answers an authenticated-but-broken upgrade with its own error page)."""
    h = request.headers
    connection = ",".join(h.get_all("Connection")).lower()
    upgrade = ",".join(h.get_all("Upgrade")).lower()
    return ("upgrade" in connection and "websocket" in upgrade
            and len(h.get_all("Sec-WebSocket-Key")) == 1 and h.get("Sec-WebSocket-Version") == "13")


def path_digest(path: str) -> bytes:
    """Digest used to compare request paths with the secret one in constant time."""
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).digest()
