"""send_nowait's frame fast path (transport/ws/link.py ``_binary_frame``, issue 17 "Latency") writes the
same RFC 6455 bytes as websockets' own serialiser: byte for byte unmasked (server side), and a masked
frame (client side) that websockets' parser reads back as the same message; the websockets state the
fast path checks before bypassing the serialiser is still there."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from websockets.frames import Frame, Opcode, apply_mask
from websockets.protocol import Protocol, Side
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from shadowmesh_client.transport.ws import link as ws_link

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


def _parse(data: bytes, *, mask: bool) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=mask, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("frame incomplete")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_unmasked_frame_is_byte_for_byte_websockets_own(size, kind):
    message = bytes(i % 251 for i in range(size))
    assert ws_link._binary_frame(kind(message), False) == Frame(Opcode.BINARY, message).serialize(mask=False)


@pytest.mark.parametrize("size", SIZES)
def test_masked_frame_parses_back_to_the_message_with_a_fresh_key(size):
    message = bytes(i % 251 for i in range(size))
    first, second = ws_link._binary_frame(memoryview(message), True), ws_link._binary_frame(message, True)
    for data in (first, second):
        frame = _parse(data, mask=True)
        assert (frame.opcode, frame.fin, frame.rsv1, frame.data) == (Opcode.BINARY, True, False, message)
    head = 2 + (0 if size < 126 else 2 if size < 65536 else 8)
    assert first[head:head + 4] != second[head:head + 4]   # a new key per frame (equal: 2**-32)


def test_protocol_state_the_fast_path_checks_is_still_there():
    protocol = ServerProtocol()
    for name in ("writes", "extensions", "debug", "side"):
        assert hasattr(protocol, name), f"websockets internal Protocol.{name} is gone (link.py docstring)"
    assert protocol.writes == [] and Side.CLIENT != protocol.side
    assert "self.writes.append(" in inspect.getsource(Protocol.send_frame), "websockets' send queue moved"


@pytest.mark.parametrize("side", ["server", "client"])
async def test_fast_receive_keeps_order_across_chunks_control_frames_and_fragments(side):
    """deliver_to's fast path cuts whole binary frames itself and leaves the rest to websockets: fed in
    odd-sized chunks (frames split anywhere), with a ping and a fragmented message between them, every
    message arrives once, whole and in order, on either side (masked to the server, unmasked to the
    client)."""
    from shadowmesh_client.transport import ClientConfig, ServerConfig
    from shadowmesh_client.transport.ws import LinkServer, dial

    got: list[bytes] = []
    server_links: list = []

    async def on_link(link) -> None:
        server_links.append(link)
        await link.wait_closed()

    async with LinkServer(ServerConfig(), lambda hello: (b"", hello), on_link) as server:
        client = await dial(ClientConfig(server.url), b"me")
        while not server_links:
            await asyncio.sleep(0.01)
        link = server_links[0] if side == "server" else client
        link.deliver_to(got.append)
        conn = link._conn
        assert "data_received" in vars(conn), "the fast path is not installed"
        masked = side == "server"
        messages = [b"a" * 10, bytes(range(256)) * 2, b"b" * 60_000, b"c" * 125, b"d" * 126, b"z"]
        frames = [Frame(Opcode.BINARY, m).serialize(mask=masked) for m in messages[:3]]
        frames.insert(1, Frame(Opcode.PING, b"p").serialize(mask=masked))
        frames += [Frame(Opcode.BINARY, b"fr", fin=False).serialize(mask=masked),
                   Frame(Opcode.CONT, b"ag").serialize(mask=masked)]
        frames += [Frame(Opcode.BINARY, m).serialize(mask=masked) for m in messages[3:]]
        stream = b"".join(frames)
        before = link.messages_in
        for size in (7, 1, 100, 5000, 3, 65_000, 1, 2, 10_000_000):
            chunk, stream = stream[:size], stream[size:]
            if chunk:
                conn.data_received(chunk)
        expected = messages[:3] + [b"frag"] + messages[3:]
        assert got == expected and link.messages_in - before == len(expected)
        conn.data_received(b"".join(Frame(Opcode.BINARY, m).serialize(mask=masked) for m in messages))
        assert got == expected + messages                      # whole frames in one chunk: all delivered
        assert ws_link._at_frame_start(conn.protocol.parser), "websockets' parser no longer waits in at_eof"
        # a frame whose payload on the wire looks like a whole frame itself, its header fed alone: the parser
        # is then inside a frame with an empty buffer, and the payload must not be cut as a frame
        inner = Frame(Opcode.BINARY, b"i" * 200).serialize(mask=masked)
        key = b"\x01\x02\x03\x04"
        outer = bytes([0x82, (0x80 if masked else 0) | 126]) + len(inner).to_bytes(2, "big") + (key if masked else b"")
        message = apply_mask(inner, key) if masked else inner
        before = len(got)
        conn.data_received(outer)
        conn.data_received(inner + inner)
        assert got[before:] == [message, b"i" * 200]
        await client.close()
