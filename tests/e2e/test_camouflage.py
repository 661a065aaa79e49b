"""Issue 12 "Camouflage": a prober must not tell a ShadowMesh LinkServer from Debian's nginx 1.22.

A real nginx (Debian's package, started here) serves the stock default site (``/etc/nginx/sites-available
/default`` and the stock ``http {}`` settings: sendfile, tcp_nopush, gzip on, mime.types) with
``server_tokens off``, the ``Server: nginx`` ShadowMesh sends by default; a LinkServer listens beside it.
Both get the same corpus of raw probes (request smuggling shapes, scanners' favourites, TLS and SSH
openers, pipelining...) over TCP and TLS. Answers are compared byte for byte after masking the Date
header, the ETag/Last-Modified values (per host by design: only their format is compared) and the
multipart boundary counter. Every difference must be in KNOWN_LIMITS, which docs/transport.md lists
("Known limits of the camouflage"), and KNOWN_LIMITS must be exactly the differences found, so a new
difference, or a fixed one, fails the test. Bounded: about 5 s.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shadowmesh_client.transport import ServerConfig
from shadowmesh_client.transport.ws import LinkServer
from shadowmesh_client.transport.ws.decoy import encode_hello

from .nginx import free_port, make_tls

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="needs Debian's nginx (make debs)")

WELCOME_SRC = Path("/usr/share/nginx/html/index.html")
QUIET_S = 0.4          # seconds of silence after which a connection counts as left open ("<OPEN>")
SECRET = "/api/v1/ws/ThisIsTheSecretPathOfTheTest0"

# Differences a prober can still see; docs/transport.md "Known limits of the camouflage" explains each.
KNOWN_LIMITS: set[str] = {
    "tls_alpn_h2_only",     # nginx aborts with no_application_protocol; Python's ssl completes without ALPN
    "tls_garbage_record",   # nginx answers a broken handshake with a TLS alert; asyncio drops the alert
}

ST = b"GET / HTTP/1.1\r\nHost: x\r\n"
WS = (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      b"Sec-WebSocket-Version: 13\r\n")
CLIENT_HELLO = bytes.fromhex(
    "16030100a5010000a10303") + bytes(32) + bytes.fromhex(
    "000020c02bc02fc02cc030cca9cca8c009c013c00ac014009c009d002f0035c012000a0100005800000018001600001373"
    "657276696365732e6578616d706c652e636f6d")

Probe = Callable[[dict[str, bytes]], bytes]
# name -> request bytes, given the server's own validators (v["etag"], v["lm"]) for revalidation probes
CORPUS: dict[str, Probe] = {
    "get_root": lambda v: ST + b"\r\n",
    "get_debian_index": lambda v: b"GET /index.nginx-debian.html HTTP/1.1\r\nHost: x\r\n\r\n",
    "get_index_html": lambda v: b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
    "get_index_htm": lambda v: b"GET /index.htm HTTP/1.1\r\nHost: x\r\n\r\n",
    "get_ws_guess": lambda v: b"GET /api/v1/ws/guess HTTP/1.1\r\nHost: x\r\n\r\n",
    "get_secret_path_plain": lambda v: f"GET {SECRET} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    "secret_upgrade_no_hello": lambda v: f"GET {SECRET} HTTP/1.1\r\nHost: x\r\n".encode() + WS + b"\r\n",
    "secret_upgrade_bad_hello": lambda v: (f"GET {SECRET} HTTP/1.1\r\nHost: x\r\nCookie: sid="
                                           f"{encode_hello(os.urandom(96))}\r\n").encode() + WS + b"\r\n",
    "secret_upgrade_pipelined": lambda v: (f"GET {SECRET} HTTP/1.1\r\nHost: x\r\nCookie: sid=AAAA\r\n".encode()
                                           + WS + b"\r\n" + ST + b"\r\n"),
    "ws_upgrade_wrong_path": lambda v: b"GET /chat HTTP/1.1\r\nHost: x\r\n" + WS + b"\r\n",
    "head_root": lambda v: b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
    "head_missing": lambda v: b"HEAD /missing HTTP/1.1\r\nHost: x\r\n\r\n",
    "inm_match": lambda v: ST + b"If-None-Match: " + v["etag"] + b"\r\n\r\n",
    "inm_weak_match": lambda v: ST + b"If-None-Match: W/" + v["etag"] + b"\r\n\r\n",
    "ims_match": lambda v: ST + b"If-Modified-Since: " + v["lm"] + b"\r\n\r\n",
    "inm_other": lambda v: ST + b"If-None-Match: \"nope\"\r\n\r\n",
    "ims_old": lambda v: ST + b"If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT\r\n\r\n",
    "if_match_fails": lambda v: ST + b"If-Match: \"nope\"\r\n\r\n",
    "range_head": lambda v: ST + b"Range: bytes=0-99\r\n\r\n",
    "range_tail": lambda v: ST + b"Range: bytes=600-700\r\n\r\n",
    "range_suffix": lambda v: ST + b"Range: bytes=-10\r\n\r\n",
    "range_multi": lambda v: ST + b"Range: bytes=0-1,5-6\r\n\r\n",
    "range_416": lambda v: ST + b"Range: bytes=1000-\r\n\r\n",
    "range_bad": lambda v: ST + b"Range: bytes=x-y\r\n\r\n",
    "range_with_gzip": lambda v: ST + b"Range: bytes=0-1\r\nAccept-Encoding: gzip\r\n\r\n",
    "gzip_root": lambda v: ST + b"Accept-Encoding: gzip, deflate, br\r\n\r\n",
    "gzip_missing": lambda v: b"GET /missing HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
    "gzip_head": lambda v: b"HEAD / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
    "gzip_q0": lambda v: ST + b"Accept-Encoding: gzip;q=0\r\n\r\n",
    "gzip_via": lambda v: ST + b"Via: 1.1 p\r\nAccept-Encoding: gzip\r\n\r\n",
    "http10": lambda v: b"GET / HTTP/1.0\r\n\r\n",
    "http10_gzip": lambda v: b"GET / HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n",
    "http10_keepalive": lambda v: b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "http12": lambda v: b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
    "http09": lambda v: b"GET /\r\n",
    "http09_missing": lambda v: b"GET /missing\r\n",
    "http09_post": lambda v: b"POST /\r\n",
    "no_host": lambda v: b"GET / HTTP/1.1\r\n\r\n",
    "dup_host": lambda v: b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad_host": lambda v: b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
    "empty_host": lambda v: b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
    "host_port": lambda v: b"GET / HTTP/1.1\r\nHost: x:80\r\n\r\n",
    "post": lambda v: b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    "post_too_large": lambda v: b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n",
    "put_missing": lambda v: b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    "delete": lambda v: b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n",
    "options_star": lambda v: b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "options_root": lambda v: b"OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n",
    "trace": lambda v: b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n",
    "connect": lambda v: b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "lowercase_method": lambda v: b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown_method": lambda v: b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
    "patch": lambda v: b"PATCH / HTTP/1.1\r\nHost: x\r\n\r\n",
    "method_only": lambda v: b"GET\r\n\r\n",
    "double_space": lambda v: b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    "http2_version": lambda v: b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    "bad_version": lambda v: b"GET / HTTP/1.x\r\nHost: x\r\n\r\n",
    "extra_token": lambda v: b"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n",
    "long_uri": lambda v: b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "long_header": lambda v: ST + b"X-A: " + b"a" * 9000 + b"\r\n\r\n",
    "many_headers": lambda v: ST + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 4000) for i in range(10)) + b"\r\n",
    "expect_100_post": lambda v: b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    "expect_100_get": lambda v: ST + b"Content-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    "expect_100_head": lambda v: b"HEAD / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    "expect_100_missing": lambda v: b"GET /m HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    "chunked_post": lambda v: (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"3\r\nabc\r\n0\r\n\r\n"),
    "chunked_get": lambda v: ST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "chunked_bad": lambda v: ST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    "te_gzip": lambda v: ST + b"Transfer-Encoding: gzip\r\n\r\n",
    "te_http10": lambda v: b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "cl_and_te": lambda v: ST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "cl_bad": lambda v: ST + b"Content-Length: abc\r\n\r\n",
    "pipelined": lambda v: ST + b"\r\n" + b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
    "pipelined_three": lambda v: (ST + b"\r\n") * 3,
    "pipelined_bad": lambda v: ST + b"\r\nBAD\r\n\r\n",
    "pipelined_lowercase": lambda v: ST + b"\r\nget / HTTP/1.1\r\nHost: x\r\n\r\n",
    "pipelined_close": lambda v: ST + b"Connection: close\r\n\r\n" + ST + b"\r\n",
    "pipelined_tls_bytes": lambda v: b"GET /m HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01",
    "tls_client_hello": lambda v: CLIENT_HELLO,
    "ssh_banner": lambda v: b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
    "random_bytes": lambda v: bytes(range(256))[::7] * 3,
    "crlf_then_get": lambda v: b"\r\n\r\n" + ST + b"\r\n",
    "bare_lf": lambda v: b"GET / HTTP/1.1\nHost: x\n\n",
    "absolute_uri": lambda v: b"GET http://x/ HTTP/1.1\r\nHost: y\r\n\r\n",
    "dotdot": lambda v: b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    "encoded_dotdot": lambda v: b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    "double_slash": lambda v: b"GET //index.nginx-debian.html HTTP/1.1\r\nHost: x\r\n\r\n",
    "dot_segment": lambda v: b"GET /./ HTTP/1.1\r\nHost: x\r\n\r\n",
    "query": lambda v: b"GET /?a=1&b=2 HTTP/1.1\r\nHost: x\r\n\r\n",
    "file_slash": lambda v: b"GET /index.nginx-debian.html/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "header_no_colon": lambda v: ST + b"NoColonHere\r\n\r\n",
    "header_space_in_name": lambda v: ST + b"Bad Header: x\r\n\r\n",
    "header_underscore": lambda v: ST + b"X_Y: z\r\n\r\n",
    "obs_fold": lambda v: ST + b"X-A: a\r\n  b\r\n\r\n",
    "connection_close": lambda v: ST + b"Connection: close\r\n\r\n",
    "nul_in_uri": lambda v: b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "percent_bad": lambda v: b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n",
    "empty": lambda v: b"",
    "partial": lambda v: ST,
}
TLS_PROBES = ("tls_get_root", "tls_get_missing", "tls_plain_http", "tls_alpn_h2_http11", "tls_alpn_h2_only",
              "tls_garbage_record")


def nginx_conf(workdir: Path, www: Path, port: int, tls_port: int, cert: Path, key: Path) -> str:
    """Debian's stock nginx.conf http block + sites-available/default, on loopback, server_tokens off."""
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {k}_temp_path {workdir / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{ worker_connections 768; }}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    server_tokens off;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log off;
    gzip on;
{temp}
    server {{
        listen 127.0.0.1:{port} default_server;
        listen 127.0.0.1:{tls_port} ssl default_server;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {www};
        index index.html index.htm index.nginx-debian.html;
        server_name _;
        location / {{
            try_files $uri $uri/ =404;
        }}
    }}
}}
"""


@pytest.fixture
def real_nginx():
    """(plain port, TLS port, tls files) of a running nginx; stopped at teardown."""
    wd = Path(tempfile.mkdtemp(prefix="smt-camo-"))
    www = wd / "www"
    www.mkdir()
    shutil.copy(WELCOME_SRC, www / "index.nginx-debian.html")
    tls = make_tls(wd / "tls")
    port, tls_port = free_port(), free_port()
    (wd / "nginx.conf").write_text(nginx_conf(wd, www, port, tls_port, tls.cert, tls.key))
    proc = subprocess.Popen(["nginx", "-p", str(wd), "-e", str(wd / "error.log"), "-c", str(wd / "nginx.conf"),
                             "-g", "daemon off;"], start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((wd / "error.log").read_text(errors="replace"))
            time.sleep(0.05)
        yield port, tls_port, tls
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(wd, ignore_errors=True)


async def exchange(port: int, data: bytes, tls: ssl.SSLContext | None = None, raw_after_tls: bool = False) -> bytes:
    """Send ``data``, collect the answer until EOF (``<EOF>``), reset (``<RST>``) or QUIET_S of silence
    (``<OPEN>``)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                                       server_hostname="localhost" if tls else None)
    except (ssl.SSLError, ConnectionError) as exc:
        return f"<TLS FAILED {type(exc).__name__}: {getattr(exc, 'reason', '')}>".encode()
    out = b""
    if tls is not None:
        obj = writer.get_extra_info("ssl_object")
        out += f"<ALPN {obj.selected_alpn_protocol()}>".encode()
    if data:
        writer.write(data)
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), QUIET_S)
        except TimeoutError:
            out += b"<OPEN>"
            break
        except (ConnectionResetError, ssl.SSLError):
            out += b"<RST>"
            break
        if not chunk:
            out += b"<EOF>"
            break
        out += chunk
    writer.transport.abort()
    return out


def mask(response: bytes) -> bytes:
    """Date masked; ETag/Last-Modified values replaced by their format (they differ per host by design);
    the multipart boundary counter masked."""
    response = re.sub(rb"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", b"Date: <date>", response)
    response = re.sub(rb"Last-Modified: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT",
                      b"Last-Modified: <date>", response)
    response = re.sub(rb'ETag: (W/)?"[0-9a-f]{8}-267"', rb'ETag: \1"<hex>-267"', response)
    return re.sub(rb"\b0{10}\d{10}\b", b"<boundary>", response)


def validators(response: bytes) -> dict[str, bytes]:
    etag = re.search(rb"ETag: (.*?)\r\n", response)
    lm = re.search(rb"Last-Modified: (.*?)\r\n", response)
    assert etag and lm, response[:300]
    return {"etag": etag.group(1), "lm": lm.group(1)}


async def tls_probes(port: int, ca: Path) -> dict[str, bytes]:
    def ctx(alpn: list[str] | None) -> ssl.SSLContext:
        c = ssl.create_default_context(cafile=str(ca))
        if alpn:
            c.set_alpn_protocols(alpn)
        return c

    results = await asyncio.gather(
        exchange(port, ST + b"\r\n", ctx(None)),
        exchange(port, b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n", ctx(None)),
        exchange(port, ST + b"\r\n"),                                   # plain HTTP to the TLS port
        exchange(port, ST + b"Connection: close\r\n\r\n", ctx(["h2", "http/1.1"])),
        exchange(port, ST + b"Connection: close\r\n\r\n", ctx(["h2"])),
        exchange(port, b"\x16\x03\x01\x00\x05hello"),                  # a TLS record that is no ClientHello
    )
    return dict(zip(TLS_PROBES, results, strict=True))


async def probe_all(port: int, tls_port: int, ca: Path) -> dict[str, bytes]:
    v = validators(await exchange(port, ST + b"\r\n"))
    names = list(CORPUS)
    answers = await asyncio.gather(*(exchange(port, CORPUS[n](v)) for n in names))
    out = dict(zip(names, answers, strict=True))
    out.update(await tls_probes(tls_port, ca))
    return out


async def _refuse(hello: bytes):
    return None


async def _idle(link) -> None:
    async for _ in link:
        pass


def test_linkserver_answers_the_probe_corpus_like_debian_nginx(real_nginx):
    port, tls_port, tls = real_nginx
    started = time.monotonic()

    async def run() -> tuple[dict[str, bytes], dict[str, bytes]]:
        real = await probe_all(port, tls_port, tls.ca_cert)
        plain = LinkServer(ServerConfig(path=SECRET), _refuse, _idle)
        wss = LinkServer(ServerConfig(path=SECRET, tls_cert=str(tls.cert), tls_key=str(tls.key)), _refuse, _idle)
        async with plain, wss:
            ours = await probe_all(plain.port, wss.port, tls.ca_cert)
        return real, ours

    real, ours = asyncio.run(run())
    assert len(CORPUS) + len(TLS_PROBES) >= 40
    differences = {name for name in real if mask(real[name]) != mask(ours[name])}
    report = "\n".join(f"--- {n}\nnginx: {mask(real[n])[:400]!r}\nours:  {mask(ours[n])[:400]!r}"
                       for n in sorted(differences - KNOWN_LIMITS))
    assert differences == KNOWN_LIMITS, f"new differences (or fixed known limits):\n{report}"
    # sanity: the probes really exercised what they claim
    assert real["tls_alpn_h2_http11"].startswith(b"<ALPN http/1.1>HTTP/1.1 200 OK")
    assert b"The plain HTTP request was sent to HTTPS port" in real["tls_plain_http"]
    assert real["gzip_root"].count(b"Content-Encoding: gzip") == 1
    assert b"HTTP/1.1 304" in real["inm_match"] and b"HTTP/1.1 206" in real["range_multi"]
    assert time.monotonic() - started < 60


def test_validators_differ_per_installation_and_never_come_from_the_path():
    """Two hosts with different install times show different ETag/Last-Modified; the same host shows the
    same ones whatever its secret path."""

    async def etag_of(cfg: ServerConfig) -> bytes:
        async with LinkServer(cfg, _refuse, _idle) as server:
            return validators(await exchange(server.port, ST + b"\r\n"))["etag"]

    async def run() -> list[bytes]:
        return [await etag_of(ServerConfig(site_mtime=1_700_000_000, path="/a")),
                await etag_of(ServerConfig(site_mtime=1_700_000_000, path="/b")),
                await etag_of(ServerConfig(site_mtime=1_712_345_678, path="/a"))]

    a, b, c = asyncio.run(run())
    assert a == b == b'"6553f100-267"' and c != a
