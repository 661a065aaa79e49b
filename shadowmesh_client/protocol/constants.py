"""Protocol constants. Spec constants define the wire format; implementation constants are defaults.

Spec: "Frame Format (Binary)" and "Ed25519 Key Management" (rotation every 24 hours or 1 GB).
"""

# ---- specification constants (changing any of these changes the wire format) ----
PROTOCOL_VERSION = 1  # 4-bit version field
HEADER_SIZE = 64  # bytes: 1 (version|type) + 1 (flags) + 2 (length) + 4 (seq) + 32 (sender) + 24 (nonce)
TAG_SIZE = 16  # bytes, Poly1305 tag after the ciphertext
OVERHEAD = HEADER_SIZE + TAG_SIZE  # bytes per frame: 80
MAX_SHORT_PAYLOAD = 0xFFFF  # bytes: the largest ciphertext the 16-bit Length field states directly
MAX_PAYLOAD = 1 << 20  # bytes: largest encrypted payload of any frame (JUMBO frames included), 1 MiB
MAX_PACKET_SIZE = 1 << 16  # bytes: largest IP packet in a data frame (a 64 KiB packet fits)
MAX_PACKETS_PER_FRAME = 1024  # packets in one data frame (batch)
MAX_SEQUENCE = 0xFFFFFFFF  # the 32-bit sequence number never wraps: a key is retired before this
SIGNATURE_CONTEXT_INIT = b"ShadowMesh v1 handshake initiation"
SIGNATURE_CONTEXT_RESPONSE = b"ShadowMesh v1 handshake response"

# Padding buckets (bytes of plaintext) for the PADDED flag (spec "Header Obfuscation"): a padded payload
# grows to the smallest bucket that holds it; above the last bucket, to a multiple of PAD_LARGE_STEP.
PAD_BUCKETS = (64, 128, 256, 512, 768, 1024, 1280, 1536, 2048, 4096, 8192, 16384, 32768, 65536)
PAD_LARGE_STEP = 16384  # bytes

# ---- implementation constants (defaults of ProtocolConfig; units in the name or comment) ----
REKEY_AFTER_SECONDS = 24 * 3600.0  # spec: rotate every 24 hours
REKEY_AFTER_BYTES = 1 << 30  # spec: or 1 GB (we use 1 GiB) sent or received under one key
REKEY_AFTER_MESSAGES = MAX_SEQUENCE - (1 << 16)  # start a rekey with 65,536 sequence numbers to spare
REJECT_MARGIN_SECONDS = 600.0  # a key older than rekey_after_seconds + this is never used again
GRACE_SECONDS = 120.0  # an old key still opens frames this long after its successor took over
KEEPALIVE_SECONDS = 10.0  # send an empty frame if we received but sent nothing for this long
HANDSHAKE_RETRY_SECONDS = 5.0  # resend a handshake (with a fresh ephemeral key) after this long
HANDSHAKE_GIVE_UP_SECONDS = 90.0  # stop trying and report FAILED after this long
MAX_QUEUED_PACKETS = 256  # packets buffered by send_packets while the handshake runs
REPLAY_WINDOW_BITS = 2048  # RFC 6479 window size (>= 64 required by the issue)
