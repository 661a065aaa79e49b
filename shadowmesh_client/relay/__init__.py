"""The relay's pure logic: outer envelope (envelope.py), routing/counters/queues (core.py), token bucket
(ratelimit.py). No sockets, no asyncio, no clock (``now`` is an argument). The asyncio wrapper is
``shadowmesh_client.relay.server.RelayServer``; the design is in docs/transport.md.

Public API::

    encode_forward(destination: bytes, inner) -> bytes      # device -> relay
    encode_local(frame) -> bytes                             # device <-> relay itself
    open_delivery(message: bytes) -> (source: bytes, inner: memoryview)   # device side; checks source
    decode(message) -> Envelope(type, key, inner)            # raises EnvelopeError
    RelayConfig(rate_bytes_per_second=None, burst_bytes=1 MiB, queue_max_bytes=512 KiB)
    core = RelayCore(config)
    core.attach(key, link, now) -> replaced_link | None      core.detach(key, link) -> bool
    core.on_message(source_key, message, now) -> Forwarded(destination) | Local(frame) | Dropped(reason)
    core.pop(destination) -> bytes | None                    core.take_usage() -> {key: DeviceUsage}
    core.usage(key) -> DeviceUsage(bytes_in, messages_in, bytes_out, messages_out, dropped)
    core.drops: Counter[DropReason]
"""

from shadowmesh_client.relay.core import (
    DeviceUsage,
    Dropped,
    DropReason,
    Forwarded,
    Local,
    RelayConfig,
    RelayCore,
)
from shadowmesh_client.relay.envelope import (
    Envelope,
    EnvelopeType,
    decode,
    encode_deliver,
    encode_forward,
    encode_local,
    inner_sender,
    open_delivery,
)
from shadowmesh_client.relay.errors import EnvelopeError, RelayConfigError
from shadowmesh_client.relay.ratelimit import TokenBucket

__all__ = [
    "DeviceUsage", "DropReason", "Dropped", "Envelope", "EnvelopeError", "EnvelopeType", "Forwarded",
    "Local", "RelayConfig", "RelayConfigError", "RelayCore", "TokenBucket", "decode", "encode_deliver",
    "encode_forward", "encode_local", "inner_sender", "open_delivery",
]
