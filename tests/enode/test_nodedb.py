"""Node database behaviour, run on both backends: LevelDB on disk and the in-memory store."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from p2p.crypto import PrivateKey
from p2p.enode.enr import ENR
from p2p.enode.node import Node, NodeID
from p2p.enode.expiry import ExpiryOwned, expiring, run_expiry
from p2p.enode.nodedb import MemoryStore, NodeDB, NodeDBClosed, SharedBytes, encode_record

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


def make_node(rng: random.Random, i: int = 1, *, enr_seq: int | None = None) -> tuple[PrivateKey, Node]:
    key = PrivateKey.generate(rng)
    ip = ipaddress.IPv4Address(f"127.0.{i // 250}.{i % 250 + 1}")
    node = Node(key.public_key, ip, 30000 + i % 30000, 31000 + i % 30000)
    if enr_seq is not None:
        node = node.with_enr(ENR.build(key, enr_seq, ip=ip, udp=node.udp_port, tcp=node.tcp_port))
    return key, node


def make_nodes(rng: random.Random, count: int) -> list[Node]:
    return [make_node(rng, i)[1] for i in range(count)]


@pytest.fixture(params=["memory", "disk"])
def db_path(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    return None if request.param == "memory" else str(tmp_path / "nodes")


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(db_path: str | None, clock: FakeClock) -> Iterator[NodeDB]:
    with NodeDB.open(db_path, clock=clock, rng=random.Random(7)) as d:
        yield d


def test_node_roundtrip_and_missing(db: NodeDB, rng: random.Random) -> None:
    _, node = make_node(rng)
    assert db.node(node.id) is None
    assert db.update_node(node)
    got = db.node(node.id)
    assert got == node
    assert got is not None and got.enr is None and got.id == node.id


def test_node_roundtrip_ipv6_and_enr(db: NodeDB, rng: random.Random) -> None:
    key = PrivateKey.generate(rng)
    enr = ENR.build(key, 3, ip6=ipaddress.IPv6Address("::1"), udp6=30303, tcp6=30304)
    node = Node(key.public_key, ipaddress.IPv6Address("::1"), 30303, 30304, enr)
    db.update_node(node)
    got = db.node(node.id)
    assert got == node
    assert got is not None and got.enr is not None
    assert got.enr.to_rlp() == enr.to_rlp() and got.enr.seq == 3
    assert db.node_seq(node.id) == 3


def test_older_enr_does_not_replace_newer(db: NodeDB, rng: random.Random) -> None:
    key, node5 = make_node(rng, enr_seq=5)
    assert db.update_node(node5)
    older = Node(key.public_key, ipaddress.IPv4Address("127.0.0.9"), 1, 2,
                 ENR.build(key, 4, ip=ipaddress.IPv4Address("127.0.0.9"), udp=1, tcp=2))
    assert not db.update_node(older)
    assert not db.update_node(Node(key.public_key, LOOPBACK, 1, 2))  # no ENR counts as seq 0
    got = db.node(node5.id)
    assert got is not None and got.enr is not None and got.enr.seq == 5 and got.udp_port == node5.udp_port
    newer = older.with_enr(node5.enr.updated(key, ip=ipaddress.IPv4Address("127.0.0.9"))) if node5.enr else older
    assert db.update_node(newer)
    got = db.node(node5.id)
    assert got is not None and got.enr is not None and got.enr.seq == 6 and str(got.ip) == "127.0.0.9"
    same = Node(key.public_key, LOOPBACK, 7, 8, got.enr)  # equal seq replaces: the endpoint may change
    assert db.update_node(same)
    assert db.node(node5.id) == same


def test_update_nodes_batch_keeps_the_seq_rule(db: NodeDB, rng: random.Random) -> None:
    key, node5 = make_node(rng, enr_seq=5)
    db.update_node(node5)
    others = make_nodes(rng, 20)
    older = Node(key.public_key, LOOPBACK, 1, 2, ENR.build(key, 2, ip=LOOPBACK, udp=1, tcp=2))
    key2, a = make_node(rng, 99, enr_seq=9)
    b = Node(key2.public_key, LOOPBACK, 5, 6, ENR.build(key2, 8, ip=LOOPBACK, udp=5, tcp=6))
    stored = db.update_nodes([*others, older, a, b])  # b is older than a in the same batch
    assert stored == 21
    assert db.node(node5.id) == node5
    assert db.node(a.id) == a
    for n in others:
        assert db.node(n.id) == n
    assert sorted(n.id for n in db.iter_nodes()) == sorted([node5.id, a.id, *(n.id for n in others)])


def test_per_ip_fields(db: NodeDB, rng: random.Random) -> None:
    _, node = make_node(rng)
    other_ip = ipaddress.IPv4Address("127.0.0.77")
    v6 = ipaddress.IPv6Address("::1")
    assert db.last_ping_received(node.id, node.ip) == 0
    assert db.last_pong_received(node.id, node.ip) == 0
    assert db.find_fails(node.id, node.ip) == 0
    db.update_last_ping_received(node.id, node.ip, 123.5)
    db.update_last_pong_received(node.id, node.ip, 456.25)
    db.update_find_fails(node.id, node.ip, 3)
    db.update_last_pong_received(node.id, v6, 9.0)
    assert db.last_ping_received(node.id, node.ip) == 123.5
    assert db.last_pong_received(node.id, str(node.ip)) == 456.25
    assert db.find_fails(node.id, node.ip) == 3
    assert db.last_pong_received(node.id, other_ip) == 0  # fields are per IP
    assert db.last_pong_received(node.id, v6) == 9.0
    assert db.find_fails(node.id, other_ip) == 0
    db.update_find_fails(node.id, node.ip, 0)
    assert db.find_fails(node.id, node.ip) == 0
    infos = {e.ip: e for e in db.endpoints(node.id)}
    assert set(infos) == {node.ip, v6}
    assert infos[node.ip].last_ping_received == 123.5 and infos[v6].last_pong_received == 9.0


def test_delete_node_removes_every_key(db: NodeDB, rng: random.Random) -> None:
    _, node = make_node(rng, enr_seq=2)
    _, keep = make_node(rng, 2)
    db.update_nodes([node, keep])
    for ip in (node.ip, ipaddress.IPv4Address("127.0.0.50"), ipaddress.IPv6Address("::1")):
        db.update_last_ping_received(node.id, ip, 1.0)
        db.update_last_pong_received(node.id, ip, 2.0)
        db.update_find_fails(node.id, ip, 1)
    db.update_last_pong_received(keep.id, keep.ip, 5.0)
    db.delete_node(node.id)
    assert db.node(node.id) is None
    assert db.node_seq(node.id) == 0
    assert db.endpoints(node.id) == []
    prefix = b"n:" + node.id
    left = [k for k, _ in db._store.iterator(prefix=prefix)]
    assert left == []
    assert db.node(keep.id) == keep and db.last_pong_received(keep.id, keep.ip) == 5.0
    # after deletion an older record is accepted again
    db.delete_node(keep.id)
    db.delete_node(keep.id)  # deleting a missing node is harmless


def test_local_seq(db: NodeDB) -> None:
    assert db.local_seq() == 0
    db.store_local_seq(41)
    assert db.local_seq() == 41


def test_local_seq_survives_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    with NodeDB.open(path) as d:
        d.store_local_seq(17)
    with NodeDB.open(path) as d:
        assert d.local_seq() == 17


def test_use_after_close_raises(db_path: str | None, rng: random.Random) -> None:
    d = NodeDB.open(db_path)
    _, node = make_node(rng)
    d.update_node(node)
    d.close()
    d.close()  # twice is harmless
    assert d.closed
    for call in (lambda: d.node(node.id), lambda: d.update_node(node), lambda: d.query_seeds(3, 10),
                 lambda: d.last_pong_received(node.id, node.ip), lambda: d.delete_node(node.id),
                 lambda: d.local_seq(), d.mark_bonded, d.expire_nodes):
        with pytest.raises(NodeDBClosed):
            call()


# --- query_seeds ---------------------------------------------------------------------------

def fresh(db: NodeDB, nodes: list[Node], t: float) -> None:
    for n in nodes:
        db.update_last_pong_received(n.id, n.ip, t)


def test_seeds_empty(db: NodeDB) -> None:
    assert db.query_seeds(10, 1000.0) == []
    assert db.query_seeds(0, 1000.0) == []


@pytest.mark.parametrize("count", [1, 2])
def test_seeds_tiny_store_reaches_every_node(db: NodeDB, clock: FakeClock, count: int) -> None:
    for seed in range(20):  # whatever the IDs, every node is found
        nodes = make_nodes(random.Random(seed), count)
        db.update_nodes(nodes)
        fresh(db, nodes, clock.now - 10)
        got = db.query_seeds(count, 100.0)
        assert sorted(n.id for n in got) == sorted(n.id for n in nodes)
        got = db.query_seeds(10, 100.0)
        assert sorted(n.id for n in got) == sorted(n.id for n in nodes)
        for n in nodes:
            db.delete_node(n.id)


def test_seeds_random_distinct_fresh_not_self(db: NodeDB, clock: FakeClock, rng: random.Random) -> None:
    nodes = make_nodes(rng, 60)
    db.update_nodes(nodes)
    fresh_nodes, stale = nodes[:40], nodes[40:]
    fresh(db, fresh_nodes, clock.now - 50)
    fresh(db, stale, clock.now - 500)
    me = fresh_nodes[0]
    db.set_self(me.id)
    # a pong for another IP of a node does not make its recorded endpoint fresh
    db.update_last_pong_received(stale[0].id, ipaddress.IPv4Address("127.0.0.200"), clock.now)
    fresh_ids = {n.id for n in fresh_nodes} - {me.id}
    seen: set[NodeID] = set()
    for _ in range(10):
        got = db.query_seeds(10, 100.0)
        ids = [n.id for n in got]
        assert len(got) == 10
        assert len(set(ids)) == len(ids)
        assert set(ids) <= fresh_ids
        seen.update(ids)
        by_id = {n.id: n for n in nodes}
        assert all(n == by_id[n.id] for n in got)
    assert len(seen) > 20  # different calls give different nodes
    everything = db.query_seeds(100, 100.0)
    assert {n.id for n in everything} <= fresh_ids and len(everything) >= 30
    assert db.query_seeds(100, 1.0) == []  # nothing is that fresh


def test_seeds_of_only_self_and_stale(db: NodeDB, clock: FakeClock, rng: random.Random) -> None:
    nodes = make_nodes(rng, 3)
    db.update_nodes(nodes)
    fresh(db, nodes[:1], clock.now)
    db.set_self(nodes[0].id)
    fresh(db, nodes[1:], clock.now - 1000)
    assert db.query_seeds(5, 100.0) == []


def test_seeds_skip_unreadable_record(db: NodeDB, clock: FakeClock, rng: random.Random) -> None:
    nodes = make_nodes(rng, 2)
    db.update_nodes(nodes)
    fresh(db, nodes, clock.now)
    db._store.put(b"n:" + nodes[0].id + b":v4", b"\xc3garbage")
    assert db.node(nodes[0].id) is None
    assert [n.id for n in db.query_seeds(5, 100.0)] == [nodes[1].id]


def test_encode_record_matches_pyrlp(rng: random.Random) -> None:
    import rlp

    for i, seq in ((1, None), (200, 7)):
        key, node = make_node(rng, i, enr_seq=seq)
        enr = node.enr.to_rlp() if node.enr else b""
        want = rlp.encode([node.pubkey.to_bytes(), node.ip.packed, node.udp_port, node.tcp_port, enr])
        assert encode_record(node) == want
    node0 = Node(key.public_key, LOOPBACK, 0, 127)
    assert encode_record(node0) == rlp.encode([key.public_key.to_bytes(), LOOPBACK.packed, 0, 127, b""])
    big = ENR.build(key, 2, ip=LOOPBACK, udp=128, tcp=65535, extra={"zz": bytes(120)})
    node_big = Node(key.public_key, ipaddress.IPv6Address("::1"), 128, 65535, big)
    want = rlp.encode([key.public_key.to_bytes(), node_big.ip.packed, 128, 65535, big.to_rlp()])
    assert len(want) > 258 and encode_record(node_big) == want


# --- expiry -----------------------------------------------------------------------------------

def test_expire_nodes_sync(db: NodeDB, clock: FakeClock, rng: random.Random) -> None:
    db.expiration = 100.0
    old, young, never, me = make_nodes(rng, 4)
    db.update_nodes([old, young, never, me])
    db.set_self(me.id)
    db.update_last_pong_received(old.id, old.ip, clock.now - 101)
    db.update_last_pong_received(young.id, young.ip, clock.now - 99)
    other_ip = ipaddress.IPv4Address("127.0.0.99")
    db.update_last_pong_received(young.id, other_ip, clock.now - 500)  # an expired endpoint of a kept node
    db.update_find_fails(young.id, other_ip, 2)
    assert db.expire_nodes() == 2
    assert db.node(old.id) is None and db.node(never.id) is None
    assert db.node(young.id) == young and db.node(me.id) == me
    assert db.last_pong_received(young.id, young.ip) == clock.now - 99
    assert db.last_pong_received(young.id, other_ip) == 0 and db.find_fails(young.id, other_ip) == 0


async def test_expiry_starts_only_once_bonded_and_spares_self(
        db_path: str | None, rng: random.Random, autojump_clock: trio.testing.MockClock) -> None:
    nodes = make_nodes(rng, 5)
    ids = [n.id for n in nodes]
    me = nodes[0]
    with trio.fail_after(60 * 60 * 24):  # mock seconds: a day of cycles runs in milliseconds
        with NodeDB.open(db_path, clock=trio.current_time, expiration=100.0, cleanup_interval=60.0) as d:
            d.update_nodes(nodes)
            d.set_self(me.id)
            for n in nodes:
                d.update_last_pong_received(n.id, n.ip, trio.current_time())
            async with expiring(d):
                assert not d.expirer_running
                await trio.sleep(1000)  # well past expiration: nothing is deleted before mark_bonded
                assert sorted(n.id for n in d.iter_nodes()) == sorted(ids)
                d.update_last_pong_received(nodes[1].id, nodes[1].ip, trio.current_time())
                d.mark_bonded()
                d.mark_bonded()  # idempotent
                await trio.testing.wait_all_tasks_blocked()
                assert d.expirer_running
                await trio.sleep(61)  # one cycle: the stale ones go; the fresh one and self stay
                assert sorted(n.id for n in d.iter_nodes()) == sorted([ids[0], ids[1]])
                await trio.sleep(120)  # two more cycles: node 1 has gone stale, self never goes
                assert [n.id for n in d.iter_nodes()] == [ids[0]]
            assert not d.expirer_running


async def test_bonded_before_the_owner_starts_expires_when_it_runs(
        rng: random.Random, autojump_clock: trio.testing.MockClock) -> None:
    nodes = make_nodes(rng, 2)
    with trio.fail_after(10_000):
        with NodeDB.open(None, clock=trio.current_time, expiration=10.0, cleanup_interval=5.0) as d:
            d.update_nodes(nodes)
            d.mark_bonded()
            assert not d.expirer_running
            await trio.sleep(100)
            assert len(list(d.iter_nodes())) == 2  # the store is passive: nothing runs without an owner
            async with expiring(d):
                await trio.testing.wait_all_tasks_blocked()
                assert d.expirer_running
                await trio.sleep(6)
                assert list(d.iter_nodes()) == []


async def test_close_stops_the_expirer(rng: random.Random, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(10_000):
        d = NodeDB.open(None, clock=trio.current_time, expiration=10.0, cleanup_interval=5.0)
        d.update_nodes(make_nodes(rng, 3))
        went_on = False
        async with expiring(d):
            d.mark_bonded()
            await trio.sleep(1)
            assert d.expirer_running
            d.close()
            await trio.sleep(100)  # the owner stops at its next cycle, never touching the closed store
            assert not d.expirer_running and d.expiry_owner is None
            went_on = True  # closing stops the expiry only, not the task that opened the database
        assert went_on


async def test_expirer_on_a_large_store_yields_to_other_tasks(
        autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(3)
    nodes = make_nodes(rng, 1200)
    sizes: list[int] = []

    with trio.fail_after(10_000):
        with NodeDB.open(None, clock=trio.current_time, expiration=10.0, cleanup_interval=50.0) as d:
            d.update_nodes(nodes)
            store = d._store
            assert isinstance(store, MemoryStore)
            async with expiring(d):
                d.mark_bonded()
                await trio.sleep(50.0)  # the scan starts now, along with this task
                for _ in range(200):  # bounded: watch the store while the expiry scan runs
                    sizes.append(len(store._data))
                    await trio.lowlevel.checkpoint()
                assert list(d.iter_nodes()) == []
    # other tasks ran while the scan was half done
    assert any(1 < size < 1200 for size in sizes), sizes[:5]


async def test_expiry_has_one_owner() -> None:
    with trio.fail_after(5):
        with NodeDB.open(None) as d:
            async with expiring(d):
                with pytest.raises(ExpiryOwned):
                    await run_expiry(d)
            assert d.expiry_owner is None
            async with expiring(d):  # free again once the first owner left
                assert d.expiry_owner is not None


def test_memory_store_churn_holds_no_memory_and_keeps_order() -> None:
    import tracemalloc

    store = MemoryStore()
    store.put(b"keep", b"1")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(50_000):  # short-lived keys, never seen by a seek
            key = b"churn%06d" % i
            store.put(key, b"x")
            store.delete(key)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024  # 50,000 dead keys kept until a seek would be ~2.5 MB
    store.put(b"b", b"2")
    store.put(b"a", b"1")
    store.delete(b"b")
    store.put(b"b", b"3")  # deleted and put again while pending: listed once
    assert list(store.iterator()) == [(b"a", b"1"), (b"b", b"3"), (b"keep", b"1")]
    store.delete(b"a")
    assert list(store.iterator(prefix=b"a")) == []


def _many_databases_memory(nodes: list[Node], databases: int, shared: SharedBytes | None) -> int:
    """Bytes held by ``databases`` in-memory databases that each store ``nodes`` and a pong each."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        dbs = [NodeDB.open(None, clock=FakeClock(1_000_000.0 + i), shared=shared) for i in range(databases)]
        for i, d in enumerate(dbs):
            d.update_nodes(nodes)
            for node in nodes:
                d.update_last_pong_received(node.id, node.ip, 1_000_000.0 + i)
        held = tracemalloc.get_traced_memory()[0] - before
        for d in dbs:
            d.close()
    finally:
        tracemalloc.stop()
    return held


def test_databases_of_one_process_share_equal_keys_and_records() -> None:
    rng = random.Random(8)
    nodes = [make_node(rng, i, enr_seq=1)[1] for i in range(60)]
    shared = SharedBytes()
    a, b = (NodeDB.open(None, shared=shared) for _ in range(2))
    for d in (a, b):
        d.update_nodes(nodes)
        d.update_last_pong_received(nodes[0].id, nodes[0].ip, 5.0)
    assert [n.enr for n in a.iter_nodes()] == [n.enr for n in b.iter_nodes()]
    entries = len(shared)
    c = NodeDB.open(None, shared=shared)
    c.update_nodes(nodes)
    assert len(shared) == entries  # a third database storing the same nodes adds no copy
    assert c.last_pong_received(nodes[0].id, nodes[0].ip) == 0.0  # the values stay each one's own
    assert b.last_pong_received(nodes[0].id, nodes[0].ip) == 5.0
    # what sharing saves: 100 databases of a testnet process that know the same 60 nodes
    own = _many_databases_memory(nodes, 100, None)
    common = _many_databases_memory(nodes, 100, SharedBytes())
    print(f"100 databases of 60 nodes: {own / 100 / 1024:.1f} KiB each alone, {common / 100 / 1024:.1f} shared")
    assert common < 0.6 * own


def test_shared_bytes_is_bounded_and_starts_over_when_full() -> None:
    shared = SharedBytes(max_entries=3)
    first = b"record-%d" % 1
    assert shared(first) is first
    assert shared(b"record-%d" % 1) is first  # an equal value comes back as the first copy
    for i in range(2, 5):
        shared(b"record-%d" % i)
    assert len(shared) <= 3 and shared.restarts == 1
    again = b"record-%d" % 1
    assert shared(again) == first  # still equal; sharing of what came before the restart stops
    shared = SharedBytes()
    store_a, store_b = MemoryStore(shared), MemoryStore(shared)
    value = bytes(range(100))
    store_a.put(b"k", value)
    store_b.put(b"k", bytes(range(100)))
    assert store_a.get(b"k") is store_b.get(b"k")
    store_b.put(b"t", b"short")  # short values (times, counters) are never shared
    assert store_b.get(b"t") == b"short"
