"""The discv5 engine over the in-memory network (MockClock) and over UDP on 127.0.0.1:
requests and answers, handshakes, FINDNODE packing, TALKREQ protocols, lookups, restarts,
timeouts and the bound on pending requests."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import trio
import trio.testing

from p2p.crypto import PrivateKey
from p2p.discover.errors import RequestTimeout
from p2p.discover.table import V5, Table
from p2p.discover.transport import MemoryEndpoint, MemoryNetwork, open_udp_transport
from p2p.discover.v5 import (
    MAX_MESSAGE_SIZE,
    REQUEST_TIMEOUT,
    V5Config,
    lookup_distances,
    open_v5,
    pack_nodes,
)
from p2p.discover.v5wire.messages import encode_message
from p2p.enode import ENR, Node, NodeID, log_distance
from tests.discover.v5net import PORT, member, network, run


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def _record_at(local_id: bytes, distance: int, rng: random.Random, index: int, pad: int = 0) -> ENR:
    """A record at ``distance`` from ``local_id`` (distances near 256 come quickly)."""
    for _ in range(10_000):
        key = PrivateKey.generate(rng)
        if log_distance(local_id, NodeID.from_pubkey(key.public_key)) == distance:
            extra = {"pad": b"x" * pad} if pad else None
            return ENR.build(key, 1, ip=f"127.1.{index // 250}.{index % 250 + 1}", udp=PORT, extra=extra)
    raise AssertionError("no key at that distance")


# ---------------------------------------------------------------------------------------
# transports


async def test_memory_network_latency_loss_and_queue_bound(autojump_clock: trio.testing.MockClock) -> None:
    lost: list[bytes] = []

    def loss(data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bool:
        if data.startswith(b"lose"):
            lost.append(data)
            return True
        return False

    net = MemoryNetwork(loss=loss, latency=lambda data, src, dst: 0.25, queue_size=3)
    a, b = net.endpoint("127.0.0.1", 1), net.endpoint("127.0.0.2", 2)
    t0 = trio.current_time()
    await a.send(b"lose me", b.local_address)
    await a.send(b"hello", b.local_address)
    assert await b.receive() == (b"hello", a.local_address)
    assert trio.current_time() - t0 == pytest.approx(0.25)
    for i in range(5):
        await a.send(b"x%d" % i, b.local_address)
    await a.send(b"nobody", ("127.0.0.9", 9))
    assert net.dropped == 1 + 2 + 1  # lost, two over the queue, no endpoint
    assert [(await b.receive())[0] for _ in range(3)] == [b"x0", b"x1", b"x2"]
    assert lost == [b"lose me"]


async def test_udp_transport_round_trip() -> None:
    with trio.fail_after(5):
        async with open_udp_transport() as a, open_udp_transport() as b:
            await a.send(b"ping", b.local_address)
            assert await b.receive() == (b"ping", a.local_address)


# ---------------------------------------------------------------------------------------
# requests


async def test_ping_establishes_session_and_both_tables(autojump_clock: trio.testing.MockClock) -> None:
    async with network(2) as (members, (a, b)):
        pong = await a.ping(members[1].node)
        assert (str(pong.recipient_ip), pong.recipient_port) == members[0].endpoint.local_address
        assert pong.enr_seq == 1
        assert b.local_id in a.table  # it answered
        assert a.local_id in b.table  # its handshake carried a record matching its address
        assert a.stats.packets_out["handshake"] == 1 and b.stats.packets_out["whoareyou"] == 1
        await a.ping(members[1].node)
        assert a.stats.packets_out["handshake"] == 1  # the session is reused
        assert await a.request_enr(members[1].node) == members[1].record


async def test_concurrent_requests_share_one_handshake(autojump_clock: trio.testing.MockClock) -> None:
    async with network(2) as (members, (a, b)):
        async def echo(node_id: NodeID, addr: tuple[str, int], req: bytes) -> bytes:
            return req

        b.talk("echo", echo)
        node = members[1].node
        results: list[object] = []

        async def go(fn: object) -> None:
            results.append(await fn())  # type: ignore[operator]

        async with trio.open_nursery() as n:
            n.start_soon(go, lambda: a.ping(node))
            n.start_soon(go, lambda: a.findnode(node, (0,)))
            n.start_soon(go, lambda: a.talkreq(node, "echo", b"1"))
        assert len(results) == 3
        assert a.stats.packets_out["handshake"] == 1
        assert a.stats.timeouts == {}


async def test_findnode_answers_asked_distances_in_packets_that_fit(autojump_clock: trio.testing.MockClock) -> None:
    async with network(2) as (members, (a, b)):
        rng = random.Random(5)
        near = [_record_at(b.local_id, 256 - i % 2, rng, i, pad=120) for i in range(20)]
        far = _record_at(b.local_id, 254, rng, 99)
        for r in [*near, far]:
            b.table.add_seen(Node.from_enr(r), V5)
        found = await a.findnode_records(members[1].node, (256, 255))
        # 16 at most, each at an asked distance, none of the one at 254
        assert len(found) == 16
        assert all(log_distance(b.local_id, r.node_id) in (255, 256) for r in found)
        assert b.stats.packets_out["nodes"] > 1  # 16 padded records do not fit one packet
        assert a.stats.drops == {}
        assert await a.findnode_records(members[1].node, (254,)) == [far]
        assert await a.findnode_records(members[1].node, (1,)) == []


def test_pack_nodes_fits_packets_and_sets_total() -> None:
    records = [b"\xf8\xff" + b"r" * 0xFF for _ in range(12)]  # 257-byte "records"
    msgs = pack_nodes(b"\x01" * 8, records)
    assert len(msgs) == 3 and all(m.total == 3 for m in msgs)
    assert all(len(encode_message(m)) <= MAX_MESSAGE_SIZE for m in msgs)
    assert sum(len(m.records) for m in msgs) == 12
    assert pack_nodes(b"\x01", []) == [pack_nodes(b"\x01", [])[0]] and pack_nodes(b"\x01", [])[0].total == 1


def test_lookup_distances() -> None:
    target = bytes(32)
    assert lookup_distances(target, b"\x80" + bytes(31)) == (256, 255, 254)
    assert lookup_distances(target, b"\x01" + bytes(31)) == (249, 250, 248)
    assert lookup_distances(target, bytes(31) + b"\x01") == (1, 2, 3)


async def test_talk_protocols(autojump_clock: trio.testing.MockClock) -> None:
    async with network(2) as (members, (a, b)):
        async def upper(node_id: NodeID, addr: tuple[str, int], req: bytes) -> bytes:
            assert node_id == a.local_id
            return req.upper()

        async def broken(node_id: NodeID, addr: tuple[str, int], req: bytes) -> bytes:
            raise RuntimeError("handler bug")

        async def slow(node_id: NodeID, addr: tuple[str, int], req: bytes) -> bytes:
            await trio.sleep(60)
            return b""

        b.talk("upper", upper)
        b.talk(b"broken", broken)
        async def huge(node_id: NodeID, addr: tuple[str, int], req: bytes) -> bytes:
            return b"x" * 1300

        b.talk("slow", slow)
        b.talk("huge", huge)
        node = members[1].node
        with pytest.raises(ValueError):
            await a.talkreq(node, "upper", b"x" * 800)
        with pytest.raises(RequestTimeout):
            await a.talkreq(node, "huge", b"")
        assert await a.talkreq(node, "upper", b"abc") == b"ABC"
        assert await a.talkreq(node, "nobody", b"abc") == b""  # unknown: empty TALKRESP
        with pytest.raises(RequestTimeout):
            await a.talkreq(node, "broken", b"x")
        with pytest.raises(RequestTimeout):
            await a.talkreq(node, "slow", b"x")
        await trio.sleep(2)
        assert b.stats.drops["v5_talk_unknown_protocol"] == 1
        assert b.stats.drops["v5_talk_handler_error"] == 1
        assert b.stats.drops["v5_talk_timeout"] == 1
        assert b.stats.drops["v5_talk_response_too_big"] == 1
        assert a.stats.timeouts["talkreq"] == 3


async def test_talk_handlers_bounded(autojump_clock: trio.testing.MockClock) -> None:
    cfg = V5Config(max_talk_tasks=2)
    async with network(2, config=cfg) as (members, (a, b)):
        async def slow(node_id: NodeID, addr: tuple[str, int], req: bytes) -> bytes:
            await trio.sleep(0.5)
            return b"done"

        b.talk("slow", slow)
        answers: list[bytes | None] = []

        async def ask() -> None:
            try:
                answers.append(await a.talkreq(members[1].node, "slow", b""))
            except RequestTimeout:
                answers.append(None)

        await a.ping(members[1].node)
        async with trio.open_nursery() as n:
            for _ in range(5):
                n.start_soon(ask)
        assert sorted(answers, key=lambda x: x or b"") == [None, None, None, b"done", b"done"]
        assert b.stats.drops["v5_talk_busy"] == 3


async def test_timeout_and_pending_bound(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    rng = random.Random(3)
    ours, gone, gone2 = member(net, 0, rng), member(net, 1, rng), member(net, 2, rng)
    gone.endpoint.close()
    gone2.endpoint.close()
    async with run(ours, config=V5Config(max_pending=1, rng=random.Random(1))) as v5:
        t0 = trio.current_time()
        with pytest.raises(RequestTimeout):
            await v5.ping(gone.node)
        assert trio.current_time() - t0 == pytest.approx(REQUEST_TIMEOUT)
        assert v5.stats.timeouts["ping"] == 1
        outcomes: list[str] = []

        async def ping(m: object) -> None:
            try:
                await v5.ping(m.node)  # type: ignore[attr-defined]
            except RequestTimeout as exc:
                outcomes.append(str(exc))

        async with trio.open_nursery() as n:
            n.start_soon(ping, gone)
            await trio.sleep(0.1)
            n.start_soon(ping, gone2)
        assert v5.stats.drops["v5_pending_full"] == 1
        assert len(outcomes) == 2


async def test_restarted_peer_rehandshakes(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    rng = random.Random(4)
    a, b = member(net, 0, rng), member(net, 1, rng)
    async with run(a) as va:
        async with run(b) as vb:
            await va.ping(b.node)
            await vb.ping(a.node)
        b.endpoint.close()
        b.endpoint = net.endpoint(*b.endpoint.local_address)
        async with run(b, seed=9) as vb:
            assert await va.ping(b.node)  # our session is stale for it: WHOAREYOU, new handshake
            assert va.stats.packets_in["whoareyou"] == 2
            assert await vb.ping(a.node)  # and its new session works the other way too
            assert vb.stats.packets_out["handshake"] == 0


async def test_newer_record_is_fetched_after_pong(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    rng = random.Random(6)
    a, b = member(net, 0, rng), member(net, 1, rng)
    current = [b.record]
    async with run(a) as va, open_v5(b.endpoint, b.key, lambda: current[0], config=V5Config(rng=random.Random(2))):
        await va.ping(b.node)
        current[0] = b.record.updated(b.key, extra={"x": b"1"})
        pong = await va.ping(b.node)
        assert pong.enr_seq == 2
        await trio.sleep(1)
        entry = va.table.get(b.record.node_id)
        assert entry is not None and entry.enr == current[0]


async def test_lookup_in_a_network_of_40(autojump_clock: trio.testing.MockClock) -> None:
    async with network(40, seed=2) as (members, nodes):
        for v in nodes[1:]:
            await v.lookup(v.local_id)
        assert all(len(v.table) >= 8 for v in nodes)
        rng = random.Random(8)
        for v in rng.sample(nodes, 5):
            target = rng.choice(members).record.node_id
            found = await v.lookup(target)
            if target != v.local_id:
                assert found[0].id == target
            assert v.stats.lookups >= 1
        assert sum(sum(v.stats.drops.values()) for v in nodes) == 0


async def test_lookup_under_loss_and_latency(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(11)
    net = MemoryNetwork(loss=lambda d, s, t: rng.random() < 0.1, latency=lambda d, s, t: rng.uniform(0.01, 0.1))
    async with network(20, seed=3, net=net) as (members, nodes):
        for _ in range(2):  # a lost packet may cost a node its place in a table: join twice
            for v in nodes[1:]:
                await v.lookup(v.local_id)
        hits = 0
        targets = members[2:20]  # all but the bootnode and the searcher
        for m in targets:
            found = await nodes[1].lookup(m.record.node_id)
            hits += bool(found) and found[0].id == m.record.node_id
        # A lost reply costs a query, rarely the result: 14-18 of 18 found over 30 runs with
        # other scheduling orders (93 %). At that rate 6 misses or more of 18 come 1 run in 1,000;
        # with 5 targets, 2 misses (which failed a bound of 4 found) come 1 run in 24.
        assert hits >= len(targets) - 5
        assert net.dropped > 0


async def test_shared_table_and_change_hook(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    rng = random.Random(7)
    a, b = member(net, 0, rng), member(net, 1, rng)
    table = Table(a.record.node_id, clock=trio.current_time)
    changes: list[int] = []

    def flushed() -> None:
        changes.append(len(table.pop_events()))

    async with open_v5(a.endpoint, a.key, a.record, table, bootnodes=(b.record,), on_table_change=flushed), run(b):
        assert b.record.node_id in table  # the bootnode seeds the shared table
        assert changes and changes[0] == 1


async def test_engine_over_udp() -> None:
    with trio.fail_after(10):
        rng = random.Random(12)
        keys = [PrivateKey.generate(rng) for _ in range(3)]
        async with open_udp_transport() as t0, open_udp_transport() as t1, open_udp_transport() as t2:
            recs = [ENR.build(k, 1, ip="127.0.0.1", udp=t.local_address[1]) for k, t in zip(keys, (t0, t1, t2))]
            cfg = V5Config(rng=random.Random(1))
            async with open_v5(t0, keys[0], recs[0], config=cfg) as v0, \
                    open_v5(t1, keys[1], recs[1], bootnodes=(recs[0],), config=replace(cfg, rng=random.Random(2))) as v1, \
                    open_v5(t2, keys[2], recs[2], bootnodes=(recs[0],), config=replace(cfg, rng=random.Random(3))) as v2:
                await v1.lookup(v1.local_id)
                await v2.lookup(v2.local_id)
                found = await v1.lookup(v2.local_id)
                assert found[0].id == v2.local_id
                assert v0.stats.packets_in["findnode"] >= 2


async def test_shared_socket_hand_off_of_non_v4_packets() -> None:
    """The shape of the v4 service's hand-off: one UDP socket, v4's decoder first, and what
    it refuses as too small or with a bad hash (every v5 packet) fed to the v5 engine."""
    from p2p.discover.errors import BadHash, DecodeError, PacketTooSmall
    from p2p.discover.transport import InboxTransport
    from p2p.discover.wire import decode_packet as decode_v4

    with trio.fail_after(10):
        rng = random.Random(13)
        k_shared, k_other = PrivateKey.generate(rng), PrivateKey.generate(rng)
        async with open_udp_transport() as sock, open_udp_transport() as t_other:
            async def send(data: bytes, addr: tuple[str, int]) -> None:
                await sock.send(data, addr)

            inbox = InboxTransport(sock.local_address, send, send_nowait=sock.send_nowait)
            v4_packets = 0

            async def demux() -> None:
                nonlocal v4_packets
                while True:
                    data, addr = await sock.receive()
                    try:
                        decode_v4(data)
                    except (PacketTooSmall, BadHash):
                        inbox.feed(data, addr)
                        continue
                    except DecodeError:
                        pass  # a broken v4 packet: the v4 service counts it
                    v4_packets += 1

            r_shared = ENR.build(k_shared, 1, ip="127.0.0.1", udp=sock.local_address[1])
            r_other = ENR.build(k_other, 1, ip="127.0.0.1", udp=t_other.local_address[1])
            async with trio.open_nursery() as n:
                n.start_soon(demux)
                async with open_v5(inbox, k_shared, r_shared, config=V5Config(rng=random.Random(1))) as shared, \
                        open_v5(t_other, k_other, r_other, config=V5Config(rng=random.Random(2))) as other:
                    await other.ping(Node.from_enr(r_shared))
                    await shared.ping(Node.from_enr(r_other))
                    assert shared.stats.packets_in["handshake"] == 1 and v4_packets == 0
                    assert inbox.dropped == 0
                n.cancel_scope.cancel()


class _FullSendBuffer:
    """A memory endpoint whose send buffer can be made full: ``send_nowait`` raises
    ``BlockingIOError`` as a non-blocking socket's ``sendto`` would."""

    def __init__(self, endpoint: MemoryEndpoint) -> None:
        self._ep = endpoint
        self.full = False

    @property
    def local_address(self) -> tuple[str, int]:
        return self._ep.local_address

    def send_nowait(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.full:
            raise BlockingIOError("send buffer full")
        self._ep.send_nowait(data, addr)

    async def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.send_nowait(data, addr)
        await trio.lowlevel.checkpoint()

    async def receive(self) -> tuple[bytes, tuple[str, int]]:
        return await self._ep.receive()


async def test_answers_never_wait_for_a_full_send_buffer(autojump_clock: trio.testing.MockClock) -> None:
    """Replies go out from the receive path without waiting: with the send buffer full the
    PONG is dropped and counted, and the engine goes on reading and answering."""
    rng = random.Random(21)
    net = MemoryNetwork()
    ma, mb = member(net, 0, rng), member(net, 1, rng)
    b_transport = _FullSendBuffer(mb.endpoint)
    async with run(ma, seed=1) as a, \
            open_v5(b_transport, mb.key, mb.record, config=V5Config(rng=random.Random(2))) as b:
        await a.ping(mb.node)
        b_transport.full = True
        with pytest.raises(RequestTimeout):
            await a.ping(mb.node)
        assert b.stats.drops["v5_send_buffer_full"] == 1 and b.stats.packets_in["ping"] == 2
        b_transport.full = False
        await a.ping(mb.node)
        assert b.stats.packets_out["pong"] == 2
