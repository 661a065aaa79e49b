"""HelloGuard rate keys: devices behind one address (NAT, CDN, reverse proxy) do not share a handshake
allowance, and a flood that forges a victim's key from another address cannot spend the victim's."""

from shadowmesh_client.relay.guard import GuardConfig, HelloGuard, Verdict


def _hello(key: bytes) -> bytes:
    return bytes(8) + key + bytes(64)   # only the sender field (bytes 8..40) matters to the guard


def _drain(guard: HelloGuard, frame: bytes, source, now: float) -> int:
    verified = 0
    while guard.check(frame, None, source, now).verdict is Verdict.VERIFY:
        verified += 1
    return verified


def test_keys_behind_one_address_have_their_own_allowance():
    guard = HelloGuard(GuardConfig(per_source_per_second=1, per_source_burst=3), now=0.0)
    proxy = "198.18.0.1"
    assert _drain(guard, _hello(b"a" * 32), proxy, 0.0) == 3
    assert guard.check(_hello(b"b" * 32), None, proxy, 0.0).verdict is Verdict.VERIFY


def test_a_forged_victim_key_from_elsewhere_does_not_spend_the_victims_allowance():
    guard = HelloGuard(GuardConfig(per_source_per_second=1, per_source_burst=3), now=0.0)
    victim = b"v" * 32
    assert _drain(guard, _hello(victim), "198.18.9.9", 0.0) == 3      # the attacker's address is spent
    assert guard.check(_hello(victim), None, "198.19.1.2", 0.0).verdict is Verdict.VERIFY


def test_without_an_address_the_claimed_key_is_the_source():
    guard = HelloGuard(GuardConfig(per_source_per_second=1, per_source_burst=2), now=0.0)
    assert _drain(guard, _hello(b"k" * 32), None, 0.0) == 2
    assert guard.check(_hello(b"k" * 32), None, None, 0.5).verdict is Verdict.DROP
    assert guard.check(_hello(b"k" * 32), None, None, 1.0).verdict is Verdict.VERIFY
