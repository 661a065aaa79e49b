"""Whole ``up`` daemons with routing on (issue 14), in one event loop over MemoryTransport, FakeTun and a
MemoryRegistry: IPv6 between devices, a subnet route honoured only after the admin's approval, an exit
node's default route, the source filter against spoofing, names following revocation, and QoS: a
saturated (backpressured) peer does not stall another peer (and does without QoS: the test can fail)."""

from __future__ import annotations

import asyncio
import ipaddress

from eth_account import Account

from lab.directory import MemoryRegistry
from shadowmesh_client.routing import overlay6, records
from shadowmesh_client.routing.settings import RoutingSettings
from shadowmesh_client.tun import FakeTun
from tests.client.node.helpers import MTU, Mesh, ipv4, wait_for


def run(coro):
    async def bounded():
        async with asyncio.timeout(60):
            return await coro

    return asyncio.run(bounded())


def _ipv6(src, dst, payload: bytes = b"", next_header: int = 17) -> bytes:
    return (bytes([0x60, 0, 0, 0]) + len(payload).to_bytes(2, "big") + bytes([next_header, 64])
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + payload)


def _mesh(admin) -> Mesh:
    mesh = Mesh()
    mesh.registry = MemoryRegistry(owner=bytes.fromhex(admin.address[2:]))
    return mesh


def _node(mesh: Mesh, member: str, folder, **routing):
    routing.setdefault("apply_system", False)
    routing.setdefault("dns", False)
    return mesh.node(member, tun=FakeTun(member, mtu=MTU, ipv4_only=False),
                     routing=RoutingSettings(records_dir=str(folder), **routing))


def _v6(mesh: Mesh, member) -> ipaddress.IPv6Address:
    r = mesh.registry
    return overlay6.device_address(overlay6.network_prefix(r.chain_id, r.registry, r.network_id), member.overlay)


def test_ipv6_subnet_approval_exit_and_spoofing(tmp_path):
    admin = Account.create()

    async def scenario():
        mesh = _mesh(admin)
        a = _node(mesh, "a", tmp_path, name="alpha", exit_node="gamma")
        b = _node(mesh, "b", tmp_path, name="beta", advertise_routes=("192.168.7.0/24",))
        c = _node(mesh, "c", tmp_path, name="gamma", advertise_exit=True)
        mesh.start()
        await mesh.ready()
        try:
            ra = a.daemon.routing.routing
            # IPv6 between overlay addresses, both ways
            p6 = _ipv6(_v6(mesh, a), _v6(mesh, b), b"over six")
            a.tun.inject(p6)
            await wait_for(lambda: p6 in b.tun.written, 5, "a -> b over IPv6")
            back = _ipv6(_v6(mesh, b), _v6(mesh, a), b"and back")
            b.tun.inject(back)
            await wait_for(lambda: back in a.tun.written, 5, "b -> a over IPv6")
            # names from the signed records
            await wait_for(lambda: ra.names.lookup("beta.lab.shadowmesh.internal"), 5, "b's name")
            assert ra.names.lookup("beta.lab.shadowmesh.internal").v6 == _v6(mesh, b)
            # exit: default-route traffic (v4 and v6) goes to c (open network: no approval needed)
            await wait_for(lambda: ra.exit_key == c.key, 5, "c chosen as exit")
            out4, out6 = ipv4(a.overlay, "198.51.100.7", b"to the internet"), _ipv6(_v6(mesh, a), "2001:db8::7", b"v6")
            a.tun.inject(out4)
            a.tun.inject(out6)
            await wait_for(lambda: out4 in c.tun.written and out6 in c.tun.written, 5, "exit traffic at c")
            reply = ipv4("198.51.100.7", a.overlay, b"reply")     # the exit may send us any source
            c.tun.inject(reply)
            await wait_for(lambda: reply in a.tun.written, 5, "the exit's reply")
            # subnet: not routed to b before the admin approves b's record (the exit's default route takes it)
            lan = ipv4(a.overlay, "192.168.7.20", b"to the lan")
            a.tun.inject(lan)
            await wait_for(lambda: lan in c.tun.written, 5, "lan traffic on the default route")
            assert lan not in b.tun.written and ra.table.route_for("192.168.7.20").kind == "exit"
            path = records.record_path(tmp_path, b.key)
            records.save(tmp_path, records.SignedRecord.from_json(path.read_bytes()).approve(admin.key))
            await wait_for(lambda: ra.table.route_for("192.168.7.20").kind == "subnet", 5, "approved route seen")
            a.tun.inject(lan)
            await wait_for(lambda: lan in b.tun.written, 5, "a -> b's LAN after approval")
            ok = ipv4("192.168.7.20", a.overlay, b"lan reply")
            spoof = ipv4("10.99.0.1", a.overlay, b"spoofed")              # not b's to send
            spoof6 = _ipv6(_v6(mesh, c), _v6(mesh, a), b"spoofed v6")     # c's address, sent by b
            for p in (spoof, spoof6, ok):
                b.tun.inject(p)
            await wait_for(lambda: ok in a.tun.written, 5, "b's LAN reply")
            await asyncio.sleep(0.1)
            assert spoof not in a.tun.written and spoof6 not in a.tun.written and ra.spoofed >= 2
            # revocation: b's name and route go with its registration
            mesh.registry.revoke(b.device)
            mesh.registry.sync()
            await wait_for(lambda: ra.names.lookup("beta.lab.shadowmesh.internal") is None, 5, "name revoked")
            assert ra.table.route_for("192.168.7.20").kind == "exit"
            st = a.daemon.status()["routing"]
            assert st["names"]["alpha"][0] == a.overlay and st["exit_node"] == c.key.hex()
        finally:
            await mesh.stop()

    run(scenario())


def _saturate(qos: bool, tmp_path) -> tuple[int, int, dict]:
    """a sends a flood to b, whose receiving end stops reading, then 20 packets to c: how many reach c."""
    async def scenario():
        mesh = _mesh(Account.create())
        a = _node(mesh, "a", tmp_path, qos=qos)
        b, c = _node(mesh, "b", tmp_path), _node(mesh, "c", tmp_path)
        mesh.start()
        await mesh.ready()
        try:
            for dst in (b, c):
                p = a.packet_to(dst, b"hello")
                a.tun.inject(p)
                await wait_for(lambda p=p, dst=dst: p in dst.tun.written, 5, "warm-up")
            link = a.peer(b).path.link
            link._other._callback = None        # b's end stops reading: a's link to b fills up (backpressure)
            bulk = [a.packet_to(b, bytes([i % 251]) * 60_000) for i in range(64)]
            for p in bulk:
                a.tun.inject(p)
            await asyncio.sleep(0.2)
            to_c = [a.packet_to(c, f"interactive {i}".encode()) for i in range(20)]
            for p in to_c:
                a.tun.inject(p)
            try:
                await wait_for(lambda: all(p in c.tun.written for p in to_c), 2, "c's packets")
            except AssertionError:
                pass
            got = sum(p in c.tun.written for p in to_c)
            counters = a.daemon.routing.qos.counters() if qos else {}
            return got, len(to_c), counters
        finally:
            await mesh.stop()

    return run(scenario())


def test_a_saturated_peer_does_not_stall_another_with_qos(tmp_path):
    got, sent, counters = _saturate(True, tmp_path)
    assert got == sent
    assert counters["qos_backlogged_peers"] == 1      # b still has its own backlog, drained by its own task


def test_without_qos_a_saturated_peer_stalls_the_reader(tmp_path):
    got, _sent, _ = _saturate(False, tmp_path)
    assert got == 0      # the old behaviour the QoS queues fix: the whole TUN reader waits for b
