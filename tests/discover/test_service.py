"""The UDP service on loopback: bonding, endpoint proof, replies, failures, ENR, events."""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from prometheus_client import generate_latest

from p2p.crypto import PrivateKey
from p2p.discover import DiscoveryConfig, NodeAdded, NodeRemoved, RequestTimeout, open_discovery
from p2p.discover.service import Discovery, relay_allowed
from p2p.discover.wire import (
    ENRRequest,
    ENRResponse,
    Endpoint,
    FindNode,
    NeighborEntry,
    Neighbors,
    PacketType,
    Pong,
    expiration_at,
)
from p2p.crypto.keccak import keccak256
from p2p.enode import ENR, Node, NodeID
from p2p.metrics import ServerMetrics
from tests.discover.conftest import RawPeer, make_keys

QUIET = DiscoveryConfig(refresh_on_start=False, revalidate=False, reply_timeout=0.3)
KEYS = make_keys(12, seed=4242)


@asynccontextmanager
async def node(i: int, config: DiscoveryConfig = QUIET, **kw: object) -> AsyncIterator[Discovery]:
    async with open_discovery(KEYS[i], ("127.0.0.1", 0), config=config, **kw) as d:  # type: ignore[arg-type]
        yield d


async def until(cond: object, timeout: float = 3.0) -> None:
    with trio.fail_after(timeout):
        while not cond():  # type: ignore[operator]
            await trio.sleep(0.01)


def ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(s)


async def test_ping_bonds_both_ways_and_fills_tables() -> None:
    with trio.fail_after(10):
        async with node(0) as a, node(1) as b:
            events = a.subscribe()
            pong = await a.ping(b.local_node)
            assert pong.enr_seq == b.enr.seq
            assert pong.to_endpoint.udp_port == a.udp_port
            # b pinged back; a answered; both now list each other
            await until(lambda: a.local_id in b.table and b.local_id in a.table)
            ev = await events.__anext__()
            assert ev == NodeAdded(b.table.get(b.local_id) or ev.node) and ev.node.id == b.local_id
            assert b.table.get(a.local_id).udp_port == a.udp_port  # type: ignore[union-attr]
            assert a.stats.packets_out["ping"] >= 1 and b.stats.packets_in["ping"] >= 1
            assert a.stats.drops == {} and b.stats.drops == {}


async def test_ping_from_field_is_our_real_endpoint() -> None:
    with trio.fail_after(10):
        async with node(0, tcp_port=30399) as a, RawPeer(KEYS[5]) as raw:
            async with trio.open_nursery() as n:
                n.start_soon(lambda: _ignore_timeout(a.ping(raw.node)))
                ping = await raw.expect(PacketType.PING)
            p = ping.packet
            assert p.from_endpoint == Endpoint(ip("127.0.0.1"), a.udp_port, 30399)  # type: ignore[union-attr]
            assert p.to_endpoint == Endpoint(ip("127.0.0.1"), raw.port, raw.port)  # type: ignore[union-attr]
            assert p.enr_seq == a.enr.seq  # type: ignore[union-attr]
            assert 0 < p.expiration - time.time() <= 21  # type: ignore[union-attr]
            assert a.enr.udp == a.udp_port and a.enr.tcp == 30399 and str(a.enr.ip) == "127.0.0.1"


async def _ignore_timeout(aw: object) -> None:
    try:
        await aw  # type: ignore[misc]
    except RequestTimeout:
        pass


async def test_findnode_needs_a_bond_and_is_always_answered() -> None:
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            find = FindNode(bytes(64), expiration_at(time.time()))
            await raw.send(find, ("127.0.0.1", a.udp_port))
            assert await raw.nothing(0.3) == []  # no endpoint proof: no amplification
            assert a.stats.drops["unknown_node"] == 1
            await raw.bond(a.local_node)
            await until(lambda: raw.node.id in a.table)
            await raw.send(find, ("127.0.0.1", a.udp_port))
            reply = await raw.expect(PacketType.NEIGHBORS)
            # the table holds only the asker itself (added on bonding)
            assert [e.pubkey for e in reply.packet.nodes] == [raw.key.public_key.to_bytes()]  # type: ignore[union-attr]
            assert reply.sender == a.private_key.public_key


async def test_findnode_on_empty_table_gets_empty_neighbors() -> None:
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            await raw.bond(a.local_node)
            await until(lambda: raw.node.id in a.table)
            assert a.table.remove(raw.node.id) is not None
            await raw.send(FindNode(bytes(64), expiration_at(time.time())), ("127.0.0.1", a.udp_port))
            reply = await raw.expect(PacketType.NEIGHBORS)
            assert reply.packet.nodes == ()  # type: ignore[union-attr]


async def test_bond_is_per_ip() -> None:
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw, RawPeer(KEYS[5], "127.0.0.2") as other_ip:
            await raw.bond(a.local_node)
            find = FindNode(bytes(64), expiration_at(time.time()))
            await other_ip.send(find, ("127.0.0.1", a.udp_port))
            assert await other_ip.nothing(0.3) == []
            assert a.stats.drops["unknown_node"] == 1
            await raw.send(find, ("127.0.0.1", a.udp_port))
            await raw.expect(PacketType.NEIGHBORS)


async def test_pong_token_must_match_our_ping() -> None:
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            outcome: list[object] = []

            async def ping() -> None:
                try:
                    outcome.append(await a.ping(raw.node))
                except RequestTimeout as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as n:
                n.start_soon(ping)
                req = await raw.expect(PacketType.PING)
                await raw.send(Pong(Endpoint(ip("127.0.0.1"), a.udp_port, 0), b"\x01" * 32,
                                    expiration_at(time.time())), ("127.0.0.1", a.udp_port))
            assert isinstance(outcome[0], RequestTimeout)
            assert a.stats.drops["unsolicited_reply"] == 1
            assert not a.v4.bonded(raw.node.id, raw.node.ip)
            # the right token bonds
            async with trio.open_nursery() as n:
                n.start_soon(ping)
                req = await raw.expect(PacketType.PING)
                await raw.send(Pong(Endpoint(ip("127.0.0.1"), a.udp_port, 0), req.hash,
                                    expiration_at(time.time())), ("127.0.0.1", a.udp_port))
            assert isinstance(outcome[1], Pong)
            assert a.v4.bonded(raw.node.id, raw.node.ip)


async def test_unsolicited_replies_are_ignored() -> None:
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            to = ("127.0.0.1", a.udp_port)
            exp = expiration_at(time.time())
            await raw.send(Pong(Endpoint(ip("127.0.0.1"), a.udp_port, 0), b"\x02" * 32, exp), to)
            await raw.send(Neighbors((NeighborEntry(ip("127.0.0.1"), 9, 9, KEYS[6].public_key.to_bytes()),), exp), to)
            await raw.send(ENRResponse(b"\x03" * 32, ENR.build(KEYS[5]).to_rlp()), to)
            await until(lambda: a.stats.drops["unsolicited_reply"] == 3)
            assert len(a.table) == 0
            assert a.nodedb.last_pong_received(raw.node.id, raw.node.ip) == 0


async def test_findnode_failures_recorded_and_node_dropped_at_five() -> None:
    config = DiscoveryConfig(refresh_on_start=False, revalidate=False, reply_timeout=0.1)
    with trio.fail_after(20):
        async with node(0, config) as a, RawPeer(KEYS[5]) as raw:
            await raw.bond(a.local_node)
            await until(lambda: raw.node.id in a.table)

            async def answer_pings_only() -> None:
                while True:
                    r = await raw.recv(5)
                    if r is not None and r.type == PacketType.PING:
                        await raw.send(Pong(Endpoint(ip("127.0.0.1"), a.udp_port, 0), r.hash,
                                            expiration_at(time.time())), ("127.0.0.1", a.udp_port))

            async with trio.open_nursery() as n:
                n.start_soon(answer_pings_only)
                removed = []
                events = a.subscribe()
                for i in range(1, 6):
                    result = await a.lookup_detailed()
                    assert result.queries == 1 and result.failures == 1
                    assert a.nodedb.find_fails(raw.node.id, raw.node.ip) == i
                    assert (raw.node.id in a.table) == (i < 5)
                removed = [ev for ev in [await events.__anext__()] if isinstance(ev, NodeRemoved)]
                assert removed and removed[0].node.id == raw.node.id
                n.cancel_scope.cancel()


async def test_findnode_success_resets_failures() -> None:
    with trio.fail_after(10):
        async with node(0) as a, node(1) as b:
            await a.ping(b.local_node)
            await until(lambda: b.local_id in a.table and a.local_id in b.table)
            a.nodedb.update_find_fails(b.local_id, b.local_node.ip, 3)
            found = await a.find_node(b.local_node, KEYS[7].public_key.to_bytes())
            assert [n.id for n in found] == [a.local_id]  # b knows only a
            await a.lookup_detailed(KEYS[7].public_key)
            assert a.nodedb.find_fails(b.local_id, b.local_node.ip) == 0


async def test_enr_request_served_only_to_bonded() -> None:
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            to = ("127.0.0.1", a.udp_port)
            await raw.send(ENRRequest(expiration_at(time.time())), to)
            assert await raw.nothing(0.3) == []
            assert a.stats.drops["unknown_node"] == 1
            await raw.bond(a.local_node)
            token = await raw.send(ENRRequest(expiration_at(time.time())), to)
            resp = await raw.expect(PacketType.ENR_RESPONSE)
            assert resp.packet.request_hash == token  # type: ignore[union-attr]
            assert ENR.from_rlp(resp.packet.record) == a.enr  # type: ignore[union-attr]


async def test_request_enr_between_services() -> None:
    with trio.fail_after(10):
        async with node(0) as a, node(1) as b:
            enr = await a.request_enr(b.local_node)  # bonds first
            assert enr == b.enr and enr.node_id == b.local_id


async def test_newer_enr_fetched_when_seq_grows() -> None:
    with trio.fail_after(10):
        async with node(0) as a, node(1) as b:
            await a.ping(b.local_node)
            await until(lambda: b.local_id in a.table)
            # revalidation learns b's record: it advertises seq 1 and a has none
            assert await a.revalidate_once() is not None
            await until(lambda: a.table.get(b.local_id).enr is not None)  # type: ignore[union-attr]
            assert a.table.get(b.local_id).enr.seq == 1  # type: ignore[union-attr]
            b.update_enr(extra={"foo": b"bar"})
            assert b.enr.seq == 2
            before = a.stats.packets_out["enr_request"]
            await b.ping(a.local_node)  # b's ping carries seq 2
            await until(lambda: a.table.get(b.local_id).enr.seq == 2)  # type: ignore[union-attr]
            assert a.table.get(b.local_id).enr.get("foo") == b"bar"  # type: ignore[union-attr]
            assert a.stats.packets_out["enr_request"] == before + 1
            assert a.nodedb.node(b.local_id).enr.seq == 2  # type: ignore[union-attr]
            # same seq again: no new request
            await b.ping(a.local_node)
            await trio.sleep(0.1)
            assert a.stats.packets_out["enr_request"] == before + 1


async def test_neighbors_with_bad_entries_are_skipped() -> None:
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            good = KEYS[6].public_key.to_bytes()
            entries = (
                NeighborEntry(ip("127.0.0.1"), 0, 1, KEYS[7].public_key.to_bytes()),  # port 0
                NeighborEntry(ip("0.0.0.0"), 5, 5, KEYS[8].public_key.to_bytes()),  # unspecified
                NeighborEntry(ip("224.0.0.1"), 5, 5, KEYS[9].public_key.to_bytes()),  # multicast
                NeighborEntry(None, 5, 5, KEYS[10].public_key.to_bytes()),  # no IP at all
                NeighborEntry(ip("127.0.0.1"), 5, 5, b"\x00" * 64),  # not a curve point
                NeighborEntry(ip("127.0.0.1"), 30999, 30999, good),
            )

            async def serve() -> None:
                find = await raw.expect(PacketType.FIND_NODE, 5)
                assert find.packet.target == KEYS[11].public_key.to_bytes()  # type: ignore[union-attr]
                await raw.send(Neighbors(entries, expiration_at(time.time())), ("127.0.0.1", a.udp_port))

            a.nodedb.update_last_ping_received(raw.node.id, raw.node.ip, time.time())  # skip bonding
            async with trio.open_nursery() as n:
                n.start_soon(serve)
                found = await a.find_node(raw.node, KEYS[11].public_key.to_bytes())
            assert [x.pubkey.to_bytes() for x in found] == [good]
            assert a.stats.drops["bad_neighbor"] == 5


def _neighbor_entries(count: int, port0: int) -> list[NeighborEntry]:
    keys = make_keys(count, seed=port0)
    return [NeighborEntry(ip("127.0.0.1"), port0 + i, port0 + i, k.public_key.to_bytes()) for i, k in enumerate(keys)]


async def _answer_find_node(a: Discovery, raw: RawPeer, packets: list[list[NeighborEntry]]) -> list[Node]:
    """``a`` asks ``raw`` for neighbours; ``raw`` answers with ``packets`` in that order."""

    async def serve() -> None:
        await raw.expect(PacketType.FIND_NODE, 5)
        for entries in packets:
            await raw.send(Neighbors(tuple(entries), expiration_at(time.time())), ("127.0.0.1", a.udp_port))

    a.nodedb.update_last_ping_received(raw.node.id, raw.node.ip, time.time())  # skip bonding
    async with trio.open_nursery() as n:
        n.start_soon(serve)
        return await a.find_node(raw.node, KEYS[11].public_key.to_bytes())


@pytest.mark.parametrize("split", [(12, 4), (4, 12), (12, 2), (2, 12), (7,)])
async def test_a_neighbors_answer_is_taken_whole_in_any_order(split: tuple[int, ...]) -> None:
    """A 16-node answer comes as 12 + 4; the network may deliver the 4 first. Every node of
    it is taken, none dropped as unsolicited, and the request ends without its timeout."""
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            packets = []
            port = 40000
            for count in split:
                packets.append(_neighbor_entries(count, port))
                port += count
            found = await _answer_find_node(a, raw, packets)
            assert sorted(x.udp_port for x in found) == list(range(40000, port))
            assert a.stats.drops["unsolicited_reply"] == 0
            assert a.stats.timeouts["neighbors"] == 0


async def test_a_peer_cannot_keep_a_request_settling_with_tiny_packets() -> None:
    """Each 1-node packet could be a reordered tail, but only while the answer holds 4 nodes
    or fewer: the fifth ends the request, and what follows is dropped as unsolicited."""
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw, RawPeer(KEYS[6], host="127.0.0.2") as honest:
            packets = [_neighbor_entries(1, 42000 + i) for i in range(6)]
            found = await _answer_find_node(a, raw, packets)
            assert sorted(x.udp_port for x in found) == [42000, 42001, 42002, 42003, 42004]
            await until(lambda: a.stats.drops["unsolicited_reply"] == 1)
            assert a.stats.timeouts["neighbors"] == 0
            # an honest peer from another address is still answered
            await honest.send(honest.ping_packet(a.local_node), a.local_node.udp_address)
            assert (await honest.expect(PacketType.PONG)).packet.ping_hash  # type: ignore[union-attr]


async def test_a_lone_short_answer_that_could_be_a_tail_is_taken_after_a_grace() -> None:
    """Three nodes alone: the tail of a reordered 12 + 3, or all the peer knows. When no head
    follows within REORDER_GRACE, the three are the answer, not a timed-out request."""
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            found = await _answer_find_node(a, raw, [_neighbor_entries(3, 41000)])
            assert sorted(x.udp_port for x in found) == [41000, 41001, 41002]
            assert a.stats.timeouts["neighbors"] == 0


async def test_pings_to_one_node_at_once_share_one_datagram_and_its_pong() -> None:
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            pongs: list[Pong] = []

            async def ping() -> None:
                pongs.append(await a.ping(raw.node))

            async with trio.open_nursery() as n:
                for _ in range(3):
                    n.start_soon(ping)
                first = await raw.expect(PacketType.PING)
                assert await raw.nothing(0.1) == []  # the other two callers sent nothing
                await raw.send(Pong(Endpoint(ip("127.0.0.1"), a.udp_port, 0), first.hash, expiration_at(time.time())),
                               ("127.0.0.1", a.udp_port))
            assert len(pongs) == 3 and pongs[0] == pongs[1] == pongs[2]
            assert a.stats.pings_shared == 2
            metrics = ServerMetrics()
            metrics.watch_discovery(a)
            assert "p2p_discovery_pings_shared_total 2.0" in generate_latest(metrics.registry).decode()
            assert a.stats.drops["unsolicited_reply"] == 0
            # once answered, the next ping is a new datagram
            async with trio.open_nursery() as n:
                n.start_soon(ping)
                await raw.expect(PacketType.PING)
                n.cancel_scope.cancel()


async def test_a_ping_whose_first_caller_is_cancelled_is_sent_again_for_the_others() -> None:
    """Cancelling the caller whose Ping the others share says nothing of the node: a caller
    still waiting sends a Ping of its own and gets its Pong."""
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            pongs: list[Pong] = []

            async def second() -> None:
                pongs.append(await a.ping(raw.node))

            first_scope = trio.CancelScope()
            async with trio.open_nursery() as n:
                n.start_soon(_cancellable_ping, a, raw.node, first_scope)
                await raw.expect(PacketType.PING)
                n.start_soon(second)
                await trio.sleep(0.05)
                first_scope.cancel()
                again = await raw.expect(PacketType.PING)
                await raw.send(Pong(Endpoint(ip("127.0.0.1"), a.udp_port, 0), again.hash, expiration_at(time.time())),
                               ("127.0.0.1", a.udp_port))
            assert len(pongs) == 1
            assert a.stats.timeouts["pong"] == 0


async def _cancellable_ping(a: Discovery, to: Node, scope: trio.CancelScope) -> None:
    with scope:
        await a.ping(to)


async def test_pings_sharing_a_silent_nodes_timeout_all_fail() -> None:
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            failed = 0

            async def ping() -> None:
                nonlocal failed
                with pytest.raises(RequestTimeout):
                    await a.ping(raw.node)
                failed += 1

            async with trio.open_nursery() as n:
                for _ in range(3):
                    n.start_soon(ping)
            assert failed == 3
            assert [r.type for r in await raw.nothing(0.05)] == [PacketType.PING]  # one datagram for three
            assert a.stats.pings_shared == 2
            assert a.stats.timeouts["pong"] == 1


async def test_our_neighbors_skip_unusable_entries() -> None:
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            await raw.bond(a.local_node)
            await until(lambda: raw.node.id in a.table)
            a.table.add_verified(Node(KEYS[6].public_key, ip("127.0.0.1"), 0, 5))  # no UDP port
            a.table.add_verified(Node(KEYS[7].public_key, ip("127.0.0.1"), 7000, 7000))
            await raw.send(FindNode(bytes(64), expiration_at(time.time())), ("127.0.0.1", a.udp_port))
            reply = await raw.expect(PacketType.NEIGHBORS)
            ports = sorted(e.udp_port for e in reply.packet.nodes)  # type: ignore[union-attr]
            assert ports == sorted([7000, raw.port])


def test_relay_rules() -> None:
    lo, lan, pub = ip("127.0.0.1"), ip("192.168.1.2"), ip("8.8.8.8")
    assert relay_allowed(lo, lo)
    assert relay_allowed(lo, ip("127.0.0.5"))
    assert not relay_allowed(pub, lo)  # loopback to a remote asker: useless, and a probe
    assert not relay_allowed(lan, lo)
    assert not relay_allowed(pub, lan)
    assert relay_allowed(lan, lan) and relay_allowed(lo, lan)
    assert relay_allowed(pub, pub) and relay_allowed(lo, pub)
    for bad in ("0.0.0.0", "224.1.1.1", "255.255.255.255", "192.0.2.1", "::", "ff02::1"):
        assert not relay_allowed(lo, ip(bad))


async def test_lookup_and_random_nodes_in_small_network() -> None:
    config = DiscoveryConfig(revalidate=False, reply_timeout=0.3, random_lookup_spread=0.0)
    with trio.fail_after(20):
        async with node(0, config) as boot:
            boots = (boot.local_node,)
            async with node(1, config, bootnodes=boots) as b, node(2, config, bootnodes=boots) as c, \
                    node(3, config, bootnodes=boots) as d:
                await until(lambda: all(len(x.table) >= 3 for x in (boot, b, c, d)), 10)
                found = await b.lookup(d.local_id)
                assert d.local_id in {n.id for n in found}
                assert b.last_lookup is not None and b.last_lookup.found(d.local_id)
                seen = set()
                async for n in b.random_nodes():
                    seen.add(n.id)
                    if len(seen) == 3:
                        break
                assert seen == {boot.local_id, c.local_id, d.local_id}


async def test_revalidation_replaces_dead_node() -> None:
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            await raw.bond(a.local_node)
            await until(lambda: raw.node.id in a.table)
            events = a.subscribe()
            entry = a.table.get(raw.node.id)
            assert await a.revalidate_once() == entry  # raw stays silent now
            assert raw.node.id not in a.table
            ev = await events.__anext__()
            assert isinstance(ev, NodeRemoved) and ev.node.id == raw.node.id
            assert a.stats.timeouts["pong"] == 1


async def test_garbage_is_counted_and_dropped() -> None:
    with trio.fail_after(10):
        async with node(0) as a, RawPeer(KEYS[5]) as raw:
            to = ("127.0.0.1", a.udp_port)
            rng = random.Random(3)
            await raw.send_raw(b"", to)
            await raw.send_raw(rng.randbytes(50), to)
            await raw.send_raw(rng.randbytes(2000), to)
            await raw.send_raw(rng.randbytes(300), to)
            await until(lambda: sum(a.stats.drops.values()) == 4)
            assert a.stats.drops["too_small"] == 2
            assert a.stats.drops["too_large"] == 1
            assert a.stats.drops["bad_hash"] == 1
            await raw.bond(a.local_node)  # still serving


async def test_subscription_ends_when_service_closes() -> None:
    with trio.fail_after(5):
        async with node(0) as a:
            sub = a.subscribe()
        assert [ev async for ev in sub] == []


@pytest.mark.parametrize("listen", ["127.0.0.1"])
async def test_local_node_and_record(listen: str) -> None:
    async with open_discovery(KEYS[0], (listen, 0), config=QUIET, tcp_port=30303) as a:
        n = a.local_node
        assert n.udp_port == a.udp_port > 0 and n.tcp_port == 30303 and str(n.ip) == listen
        assert n.enr == a.enr and a.enr.node_id == a.local_id
        assert Node.from_url(n.to_url()) == n
        assert isinstance(KEYS[0], PrivateKey)


async def test_random_nodes_reads_new_table_entries_before_looking_up() -> None:
    """Entries that join the table after the first pass are offered without a lookup."""
    config = DiscoveryConfig(revalidate=False, refresh_on_start=False)
    with trio.fail_after(10):
        async with node(0, config) as a:
            keys = make_keys(6, seed=5)
            a.table.add_seen(Node(keys[0].public_key, ip("127.0.0.1"), 1, 1))
            it = a.random_nodes().__aiter__()
            first = await it.__anext__()
            assert first.id == NodeID.from_pubkey(keys[0].public_key)
            for k in keys[1:]:
                a.table.add_seen(Node(k.public_key, ip("127.0.0.1"), 2, 2))
            rest = {(await it.__anext__()).id for _ in keys[1:]}
            assert rest == {NodeID.from_pubkey(k.public_key) for k in keys[1:]}
            assert a.stats.lookups == 0


def test_neighbor_entries_are_parsed_once() -> None:
    from p2p.discover.v4 import _entry_node
    from p2p.discover.wire import NeighborEntry

    key = make_keys(1, seed=6)[0]
    e = NeighborEntry(ip("127.0.0.1"), 30303, 30303, key.public_key.to_bytes())
    n1 = _entry_node(e)
    n2 = _entry_node(NeighborEntry(ip("127.0.0.1"), 30303, 30303, key.public_key.to_bytes()))
    assert n1 is not None and n1 is n2 and n1.id == NodeID.from_pubkey(key.public_key)
    assert _entry_node(NeighborEntry(ip("127.0.0.1"), 30303, 30303, b"\x05" * 64)) is None


def test_node_id_from_digest() -> None:
    key = make_keys(1, seed=8)[0]
    digest = keccak256(key.public_key.to_bytes())
    assert NodeID.from_digest(digest) == NodeID.from_pubkey(key.public_key) == NodeID(digest)
    assert type(NodeID.from_digest(digest)) is NodeID


async def test_random_nodes_waits_for_the_first_self_lookup() -> None:
    """A dialer gets nothing while the table holds only seeds: the first self lookup (here
    of a bootnode that never answers, so it ends by timeouts) must be over first."""
    config = DiscoveryConfig(revalidate=False, reply_timeout=0.3, random_lookup_spread=0.0,
                             refresh_random_lookups=0)
    silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with silent, trio.fail_after(10):
        await silent.bind(("127.0.0.1", 0))
        boot = Node(KEYS[7].public_key, ip("127.0.0.1"), silent.getsockname()[1], 0)
        async with node(0, config, bootnodes=(boot,)) as a:
            assert boot.id in a.table
            offered: list[tuple[NodeID, bool]] = []

            async def dialer() -> None:
                async for n in a.random_nodes():
                    offered.append((n.id, a.stats.lookups >= 1))
                    return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(dialer)
                await trio.sleep(0.2)
                assert offered == [] and a.stats.lookups == 0
            # Offered only once the lookup had ended (the silent bootnode stays in the table).
            assert offered == [(boot.id, True)]


async def test_discovery_signs_with_the_given_local_node() -> None:
    from p2p.enode import LocalNode

    with trio.fail_after(10):
        local = LocalNode(KEYS[10])
        local.set("x", b"\x01")
        async with node(10, local=local) as a, node(11) as b:
            assert a.enr is local.record and local.record.udp == a.udp_port
            assert local.record.get("x") == b"\x01"  # discovery added to the record, replaced nothing
            local.set("x", b"\x02")  # a change made elsewhere reaches peers: the next Pong says so
            pong = await b.ping(a.local_node)
            assert pong.enr_seq == local.seq == a.enr.seq
            assert (await b.request_enr(a.local_node)).get("x") == b"\x02"
            with pytest.raises(ValueError):
                async with node(11, local=LocalNode(KEYS[0])):
                    pass
