"""The decoy web server: a sans-I/O HTTP/1.1 front that answers like Debian's nginx 1.22 default site.

Owns: parsing every request that is not a WebSocket hello, and the exact bytes nginx 1.22.1 (Debian
bookworm, ``/etc/nginx/sites-available/default``, ``gzip on``, ``server_tokens off``) would send back,
including error pages, keep-alive, pipelining, HEAD, 304, 206/416 (single and multipart), gzip (level 1,
text/html only, HTTP/1.1 only), ``Expect: 100-continue`` and request bodies (read and discarded).
Issue 12 "Camouflage"; checked byte for byte against a real nginx by tests/e2e/test_camouflage.py, whose
known-limit list (docs/transport.md) names every remaining difference.

Why not h11: nginx is more lenient than RFC 7230 in places a prober can see (invalid header names are
ignored, bare LF, several spaces in the request line, HTTP/0.9, ``HTTP/1.2``) and stricter in others
(``..`` above the root, ``%zz``, NUL); the state machine below follows ``ngx_http_parse.c`` instead,
so the answer is nginx's, not a generic HTTP library's.

Not task-safe: one ``HttpConnection`` per TCP connection, driven by one protocol object. Time (for the
Date header) is read from ``time.time()`` when a response is built.

May import: the standard library, ws/http_filters.py.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass

from shadowmesh_client.transport.ws.http_filters import (
    BodyReader,
    Boundary,
    Refusal,
    Request,
    chunked,
    etag_match,
    gzip_body,
    gzip_ok,
    http_time,
    parse_ranges,
)

# ---- nginx constants (ngx_http_core_module defaults; units in the names) -------------------------
HEADER_LINE_MAX_BYTES = 8_192        # large_client_header_buffers 4 8k: one line must fit in 8 KiB
HEADER_TOTAL_MAX_BYTES = 4 * 8_192   # ... and the whole head in four of them
CLIENT_MAX_BODY_BYTES = 1_048_576    # client_max_body_size 1m: larger Content-Length -> 413
KEEPALIVE_REQUESTS = 1_000           # keepalive_requests: the 1000th response carries Connection: close

REASONS = {
    200: "OK", 206: "Partial Content", 304: "Not Modified", 400: "Bad Request", 404: "Not Found",
    405: "Not Allowed", 412: "Precondition Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Large", 416: "Requested Range Not Satisfiable", 501: "Not Implemented",
    505: "HTTP Version Not Supported",
}
TOO_LARGE = 494                      # nginx's internal code: "400 Request Header Or Cookie Too Large"
TO_HTTPS = 497                       # nginx's internal code: "400 The plain HTTP request was sent to HTTPS port"
_SPECIAL = {TOO_LARGE: "Request Header Or Cookie Too Large", TO_HTTPS: "The plain HTTP request was sent to HTTPS port"}
# nginx drops keep-alive after these (ngx_http_special_response_handler) and after any parse error
_CLOSE_AFTER = {400, TOO_LARGE, TO_HTTPS, 413, 414, 501, 505}

# /usr/share/nginx/html/index.html of Debian's nginx-common 1.22.1 (copied to the default root as
# /var/www/html/index.nginx-debian.html by its postinst, so its mtime is the install time)
WELCOME_PAGE = (
    b"<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\n"
    b"html { color-scheme: light dark; }\nbody { width: 35em; margin: 0 auto;\n"
    b"font-family: Tahoma, Verdana, Arial, sans-serif; }\n</style>\n</head>\n<body>\n"
    b"<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully installed and\n"
    b"working. Further configuration is required.</p>\n\n"
    b"<p>For online documentation and support please refer to\n"
    b"<a href=\"http://nginx.org/\">nginx.org</a>.<br/>\nCommercial support is available at\n"
    b"<a href=\"http://nginx.com/\">nginx.com</a>.</p>\n\n"
    b"<p><em>Thank you for using nginx.</em></p>\n</body>\n</html>\n"
)
WELCOME_PATHS = ("/", "/index.nginx-debian.html")  # `index index.html index.htm index.nginx-debian.html`
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def error_page(status: int, server: str) -> bytes:
    """nginx's built-in error page for ``status`` (ngx_http_special_response.c), tail naming ``server``."""
    if status in _SPECIAL:
        text = _SPECIAL[status]
        return (f"<html>\r\n<head><title>400 {text}</title></head>\r\n<body>\r\n"
                f"<center><h1>400 Bad Request</h1></center>\r\n<center>{text}"
                f"</center>\r\n<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n").encode()
    title = f"{status} {REASONS[status]}"
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
            f"<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n").encode()


@dataclass(frozen=True)
class Site:
    """What the decoy serves: the Server header/page tail and the welcome page's file date.

    ``mtime`` (integer seconds) plays the file's modification time: ETag ``"<mtime hex>-267"`` and
    Last-Modified derive from it exactly as nginx derives them from the file, so it must differ between
    installations (nginx's does: it is the install time) and never come from a secret.
    """

    server: str = "nginx"
    mtime: int = 1_700_000_000

    @property
    def etag(self) -> str:
        return f'"{self.mtime:x}-{len(WELCOME_PAGE):x}"'

    @property
    def last_modified(self) -> str:
        return email.utils.formatdate(self.mtime, usegmt=True)


# ---- request line (ngx_http_parse_request_line, simplified to what changes the answer) ------------
_METHOD = re.compile(rb"[A-Z_-]+")
_REQUEST_LINE = re.compile(
    rb"(?P<method>[A-Z_-]+) +(?P<target>(?:/|[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9._~:\[\]-]*(?=[/ ]))[^ \r]*|"
    rb"[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9._~:\[\]-]*)"
    rb"(?: +HTTP/(?P<major>[1-9][0-9]{0,2})\.(?P<minor>[0-9]{1,3}) *)? *\r?$")


def _check_line_prefix(line: bytes) -> None:
    """Raise Refusal(400) as soon as a request-line prefix cannot start a valid request (nginx answers
    random bytes, TLS ClientHellos and SSH banners at once, without waiting for a line end)."""
    m = _METHOD.match(line)
    end = m.end() if m else 0
    if end < len(line) and (end == 0 or line[end] != 0x20):
        raise Refusal(400)


def _parse_request_line(line: bytes) -> Request:
    if any(c < 0x20 and c not in (0x0D,) or c == 0x7F for c in line):
        raise Refusal(400)
    m = _REQUEST_LINE.match(line)
    if m is None:
        raise Refusal(400)
    method = m["method"].decode()
    target = m["target"].decode("latin-1")
    if not target.startswith("/"):  # absolute form: nginx serves the path (the host part picks a server)
        rest = target.split("://", 1)[1]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    if m["major"] is None:
        if method != "GET":
            raise Refusal(400, bare=True)
        return Request(method, target, (0, 9))
    major, minor = int(m["major"]), int(m["minor"])
    if major > 1:
        raise Refusal(505)
    return Request(method, target, (major, minor))


# ---- header lines (ngx_http_parse_header_line with ignore_invalid_headers on, no underscores) ------
_NAME_CHAR = re.compile(rb"[A-Za-z0-9-]")


def _parse_header_line(line: bytes) -> tuple[str, str] | None:
    """(lower-case name, value), or None for a header nginx ignores. Raises Refusal(400) where nginx does."""
    line = line.rstrip(b"\r")
    if not line or line[0] <= 0x20 or line[0] == 0x7F or line[0:1] == b":":
        raise Refusal(400)
    name_end = line.find(b":")
    name = line if name_end < 0 else line[:name_end]
    invalid = False
    for c in name:
        if c <= 0x20 or c == 0x7F:
            raise Refusal(400)
        if not _NAME_CHAR.match(bytes((c,))):
            invalid = True
    value = b"" if name_end < 0 else line[name_end + 1:].strip(b" \t")
    if b"\0" in value:
        raise Refusal(400)
    if invalid:
        return None
    return name.decode("ascii").lower(), value.decode("latin-1")


def _valid_host(host: str) -> bool:
    """ngx_http_validate_host: no '/', NUL or '..', not empty once the port and a trailing dot go."""
    if "/" in host or "\0" in host or ".." in host or "\\" in host:
        return False
    name = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
    return bool(name.rstrip("."))


# ---- URI normalisation (ngx_http_parse_complex_uri: %-decoding, dot segments, merge_slashes) -------
def _normalise(path: str) -> str:
    def unquote(m: re.Match[str]) -> str:
        return chr(int(m.group(1), 16))

    if re.search(r"%(?![0-9A-Fa-f]{2})", path):
        raise Refusal(400)
    decoded = re.sub(r"%([0-9A-Fa-f]{2})", unquote, path)
    if "\0" in decoded:
        raise Refusal(400)
    parts: list[str] = []
    segments = decoded.split("/")
    for seg in segments[1:]:
        if seg in ("", "."):
            continue
        if seg == "..":
            if not parts:
                raise Refusal(400)
            parts.pop()
            continue
        parts.append(seg)
    trailing = decoded.endswith("/") or segments[-1] in (".", "..")
    return "/" + "/".join(parts) + ("/" if trailing and parts else "")


# ---- the connection --------------------------------------------------------------------------------
@dataclass
class Reply:
    """What the protocol must do next: write ``data``, then close if ``close``: with a FIN at once, or,
    when ``fin`` is False (a request body nginx still waits for), after the lingering timeout."""

    data: bytes
    close: bool = False
    fin: bool = True


class HttpConnection:
    """Sans-I/O nginx front for one TCP connection.

    ``receive(data)`` returns the replies for every complete request in the buffer (pipelining), and
    stops early at a request ``is_candidate(request)`` accepts (a possible hello): that request is in
    ``upgrade``, with ``buffer`` holding what followed it, and the caller decides (hand over, or
    ``refuse()`` to answer it like any other request). ``waiting_for`` ("keepalive", "header" or
    "body") names the nginx timeout that applies while the connection is silent; on expiry the caller
    closes it without a word. ``plain_on_tls``: this is the TLS port and the client spoke plain HTTP
    (every complete request then gets nginx's 497 page).
    """

    def __init__(self, site: Site, is_candidate=None) -> None:
        self.site = site
        self._is_candidate = is_candidate
        self.buffer = bytearray()
        self.upgrade: Request | None = None
        self.closed = False
        self.requests = 0
        self._discard: BodyReader | None = None
        self._idle = True  # between requests: keep-alive timer, not header timer
        self.plain_on_tls = False

    @property
    def waiting_for(self) -> str:
        if self._discard is not None:
            return "body"
        return "keepalive" if self._idle and not self.buffer and self.requests else "header"

    def receive(self, data: bytes) -> list[Reply]:
        self.buffer += data
        return self._run()

    def refuse(self) -> list[Reply]:
        """Answer the pending ``upgrade`` request as the decoy, then go on with the buffer."""
        request, self.upgrade = self.upgrade, None
        assert request is not None
        replies = self._respond(request)
        if not self.closed:
            replies += self._run()
        return replies

    def _run(self) -> list[Reply]:
        replies: list[Reply] = []
        while not self.closed and self.upgrade is None:
            if self._discard is not None:
                try:
                    done = self._discard.feed(self.buffer)
                except Refusal:
                    self.closed = True
                    replies.append(Reply(b"", close=True))
                    break
                if not done:
                    break
                self._discard = None
            try:
                request = self._parse_head()
            except Refusal as fail:
                self.closed = True
                if fail.bare:
                    replies.append(Reply(error_page(fail.status, self.site.server), close=True))
                else:
                    replies.append(Reply(self._error(fail.status, None, keepalive=False), close=True,
                                         fin=fail.status != 413))
                break
            if request is None:
                break
            if self._is_candidate is not None and self._is_candidate(request):
                self.upgrade = request
                break
            replies += self._respond(request)
        return replies

    # -- head ------------------------------------------------------------------------------------
    def _parse_head(self) -> Request | None:
        buf = self.buffer
        start = 0
        while start < len(buf) and buf[start] in (0x0D, 0x0A):  # nginx skips empty lines before a request
            start += 1
        if start:
            del buf[:start]
        if not buf:
            return None
        self._idle = False
        eol = buf.find(b"\n")
        line = bytes(buf[: eol if eol >= 0 else len(buf)])
        _check_line_prefix(line)
        if eol < 0:
            if len(buf) > HEADER_LINE_MAX_BYTES:
                raise Refusal(414)
            return None
        if eol > HEADER_LINE_MAX_BYTES:
            raise Refusal(414)
        request = _parse_request_line(line)
        try:
            _normalise(request.path)  # nginx checks the URI right after the request line
        except Refusal:
            if request.version == (0, 9):
                raise Refusal(400, bare=True) from None
            raise
        pos = eol + 1
        if request.version == (0, 9):
            del buf[:pos]
            return request
        hosts = 0
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if len(buf) - pos > HEADER_LINE_MAX_BYTES or len(buf) > HEADER_TOTAL_MAX_BYTES:
                    raise Refusal(TOO_LARGE)
                return None
            if nl - pos > HEADER_LINE_MAX_BYTES or nl > HEADER_TOTAL_MAX_BYTES:
                raise Refusal(TOO_LARGE)
            line = bytes(buf[pos:nl])
            pos = nl + 1
            if line in (b"", b"\r"):
                break
            parsed = _parse_header_line(line)
            if parsed is None:
                continue
            name, value = parsed
            if name == "host":
                hosts += 1
                if hosts > 1 or not _valid_host(value):
                    raise Refusal(400)
            elif name in ("content-length", "transfer-encoding") and request.header(name) is not None:
                raise Refusal(400)
            request.headers.append(parsed)
        request.raw = bytes(buf[:pos])
        del buf[:pos]
        self._check_head(request)
        return request

    def _check_head(self, request: Request) -> None:
        """ngx_http_process_request_header, then the body limit of the find-config phase."""
        if request.version >= (1, 1) and request.header("host") is None:
            raise Refusal(400)
        length = request.header("content-length")
        te = request.header("transfer-encoding")
        if length is not None and not re.fullmatch(r"[0-9]{1,18}", length):
            raise Refusal(400)
        if te is not None:
            if request.version < (1, 1) or (te.lower() == "chunked" and length is not None):
                raise Refusal(400)
            if te.lower() != "chunked":
                raise Refusal(501)
        if request.method in ("TRACE", "CONNECT"):
            raise Refusal(405)
        if self.plain_on_tls:
            raise Refusal(TO_HTTPS)
        if length is not None and int(length) > CLIENT_MAX_BODY_BYTES:
            raise Refusal(413)

    # -- answers -----------------------------------------------------------------------------------
    def _keepalive(self, request: Request) -> bool:
        conn = (request.header("connection") or "").lower()
        if request.version >= (1, 1):
            keep = "close" not in conn
        else:
            keep = "keep-alive" in conn
        return keep and self.requests + 1 < KEEPALIVE_REQUESTS

    def _respond(self, request: Request) -> list[Reply]:
        self._idle = True
        if request.version == (0, 9):
            path = _normalise(request.path)
            body = WELCOME_PAGE if path in WELCOME_PATHS else error_page(404, self.site.server)
            self.closed = True
            return [Reply(body, close=True)]
        path = _normalise(request.path)
        keepalive = self._keepalive(request)
        body_reader = BodyReader.for_request(request)
        if path not in WELCOME_PATHS:
            return self._finish(request, 404, keepalive, body_reader)
        if request.method not in ("GET", "HEAD"):
            return self._finish(request, 405, keepalive, body_reader)
        # static handler: discard the body first (sends 100 Continue when asked), then answer
        prefix = b""
        expect = request.header("expect")
        if request.version >= (1, 1) and expect is not None and expect.lower() == "100-continue":
            prefix = _CONTINUE
        if body_reader is not None:
            try:
                if body_reader.feed(self.buffer):
                    body_reader = None
            except Refusal:
                self.closed = True
                return [Reply(prefix + self._error(400, request, keepalive=False), close=True)]
        self._discard = body_reader
        self.requests += 1
        data = prefix + self._static(request, keepalive)
        if data.startswith(b"HTTP/1.1 412", len(prefix)):
            keepalive = False  # nginx's 412 says keep-alive, then closes (ngx_http_filter_finalize_request)
        self.closed = not keepalive
        return [Reply(data, close=not keepalive)]

    def _finish(self, request: Request, status: int, keepalive: bool, body: BodyReader | None) -> list[Reply]:
        if body is not None:
            try:
                if body.feed(self.buffer):
                    body = None
            except Refusal:
                keepalive = False
        self._discard = body
        self.requests += 1
        self.closed = not keepalive
        return [Reply(self._error(status, request, keepalive), close=not keepalive)]

    def _head(self, status: int, fields: list[tuple[str, str]], keepalive: bool, chunked: bool = False,
              length: int | None = None, content_type: str | None = "text/html",
              last_modified: bool = False) -> bytes:
        """Status line and headers in nginx's order (ngx_http_header_filter_module)."""
        reason = "Bad Request" if status in _SPECIAL else REASONS[status]
        code = 400 if status in _SPECIAL else status
        lines = [f"HTTP/1.1 {code} {reason}", f"Server: {self.site.server}",
                 f"Date: {email.utils.formatdate(time.time(), usegmt=True)}"]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        if length is not None:
            lines.append(f"Content-Length: {length}")
        if last_modified:
            lines.append(f"Last-Modified: {self.site.last_modified}")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        lines.append(f"Connection: {'keep-alive' if keepalive else 'close'}")
        lines += [f"{k}: {v}" for k, v in fields]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _error(self, status: int, request: Request | None, keepalive: bool) -> bytes:
        keepalive = keepalive and status not in _CLOSE_AFTER
        page = error_page(status, self.site.server)
        head_only = request is not None and request.method == "HEAD"
        fields = [("Content-Range", f"bytes */{len(WELCOME_PAGE)}")] if status == 416 else []
        if status == 404 and request is not None and gzip_ok(request):
            head = self._head(status, [*fields, ("Content-Encoding", "gzip")], keepalive, chunked=not head_only)
            return head if head_only else head + chunked(gzip_body(page))
        head = self._head(status, fields, keepalive, length=len(page))
        return head if head_only else head + page

    def _static(self, request: Request, keepalive: bool) -> bytes:
        site, page = self.site, WELCOME_PAGE
        head_only = request.method == "HEAD"
        # not_modified filter (if_modified_since exact)
        if_match = request.header("if-match")
        ius = request.header("if-unmodified-since")
        if (ius is not None and http_time(ius) not in (None,) and (http_time(ius) or 0) < site.mtime) or (
                if_match is not None and not etag_match(if_match, site.etag, weak=False)):
            return self._error(412, request, keepalive)
        ims, inm = request.header("if-modified-since"), request.header("if-none-match")
        if ims is not None or inm is not None:
            modified = ims is not None and http_time(ims) != site.mtime
            if not modified and not (inm is not None and not etag_match(inm, site.etag, weak=True)):
                return self._head(304, [("ETag", site.etag)], keepalive, content_type=None, last_modified=True)
        if gzip_ok(request):
            head = self._head(200, [("ETag", "W/" + site.etag), ("Content-Encoding", "gzip")], keepalive,
                              chunked=not head_only, last_modified=True)
            return head if head_only else head + chunked(gzip_body(page))
        ranges = parse_ranges(request.header("range"), len(page)) if request.version >= (1, 1) else None
        if ranges == []:
            return self._error(416, request, keepalive)
        if ranges:
            return self._partial(ranges, head_only, keepalive)
        head = self._head(200, [("ETag", site.etag), ("Accept-Ranges", "bytes")], keepalive,
                          length=len(page), last_modified=True)
        return head if head_only else head + page

    def _partial(self, ranges: list[tuple[int, int]], head_only: bool, keepalive: bool) -> bytes:
        page, total = WELCOME_PAGE, len(WELCOME_PAGE)
        if len(ranges) == 1:
            a, b = ranges[0]
            head = self._head(206, [("ETag", self.site.etag), ("Content-Range", f"bytes {a}-{b}/{total}")],
                              keepalive, length=b - a + 1, last_modified=True)
            return head if head_only else head + page[a:b + 1]
        Boundary.value += 1
        boundary = f"{Boundary.value:020d}"
        body = b"".join(
            f"\r\n--{boundary}\r\nContent-Type: text/html\r\nContent-Range: bytes {a}-{b}/{total}\r\n\r\n".encode()
            + page[a:b + 1] for a, b in ranges) + f"\r\n--{boundary}--\r\n".encode()
        head = self._head(206, [("ETag", self.site.etag)], keepalive, length=len(body), last_modified=True,
                          content_type=f"multipart/byteranges; boundary={boundary}")
        return head if head_only else head + body
