"""Run a block of code in another network namespace (the calling thread only).

``setns(2)`` with CLONE_NEWNET moves only the calling thread. File descriptors opened inside the
block (a TUN device, a netlink or UDP socket) stay bound to that namespace after the block ends,
which is how a test or a benchmark opens a TUN device inside a namespace made with ``ip netns add``
without a separate process. Python 3.11 has no ``os.setns``, hence ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

from shadowmesh_client.errors import ConfigError, TunError

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
"""Where ``ip netns add NAME`` bind-mounts a namespace."""

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise TunError(err, f"setns failed: {os.strerror(err)} (needs root or CAP_SYS_ADMIN)")


def netns_path(name: str) -> str:
    """Path of a named namespace; raises ``ConfigError`` for a name that could escape the directory."""
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"network namespace name {name!r} is not valid")
    return os.path.join(NETNS_RUN_DIR, name)


@contextmanager
def enter_netns(name: str | None) -> Iterator[None]:
    """Run the block in namespace ``name`` (``None``: stay where we are); always switch back.

    Not async-safe: do not ``await`` inside the block (another task would run in the wrong namespace).
    """
    if name is None:
        yield
        return
    try:
        target = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TunError(2, f"network namespace {name!r} does not exist (see `ip netns list`)") from None
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)
    finally:
        os.close(target)
