"""The relay's pure core: envelope bytes, routing, anti-spoofing, counters, token bucket, queue bounds.
No sockets; time is passed in."""

from __future__ import annotations

import pytest
from transport_helpers import fake_inner

from shadowmesh_client.relay import (
    Dropped,
    DropReason,
    EnvelopeError,
    EnvelopeType,
    Forwarded,
    Local,
    RelayConfig,
    RelayConfigError,
    RelayCore,
    TokenBucket,
    decode,
    encode_forward,
    encode_local,
    open_delivery,
)

A, B, C = bytes([0xA1]) * 32, bytes([0xB2]) * 32, bytes([0xC3]) * 32


def test_envelope_byte_layout():
    inner = fake_inner(A, b"ct")
    assert encode_forward(B, inner) == b"\x01" + B + inner
    assert encode_local(b"frame") == b"\x03frame"
    env = decode(b"\x02" + A + inner)
    assert (env.type, env.key, bytes(env.inner)) == (EnvelopeType.DELIVER, A, inner)
    assert open_delivery(b"\x02" + A + inner) == (A, inner)


@pytest.mark.parametrize("message, error", [
    (b"", "empty"),
    (b"\x07" + A + fake_inner(A), "unknown relay envelope type 0x07"),
    (b"\x01" + A[:10], "too short"),
    (b"\x01" + A + bytes(63), "too short"),
])
def test_malformed_envelopes_are_rejected(message, error):
    with pytest.raises(EnvelopeError, match=error):
        decode(message)


def test_receiver_rejects_a_source_that_is_not_the_inner_sender():
    with pytest.raises(EnvelopeError, match="does not match"):
        open_delivery(b"\x02" + B + fake_inner(A))       # relay claims B, frame says A
    with pytest.raises(EnvelopeError, match="expected a DELIVER"):
        open_delivery(encode_forward(A, fake_inner(A)))


def attached(config=None, now=0.0, keys=(A, B)):
    core = RelayCore(config)
    for key in keys:
        assert core.attach(key, f"link-{key[0]:x}", now) is None
    return core


def test_forward_rewrites_the_source_from_the_link_identity_and_counts_bytes():
    core = attached()
    inner = fake_inner(A, b"x" * 100)
    message = encode_forward(B, inner)
    assert core.on_message(A, message, 1.0) == Forwarded(B)
    out = core.pop(B)
    assert out == b"\x02" + A + inner and core.pop(B) is None
    assert open_delivery(out) == (A, inner)
    ua, ub = core.usage(A), core.usage(B)
    assert (ua.bytes_in, ua.messages_in, ua.bytes_out) == (len(message), 1, 0)
    assert (ub.bytes_out, ub.messages_out, ub.bytes_in) == (len(out), 1, 0)


@pytest.mark.parametrize("source, message, reason", [
    (A, encode_forward(B, fake_inner(C)), DropReason.SPOOFED),      # A claims to be C
    (A, encode_forward(C, fake_inner(A)), DropReason.NO_ROUTE),     # C not connected
    (A, encode_forward(A, fake_inner(A)), DropReason.TO_SELF),
    (A, b"\x02" + B + fake_inner(A), DropReason.MALFORMED),          # devices can't send DELIVER
    (A, b"\x09junk", DropReason.MALFORMED),
    (C, encode_forward(A, fake_inner(C)), DropReason.NOT_ATTACHED),
])
def test_drops_are_counted_by_reason(source, message, reason):
    core = attached()
    assert core.on_message(source, message, 0.0) == Dropped(reason)
    assert core.drops[reason] == 1 and core.pop(B) is None and core.pop(A) is None
    if source in core:
        assert core.usage(source).dropped[reason] == 1


def test_local_frames_are_handed_to_the_relay_itself():
    core = attached()
    result = core.on_message(A, encode_local(b"close"), 0.0)
    assert isinstance(result, Local) and bytes(result.frame) == b"close"


def test_token_bucket_allows_burst_plus_rate_times_time():
    bucket = TokenBucket(rate=1000, burst=5000, now=10.0)
    assert bucket.consume(5000, 10.0) and not bucket.consume(1, 10.0)
    assert not bucket.consume(600, 10.5) and bucket.consume(500, 10.5)
    assert bucket.available(9.0) == 0           # a clock going backwards adds nothing
    assert bucket.available(100.0) == 5000      # never more than the burst


def test_rate_limit_per_device_over_a_window():
    cfg = RelayConfig(rate_bytes_per_second=100_000, burst_bytes=100_000)
    core = attached(cfg)
    message = encode_forward(B, fake_inner(A, bytes(10_000 - 33 - 64)))   # 10,000 bytes
    passed = 0
    for step in range(200):                     # offered 20,000 B per 0.1 s = 200 kB/s for 1 s
        now = step * 0.005
        if isinstance(core.on_message(A, message, now), Forwarded):
            passed += 1
        while core.pop(B):
            pass
    # burst + rate * window = 100 kB + 100 kB/s * 0.995 s  -> at most 19 messages of 10 kB
    assert passed == 19
    assert core.usage(A).dropped[DropReason.RATE_LIMITED] == 200 - 19
    assert core.usage(B).dropped[DropReason.RATE_LIMITED] == 0      # limits are per device
    assert isinstance(core.on_message(B, encode_forward(A, fake_inner(B)), 1.0), Forwarded)


def test_slow_receiver_queue_is_bounded_and_drops_are_counted():
    cfg = RelayConfig(queue_max_bytes=100_000)
    core = attached(cfg)
    message = encode_forward(B, fake_inner(A, bytes(9_903)))   # 10,000-byte envelopes either way
    results = [core.on_message(A, message, 0.0) for _ in range(15)]
    assert results.count(Forwarded(B)) == 10 and results.count(Dropped(DropReason.QUEUE_FULL)) == 5
    assert core.queued_bytes(B) == 100_000 == core.peak_queued_bytes(B)
    assert core.usage(B).dropped[DropReason.QUEUE_FULL] == 5
    assert core.pop(B) is not None and core.queued_bytes(B) == 90_000
    assert core.on_message(A, message, 0.0) == Forwarded(B)     # room again after the receiver read


def test_newest_link_wins_and_a_stale_detach_does_not_remove_it():
    core = RelayCore()
    assert core.attach(A, "old", 0.0) is None
    assert core.attach(A, "new", 1.0) == "old"
    assert core.detach(A, "old") is False and core.link_of(A) == "new"
    assert core.detach(A, "new") is True and A not in core and len(core) == 0


def test_take_usage_resets_and_forgets_detached_devices():
    core = attached()
    core.on_message(A, encode_forward(B, fake_inner(A)), 0.0)
    assert core.detach(B, core.link_of(B))
    taken = core.take_usage()
    assert taken[A].messages_in == 1 and B in taken
    assert core.usage(A).messages_in == 0 and B not in core.take_usage()


def test_relay_config_is_validated():
    with pytest.raises(RelayConfigError, match="rate_bytes_per_second"):
        RelayConfig(rate_bytes_per_second=0)
    with pytest.raises(RelayConfigError, match="queue_max_bytes"):
        RelayConfig(queue_max_bytes=10)


def test_relay_core_is_pure():
    """No sockets, asyncio or websockets in the relay core (checked on a fresh interpreter)."""
    import subprocess
    import sys
    code = ("import sys, shadowmesh_client.relay; "
            "bad = [m for m in ('asyncio', 'socket', 'websockets', 'ssl') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
