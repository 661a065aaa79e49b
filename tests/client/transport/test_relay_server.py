"""The relay over real loopback sockets: forwarding, anti-spoofing, rate limit, slow receivers.

Authentication here is a TEST-ONLY stub (hello = the device's key + b"ok", accepted if the key is on a
list); the relay daemon plugs the protocol handshake into the same hook."""

from __future__ import annotations

import asyncio
import time

import pytest
from transport_helpers import fake_inner

from shadowmesh_client.relay import DropReason, RelayConfig, encode_forward, encode_local, open_delivery
from shadowmesh_client.relay.server import CLOSE_REPLACED, CLOSE_REVOKED, RelayServer
from shadowmesh_client.transport import ClientConfig, HandshakeRejectedError, LinkClosedError, LinkLimits, ServerConfig
from shadowmesh_client.transport.ws import dial

A, B, C = bytes([0xA1]) * 32, bytes([0xB2]) * 32, bytes([0xC3]) * 32


def stub_authenticate(allowed):
    def authenticate(hello: bytes):
        key, proof = hello[:32], hello[32:]
        return (b"", key) if proof == b"ok" and key in allowed else None
    return authenticate


async def connect(relay, key, **limits):
    cfg = ClientConfig(relay.url, limits=LinkLimits(**limits)) if limits else ClientConfig(relay.url)
    link = await dial(cfg, key + b"ok")
    for _ in range(100):          # wait until the relay has attached the route
        if relay.core.link_of(key) is not None:
            return link
        await asyncio.sleep(0.01)
    raise AssertionError("relay never attached the link")


async def test_relay_forwards_between_two_devices_with_authenticated_sources():
    async with RelayServer(ServerConfig(), RelayConfig(), stub_authenticate({A, B})) as relay:
        a, b = await connect(relay, A), await connect(relay, B)
        inner_ab, inner_ba = fake_inner(A, b"ciphertext a->b"), fake_inner(B, b"ciphertext b->a" * 1000)
        await a.send(encode_forward(B, inner_ab))
        await b.send(encode_forward(A, inner_ba))
        assert open_delivery(await asyncio.wait_for(b.recv(), 5)) == (A, inner_ab)
        assert open_delivery(await asyncio.wait_for(a.recv(), 5)) == (B, inner_ba)
        usage = relay.core.usage(A)
        assert (usage.bytes_in, usage.bytes_out) == (33 + len(inner_ab), 33 + len(inner_ba))
        await a.close()
        await b.close()


async def test_a_device_cannot_send_in_another_devices_name():
    async with RelayServer(ServerConfig(), RelayConfig(), stub_authenticate({A, B, C})) as relay:
        a, b = await connect(relay, A), await connect(relay, B)
        await a.send(encode_forward(B, fake_inner(C, b"pretending to be C")))   # inner claims C
        await a.send(b"\x02" + C + fake_inner(C))                                # forged DELIVER
        await a.send(encode_forward(B, fake_inner(A, b"honest")))
        source, inner = open_delivery(await asyncio.wait_for(b.recv(), 5))
        assert (source, bytes(inner[64:])) == (A, b"honest")   # the first thing B ever gets
        assert relay.core.drops[DropReason.SPOOFED] == 1 and relay.core.drops[DropReason.MALFORMED] == 1
        # and a hello for a key not on the list never gets a link at all
        assert relay.server.auth_failures == 0
        with pytest.raises(HandshakeRejectedError):
            await dial(ClientConfig(relay.url), bytes(32) + b"ok")
        assert relay.server.auth_failures == 1


async def test_rate_limit_bounds_bytes_over_a_window():
    rate, burst = 200_000, 100_000          # bytes/s, bytes
    cfg = RelayConfig(rate_bytes_per_second=rate, burst_bytes=burst)
    async with RelayServer(ServerConfig(), cfg, stub_authenticate({A, B})) as relay:
        a, b = await connect(relay, A), await connect(relay, B)
        message = encode_forward(B, fake_inner(A, bytes(10_000 - 97)))     # 10,000 bytes on the wire
        received = 0

        async def drain():
            nonlocal received
            async for m in b:
                received += len(m)

        reader = asyncio.create_task(drain())
        started = time.monotonic()
        for _ in range(100):                    # offer ~1 MB/s for about 1 s
            await a.send(message)
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.3)
        reader.cancel()
        delivered_bytes = received // 10_000 * 10_000
        assert delivered_bytes <= burst + rate * elapsed + 10_000
        assert delivered_bytes >= burst + rate * 0.8 * 0.9   # the limit is a limit, not a wall
        assert relay.core.usage(A).dropped[DropReason.RATE_LIMITED] == 100 - received // 10_000


async def test_slow_receiver_is_bounded_and_drops_are_counted():
    bound = 256 * 1024
    cfg = RelayConfig(queue_max_bytes=bound)
    async with RelayServer(ServerConfig(), cfg, stub_authenticate({A, B})) as relay:
        a = await connect(relay, A)
        b = await connect(relay, B, max_queue=1)  # B stops reading: its socket and the relay back up
        message = encode_forward(B, fake_inner(A, bytes(65_536)))
        sent = 300                                # ~20 MB, more than all the socket buffers in between
        for _ in range(sent):
            await a.send(message)
        for _ in range(200):
            if relay.core.usage(A).messages_in == sent:
                break
            await asyncio.sleep(0.02)
        dropped = relay.core.usage(B).dropped[DropReason.QUEUE_FULL]
        assert dropped > 0
        assert relay.core.peak_queued_bytes(B) <= bound
        got = 0
        while got < sent - dropped:               # B wakes up: everything not dropped arrives
            await asyncio.wait_for(b.recv(), 5)
            got += 1
        assert relay.core.usage(B).messages_out == sent - dropped
        await a.close()
        await b.close()


async def test_newer_link_replaces_older_and_disconnect_closes():
    local_frames = []

    def on_local(key, frame):
        local_frames.append((key, bytes(frame)))
        return [b"pong"]

    async with RelayServer(ServerConfig(), RelayConfig(), stub_authenticate({A}), on_local=on_local) as relay:
        first = await connect(relay, A)
        second = await dial(ClientConfig(relay.url), A + b"ok")
        with pytest.raises(LinkClosedError, match=str(CLOSE_REPLACED)):
            await asyncio.wait_for(first.recv(), 5)
        await second.send(encode_local(b"ping"))
        assert await asyncio.wait_for(second.recv(), 5) == encode_local(b"pong")
        assert local_frames == [(A, b"ping")]
        assert await relay.disconnect(A) is True
        with pytest.raises(LinkClosedError, match=str(CLOSE_REVOKED)):
            await asyncio.wait_for(second.recv(), 5)
        assert relay.core.link_of(A) is None and await relay.disconnect(A) is False


async def test_slow_local_reply_does_not_hold_up_forwarding_and_replies_keep_their_order():
    # A payments receipt (awaitable on_local: ledger commit) must not stall the sender's forwarding.
    release = asyncio.Event()

    async def slow(frame):
        if frame == b"receipt-1":
            await release.wait()
        return [b"ack-" + frame]

    def on_local(key, frame):
        frame = bytes(frame)
        return slow(frame) if frame.startswith(b"receipt") else [b"ack-" + frame]

    async with RelayServer(ServerConfig(), RelayConfig(), stub_authenticate({A, B}), on_local=on_local) as relay:
        a, b = await connect(relay, A), await connect(relay, B)
        await a.send(encode_local(b"receipt-1"))
        await a.send(encode_local(b"receipt-2"))
        await a.send(encode_local(b"hello"))
        inner = fake_inner(A, b"data behind the receipt")
        await a.send(encode_forward(B, inner))
        assert open_delivery(await asyncio.wait_for(b.recv(), 5)) == (A, inner)   # while receipt-1 waits
        release.set()
        replies = [await asyncio.wait_for(a.recv(), 5) for _ in range(3)]
        assert replies == [encode_local(b"ack-receipt-1"), encode_local(b"ack-receipt-2"), encode_local(b"ack-hello")]
        await a.close()
        await b.close()
