"""Transport benchmarks on loopback (prints figures; not a test).

    python -m bench.transport throughput [--seconds 3] [--tls]
    python -m bench.transport idle [--connections 2000] [--relay]

throughput: one link, client -> server, messages of 1,400 B and 64 KiB; the server only counts.
            Reports messages/s and Gbit/s of payload (WebSocket framing not counted).
idle:       a server process (LinkServer, or RelayServer with --relay) and a client process opening N idle
            authenticated links; reports the server's RSS increase per link (and the client's).
            Heartbeat stays ON (default 20 s interval) as in production.
Figures are noisy on a shared 2-core machine: compare runs made back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time

from shadowmesh_client.transport import ClientConfig, ServerConfig
from shadowmesh_client.transport.ws import LinkServer, dial


def rss_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# ---- throughput ---------------------------------------------------------------------------------
async def _throughput(size: int, seconds: float, tls_files: tuple[str, str, str] | None) -> dict:
    done = asyncio.Event()
    received = {"n": 0, "bytes": 0}

    async def on_link(link):
        async for m in link:
            received["n"] += 1
            received["bytes"] += len(m)
        done.set()

    cfg = ServerConfig(tls_cert=tls_files[0] if tls_files else None, tls_key=tls_files[1] if tls_files else None)
    async with LinkServer(cfg, lambda h: (b"", "peer"), on_link) as server:
        link = await dial(ClientConfig(server.url, ca_file=tls_files[2] if tls_files else None), b"hello")
        payload = os.urandom(size)
        t0 = time.perf_counter()
        sent = 0
        while time.perf_counter() - t0 < seconds:
            for _ in range(64):
                await link.send(payload)
            sent += 64
        await link.close()
        await asyncio.wait_for(done.wait(), 30)
        elapsed = time.perf_counter() - t0
    assert received["n"] == sent, (received, sent)
    return {"message_bytes": size, "messages": sent, "seconds": round(elapsed, 3),
            "messages_per_s": round(sent / elapsed), "gbit_per_s": round(sent * size * 8 / elapsed / 1e9, 3)}


def _make_tls(tmp: str) -> tuple[str, str, str]:
    from lab.pki import write_test_pki  # needs `cryptography`
    return write_test_pki(tmp)


def cmd_throughput(args) -> None:
    tls = None
    if args.tls:
        import tempfile
        tls = _make_tls(tempfile.mkdtemp())
    for size in (1400, 65536):
        print(json.dumps(asyncio.run(_throughput(size, args.seconds, tls)) | {"tls": bool(tls)}))


# ---- idle memory --------------------------------------------------------------------------------
async def _serve_idle(relay: bool) -> None:
    if relay:
        from shadowmesh_client.relay import RelayConfig
        from shadowmesh_client.relay.server import RelayServer
        counter = iter(range(10**9))

        def auth(hello: bytes):
            return b"", next(counter).to_bytes(32, "big")  # 32-byte "public key" per device
        server = RelayServer(ServerConfig(path="/api/v1/ws/bench"), RelayConfig(), auth)
    else:
        async def on_link(link):
            async for _ in link:
                pass
        server = LinkServer(ServerConfig(path="/api/v1/ws/bench"), lambda h: (b"", None), on_link)
    await server.start()
    gc.collect()
    print(json.dumps({"port": server.port, "rss_kib": rss_kib()}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:  # one command per line: "rss" -> print RSS; EOF -> exit
        line = await reader.readline()
        if not line:
            break
        gc.collect()
        print(json.dumps({"rss_kib": rss_kib(), "links": len(server.links)}), flush=True)
    await server.close()


def cmd_idle(args) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "bench.transport", "_serve",
                             *(["--relay"] if args.relay else [])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        base = json.loads(proc.stdout.readline())

        async def client() -> dict:
            url = f"ws://127.0.0.1:{base['port']}/api/v1/ws/bench"
            cfg = ClientConfig(url)
            before = rss_kib()
            links = []
            t0 = time.perf_counter()
            for i in range(0, args.connections, 100):
                links += await asyncio.gather(*(dial(cfg, b"hello") for _ in range(min(100, args.connections - i))))
            connect_s = time.perf_counter() - t0
            await asyncio.sleep(2)
            gc.collect()
            client_rss = rss_kib() - before
            proc.stdin.write("rss\n")
            proc.stdin.flush()
            after = json.loads(proc.stdout.readline())
            for link in links:
                link.abort()
            return {"connections": len(links), "server_links": after["links"],
                    "connects_per_s": round(len(links) / connect_s),
                    "server_rss_delta_kib": after["rss_kib"] - base["rss_kib"],
                    "server_bytes_per_link": round((after["rss_kib"] - base["rss_kib"]) * 1024 / len(links)),
                    "client_bytes_per_link": round(client_rss * 1024 / len(links)), "relay": args.relay}
        print(json.dumps(asyncio.run(client())))
    finally:
        proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transport")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--tls", action="store_true")
    p = sub.add_parser("idle")
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--relay", action="store_true")
    p = sub.add_parser("_serve")
    p.add_argument("--relay", action="store_true")
    args = parser.parse_args(argv)
    if args.cmd == "throughput":
        cmd_throughput(args)
    elif args.cmd == "idle":
        cmd_idle(args)
    else:
        asyncio.run(_serve_idle(args.relay))


if __name__ == "__main__":
    main()
