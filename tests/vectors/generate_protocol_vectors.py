"""Regenerate tests/vectors/protocol_*.json: pinned vectors of the ShadowMesh wire format and handshake.

Run: ``python tests/vectors/generate_protocol_vectors.py`` (add ``--check`` to compare instead of write).
Everything is derived from fixed seeds (BLAKE2b counter-mode stream, see crypto.deterministic_rng), so
the output is byte-for-byte stable; tests/client/protocol/test_vectors.py fails if it ever changes.
Another implementation can check itself against the JSON alone: keys, nonces, headers, plaintexts and
expected frames are all spelled out in hex.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # a checkout without pip install -e

from shadowmesh_client import crypto  # noqa: E402 - after the sys.path set-up above
from shadowmesh_client.protocol import Identity, NetworkBinding, ProtocolConfig, Session  # noqa: E402 - after the sys.path set-up above
from shadowmesh_client.protocol import frames as F  # noqa: E402 - after the sys.path set-up above
from shadowmesh_client.protocol.frames import FrameType  # noqa: E402 - after the sys.path set-up above

HERE = Path(__file__).resolve().parent
FRAMES_PATH = HERE / "protocol_frames.json"
HANDSHAKE_PATH = HERE / "protocol_handshake.json"


def _pattern(n: int, seed: int) -> bytes:
    return bytes((seed + i * 7) & 0xFF for i in range(n))


def frame_vectors() -> dict:
    rng = crypto.deterministic_rng(b"shadowmesh frame vectors v1")
    key = rng(32)
    prefix = rng(20)
    sender = Identity.from_seed(rng(32)).public_key
    cases = []

    def add(name: str, ftype: int, flags: int, seq: int, packets, plaintext, pad: bool, inline: bool = True):
        if packets is not None:
            frame = bytes(F.seal_packets(flags, seq, sender, prefix, packets, pad, key))
        else:
            frame = bytes(F.seal(ftype, flags, seq, sender, prefix + seq.to_bytes(4, "big"), plaintext, key, pad=pad))
        case = {
            "name": name,
            "type": ftype,
            "flags_in": flags,
            "pad": pad,
            "seq": seq,
            "header_hex": frame[:64].hex(),
            "frame_size": len(frame),
            "frame_blake2b256": hashlib.blake2b(frame, digest_size=32).hexdigest(),
        }
        if packets is not None:
            case["packets_hex" if inline else "packets_pattern"] = (
                [p.hex() for p in packets] if inline else [[len(p), p[0]] for p in packets])
        else:
            case["plaintext_hex"] = plaintext.hex()
        if inline:
            case["frame_hex"] = frame.hex()
        cases.append(case)

    add("data one packet", FrameType.DATA, 0, 0,
        [bytes.fromhex("4500001c0000000040010000644000016440000208004d5600010001")], None, False)
    add("data batch of three", FrameType.DATA, F.Flags.KEY_PHASE, 7, [b"\x45" * 20, b"\x60" * 40, b"x"], None, False)
    add("data padded to bucket", FrameType.DATA, 0, 1, [b"\x45" + b"\0" * 99], None, True)
    add("keepalive", FrameType.KEEPALIVE, 0, 2, None, b"", False)
    add("keepalive padded", FrameType.KEEPALIVE, 0, 3, None, b"", True)
    add("close", FrameType.CLOSE, F.Flags.KEY_PHASE, 0xFFFFFFFE, None, b"\x00", False)
    add("data 64 KiB packet (JUMBO)", FrameType.DATA, 0, 9, [_pattern(65536, 3)], None, False, inline=False)
    return {
        "description": "ShadowMesh v1 session frames: nonce = prefix || seq (big-endian); AEAD "
                       "XChaCha20-Poly1305 with the 64-byte header as associated data. packets_pattern "
                       "[n, s] means bytes (s + 7*i) & 0xff for i in range(n).",
        "key_hex": key.hex(),
        "nonce_prefix_hex": prefix.hex(),
        "sender_hex": sender.hex(),
        "cases": cases,
    }


def handshake_vectors() -> dict:
    rng = crypto.deterministic_rng(b"shadowmesh handshake vectors v1")
    init_id, resp_id = Identity.from_seed(rng(32)), Identity.from_seed(rng(32))
    binding = NetworkBinding(80002, "0x" + "5a" * 20, "vectors")
    cfg = ProtocolConfig(binding)
    now = 1_800_000_000.25
    si = Session(init_id, resp_id.public_key, cfg, lambda k: True, rng=crypto.deterministic_rng(b"initiator rng"))
    sr = Session(resp_id, init_id.public_key, cfg, lambda k: True, rng=crypto.deterministic_rng(b"responder rng"))
    init = bytes(si.initiate(now))
    r = sr.open(init, now + 0.01)
    response = bytes(r.outgoing[0])
    r2 = si.open(response, now + 0.02)
    confirm = bytes(r2.outgoing[0])
    sr.open(confirm, now + 0.03)
    data = bytes(si.seal_packets([b"\x45\x00\x00\x14" + b"\0" * 16], now + 0.04))
    reply = bytes(sr.seal_packets([b"\x45\x00\x00\x15" + b"\1" * 17], now + 0.05))
    return {
        "description": "ShadowMesh v1 handshake (see shadowmesh_client/protocol/handshake.py). Ephemeral keys "
                       "and nonces come from crypto.deterministic_rng(seed); Ed25519 signatures are "
                       "deterministic. Times are seconds; the initiation timestamp is int(now * 1e9).",
        "initiator_seed_hex": init_id.seed_bytes().hex(),
        "responder_seed_hex": resp_id.seed_bytes().hex(),
        "initiator_public_hex": init_id.public_key.hex(),
        "responder_public_hex": resp_id.public_key.hex(),
        "binding": {"chain_id": 80002, "registry_hex": binding.registry.hex(),
                    "network_id_hex": binding.network_id.hex(),
                    "digest_hex": binding.digest().hex(), "handshake_key_hex": binding.handshake_key().hex()},
        "initiator_rng_seed": "initiator rng",
        "responder_rng_seed": "responder rng",
        "now": now,
        "initiation_hex": init.hex(),
        "response_hex": response.hex(),
        "confirmation_hex": confirm.hex(),
        "initiator_to_responder_key_hex": si._current.send_key.hex(),
        "responder_to_initiator_key_hex": si._current.recv_key.hex(),
        "first_data_hex": data.hex(),
        "first_reply_hex": reply.hex(),
    }


def render() -> dict[Path, str]:
    return {FRAMES_PATH: json.dumps(frame_vectors(), indent=1) + "\n",
            HANDSHAKE_PATH: json.dumps(handshake_vectors(), indent=1) + "\n"}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in render().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("vectors differ from the code: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
