"""RFC 6479 replay window: a numbered table of cases in the style of wireguard-go's replay_test.go."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowmesh_client.protocol.replay import ReplayWindow

W = 128  # window (bits) used by the table


def _table():
    # (sequence number, expected accept) applied in order to ONE window
    return [
        (0, True),  # 1 first
        (1, True),  # 2
        (1, False),  # 3 duplicate
        (9, True),  # 4 jump ahead
        (8, True),  # 5 reordered within window
        (7, True),  # 6
        (7, False),  # 7 duplicate of a reordered one
        (W + 8, True),  # 8 slides window to (8, W+8]
        (8, False),  # 9 exactly window-old: too old
        (9, False),  # 10 seen before (and inside window)
        (10, True),  # 11 oldest still-fresh number
        (W + 8, False),  # 12 duplicate of the highest
        (W * 3, True),  # 13 big jump clears the ring
        (W * 3 - W + 1, True),  # 14 oldest inside new window
        (W * 3 - W, False),  # 15 just outside
        (W * 3 - 1, True),  # 16
        (2**32 - 2, True),  # 17 near the top
        (2**32 - 1, False),  # 18 the limit itself is never accepted (a key is retired before)
    ]


def test_replay_table():
    window = ReplayWindow(W)
    for number, (seq, expected) in enumerate(_table(), start=1):
        assert window.check_and_mark(seq) is expected, f"case {number}: seq {seq}"


def test_window_must_be_at_least_64_bits():
    with pytest.raises(ValueError):
        ReplayWindow(32)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5000), max_size=300))
def test_matches_a_reference_model(seqs):
    window, seen, highest = ReplayWindow(256), set(), -1
    for seq in seqs:
        expected = seq not in seen and seq > highest - 256
        assert window.check_and_mark(seq) is expected
        if expected:
            seen.add(seq)
            highest = max(highest, seq)
