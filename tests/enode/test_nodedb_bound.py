"""The node database's bounds: unprotected nodes (least recently seen out), protected nodes, IPs per node."""

from __future__ import annotations

import ipaddress
import os
import random
import tracemalloc
from pathlib import Path

import pytest

from p2p.enode.nodedb import (
    MAX_ENDPOINTS_PER_NODE,
    MAX_PROTECTED_NODES,
    MAX_UNPROTECTED_NODES,
    NodeDB,
    NodeDBLimits,
)
from tests.enode.test_nodedb import FakeClock, db_path, make_nodes  # noqa: F401  (db_path: a fixture)

LOOP = ipaddress.IPv4Address("127.0.0.1")


def _ids(rng: random.Random, n: int) -> list[bytes]:
    return [rng.randbytes(32) for _ in range(n)]


def _kept(db: NodeDB, node_id: bytes) -> bool:
    return db.last_ping_received(node_id, LOOP) != 0.0


def test_defaults_are_the_named_constants() -> None:
    limits = NodeDBLimits()
    assert (limits.max_unprotected, limits.max_protected, limits.max_endpoints) == (
        MAX_UNPROTECTED_NODES, MAX_PROTECTED_NODES, MAX_ENDPOINTS_PER_NODE)
    with pytest.raises(ValueError):
        NodeDBLimits(max_endpoints=0)


def test_least_recently_seen_unprotected_node_goes_first(db_path: str | None) -> None:
    ids = _ids(random.Random(1), 1000)
    with NodeDB.open(db_path, limits=NodeDBLimits(max_unprotected=100)) as db:
        for i, node_id in enumerate(ids[:100]):
            db.update_last_ping_received(node_id, LOOP, 1.0 + i)
        db.update_last_pong_received(ids[0], LOOP, 500.0)  # seen again: now the most recent
        for i, node_id in enumerate(ids[100:]):
            db.update_last_ping_received(node_id, LOOP, 1000.0 + i)
            assert db.unprotected_count <= 100
        assert db.stats.evicted_nodes == 900
        survivors = [node_id for node_id in ids if _kept(db, node_id)]
        assert survivors == ids[900:]  # the 100 seen last; ids[0] was seen again before 800 others
        assert db.last_pong_received(ids[0], LOOP) == 0.0  # every key of an evicted node is gone


def test_records_of_evicted_nodes_are_deleted(db_path: str | None) -> None:
    nodes = make_nodes(random.Random(2), 60)
    with NodeDB.open(db_path, limits=NodeDBLimits(max_unprotected=20)) as db:
        assert db.update_nodes(nodes[:30]) == 30
        for node in nodes[30:]:
            db.update_node(node)
            db.update_last_pong_received(node.id, node.ip, 7.0)
        assert {n.id for n in db.iter_nodes()} == {n.id for n in nodes[40:]}
        assert db.stats.evicted_nodes == 40


def test_protected_nodes_survive_any_flood_until_released(db_path: str | None) -> None:
    rng = random.Random(3)
    members = make_nodes(rng, 5)
    with NodeDB.open(db_path, limits=NodeDBLimits(max_unprotected=50)) as db:
        for node in members:
            db.update_node(node)
            db.update_last_pong_received(node.id, node.ip, 10.0)
            assert db.protect(node.id)
        assert db.protect(members[0].id)  # a second holder (a table member that is also a peer)
        for node_id in _ids(rng, 500):
            db.update_last_ping_received(node_id, LOOP, 20.0)
        assert db.protected_count == 5 and db.unprotected_count == 50
        assert all(db.node(n.id) == n and db.last_pong_received(n.id, n.ip) == 10.0 for n in members)
        db.unprotect(members[0].id)
        assert db.is_protected(members[0].id)  # one holder is left
        db.unprotect(members[0].id)
        db.unprotect(members[1].id)
        assert not db.is_protected(members[0].id) and db.protected_count == 3
        # released: the two most recently seen of the 50 unprotected nodes, so 48 newer ones
        # push out everyone else first, the 49th pushes out members[0], the 50th members[1]
        for node_id in _ids(rng, 48):
            db.update_last_ping_received(node_id, LOOP, 30.0)
        assert db.node(members[0].id) == members[0] and db.node(members[1].id) == members[1]
        db.update_last_ping_received(rng.randbytes(32), LOOP, 40.0)
        assert db.node(members[0].id) is None and db.node(members[1].id) == members[1]
        db.update_last_ping_received(rng.randbytes(32), LOOP, 40.0)
        assert db.node(members[1].id) is None
        assert all(db.node(n.id) == n for n in members[2:])


def test_protection_beyond_the_limit_is_refused_and_counted() -> None:
    ids = _ids(random.Random(4), 4)
    with NodeDB.open(None, limits=NodeDBLimits(max_protected=3)) as db:
        assert all(db.protect(node_id) for node_id in ids[:3])
        assert not db.protect(ids[3])
        assert db.stats.protect_refused == 1 and not db.is_protected(ids[3])
        db.unprotect(ids[3])  # a refused protection undone by mistake changes nothing
        assert db.protected_count == 3
        db.unprotect(ids[0])
        assert db.protect(ids[3])


def test_ips_per_node_are_bounded(db_path: str | None) -> None:
    node_id = random.Random(5).randbytes(32)
    ips = [ipaddress.ip_address(f"127.0.{i}.1") for i in range(10)] + [ipaddress.ip_address("::1")]
    with NodeDB.open(db_path, limits=NodeDBLimits(max_endpoints=4)) as db:
        assert db.protect(node_id)  # protected or not: one key from many IPs is bounded alike
        for i, ip in enumerate(ips):
            db.update_last_ping_received(node_id, ip, 100.0 + i)
            db.update_last_pong_received(node_id, ip, 100.0 + i)
            db.update_find_fails(node_id, ip, 1)
        db.update_last_ping_received(node_id, ips[7], 500.0)  # seen again: not the next to go
        db.update_last_ping_received(node_id, ips[0], 600.0)  # a new (evicted) IP: out goes ips[8]
        kept = {e.ip for e in db.endpoints(node_id)}
        assert kept == {ips[7], ips[9], ips[10], ips[0]}
        assert db.stats.evicted_endpoints == 8
        assert db.find_fails(node_id, ips[8]) == 0 and db.last_pong_received(node_id, ips[8]) == 0.0


def test_store_on_disk_is_trimmed_on_open_least_recently_seen_first(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    nodes = make_nodes(random.Random(6), 40)
    with NodeDB.open(path, limits=NodeDBLimits(max_unprotected=100)) as db:
        db.update_nodes(nodes)
        for i, node in enumerate(nodes):
            db.update_last_pong_received(node.id, node.ip, 1000.0 - i)  # the first nodes heard from last
    with NodeDB.open(path, limits=NodeDBLimits(max_unprotected=10)) as db:
        assert db.unprotected_count == 10 and db.stats.evicted_nodes == 30
        assert {n.id for n in db.iter_nodes()} == {n.id for n in nodes[:10]}
    with NodeDB.open(path) as db:  # and it stays trimmed
        assert len(list(db.iter_nodes())) == 10 and db.unprotected_count == 10


def test_expiry_keeps_the_bookkeeping_right() -> None:
    clock = FakeClock()
    ids = _ids(random.Random(7), 30)
    with NodeDB.open(None, clock=clock, expiration=100.0, limits=NodeDBLimits(max_unprotected=20)) as db:
        for node_id in ids[:10]:
            db.update_last_pong_received(node_id, LOOP, clock.now - 1000.0)  # expired
        for node_id in ids[10:20]:
            db.update_last_pong_received(node_id, LOOP, clock.now)
        assert db.expire_nodes() == 10
        assert db.unprotected_count == 10
        for node_id in ids[20:30]:  # room for ten more without eviction
            db.update_last_pong_received(node_id, LOOP, clock.now)
        assert db.stats.evicted_nodes == 0 and all(_kept_pong(db, i) for i in ids[10:30])


def _kept_pong(db: NodeDB, node_id: bytes) -> bool:
    return db.last_pong_received(node_id, LOOP) != 0.0


FLOOD = 20_000  # 20 times the bound: unbounded, this grows by about 10 MiB


def test_memory_of_a_flood_of_keys_stays_flat() -> None:
    """Keys pinging and bonding through a bounded in-memory database: once at the bound its
    memory stays flat (and the sorted-key index keeps no deleted keys)."""
    rng = random.Random(8)
    records = make_nodes(rng, FLOOD // 100)

    def bond(i: int) -> None:
        node_id = rng.randbytes(32)
        db.update_last_ping_received(node_id, LOOP, float(i))
        db.update_last_pong_received(node_id, LOOP, float(i))

    with NodeDB.open(None, limits=NodeDBLimits(max_unprotected=1000)) as db:
        tracemalloc.start()
        try:
            # past the bound several times over, so that what is held is allocated since the
            # start (tracemalloc does not subtract what it did not see allocated)
            for i in range(5000):
                bond(i)
            db.query_seeds(5, 1e12)  # one seek: the index is built, as when discovery seeds
            for i in range(5000):
                bond(i)
            start = tracemalloc.get_traced_memory()[0]
            for i in range(FLOOD):
                bond(i)
                if i % 100 == 0:
                    db.update_node(records[i // 100])
            grown = tracemalloc.get_traced_memory()[0] - start
        finally:
            tracemalloc.stop()
        assert db.unprotected_count == 1000
        assert db.stats.evicted_nodes == 10_000 + FLOOD + len(records) - 1000
    assert grown < 128 * 1024, f"grew {grown} bytes"
