"""A TLS-terminating nginx in front of a WebSocket backend, as a CDN such as Cloudflare would front a relay.

Spec "Cloudflare Proxy Compatibility": the relay must work behind a standard reverse proxy that speaks
WebSocket. ``make_tls`` writes a throw-away CA and a server certificate signed by it (the client
trusts ``ca_cert``); ``start_nginx`` writes a config that terminates TLS and proxies ``path_prefix``
(with the Upgrade/Connection headers, HTTP/1.1, no buffering and a long read timeout so idle tunnels
survive) to ``backend``, and runs ``nginx -g 'daemon off;'`` as a tracked process, on loopback or
inside a namespace of a ``Topology``. ``Nginx.stop()`` ends master and workers (one process group);
it is idempotent and registered with atexit.
"""

from __future__ import annotations

import atexit
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.netns import Topology
from shadowmesh_client.tun.netns import enter_netns

PROXY_READ_TIMEOUT = 3600
"""Seconds nginx keeps an idle proxied connection (its default of 60 s would cut idle tunnels)."""

START_TIMEOUT = 10.0
"""Seconds to wait for nginx to accept connections."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA certificate clients trust, and the server's certificate chain and key."""

    ca_cert: Path
    cert: Path
    key: Path


def make_tls(directory: str | Path, names: tuple[str, ...] = ("localhost",),
             ips: tuple[str, ...] = ("127.0.0.1",)) -> TlsFiles:
    """Write a fresh CA and a server certificate for DNS ``names`` and IP ``ips`` (valid one day, P-256)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ShadowMesh test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else ips[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(d / "ca.pem", d / "server.pem", d / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files.key.chmod(0o600)
    return files


def nginx_config(
    workdir: Path, tls: TlsFiles, listen: str, port: int, backend: str, path_prefix: str = "/", server_name: str = "_"
) -> str:
    """The nginx.conf text: TLS on ``listen:port``, ``path_prefix`` proxied to ``backend`` ("host:port")
    as WebSocket-capable HTTP/1.1; every other path gets nginx's 404."""
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {workdir / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# written by tests/e2e/nginx.py
{user}worker_processes 1;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} info;
events {{ worker_connections 1024; }}
http {{
    access_log {workdir / "access.log"};
{temp}
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    server {{
        listen {listen}:{port} ssl;
        server_name {server_name};
        ssl_certificate {tls.cert};
        ssl_certificate_key {tls.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location {path_prefix} {{
            proxy_pass http://{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout {PROXY_READ_TIMEOUT}s;
            proxy_send_timeout {PROXY_READ_TIMEOUT}s;
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""


_RUNNING: set[Nginx] = set()


@dataclass(eq=False)
class Nginx:
    """A running nginx. ``url(path)`` gives the wss:// URL; ``tls.ca_cert`` is what clients trust."""

    proc: subprocess.Popen
    workdir: Path
    tls: TlsFiles
    host: str
    port: int
    topology: Topology | None = None
    _owns_workdir: bool = field(default=False, repr=False)

    def url(self, path: str = "/", scheme: str = "wss") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def error_log(self) -> str:
        p = self.workdir / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self) -> None:
        """Stop master and workers (SIGTERM to the process group, SIGKILL after 3 s). Idempotent."""
        _RUNNING.discard(self)
        if self.topology is not None and not self.topology.closed:
            self.topology.stop(self.proc)
        elif self.topology is None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                    self.proc.wait(3.0)
                except ProcessLookupError:
                    pass
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # a master that hung, or workers outliving it
            except ProcessLookupError:
                pass
            self.proc.wait()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


atexit.register(lambda: [n.stop() for n in list(_RUNNING)])


def free_port(netns: str | None = None, host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now at ``host`` (in ``netns``)."""
    with enter_netns(netns):
        s = socket.socket()
    with s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_listening(proc: subprocess.Popen, host: str, port: int, netns: str | None, workdir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (workdir / "error.log").read_text(errors="replace") if (workdir / "error.log").exists() else ""
            raise RuntimeError(f"nginx exited with {proc.returncode}: {log[-2000:]}")
        with enter_netns(netns):
            s = socket.socket()
        with s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nginx did not listen on {host}:{port} within {START_TIMEOUT} s")


def start_nginx(
    backend: str,
    *,
    path_prefix: str = "/",
    listen: str = "127.0.0.1",
    port: int | None = None,
    tls: TlsFiles | None = None,
    workdir: str | Path | None = None,
    topology: Topology | None = None,
    netns: str | None = None,
) -> Nginx:
    """Start nginx with TLS on ``listen:port`` proxying ``path_prefix`` to ``backend`` ("host:port").

    With ``topology`` and ``netns`` it runs inside that namespace (tracked by the topology too);
    otherwise on this host. ``tls`` defaults to a fresh CA and a certificate for ``localhost`` and
    ``listen``. ``port`` defaults to a free one. Raises ``RuntimeError`` with nginx's error log if it
    does not come up.
    """
    if shutil.which("nginx") is None:
        raise RuntimeError("nginx is not installed (make debs: nginx-light)")
    if (topology is None) != (netns is None):
        raise ValueError("give both topology and netns, or neither")
    owns = workdir is None
    wd = Path(workdir or tempfile.mkdtemp(prefix="smt-nginx-"))
    wd.mkdir(parents=True, exist_ok=True)
    full_ns = topology.ns(netns) if topology is not None and netns is not None else None
    if tls is None:
        tls = make_tls(wd / "tls", ("localhost",), (listen,) if listen not in ("0.0.0.0", "*") else ())
    port = port or free_port(full_ns, listen if listen != "0.0.0.0" else "127.0.0.1")
    conf = wd / "nginx.conf"
    conf.write_text(nginx_config(wd, tls, listen, port, backend, path_prefix))
    argv = ["nginx", "-p", str(wd), "-e", str(wd / "error.log"), "-c", str(conf), "-g", "daemon off;"]
    out = open(wd / "stdout.log", "wb")
    try:
        if topology is not None:
            proc = topology.spawn(full_ns, argv, stdout=out, stderr=subprocess.STDOUT)
        else:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
    finally:
        out.close()
    nginx = Nginx(proc, wd, tls, listen if listen != "0.0.0.0" else "127.0.0.1", port, topology, owns)
    _RUNNING.add(nginx)
    try:
        _wait_listening(proc, nginx.host, port, full_ns, wd)
    except BaseException:
        nginx.stop()
        raise
    return nginx
