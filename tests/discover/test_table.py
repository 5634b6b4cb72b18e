"""The Kademlia table with a fake clock and a seeded rng."""

from __future__ import annotations

import ipaddress
import random
from collections import defaultdict

import pytest

from p2p.crypto import PrivateKey
from p2p.discover.table import (
    BUCKET_SIZE,
    MAX_REPLACEMENTS,
    N_BUCKETS,
    NodeAdded,
    NodeRemoved,
    Table,
    TableConfig,
    bucket_index,
    is_lan,
    no_exemption,
)
from p2p.enode import Node, NodeID, log_distance
from tests.discover.conftest import loopback_node


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


LOCAL = PrivateKey.generate(random.Random(7))
LOCAL_ID = NodeID.from_pubkey(LOCAL.public_key)


def make_table(config: TableConfig | None = None, seed: int = 1) -> Table:
    return Table(LOCAL_ID, clock=FakeClock(), rng=random.Random(seed), config=config)


@pytest.fixture(scope="module")
def by_bucket(key_pool: list[PrivateKey]) -> dict[int, list[PrivateKey]]:
    groups: dict[int, list[PrivateKey]] = defaultdict(list)
    for k in key_pool:
        groups[bucket_index(LOCAL_ID, NodeID.from_pubkey(k.public_key))].append(k)
    return groups


def _id_at_distance(d: int) -> bytes:
    # local ID XOR (1 << (d - 1)): log-distance exactly d
    return (int.from_bytes(LOCAL_ID, "big") ^ (1 << (d - 1))).to_bytes(32, "big")


def test_bucket_layout_as_go_ethereum() -> None:
    assert N_BUCKETS == 17
    assert bucket_index(LOCAL_ID, _id_at_distance(256)) == 16
    assert bucket_index(LOCAL_ID, _id_at_distance(241)) == 1
    assert bucket_index(LOCAL_ID, _id_at_distance(240)) == 0
    assert bucket_index(LOCAL_ID, _id_at_distance(239)) == 0
    assert bucket_index(LOCAL_ID, _id_at_distance(1)) == 0
    for d in range(241, 257):
        assert log_distance(LOCAL_ID, _id_at_distance(d)) == d
        assert bucket_index(LOCAL_ID, _id_at_distance(d)) == d - 240


def test_nodes_land_in_their_bucket(key_pool: list[PrivateKey]) -> None:
    t = make_table()
    for i, k in enumerate(key_pool[:60]):
        t.add_seen(loopback_node(k, 1000 + i))
    for b in t.buckets:
        for e in b.entries:
            assert bucket_index(LOCAL_ID, e.node.id) == b.index
    assert len(t) == sum(len(b.entries) for b in t.buckets)
    assert all(len(b.entries) <= BUCKET_SIZE for b in t.buckets)


def test_self_never_added() -> None:
    t = make_table()
    assert not t.add_seen(loopback_node(LOCAL))
    assert not t.add_verified(loopback_node(LOCAL))
    assert len(t) == 0


def test_full_bucket_fills_replacements(by_bucket: dict[int, list[PrivateKey]]) -> None:
    keys = by_bucket[16]
    assert len(keys) >= BUCKET_SIZE + MAX_REPLACEMENTS + 3
    t = make_table()
    nodes = [loopback_node(k, 2000 + i) for i, k in enumerate(keys[:BUCKET_SIZE + MAX_REPLACEMENTS + 3])]
    added = [t.add_seen(n) for n in nodes]
    assert added == [True] * BUCKET_SIZE + [False] * (MAX_REPLACEMENTS + 3)
    b = t.buckets[16]
    assert [e.node for e in b.entries] == nodes[:BUCKET_SIZE]  # seen nodes go to the back
    # most recent replacement first; the oldest ones fell off the end
    assert b.replacements == list(reversed(nodes[BUCKET_SIZE + 3:]))
    events = t.pop_events()
    assert events == [NodeAdded(n) for n in nodes[:BUCKET_SIZE]]
    assert t.pop_events() == []


def test_verified_goes_to_front_and_updates_endpoint(by_bucket: dict[int, list[PrivateKey]]) -> None:
    keys = by_bucket[16][:3]
    t = make_table()
    a, b, c = (loopback_node(k, 3000 + i) for i, k in enumerate(keys))
    t.add_seen(a)
    t.add_seen(b)
    assert [e.node for e in t.buckets[16].entries] == [a, b]
    t.add_verified(c)
    assert [e.node for e in t.buckets[16].entries] == [c, a, b]
    moved = b.with_endpoint(ipaddress.ip_address("127.0.0.9"), 4000, 4001)
    assert not t.add_verified(moved)  # not new
    assert [e.node for e in t.buckets[16].entries] == [moved, c, a]
    assert t.get(b.id) is not None and t.get(b.id).udp_port == 4000  # type: ignore[union-attr]
    entry = t.entry(b.id)
    assert entry is not None and entry.live_checks == 1


def test_ip_limits_per_bucket_and_table(by_bucket: dict[int, list[PrivateKey]]) -> None:
    t = make_table(TableConfig(ip_limit_exempt=no_exemption))
    # per bucket: 2 per /24
    same = [loopback_node(k, 5000 + i, "127.0.0.%d" % (i + 1)) for i, k in enumerate(by_bucket[16][:3])]
    assert [t.add_seen(n) for n in same] == [True, True, False]
    other_subnet = loopback_node(by_bucket[16][3], 5100, "127.0.1.1")
    assert t.add_seen(other_subnet)
    # per table: 10 per /24 across buckets (2 in each of buckets 16..12), then refused anywhere
    for b in (15, 14, 13, 12):
        for i, k in enumerate(by_bucket[b][:2]):
            assert t.add_seen(loopback_node(k, 6000 + b * 10 + i, "127.0.0.%d" % (b * 10 + i)))
    assert t.ips.counts[(4, 0x7F0000)] == 10
    refused = loopback_node(by_bucket[11][0], 7000, "127.0.0.200")
    assert not t.add_seen(refused) and refused.id not in t
    # removing one frees the slot
    t.remove(same[0].id)
    assert t.add_seen(refused)
    # replacements count against the limits too: fill bucket 16 with other subnets
    for i, k in enumerate(by_bucket[16][4:4 + 20]):
        t.add_seen(loopback_node(k, 8000 + i, f"10.{i}.0.1"))
    assert len(t.buckets[16].entries) == BUCKET_SIZE
    reps = t.buckets[16].replacements
    assert len({n.ip for n in reps}) == len(reps)


def test_loopback_exempt_by_default(by_bucket: dict[int, list[PrivateKey]]) -> None:
    t = make_table()
    for i, k in enumerate(by_bucket[16][:BUCKET_SIZE]):
        assert t.add_seen(loopback_node(k, 9000 + i))
    assert len(t.buckets[16].entries) == BUCKET_SIZE
    assert is_lan(ipaddress.ip_address("192.168.1.1")) and is_lan(ipaddress.ip_address("::1"))
    assert not is_lan(ipaddress.ip_address("8.8.8.8"))
    public = make_table()
    for i, k in enumerate(by_bucket[16][:3]):
        public.add_seen(loopback_node(k, 9100 + i, f"8.8.8.{i + 1}"))
    assert len(public) == 2  # public addresses are limited by default


def test_endpoint_change_respects_limits(by_bucket: dict[int, list[PrivateKey]]) -> None:
    t = make_table(TableConfig(ip_limit_exempt=no_exemption))
    a, b, c = (loopback_node(k, 100 + i, f"127.0.{i}.1") for i, k in enumerate(by_bucket[16][:3]))
    for n in (a, b, c):
        t.add_seen(n)
    # c moves into a's /24 where b has not been: allowed (2 per /24)
    c2 = c.with_endpoint(ipaddress.ip_address("127.0.0.2"), 1, 1)
    t.add_verified(c2)
    assert t.get(c.id).ip == c2.ip  # type: ignore[union-attr]
    # b cannot follow: that /24 is full; it keeps its address
    b2 = b.with_endpoint(ipaddress.ip_address("127.0.0.3"), 1, 1)
    t.add_verified(b2)
    assert t.get(b.id).ip == b.ip  # type: ignore[union-attr]


def test_closest_matches_brute_force(key_pool: list[PrivateKey]) -> None:
    t = make_table()
    for i, k in enumerate(key_pool[:150]):
        t.add_seen(loopback_node(k, 1000 + i))
    rng = random.Random(3)
    for _ in range(20):
        target = rng.randbytes(32)
        want = sorted(t.nodes(), key=lambda n: int.from_bytes(n.id, "big") ^ int.from_bytes(target, "big"))[:16]
        assert t.closest(target, 16) == want
    # prefer_live: only nodes that answered, when there are any
    live = t.nodes()[5]
    t.add_verified(live)
    assert t.closest(rng.randbytes(32), 16, prefer_live=True) == [live]


def test_random_nodes_are_table_nodes(key_pool: list[PrivateKey]) -> None:
    t = make_table()
    for i, k in enumerate(key_pool[:40]):
        t.add_seen(loopback_node(k, 1000 + i))
    picked = t.random_nodes(10)
    assert len(picked) == 10 == len({n.id for n in picked})
    assert all(n.id in t for n in picked)


def test_revalidation_moves_and_replaces(by_bucket: dict[int, list[PrivateKey]]) -> None:
    keys = by_bucket[16]
    t = make_table(seed=11)
    nodes = [loopback_node(k, 100 + i) for i, k in enumerate(keys[:BUCKET_SIZE + 2])]
    for n in nodes:
        t.add_seen(n)
    t.pop_events()
    # only bucket 16 holds nodes: the candidate is its last (least recently checked) entry
    assert t.node_to_revalidate() == nodes[BUCKET_SIZE - 1]
    t.revalidated(nodes[BUCKET_SIZE - 1].id, alive=True)
    assert t.buckets[16].entries[0].node == nodes[BUCKET_SIZE - 1]
    assert t.node_to_revalidate() == nodes[BUCKET_SIZE - 2]
    # a dead node is replaced by one of the replacements
    dead = nodes[BUCKET_SIZE - 2]
    t.revalidated(dead.id, alive=False)
    assert dead.id not in t
    assert len(t.buckets[16].entries) == BUCKET_SIZE
    events = t.pop_events()
    assert events[0] == NodeRemoved(dead)
    assert isinstance(events[1], NodeAdded) and events[1].node in nodes[BUCKET_SIZE:]
    assert len(t.buckets[16].replacements) == 1
    # no replacements left after two more deaths: the bucket shrinks
    for _ in range(2):
        victim = t.node_to_revalidate()
        assert victim is not None
        t.revalidated(victim.id, alive=False)
    assert len(t.buckets[16].entries) == BUCKET_SIZE - 1
    assert t.buckets[16].replacements == []


def test_revalidation_picks_random_nonempty_buckets(by_bucket: dict[int, list[PrivateKey]]) -> None:
    t = make_table(seed=5)
    assert t.node_to_revalidate() is None
    for b in (16, 15, 14):
        t.add_seen(loopback_node(by_bucket[b][0], 100 + b))
    picked = {bucket_index(LOCAL_ID, t.node_to_revalidate().id) for _ in range(60)}  # type: ignore[union-attr]
    assert picked == {16, 15, 14}


def test_remove_promotes_replacement(by_bucket: dict[int, list[PrivateKey]]) -> None:
    keys = by_bucket[16]
    t = make_table()
    nodes = [loopback_node(k, 100 + i) for i, k in enumerate(keys[:BUCKET_SIZE + 1])]
    for n in nodes:
        t.add_seen(n)
    assert t.remove(nodes[0].id) == nodes[0]
    assert nodes[BUCKET_SIZE].id in t
    assert t.remove(nodes[0].id) is None


def test_update_node_keeps_newer_enr(by_bucket: dict[int, list[PrivateKey]]) -> None:
    from p2p.enode import ENR

    k = by_bucket[16][0]
    t = make_table()
    n = loopback_node(k, 100)
    t.add_seen(n)
    new = ENR.build(k, 5, ip="127.0.0.1", udp=100)
    assert t.update_node(n.with_enr(new))
    assert t.get(n.id).enr == new  # type: ignore[union-attr]
    assert not t.update_node(n.with_enr(ENR.build(k, 4, ip="127.0.0.1", udp=100)))
    assert t.get(n.id).enr == new  # type: ignore[union-attr]


def test_added_at_uses_injected_clock(by_bucket: dict[int, list[PrivateKey]]) -> None:
    clock = FakeClock()
    t = Table(LOCAL_ID, clock=clock, rng=random.Random(1))
    clock.t = 4242.0
    n = loopback_node(by_bucket[16][0], 1)
    t.add_seen(n)
    assert t.entry(n.id).added_at == 4242.0  # type: ignore[union-attr]


def test_entries_remember_the_protocols_they_came_through() -> None:
    t = make_table()
    rng = random.Random(5)
    a, b = (loopback_node(PrivateKey.generate(rng), 30000 + i) for i in range(2))
    assert t.add_seen(a, "v5") and t.add_verified(b)  # v4 by default
    assert [(type(e).__name__, e.via) for e in t.pop_events()] == [("NodeAdded", "v5"), ("NodeAdded", "v4")]
    assert t.protocols(a.id) == {"v5"} and t.protocols(b.id) == {"v4"}
    t.add_verified(a, "v4")  # later verified over v4 too: it keeps the protocol that found it
    assert t.protocols(a.id) == {"v4", "v5"}
    assert sorted(t.members(), key=lambda m: m[1]) == sorted([(t.get(a.id), "v5"), (t.get(b.id), "v4")],
                                                             key=lambda m: m[1])
    t.remove(a.id)
    removed = t.pop_events()
    assert len(removed) == 1 and removed[0].via == "v5"
    assert t.protocols(a.id) == frozenset()


def test_a_protocol_that_fails_an_entry_known_through_another_only_stops_using_it() -> None:
    t = make_table()
    rng = random.Random(6)
    both, v4_only = (loopback_node(PrivateKey.generate(rng), 30100 + i) for i in range(2))
    t.add_seen(both, "v5")
    t.add_seen(both, "v4")
    t.add_seen(v4_only, "v4")
    t.pop_events()
    assert t.remove_protocol(both.id, "v4") is None  # still reachable over v5: kept
    assert both.id in t and t.protocols(both.id) == {"v5"}
    assert t.pop_events() == []
    assert t.remove_protocol(v4_only.id, "v4") == v4_only  # known through nothing else: dropped
    assert v4_only.id not in t
    assert [type(e).__name__ for e in t.pop_events()] == ["NodeRemoved"]
    assert t.remove_protocol(v4_only.id, "v4") is None
