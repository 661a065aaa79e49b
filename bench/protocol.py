"""Protocol-core benchmark: seal+open throughput and handshakes per second, on one core, in process.

Figures (printed as a table and returned by ``run``):
  seal_gbps / open_gbps / seal_open_gbps  payload bits per second for single-packet DATA frames of
      1,400 bytes and 64 KiB (65,536 bytes), and for batches of 32 x 1,400-byte packets per frame;
      seal_open is one seal plus one open per frame (the CPU one tunnel direction costs end to end);
  aead_gbps  the bare XChaCha20-Poly1305 call on the same size (the ceiling);
  handshakes_per_s  complete handshakes (initiation, response, confirmation) both sides on one core.
Targets (issue 3): 64 KiB seal >= 8 Gbit/s, 1,400 B >= 1 Gbit/s, >= 2,000 handshakes/s.
"""

from __future__ import annotations

import os
import time

from shadowmesh_client import crypto
from shadowmesh_client.protocol import Identity, NetworkBinding, ProtocolConfig, Session

TARGETS = {"seal_64KiB_gbps": 8.0, "seal_1400B_gbps": 1.0, "handshakes_per_s": 2000.0}


def _pair():
    cfg = ProtocolConfig(NetworkBinding(31337, b"\x11" * 20, b"bench".ljust(32, b"\0")))
    a, b = Identity.generate(), Identity.generate()
    sa = Session(a, b.public_key, cfg, lambda k: True)
    sb = Session(b, a.public_key, cfg, lambda k: True)
    r = sb.open(sa.initiate(0.0), 0.0)
    for f in sa.open(r.outgoing[0], 0.0).outgoing:
        sb.open(f, 0.0)
    return sa, sb


def _timeit(fn, min_seconds: float) -> float:
    """Seconds per call of ``fn`` (best of 3 runs of at least ``min_seconds`` / 3 each)."""
    best = float("inf")
    for _ in range(3):
        n, start = 0, time.perf_counter()
        deadline = start + min_seconds / 3
        while True:
            for _ in range(64):
                fn()
            n += 64
            now = time.perf_counter()
            if now >= deadline:
                break
        best = min(best, (now - start) / n)
    return best


def _throughput(size: int, count: int, seconds: float) -> dict:
    sa, sb = _pair()
    packets = [os.urandom(size) for _ in range(count)]
    payload_bits = size * count * 8

    def seal() -> bytearray:
        return sa.seal_packets(packets, 1.0)

    t_seal = _timeit(seal, seconds)
    frames = [bytes(sa.seal_packets(packets, 1.0)) for _ in range(4096 if size <= 2048 else 256)]
    it = iter(())

    def open_one():
        nonlocal it
        try:
            f = next(it)
        except StopIteration:  # replay windows forbid re-opening: refill with fresh frames
            sb._current.replay = type(sb._current.replay)()
            it = iter(frames)
            f = next(it)
        sb.open(f, 1.0)

    t_open = _timeit(open_one, seconds)
    key, nonce, ad = os.urandom(32), os.urandom(24), os.urandom(64)
    plaintext = b"\0" * (size * count + 2 + 2 * count)
    buf = bytearray(64 + len(plaintext) + 16)
    buf[:64] = ad[:40] + nonce

    def aead():
        buf[64:-16] = plaintext
        crypto.aead_seal_in_place(buf, 64, 40, len(plaintext), key)

    t_aead = _timeit(aead, seconds / 2)
    return {
        "seal_gbps": payload_bits / t_seal / 1e9,
        "open_gbps": payload_bits / t_open / 1e9,
        "seal_open_gbps": payload_bits / (t_seal + t_open) / 1e9,
        "aead_gbps": payload_bits / t_aead / 1e9,
        "seal_us": t_seal * 1e6,
        "open_us": t_open * 1e6,
    }


def _handshakes(seconds: float) -> float:
    cfg = ProtocolConfig(NetworkBinding(31337, b"\x11" * 20, b"bench".ljust(32, b"\0")))
    a, b = Identity.generate(), Identity.generate()

    def one():
        sa = Session(a, b.public_key, cfg, lambda k: True)
        sb = Session(b, a.public_key, cfg, lambda k: True)
        r = sb.open(sa.initiate(0.0), 0.0)
        confirm = sa.open(r.outgoing[0], 0.0).outgoing[0]
        sb.open(confirm, 0.0)

    return 1.0 / _timeit(one, seconds)


def _nonce_costs(seconds: float) -> dict:
    """Microseconds per nonce: os.urandom(24) (a getrandom syscall) vs prefix || seq packed into the
    header (what the session does), to justify counter-derived nonces (docs/protocol.md)."""
    import struct

    prefix, buf, st = os.urandom(20), bytearray(64), struct.Struct(">20sI")
    counter = iter(range(1 << 62))
    return {
        "nonce_urandom_us": round(_timeit(lambda: os.urandom(24), seconds) * 1e6, 3),
        "nonce_counter_us": round(_timeit(lambda: st.pack_into(buf, 40, prefix, next(counter) & 0xFFFFFFFF),
                                          seconds) * 1e6, 3),
    }


def run(args=None) -> dict:
    quick = bool(getattr(args, "quick", False))
    seconds = 0.6 if quick else 2.0
    results: dict = {}
    for label, size, count in (("1400B", 1400, 1), ("64KiB", 65536, 1), ("32x1400B", 1400, 32)):
        r = _throughput(size, count, seconds)
        for k, v in r.items():
            name = k.replace("_gbps", "").replace("_us", "")
            results[f"{name}_{label}_{'gbps' if k.endswith('gbps') else 'us'}"] = round(v, 3)
    results["handshakes_per_s"] = round(_handshakes(seconds), 1)
    results.update(_nonce_costs(seconds / 4))
    print(f"{'payload':<10} {'seal Gbit/s':>12} {'open Gbit/s':>12} {'seal+open':>10} {'AEAD only':>10}")
    for label in ("1400B", "64KiB", "32x1400B"):
        print(f"{label:<10} {results[f'seal_{label}_gbps']:>12.2f} {results[f'open_{label}_gbps']:>12.2f} "
              f"{results[f'seal_open_{label}_gbps']:>10.2f} {results[f'aead_{label}_gbps']:>10.2f}")
    print(f"handshakes/s (one core, both sides): {results['handshakes_per_s']:.0f}")
    print(f"nonce: os.urandom(24) {results['nonce_urandom_us']} us, prefix||seq {results['nonce_counter_us']} us")
    for name, target in TARGETS.items():
        value = results[name]
        print(f"target {name} >= {target}: {value} {'OK' if value >= target else 'MISSED'}")
    results["load_average"] = os.getloadavg()[0]
    return results
