"""Pinned test vectors (tests/vectors/protocol_*.json): the code must reproduce them byte for byte, and
the frames they contain must open with only the data written in the JSON (as another implementation
would do it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from shadowmesh_client import crypto
from shadowmesh_client.protocol import Identity, NetworkBinding, ProtocolConfig, Session, peek_header
from shadowmesh_client.protocol import frames as F

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


def _generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_vectors", VECTORS / "generate_protocol_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_reproduces_the_pinned_files():
    for path, text in _generator().render().items():
        assert path.read_text() == text, f"{path.name} changed: the wire format moved (regenerate only on purpose)"


@pytest.mark.parametrize("case", _load("protocol_frames.json")["cases"], ids=lambda c: c["name"])
def test_frame_vectors_open_from_the_json_alone(case):
    doc = _load("protocol_frames.json")
    key = bytes.fromhex(doc["key_hex"])
    header = bytes.fromhex(case["header_hex"])
    assert header[8:40] == bytes.fromhex(doc["sender_hex"])
    assert header[40:60] == bytes.fromhex(doc["nonce_prefix_hex"]) and header[60:64] == case["seq"].to_bytes(4, "big")
    if "frame_hex" in case:
        frame = bytes.fromhex(case["frame_hex"])
        assert hashlib.blake2b(frame, digest_size=32).hexdigest() == case["frame_blake2b256"]
        assert frame[:64] == header and len(frame) == case["frame_size"]
        h = peek_header(frame)
        assert int(h.type) == case["type"]
        plaintext = F.open_payload(frame, key)
        assert plaintext is not None
        if "packets_hex" in case:
            assert F.decode_packets(plaintext, case["pad"]) == [bytes.fromhex(p) for p in case["packets_hex"]]
        else:
            assert plaintext[: len(case["plaintext_hex"]) // 2].hex() == case["plaintext_hex"]
    else:  # the JUMBO case: packets are a pattern, the frame is pinned by hash
        packets = [bytes((s + 7 * i) & 0xFF for i in range(n)) for n, s in case["packets_pattern"]]
        prefix = bytes.fromhex(doc["nonce_prefix_hex"])
        frame = bytes(F.seal_packets(case["flags_in"], case["seq"], header[8:40], prefix, packets, case["pad"], key))
        assert frame[:64] == header and len(frame) == case["frame_size"]
        assert hashlib.blake2b(frame, digest_size=32).hexdigest() == case["frame_blake2b256"]
        assert F.decode_packets(F.open_payload(frame, key), False) == packets


def test_handshake_vector_replays_both_sides():
    v = _load("protocol_handshake.json")
    b = v["binding"]
    binding = NetworkBinding(b["chain_id"], bytes.fromhex(b["registry_hex"]), bytes.fromhex(b["network_id_hex"]))
    assert binding.digest().hex() == b["digest_hex"] and binding.handshake_key().hex() == b["handshake_key_hex"]
    cfg = ProtocolConfig(binding)
    i_id = Identity.from_seed(bytes.fromhex(v["initiator_seed_hex"]))
    r_id = Identity.from_seed(bytes.fromhex(v["responder_seed_hex"]))
    assert i_id.public_key.hex() == v["initiator_public_hex"]
    # the responder, from scratch, accepts the pinned initiation and produces the pinned response
    sr = Session(r_id, i_id.public_key, cfg, lambda k: True,
                 rng=crypto.deterministic_rng(v["responder_rng_seed"].encode()))
    r = sr.open(bytes.fromhex(v["initiation_hex"]), v["now"] + 0.01)
    assert bytes(r.outgoing[0]).hex() == v["response_hex"]
    sr.open(bytes.fromhex(v["confirmation_hex"]), v["now"] + 0.03)
    assert sr.open(bytes.fromhex(v["first_data_hex"]), v["now"] + 0.04).packets == [b"\x45\x00\x00\x14" + b"\0" * 16]
    assert sr._current.recv_key.hex() == v["initiator_to_responder_key_hex"]
    assert sr._current.send_key.hex() == v["responder_to_initiator_key_hex"]
