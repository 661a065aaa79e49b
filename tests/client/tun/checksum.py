"""The RFC 1071 checksum written out word by word: the tests' reference, independent of tun/gso.py's."""

from __future__ import annotations

import struct


def sum16(data: bytes) -> int:
    """Ones'-complement sum of ``data`` as 16-bit big-endian words (odd length: zero-padded), folded."""
    data = bytes(data)
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s
