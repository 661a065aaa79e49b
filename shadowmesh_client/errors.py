"""The package's exceptions: one base class; each subclass also inherits the builtin that fits.

Messages say what went wrong and what to do next. They never contain key material.
"""


class ShadowMeshError(Exception):
    """Base class of every error this package raises on purpose."""


class ProtocolError(ShadowMeshError, ValueError):
    """A frame or handshake message is malformed, forged, replayed or otherwise unacceptable."""


class ConfigError(ShadowMeshError, ValueError):
    """The configuration file or a command-line option is wrong; the message names the key."""


class KeystoreError(ShadowMeshError):
    """A key could not be created, unlocked or stored (wrong passphrase, corrupted file...)."""


class ChainError(ShadowMeshError):
    """The chain could not be reached, is the wrong chain, or a transaction reverted."""


class TunError(ShadowMeshError, OSError):
    """A TUN device could not be opened, configured, read or written (needs root or CAP_NET_ADMIN)."""
