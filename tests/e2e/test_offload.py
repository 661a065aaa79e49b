"""Send-side offload end to end (issue 17, tun/gso.py): real nodes at MTU 1,400 in namespaces.

With offload (the default) the sending kernel hands the node TCP super-packets of up to 64 KiB; a peer
whose handshake offered OFFLOAD gets them whole and its kernel segments them; a peer without offload
(`up --no-offload`) gets them segmented and checksummed in software. Either way every byte arrives
intact, directly and through the relay. One mesh for the module (lab.netns.mesh_topology: A public, B
and C behind NATs, B<->C relayed); the mixed-capability test restarts B last.
"""

from __future__ import annotations

import pytest

from lab.mesh import LabError, standard_mesh
from lab.netns import list_namespaces
from tests.e2e.test_mesh import both_ways, ping

pytestmark = pytest.mark.timeout(300)

MTU = "1400"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = standard_mesh(tmp_path_factory.mktemp("offload"), node_args=("--mtu", MTU), progress=lambda line: None,
                        relay_owner=1)
    prefix = lab.topo.prefix
    with lab:   # tears the namespaces down, also when a test failed
        yield lab
    leftovers = [ns for ns in list_namespaces() if ns.startswith(prefix)]
    assert not leftovers, f"namespaces left behind: {leftovers}"


def super_packets(lab, dev) -> int:
    """TCP super-packets ``dev``'s node has read from its TUN device so far (its status file, written every
    second)."""
    return lab.status(dev)["counters"]["tun_rx_super_packets"]


def grows(lab, dev, counter: str, before: int) -> bool:
    """Whether ``dev``'s status counter ``counter`` goes above ``before`` within 5 s (the next status write)."""
    try:
        lab.wait_for(lambda: lab.status(dev)["counters"][counter] > before, 5, counter)
    except LabError:   # timed out (the assert says which counter)
        return False
    return True


def test_super_packets_cross_a_direct_path_intact_both_ways(lab):
    ping(lab, "b", lab.a.overlay)
    before_a, before_b = super_packets(lab, lab.a), super_packets(lab, lab.b)
    both_ways(lab, lab.b, lab.a, 5301)
    # the kernels handed both senders super-packets (not one read per 1,400-byte segment) ...
    assert grows(lab, lab.b, "tun_rx_super_packets", before_b)
    assert grows(lab, lab.a, "tun_rx_super_packets", before_a)


def test_super_packets_cross_the_relay_intact(lab):
    ping(lab, "b", lab.c.overlay)
    before = super_packets(lab, lab.b)
    both_ways(lab, lab.b, lab.c, 5311)
    assert grows(lab, lab.b, "tun_rx_super_packets", before)


def test_a_peer_without_offload_gets_segments_it_can_use(lab):
    """B restarts with --no-offload: its handshakes no longer offer OFFLOAD, so A (still reading
    super-packets) segments them for B in software; B reads plain segments only."""
    lab.stop(lab.b)
    lab.start_node(lab.b, "--mtu", MTU, "--no-offload")
    lab.wait_for(lambda: lab.status(lab.b).get("ready_at"), 30, "B up without offload")
    lab.wait_for(lambda: ping(lab, "b", lab.a.overlay, count=1, check=False).returncode == 0, 30, "B reaches A")
    before_a = super_packets(lab, lab.a)
    both_ways(lab, lab.a, lab.b, 5321)
    assert grows(lab, lab.a, "tun_rx_super_packets", before_a)   # A read super-packets and still delivered
    assert grows(lab, lab.a, "soft_segments", 0)                  # them to B, cut in software
    assert super_packets(lab, lab.b) == 0
    both_ways(lab, lab.c, lab.b, 5331)   # and through the relay, from an offloading C
