"""The frame format (spec "Frame Format (Binary)"): header fields against byte literals, Length/JUMBO,
batches, padding buckets, and the decoder on arbitrary bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowmesh_client.errors import ProtocolError
from shadowmesh_client.protocol import frames as F
from shadowmesh_client.protocol.errors import FrameFormatError
from shadowmesh_client.protocol.frames import Flags, FrameHeader, FrameType, peek_header, peek_sender

SENDER = bytes(range(32))
NONCE = bytes(range(100, 124))
KEY = b"\x07" * 32

# version 1 | type DATA(3), flags KEY_PHASE|PADDED, length 0x0102, seq 0x01020304, sender, nonce
HEADER_LITERAL = (
    b"\x13\x03\x01\x02\x01\x02\x03\x04"
    + bytes(range(32))
    + bytes(range(100, 124))
)


def test_header_encodes_to_the_byte_literal():
    h = FrameHeader(1, FrameType.DATA, Flags.KEY_PHASE | Flags.PADDED, 0x0102, 0x01020304, SENDER, NONCE)
    assert h.encode() == HEADER_LITERAL
    assert len(HEADER_LITERAL) == 64


def test_header_decodes_from_the_byte_literal():
    h = FrameHeader.decode(HEADER_LITERAL)
    assert (h.version, h.type, h.flags, h.length, h.seq) == (1, FrameType.DATA, 0x03, 0x0102, 0x01020304)
    assert h.sender == SENDER and h.nonce == NONCE


@pytest.mark.parametrize("first_byte,message", [(b"\x23", "version"), (b"\x10", "type"), (b"\x17", "type")])
def test_header_rejects_unknown_version_and_type(first_byte, message):
    with pytest.raises(FrameFormatError, match=message):
        FrameHeader.decode(first_byte + HEADER_LITERAL[1:])


def test_header_rejects_unknown_flag_bits():
    with pytest.raises(FrameFormatError, match="flag"):
        FrameHeader.decode(HEADER_LITERAL[:1] + b"\x40" + HEADER_LITERAL[2:])


def test_keepalive_frame_matches_literal_layout_and_opens():
    frame = F.seal(FrameType.KEEPALIVE, 0, 5, SENDER, NONCE, b"", KEY)
    assert len(frame) == 80
    assert frame[:8] == b"\x14\x00\x00\x00\x00\x00\x00\x05"  # v1 KEEPALIVE, no flags, length 0, seq 5
    assert frame[8:40] == SENDER and frame[40:64] == NONCE
    assert F.open_payload(bytes(frame), KEY) == b""


def test_data_frame_batch_round_trip_and_plaintext_layout():
    packets = [b"\x45abc", b"\x60" * 300, b"z"]
    frame = F.seal_packets(0, 9, SENDER, NONCE[:20], packets, False, KEY)
    header = peek_header(frame)
    assert header.type is FrameType.DATA and header.seq == 9 and header.nonce == NONCE[:20] + b"\0\0\0\x09"
    plaintext = F.open_payload(frame, KEY)
    # count=3, lengths-1 = 3, 299, 0, then the packets back to back
    assert plaintext[:8] == b"\x00\x03\x00\x03\x01\x2b\x00\x00"
    assert header.length == len(plaintext) == 8 + 4 + 300 + 1
    assert F.decode_packets(plaintext, False) == packets


def test_a_64_KiB_packet_fits_in_a_jumbo_frame():
    packet = bytes(range(256)) * 256  # 65,536 bytes
    frame = F.seal_packets(0, 1, SENDER, NONCE[:20], [packet], False, KEY)
    header = peek_header(frame)
    payload = 2 + 2 + 65536
    assert header.flags & Flags.JUMBO
    assert header.length == payload & 0xFFFF == 4
    assert len(frame) == 80 + payload
    assert F.decode_packets(F.open_payload(frame, KEY), False) == [packet]


def test_length_must_match_the_frame_size():
    frame = bytes(F.seal(FrameType.KEEPALIVE, 0, 0, SENDER, NONCE, b"abc", KEY))
    with pytest.raises(FrameFormatError, match="Length"):
        peek_header(frame + b"\0")  # one byte appended
    with pytest.raises(FrameFormatError, match="Length"):
        peek_header(frame[:-1])  # one byte cut
    jumbo_claim = bytearray(frame)
    jumbo_claim[1] |= Flags.JUMBO
    with pytest.raises(FrameFormatError, match="Length"):
        peek_header(bytes(jumbo_claim))


def test_oversized_payload_is_refused_both_ways():
    with pytest.raises(FrameFormatError, match="exceeds"):
        F.seal(FrameType.DATA, 0, 0, SENDER, NONCE, b"\0" * (F.C.MAX_PAYLOAD + 1), KEY)
    huge = F.HEADER.pack(0x13, Flags.JUMBO, 0, 0, SENDER, NONCE) + b"\0" * (F.C.MAX_PAYLOAD + 17)
    with pytest.raises(FrameFormatError, match="exceeds"):
        peek_header(huge)


@pytest.mark.parametrize("packets", [[], [b""], [b"\0" * 65537], [b"x"] * 1025])
def test_invalid_batches_are_refused(packets):
    with pytest.raises(FrameFormatError):
        F.seal_packets(0, 0, SENDER, NONCE[:20], packets, False, KEY)


@pytest.mark.parametrize("size,bucket", [(0, 64), (64, 64), (65, 128), (1400, 1536), (1537, 2048),
                                         (65536, 65536), (65537, 81920)])
def test_padding_buckets(size, bucket):
    assert F.pad_size(size) == bucket


def test_padded_frames_hide_the_exact_length():
    sizes = {len(F.seal_packets(0, 0, SENDER, NONCE[:20], [b"x" * n], True, KEY)) for n in range(1300, 1500, 7)}
    assert sizes == {80 + 1536}
    frame = F.seal_packets(0, 0, SENDER, NONCE[:20], [b"x" * 1300], True, KEY)
    assert peek_header(frame).flags & Flags.PADDED
    assert F.decode_packets(F.open_payload(frame, KEY), True) == [b"x" * 1300]


def test_unpadded_plaintext_with_trailing_bytes_is_rejected():
    with pytest.raises(FrameFormatError):
        F.decode_packets(b"\x00\x01\x00\x00" + b"a" + b"\0", padded=False)


def test_peek_sender_reads_the_sender_field():
    frame = F.seal(FrameType.KEEPALIVE, 0, 0, SENDER, NONCE, b"", KEY)
    assert peek_sender(frame) == SENDER
    with pytest.raises(FrameFormatError):
        peek_sender(b"\x13" * 79)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_decoders_on_arbitrary_bytes_only_raise_protocol_errors(data):
    for decode in (peek_header, lambda d: F.decode_packets(d, False), lambda d: F.decode_packets(d, True)):
        try:
            decode(data)
        except ProtocolError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=2000), min_size=1, max_size=20), st.booleans())
def test_any_batch_round_trips(packets, pad):
    frame = F.seal_packets(0, 3, SENDER, NONCE[:20], packets, pad, KEY)
    assert F.decode_packets(F.open_payload(frame, KEY), pad) == packets
