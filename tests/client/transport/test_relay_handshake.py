"""The relay with the REAL protocol handshake as its authenticate hook, and two devices running an
end-to-end session through it. Shows the wiring the relay daemon and the node use."""

from __future__ import annotations

import asyncio
import time

import pytest

from shadowmesh_client.protocol import FrameType, Identity, NetworkBinding, ProtocolConfig, Session, peek_header
from shadowmesh_client.relay import EnvelopeType, RelayConfig, decode, encode_forward, encode_local, open_delivery
from shadowmesh_client.relay.server import RelayServer
from shadowmesh_client.transport import ClientConfig, HandshakeRejectedError, ServerConfig
from shadowmesh_client.transport.ws import dial

BINDING = NetworkBinding(chain_id=31337, registry="0x" + "11" * 20, network_id=7)
CONFIG = ProtocolConfig(BINDING)
MARKER = b"PLAINTEXT-MARKER-5f1c"


def relay_authenticate(relay_identity, trusted, sessions):
    """authenticate(first_message) for the relay: a HANDSHAKE_INIT from a trusted device."""
    def authenticate(hello: bytes):
        try:
            header = peek_header(hello)
            if header.type is not FrameType.HANDSHAKE_INIT:
                return None
            session = Session(relay_identity, header.sender, CONFIG, lambda key: key in trusted)
            received = session.open(hello, time.time())
        except Exception:   # ProtocolError subclasses: untrusted, forged, replayed...
            return None
        sessions[header.sender] = session
        return received.outgoing, header.sender
    return authenticate


async def join_relay(relay_url, device, relay_identity):
    """A device dials the relay: hello = handshake init; the response arrives as a LOCAL envelope."""
    to_relay = Session(device, relay_identity.public_key, CONFIG, lambda key: key == relay_identity.public_key)
    link = await dial(ClientConfig(relay_url), to_relay.initiate(time.time()))
    env = decode(await asyncio.wait_for(link.recv(), 5))
    assert env.type is EnvelopeType.LOCAL
    received = to_relay.open(bytes(env.inner), time.time())
    assert to_relay.is_established
    for frame in received.outgoing:            # key confirmation back to the relay
        await link.send(encode_local(frame))
    return link


async def test_two_devices_talk_end_to_end_through_a_relay_that_sees_only_ciphertext():
    relay_id, a_id, b_id = Identity.generate(), Identity.generate(), Identity.generate()
    relay_sessions = {}
    seen_by_relay = []

    def on_local(key, frame):
        relay_sessions[key].open(bytes(frame), time.time())

    trusted = {a_id.public_key, b_id.public_key}
    async with RelayServer(ServerConfig(), RelayConfig(), relay_authenticate(relay_id, trusted, relay_sessions),
                           on_local=on_local) as relay:
        original = relay.core.on_message

        def spy(source, message, now):
            seen_by_relay.append(bytes(message))
            return original(source, message, now)
        relay.core.on_message = spy

        a = await join_relay(relay.url, a_id, relay_id)
        b = await join_relay(relay.url, b_id, relay_id)
        for _ in range(100):
            if relay_sessions.get(a_id.public_key) and relay_sessions[a_id.public_key].is_established \
                    and b_id.public_key in relay.core:
                break
            await asyncio.sleep(0.01)
        assert relay_sessions[a_id.public_key].is_established

        # A -> B end to end, every frame wrapped in a FORWARD envelope
        a_to_b = Session(a_id, b_id.public_key, CONFIG, lambda key: key == b_id.public_key)
        b_sessions = {}
        await a.send(encode_forward(b_id.public_key, a_to_b.initiate(time.time())))
        source, inner = open_delivery(await asyncio.wait_for(b.recv(), 5))
        assert source == a_id.public_key
        b_to_a = b_sessions[source] = Session(b_id, source, CONFIG, lambda key: key == a_id.public_key)
        for frame in b_to_a.open(bytes(inner), time.time()).outgoing:
            await b.send(encode_forward(source, frame))
        source, inner = open_delivery(await asyncio.wait_for(a.recv(), 5))
        assert source == b_id.public_key
        for frame in a_to_b.open(bytes(inner), time.time()).outgoing:
            await a.send(encode_forward(b_id.public_key, frame))
        packet = b"\x45" + bytes(19) + MARKER * 10
        await a.send(encode_forward(b_id.public_key, a_to_b.seal_packets([packet, packet], time.time())))
        packets = []
        while not packets:
            source, inner = open_delivery(await asyncio.wait_for(b.recv(), 5))
            packets = b_sessions[source].open(bytes(inner), time.time()).packets
        assert packets == [packet, packet]
        assert not any(MARKER in m for m in seen_by_relay)     # the relay only ever saw ciphertext
        await a.close()
        await b.close()

        # a device the relay does not trust never gets past the upgrade
        stranger = Identity.generate()
        with pytest.raises(HandshakeRejectedError):
            await join_relay(relay.url, stranger, relay_id)
        assert relay.server.auth_failures == 1
