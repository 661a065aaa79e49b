"""Send-side offload (tun/gso.py, issue 17): software TSO, the offload form, the write header.

Every checksum here is checked with this file's own RFC 1071 code, never with gso.py's."""

from __future__ import annotations

import random
import struct

import pytest

from shadowmesh_client.tun.gro import GSO_TCPV4, NEEDS_CSUM, PLAIN_HDR, VNET_HDR
from shadowmesh_client.tun.gso import MIN_GSO_SIZE, ones_sum, segment, to_offload_form, to_plain, write_header
from tests.client.tun.checksum import sum16 as _sum16

SRC, DST = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])
SRC6, DST6 = bytes(range(16)), bytes(range(16, 32))
TS_OPTS = b"\x01\x01\x08\x0a" + bytes(range(1, 9))  # NOP NOP timestamps: TCP header of 32 bytes
FIN, PSH, ACK, CWR = 0x01, 0x08, 0x10, 0x80
MSS = 1448


def _pseudo4(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    return src + dst + struct.pack("!BBH", 0, proto, length)


def _ip_ok(p: bytes) -> bool:
    ihl = (p[0] & 0x0F) * 4
    return _sum16(p[:ihl]) == 0xFFFF


def _tcp_ok(p: bytes) -> bool:
    ihl = (p[0] & 0x0F) * 4
    tcp = bytes(p[ihl:])
    return _sum16(_pseudo4(p[12:16], p[16:20], 6, len(tcp)) + tcp) == 0xFFFF


def _ipv4(proto: int, body: bytes, *, ident: int = 0, frag: int = 0x4000, src: bytes = SRC, dst: bytes = DST) -> bytes:
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, frag, 64, proto, 0, src, dst))
    struct.pack_into("!H", ip, 10, ~_sum16(bytes(ip)) & 0xFFFF)
    return bytes(ip) + body


def _tcp(payload: bytes, *, seq: int = 1000, flags: int = ACK | PSH, opts: bytes = TS_OPTS, ident: int = 7,
         csum: int | None = None, frag: int = 0x4000) -> bytes:
    """An IPv4/TCP packet; ``csum`` None: a valid TCP checksum, else that value in the field (offload form)."""
    thl = 20 + len(opts)
    tcp = bytearray(struct.pack("!HHIIBBHHH", 40000, 5001, seq, 0xA1B2C3D4, (thl // 4) << 4, flags, 502, 0, 0)
                    + opts + payload)
    value = csum if csum is not None else ~_sum16(_pseudo4(SRC, DST, 6, len(tcp)) + bytes(tcp)) & 0xFFFF
    struct.pack_into("!H", tcp, 16, value)
    return _ipv4(6, bytes(tcp), ident=ident, frag=frag)


def _udp(payload: bytes, *, csum: int | None = None) -> bytes:
    udp = bytearray(struct.pack("!HHHH", 5353, 53, 8 + len(payload), 0) + payload)
    if csum is None:  # a computed 0 is sent as 0xFFFF (RFC 768)
        csum = ~_sum16(_pseudo4(SRC, DST, 17, len(udp)) + bytes(udp)) & 0xFFFF or 0xFFFF
    struct.pack_into("!H", udp, 6, csum)
    return _ipv4(17, bytes(udp))


def _udp6(payload: bytes, csum: int) -> bytes:
    udp = struct.pack("!HHHH", 5353, 53, 8 + len(payload), csum) + payload
    return struct.pack("!IHBB", 0x60000000, len(udp), 17, 64) + SRC6 + DST6 + udp


ICMP = _ipv4(1, bytes([8, 0, 0xF7, 0xFF, 0, 0, 0, 0]))
TCP6 = struct.pack("!IHBB", 0x60000000, 32, 6, 64) + SRC6 + DST6 + bytes(12) + b"\x50" + bytes(19)


def _tcp_field(p: bytes) -> int:
    return struct.unpack_from("!H", p, 36)[0]


# ---- ones_sum ---------------------------------------------------------------------------------------

def test_ones_sum_matches_a_naive_word_by_word_sum():
    rnd = random.Random(17)
    lengths = [1, 2, 3, 4, 5, 19, 20, 21, 40, 41, 255, 1499, 1500, 4095, 4096, 65535, 65536, 69999, 70000]
    lengths += [rnd.randint(1, 70000) for _ in range(25)]
    for n in lengths:
        data = rnd.randbytes(n)
        assert ones_sum(data) == _sum16(data), n
        assert ones_sum(memoryview(data)) == _sum16(data), n
        assert ones_sum(bytes(n)) == 0, n
        assert ones_sum(b"\xff" * n) == _sum16(b"\xff" * n) == (0xFF00 if n % 2 else 0xFFFF), n
    assert ones_sum(b"") == 0
    assert ones_sum(b"\x00\x01\xff\xfe") == 0xFFFF  # a nonzero multiple of 0xFFFF folds to 0xFFFF, not 0


# ---- segment ----------------------------------------------------------------------------------------

def _check_segments(orig: bytes, segs: list, gso: int) -> None:
    payload = orig[52:]
    n = -(-len(payload) // gso)
    assert len(segs) == n
    ident = struct.unpack_from("!H", orig, 4)[0]
    seq = struct.unpack_from("!I", orig, 24)[0]
    flags = orig[33]
    for i, s in enumerate(segs):
        chunk = payload[i * gso:(i + 1) * gso]
        assert len(s) == 52 + len(chunk) and struct.unpack_from("!H", s, 2)[0] == len(s)
        assert struct.unpack_from("!H", s, 4)[0] == (ident + i) & 0xFFFF
        assert _ip_ok(s) and _tcp_ok(s)
        assert struct.unpack_from("!I", s, 24)[0] == (seq + i * gso) & 0xFFFFFFFF
        want = flags
        if i < n - 1:
            want &= ~(FIN | PSH)
        if i:
            want &= ~CWR
        assert s[33] == want
        assert s[52:] == chunk
        # everything else as in the original: version/tos, flags/frag, ttl/proto, addresses, ports, ack,
        # data offset, window, urgent pointer, options
        assert s[:2] == orig[:2] and s[6:10] == orig[6:10] and s[12:24] == orig[12:24]
        assert s[28:33] == orig[28:33] and s[34:36] == orig[34:36] and s[38:52] == orig[38:52]
    assert b"".join(s[52:] for s in segs) == payload


@pytest.mark.parametrize("size, flags, ident, seq", [
    (5000, ACK | PSH | FIN, 7, 1000),
    (5000, ACK | PSH | FIN | CWR, 0xFFFE, 0xFFFFF000),  # IP id and sequence number wrap
    (3 * MSS, ACK | PSH | CWR, 1, 5),                     # an exact multiple: the last segment is full
    (44 * MSS + 1, ACK, 9, 77),                           # near 64 KiB, one byte in the last segment
])
def test_segment_cuts_a_super_packet_like_the_kernel(size, flags, ident, seq):
    payload = random.Random(size).randbytes(size)
    for csum in (MSS, 0, 0xBEEF):  # whatever the checksum field held: it is recomputed
        orig = _tcp(payload, seq=seq, flags=flags, ident=ident, csum=csum)
        segs = segment(orig, MSS)
        _check_segments(orig, segs, MSS)
        assert all(isinstance(s, bytes) for s in segs)
    assert segment(memoryview(orig), MSS) == segs


def test_segment_refuses_what_is_not_an_ipv4_tcp_packet():
    good = _tcp(b"x" * 3000, csum=1000)
    for bad in (ICMP, _udp(b"hello" * 300), TCP6, good[:-1], _tcp(b"x" * 3000, frag=0x2000), b"", b"\x45"):
        with pytest.raises(ValueError):
            segment(bad, 1000)
    for size in (0, -1):
        with pytest.raises(ValueError):
            segment(good, size)


# ---- to_plain ---------------------------------------------------------------------------------------

def test_to_plain_completes_the_checksum_of_a_single_segment():
    payload = random.Random(1).randbytes(1000)
    valid = _tcp(payload)
    for field in (0, 1000, MSS, 0xFFFF):  # 0, or a gso_size not below the payload: one segment
        offload = _tcp(payload, csum=field)
        [out] = to_plain([offload])
        assert out == valid and _tcp_ok(out) and _ip_ok(out)
    [empty] = to_plain([_tcp(b"", flags=ACK, csum=0)])
    assert empty == _tcp(b"", flags=ACK) and _tcp_ok(empty)


def test_to_plain_segments_super_packets_and_leaves_the_rest_alone():
    payload = random.Random(2).randbytes(5000)
    sup = _tcp(payload, flags=ACK | PSH | FIN, csum=MSS)
    udp, frag = _udp(b"u" * 100), _tcp(b"f" * 3000, csum=MSS, frag=0x2000)
    others = [udp, ICMP, TCP6, frag, memoryview(_udp(b"v" * 5000))]
    out = to_plain([others[0], sup, *others[1:]])
    assert out[0] is udp
    _check_segments(sup, out[1:5], MSS)
    assert out[1:5] == segment(sup, MSS)
    assert len(out) == 5 + len(others) - 1
    for a, b in zip(out[5:], others[1:], strict=True):
        assert a is b
    assert to_plain([]) == []


# ---- write_header -----------------------------------------------------------------------------------

def _pseudo_sum(p: bytes) -> int:
    return _sum16(_pseudo4(p[12:16], p[16:20], 6, len(p) - 20))


def test_write_header_of_a_super_packet():
    p = _tcp(random.Random(3).randbytes(5000), csum=MSS)
    hdr, at, value = write_header(p)
    assert VNET_HDR.unpack(hdr) == (NEEDS_CSUM, GSO_TCPV4, 52, MSS, 20, 16)
    assert (at, value) == (36, _pseudo_sum(p))
    assert value == _sum16(SRC + DST) + 6 + len(p) - 20  # no carry for these addresses: the plain sum
    assert write_header(memoryview(p)) == (hdr, at, value)


def test_write_header_of_a_single_segment_and_of_other_packets():
    payload = random.Random(4).randbytes(1000)
    for field in (0, 1000, 2000):
        p = _tcp(payload, csum=field)
        hdr, at, value = write_header(p)
        assert VNET_HDR.unpack(hdr) == (NEEDS_CSUM, 0, 0, 0, 20, 16)
        assert (at, value) == (36, _pseudo_sum(p))
    sup = _tcp(b"z" * 3000, csum=1000)
    bad_len = bytearray(sup)
    struct.pack_into("!H", bad_len, 2, len(sup) + 4)
    short_thl = bytearray(sup)
    short_thl[32] = 0x40  # TCP data offset 16 bytes
    long_thl = bytearray(_tcp(b"", flags=ACK))
    long_thl[32] = 0xF0  # 60-byte TCP header in a 52-byte TCP part
    ihl4 = bytearray(sup)
    ihl4[0] = 0x44
    for p in (_udp(b"x" * 50), ICMP, TCP6, sup[:-1], sup[:39], bytes(bad_len), bytes(short_thl), bytes(long_thl),
              bytes(ihl4), _tcp(b"z" * 3000, csum=1000, frag=0x2000), _tcp(b"z" * 3000, csum=1000, frag=0x4001)):
        assert write_header(p) == (PLAIN_HDR, -1, 0)


def test_a_peer_cannot_ask_our_kernel_for_tiny_segments():
    """An insider's super-packet cut into 1-byte segments would cost a forwarding host 5,000 segments per
    frame: below MIN_GSO_SIZE it is dropped; at it, accepted."""
    payload = random.Random(5).randbytes(5000)
    for size in (1, 100, MIN_GSO_SIZE - 1):
        assert write_header(_tcp(payload, csum=size)) is None
    hdr, _, _ = write_header(_tcp(payload, csum=MIN_GSO_SIZE))
    assert VNET_HDR.unpack(hdr)[3] == MIN_GSO_SIZE


# ---- to_offload_form --------------------------------------------------------------------------------

def _read(flags: int, gso_type: int, hdr_len: int, gso: int, start: int, off: int, p: bytes) -> bytes:
    return VNET_HDR.pack(flags, gso_type, hdr_len, gso, start, off) + p


def _with_field(p: bytes, at: int, value: int) -> bytes:
    return p[:at] + struct.pack("!H", value) + p[at + 2:]


def test_to_offload_form_of_tcp_reads():
    payload = random.Random(5).randbytes(5000)
    kernel = _tcp(payload, csum=_pseudo_sum(_tcp(payload, csum=0)))  # the field as the kernel leaves it
    out = to_offload_form(_read(NEEDS_CSUM, GSO_TCPV4, 52, MSS, 20, 16, kernel))
    assert bytes(out) == _with_field(kernel, 36, MSS)
    small = _tcp(payload[:500])
    out = to_offload_form(_read(NEEDS_CSUM, 0, 0, 0, 20, 16, _with_field(small, 36, 0x1234)))
    assert bytes(out) == _with_field(small, 36, 0)
    assert bytes(to_offload_form(_read(0, 0, 0, 0, 0, 0, small))) == _with_field(small, 36, 0)  # complete: dropped
    assert bytes(to_offload_form(_read(NEEDS_CSUM, 0, 0, MSS, 20, 16, kernel))) == _with_field(kernel, 36, 0)  # not GSO


def test_to_offload_form_completes_udp_checksums_left_to_the_device():
    rnd = random.Random(6)
    for n in (0, 1, 7, 100, 1471, 5000):
        payload = rnd.randbytes(n)
        partial = _sum16(_pseudo4(SRC, DST, 17, 8 + n))
        p = _udp(payload, csum=partial)
        out = bytes(to_offload_form(_read(NEEDS_CSUM, 0, 0, 0, 20, 6, p)))
        assert out == _udp(payload) and out != p
        assert _sum16(_pseudo4(SRC, DST, 17, 8 + n) + out[20:]) == 0xFFFF
        partial6 = _sum16(SRC6 + DST6 + struct.pack("!IxxxB", 8 + n, 17))
        p6 = _udp6(payload, partial6)
        out6 = bytes(to_offload_form(_read(NEEDS_CSUM, 0, 0, 0, 40, 6, p6)))
        assert out6[:46] == p6[:46] and out6[48:] == p6[48:]
        assert _sum16(SRC6 + DST6 + struct.pack("!IxxxB", 8 + n, 17) + out6[40:]) == 0xFFFF
    # a sum that completes to 0 is sent as 0xFFFF (RFC 768: 0 means "no checksum")
    partial = _sum16(_pseudo4(SRC, DST, 17, 12))
    rest = _sum16(struct.pack("!HHHH", 5353, 53, 12, partial))
    p = _udp(struct.pack("!H", ~rest & 0xFFFF) + b"\0\0", csum=partial)
    out = bytes(to_offload_form(_read(NEEDS_CSUM, 0, 0, 0, 20, 6, p)))
    assert struct.unpack_from("!H", out, 26)[0] == 0xFFFF
    assert _sum16(_pseudo4(SRC, DST, 17, 12) + out[20:]) == 0xFFFF


def test_to_offload_form_drops_what_it_cannot_handle():
    sup = _tcp(b"q" * 3000, csum=0)
    udp = _udp(b"x" * 100, csum=0)
    for p in (udp, ICMP, TCP6, sup[:-1], _tcp(b"q" * 3000, csum=0, frag=0x2000)):
        assert to_offload_form(_read(NEEDS_CSUM, GSO_TCPV4, 52, MSS, 20, 16, p)) is None
    assert to_offload_form(_read(NEEDS_CSUM, 3, 60, MSS, 40, 16, TCP6)) is None  # TCPV6 was never enabled
    n = len(udp)
    for start, off in ((n, 0), (n - 1, 6), (20, n - 21), (n + 100, 6), (0xFFFF, 0xFFFF)):
        assert to_offload_form(_read(NEEDS_CSUM, 0, 0, 0, start, off, udp)) is None


def test_to_offload_form_leaves_plain_packets_alone():
    big = _udp(random.Random(7).randbytes(9000))
    for p in (_udp(b"x" * 100), ICMP, TCP6, big, _tcp(b"q" * 3000, frag=0x2000)):
        out = to_offload_form(_read(0, 0, 0, 0, 0, 0, p))
        assert bytes(out) == p


# ---- round trip -------------------------------------------------------------------------------------

def test_a_gso_read_round_trips_to_segments_and_to_a_kernel_write():
    payload = random.Random(8).randbytes(20000)
    kernel = _tcp(payload, flags=ACK | PSH, csum=_pseudo_sum(_tcp(payload, csum=0)))
    form = bytes(to_offload_form(_read(NEEDS_CSUM, GSO_TCPV4, 52, MSS, 20, 16, kernel)))
    segs = to_plain([form])
    assert len(segs) == 14
    _check_segments(form, segs, MSS)
    assert all(_ip_ok(s) and _tcp_ok(s) for s in segs)
    assert b"".join(s[52:] for s in segs) == payload
    # the receiver writes it with the header and value of write_header; the kernel completes the sum
    hdr, at, value = write_header(form)
    flags, gso_type, hdr_len, gso, start, off = VNET_HDR.unpack(hdr)
    assert (flags, gso_type, hdr_len, gso) == (NEEDS_CSUM, GSO_TCPV4, 52, MSS)
    written = bytearray(_with_field(form, at, value))
    struct.pack_into("!H", written, start + off, ~_sum16(bytes(written[start:])) & 0xFFFF)
    assert bytes(written) == _tcp(payload, flags=ACK | PSH) and _tcp_ok(bytes(written))


def test_a_plain_tcp_read_round_trips():
    p = _tcp(b"hello offload", ident=3)
    form = bytes(to_offload_form(_read(NEEDS_CSUM, 0, 0, 0, 20, 16, _with_field(p, 36, _pseudo_sum(p)))))
    assert to_plain([form]) == [p]
    hdr, at, value = write_header(form)
    written = bytearray(_with_field(form, at, value))
    _, _, _, _, start, off = VNET_HDR.unpack(hdr)
    struct.pack_into("!H", written, start + off, ~_sum16(bytes(written[start:])) & 0xFFFF)
    assert bytes(written) == p


# ---- hostile input ----------------------------------------------------------------------------------

def _mutants(rnd: random.Random, count: int):
    bases = [_tcp(rnd.randbytes(3000), csum=500), _tcp(rnd.randbytes(900), csum=0), _tcp(b"", flags=ACK),
             _tcp(rnd.randbytes(2000), opts=b"", csum=0xFFFF), _udp(rnd.randbytes(300)), ICMP, TCP6]
    for _ in range(count):
        p = bytearray(rnd.choice(bases))
        kind = rnd.randrange(6)
        if kind == 0:
            p = p[:rnd.randrange(len(p) + 1)]
        elif kind == 1:
            for _ in range(rnd.randint(1, 6)):
                p[rnd.randrange(len(p))] = rnd.randrange(256)
        elif kind == 2:  # the fields the parser trusts: version/IHL, total length, fragment, data offset
            at = rnd.choice([0, 2, 3, 6, 7, 9, 32, 36, 37])
            if at < len(p):
                p[at] = rnd.randrange(256)
            if rnd.random() < 0.5 and len(p) >= 4:
                struct.pack_into("!H", p, 2, len(p))  # keep the total length consistent
        elif kind == 3:
            p = bytearray(rnd.randbytes(rnd.randrange(120)))
        elif kind == 4:
            p = bytearray(rnd.choice([b"\x45", b"\x46", b"\x4f", b"\x60"]) + rnd.randbytes(rnd.randrange(100)))
        elif len(p) >= 38:  # a random data offset and gso_size
            p[32] = rnd.randrange(256)
            struct.pack_into("!H", p, 36, rnd.choice([1, 2, 3, 536, 0xFFFF, rnd.randrange(0x10000)]))
        yield bytes(p)


def test_hostile_packets_never_raise():
    rnd = random.Random(1717)
    for p in _mutants(rnd, 3000):
        out = to_plain([p])
        for q in out:
            if q is not p:  # everything to_plain rewrote is an IPv4 TCP packet with a valid checksum
                assert isinstance(q, bytes) and 40 <= len(q) <= len(p) and _tcp_ok(q)
        how = write_header(p)
        if how is None:  # a super-packet asking for segments below MIN_GSO_SIZE: dropped
            assert ((p[36] << 8) | p[37]) < MIN_GSO_SIZE
            continue
        hdr, at, value = how
        assert len(hdr) == 10 and 0 <= value <= 0xFFFF
        assert (hdr, at, value) == (PLAIN_HDR, -1, 0) or 36 <= at <= len(p) - 2
        vh = VNET_HDR.pack(rnd.randrange(4), rnd.choice([0, 0, 1, 3, 4, 0x81, rnd.randrange(256)]),
                           rnd.randrange(0x10000), rnd.randrange(0x10000),
                           rnd.choice([20, 40, rnd.randrange(0x10000)]), rnd.choice([6, 16, rnd.randrange(0x10000)]))
        form = to_offload_form(vh + p)
        assert form is None or len(form) == len(p)
