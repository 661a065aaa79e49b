"""Fixtures for the protocol-core tests: identities, a network binding, session pairs, a fake clock.

All in memory (the protocol core does no I/O); sessions use seeded random streams so failures reproduce.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # running `pytest` from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from shadowmesh_client import crypto  # noqa: E402 - after the sys.path set-up above
from shadowmesh_client.protocol import Identity, NetworkBinding, ProtocolConfig, Session  # noqa: E402 - after the sys.path set-up above

T0 = 1_800_000_000.0  # seconds: a fixed "wall clock" start for every test


@pytest.fixture
def alice() -> Identity:
    return Identity.from_seed(b"\xa1" * 32)


@pytest.fixture
def bob() -> Identity:
    return Identity.from_seed(b"\xb0" * 32)


@pytest.fixture
def binding() -> NetworkBinding:
    return NetworkBinding(31337, "0x" + "42" * 20, "home")


@pytest.fixture
def config(binding) -> ProtocolConfig:
    return ProtocolConfig(binding)


def make_pair(a: Identity, b: Identity, config_a: ProtocolConfig, config_b: ProtocolConfig | None = None,
              trusted=lambda k: True):
    """Two fresh sessions: ``a`` will initiate to ``b``."""
    sa = Session(a, b.public_key, config_a, trusted, rng=crypto.deterministic_rng(b"rng-a"))
    sb = Session(b, a.public_key, config_b or config_a, trusted, rng=crypto.deterministic_rng(b"rng-b"))
    return sa, sb


def handshake(sa: Session, sb: Session, now: float = T0) -> None:
    """Run the full handshake (initiation, response, confirmation) between two sessions."""
    r = sb.open(sa.initiate(now), now)
    r2 = sa.open(r.outgoing[0], now)
    for frame in r2.outgoing:
        sb.open(frame, now)


@pytest.fixture
def pair(alice, bob, config):
    sa, sb = make_pair(alice, bob, config)
    handshake(sa, sb)
    return sa, sb
