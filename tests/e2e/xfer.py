"""TCP transfer through the tunnel, run inside a namespace (a test helper script, no imports from the project).

    python xfer.py serve IP PORT            # accepts one connection, prints {"bytes": n, "sha256": h}
    python xfer.py send IP PORT SIZE SEED [MARKER]   # sends SIZE deterministic pseudo-random bytes, each
                                            # 64 KiB block starting with MARKER; prints the same JSON
"""

import hashlib
import json
import random
import socket
import sys
import time

BLOCK = 65536


def serve(ip: str, port: int) -> None:
    srv = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)   # IPv6 overlay addresses too
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, port))
    srv.listen(1)
    print("listening", flush=True)
    conn, _ = srv.accept()
    h, n, start = hashlib.sha256(), 0, time.monotonic()
    while True:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    print(json.dumps({"bytes": n, "sha256": h.hexdigest(), "seconds": time.monotonic() - start}), flush=True)


def send(ip: str, port: int, size: int, seed: int, marker: bytes) -> None:
    rng = random.Random(seed)
    h, n = hashlib.sha256(), 0
    s = socket.create_connection((ip, port), timeout=30)
    start = time.monotonic()
    while n < size:
        block = (marker + rng.randbytes(BLOCK - len(marker)))[: size - n]
        s.sendall(block)
        h.update(block)
        n += len(block)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
    print(json.dumps({"bytes": n, "sha256": h.hexdigest(), "seconds": time.monotonic() - start}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
             sys.argv[6].encode() if len(sys.argv) > 6 else b"")
