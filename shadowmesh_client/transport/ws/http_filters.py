"""Pieces of the nginx look-alike that do not depend on connection state (split from ws/http.py).

Owns: the parsed ``Request``, the ``Refusal`` a parser raises with nginx's status, the request-body
reader (Content-Length and chunked, discarded as nginx's static handler does), and the output filters
of nginx's default configuration: gzip (ngx_http_gzip_filter_module), byte ranges
(ngx_http_range_filter_module), conditional requests (ngx_http_not_modified_filter_module).

May import: the standard library only.
"""

from __future__ import annotations

import email.utils
import re
import zlib
from dataclasses import dataclass, field

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\x03"  # nginx's: no mtime, XFL=4 (fastest), OS=Unix


@dataclass
class Request:
    """One parsed request head. ``headers`` keeps (lower-case name, value) in arrival order."""

    method: str
    target: str
    version: tuple[int, int]
    headers: list[tuple[str, str]] = field(default_factory=list)
    raw: bytes = b""

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


class Refusal(Exception):
    """A request nginx refuses with ``status``; ``bare``: an HTTP/0.9 request (the page without headers)."""

    def __init__(self, status: int, bare: bool = False) -> None:
        self.status = status
        self.bare = bare


class Boundary:
    """nginx's multipart boundary is a per-worker counter (ngx_next_temp_number); so is this one."""

    value = 0


class BodyReader:
    """Reads and discards a request body (Content-Length or chunked) from the front of a buffer."""

    def __init__(self, length: int | None) -> None:
        self.remaining = length          # bytes left of a Content-Length body; None: chunked
        self.chunk_left = 0              # bytes left in the current chunk (+2 for its CRLF)
        self.trailer = False             # after the last chunk: skipping trailer lines

    @classmethod
    def for_request(cls, request: Request) -> BodyReader | None:
        if request.header("transfer-encoding") is not None:
            return cls(None)
        length = int(request.header("content-length") or 0)
        return cls(length) if length > 0 else None

    def feed(self, buf: bytearray) -> bool:
        """Consume what it can from ``buf``; True once the body is complete. Raises Refusal(400)."""
        if self.remaining is not None:
            take = min(self.remaining, len(buf))
            del buf[:take]
            self.remaining -= take
            return self.remaining == 0
        while True:
            if self.chunk_left:
                take = min(self.chunk_left, len(buf))
                del buf[:take]
                self.chunk_left -= take
                if self.chunk_left:
                    return False
                continue
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > 4_096:
                    raise Refusal(400)
                return False
            line = bytes(buf[:nl]).rstrip(b"\r")
            del buf[:nl + 1]
            if self.trailer:
                if not line:
                    return True
                continue
            m = re.fullmatch(rb"([0-9A-Fa-f]{1,15})[ \t]*(;.*)?", line)
            if m is None:
                raise Refusal(400)
            size = int(m.group(1), 16)
            if size == 0:
                self.trailer = True
            else:
                self.chunk_left = size + 2


# ---- helpers ---------------------------------------------------------------------------------------
def gzip_ok(request: Request) -> bool:
    """ngx_httpgzip_ok with the default config: HTTP/1.1+, no Via (gzip_proxied off), gzip accepted."""
    if request.version < (1, 1) or request.header("via") is not None:
        return False
    ae = request.header("accept-encoding")
    if ae is None or len(ae) < 4:
        return False
    if ae.startswith("gzip,"):
        return True
    low = ae.lower()
    start = 0
    while True:
        p = low.find("gzip", start)
        if p < 0:
            return False
        if p == 0 or low[p - 1] in ", ":
            break
        start = p + 4
    rest = low[p + 4:].lstrip(" ")
    if not rest or rest[0] == ",":
        return True
    if rest[0] != ";":
        return False
    q = re.match(r";\s*q=([0-9.]*)", rest)
    return q is None or not re.fullmatch(r"0(\.0*)?", q.group(1))


def gzip_body(data: bytes) -> bytes:
    """gzip as nginx's filter writes it: level 1, window and hash memory shrunk to the body's length."""
    wbits, memlevel = 15, 8
    while len(data) < (1 << (wbits - 1)) - 262:
        wbits -= 1
        memlevel -= 1
    wbits, memlevel = max(wbits, 9), max(memlevel, 1)
    c = zlib.compressobj(1, zlib.DEFLATED, -wbits, memlevel)
    deflated = c.compress(data) + c.flush()
    trailer = zlib.crc32(data).to_bytes(4, "little") + (len(data) & 0xFFFFFFFF).to_bytes(4, "little")
    return GZIP_HEADER + deflated + trailer


def chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"


def http_time(value: str) -> int | None:
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    try:
        return int(email.utils.mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None


def etag_match(header: str, etag: str, weak: bool) -> bool:
    """ngx_http_test_if_match: ``*`` or any listed tag equal (weak comparison strips ``W/``)."""
    if header.strip() == "*":
        return True
    for tag in header.split(","):
        tag = tag.strip()
        if weak and tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def parse_ranges(header: str | None, total: int) -> list[tuple[int, int]] | None:
    """ngx_http_range_parse: None = ignore Range (answer 200); [] = 416; else the inclusive ranges."""
    if header is None or header[:6].lower() != "bytes=":
        return None
    out: list[tuple[int, int]] = []
    size = 0
    for spec in header[6:].split(","):
        m = re.fullmatch(r" *([0-9]*) *- *([0-9]*) *", spec)
        if m is None or (not m.group(1) and not m.group(2)):
            return []
        if m.group(1):
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else total - 1
            if start > end and m.group(2):
                return []
        else:
            suffix = int(m.group(2))
            start, end = max(total - suffix, 0), total - 1
        if start >= total:
            continue
        end = min(end, total - 1)
        out.append((start, end))
        size += end - start + 1
    if len(out) > 1 and size > total:
        return None
    return out
