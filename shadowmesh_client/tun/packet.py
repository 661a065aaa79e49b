"""Pure helpers that read the IPv4 header of a packet from the TUN device (RFC 791 section 3.1).

The node routes each packet by its destination overlay address (spec "Data Plane", overlay
100.64.0.0/10). These functions never raise on short or foreign input: they return None, so the
caller can drop and count the packet. Addresses are returned as host-order ints (compare with
``int(ipaddress.IPv4Address(...))``), which is what a dict keyed by peer address wants.
"""

from __future__ import annotations

IPV4_MIN_HEADER = 20
"""Bytes in an IPv4 header without options (IHL = 5 words of 4 bytes)."""

_SRC = slice(12, 16)
_DST = slice(16, 20)


def ip_version(packet: bytes) -> int | None:
    """The IP version nibble (4 or 6 for real traffic), or None for an empty packet."""
    if not packet:
        return None
    return packet[0] >> 4


def _is_ipv4(packet: bytes) -> bool:
    # Version 4 and a header length (IHL, in 4-byte words) of at least 5 that fits the packet.
    return (
        len(packet) >= IPV4_MIN_HEADER
        and packet[0] >> 4 == 4
        and 5 <= (packet[0] & 0x0F)
        and (packet[0] & 0x0F) * 4 <= len(packet)
    )


def ipv4_dst(packet: bytes) -> int | None:
    """Destination address of an IPv4 packet as an int, or None if it is not a well-formed IPv4 header."""
    if not _is_ipv4(packet):
        return None
    return int.from_bytes(packet[_DST], "big")


def ipv4_src(packet: bytes) -> int | None:
    """Source address of an IPv4 packet as an int, or None if it is not a well-formed IPv4 header."""
    if not _is_ipv4(packet):
        return None
    return int.from_bytes(packet[_SRC], "big")
