"""The tree walk and node iterator against a fake resolver: what a bad tree, a slow or missing
name, a link loop and the bounds do (each drops its subtree, the rest is still used)."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from p2p.crypto import PrivateKey
from p2p.dnsdisc import (
    BadRootSignature,
    DNSClient,
    HashMismatch,
    Limits,
    NameNotFound,
    QueryTimeout,
    TreeLimitExceeded,
    open_dns_iterator,
)
from p2p.dnsdisc.records import BranchEntry, ENREntry
from p2p.enode import ENR, Node
from tests.dnsdisc.fakes import HANG, FakeResolver, records, signed_tree
from tests.dnsdisc.test_records import SIGNER, ZONE

DOMAIN = "nodes.example.org"


def client(resolver: FakeResolver, **kw: object) -> DNSClient:
    kw.setdefault("rate_limit", None)
    return DNSClient(resolver, rng=random.Random(3), **kw)  # type: ignore[arg-type]


def ids(nodes: list[ENR] | list[Node]) -> set[bytes]:
    return {bytes(n.node_id if isinstance(n, ENR) else n.id) for n in nodes}


async def test_the_example_tree_syncs_and_its_dead_link_is_only_counted(autojump_clock: trio.testing.MockClock) -> None:
    zone = {(DOMAIN if n == "@" else f"{n}.{DOMAIN}"): t for n, t in ZONE.items()}
    c = client(FakeResolver(zone))
    from p2p.dnsdisc import LinkEntry

    result = await c.sync_tree(LinkEntry(DOMAIN, SIGNER).url)
    assert {n.node_id.hex() for n in result.nodes} == {
        "026338a8eb9c7bf8141aa28d4d938faa6a23eb46fde25b21f02ad1fe12ecc6ca",
        "16f95ab04657103d5c2ff0a17547999345b22652d9f74ef6f14a72a5f7cff4e2",
        "ec9e57753dbd7a5d0c6c0b34ec6ad66cee0237b9d034d77cd135ebe5b814aba6"}
    assert [type(e) for e in result.errors] == [NameNotFound]  # morenodes.example.org is not there
    assert len(result.trees) == 2 and result.seq == {LinkEntry(DOMAIN, SIGNER).location: 1}
    assert c.stats.failures == {"nxdomain": 1}


async def test_a_missing_domain_is_a_clear_error(autojump_clock: trio.testing.MockClock, key: PrivateKey) -> None:
    _, url, _ = signed_tree(key, DOMAIN, [])
    with pytest.raises(NameNotFound, match=f"{DOMAIN}: no such name"):
        await client(FakeResolver()).sync_tree(url)


async def test_a_root_with_a_bad_signature_is_refused(autojump_clock: trio.testing.MockClock, key: PrivateKey, rng: random.Random) -> None:
    _, _, zone = signed_tree(key, DOMAIN, records(3, rng))
    _, url, _ = signed_tree(PrivateKey.generate(rng), DOMAIN, [])  # the URL of another key
    c = client(FakeResolver(zone))
    with pytest.raises(BadRootSignature):
        await c.sync_tree(url)
    assert c.stats.rejected == {"bad_signature": 1}


async def test_a_bad_signature_gives_the_iterator_no_node_and_is_counted(autojump_clock: trio.testing.MockClock, key: PrivateKey,
                                                                         rng: random.Random) -> None:
    _, _, zone = signed_tree(key, DOMAIN, records(3, rng))
    _, url, _ = signed_tree(PrivateKey.generate(rng), DOMAIN, [])
    resolver = FakeResolver(zone)
    got: list[Node] = []
    with trio.move_on_after(120):
        async with open_dns_iterator([url], resolver=resolver, rate_limit=None) as it:
            async for node in it:
                got.append(node)
    assert got == []
    assert 1 < len(resolver.asked) < 200  # asked again with a back-off, not in a hot loop
    assert all(name == DOMAIN for name in resolver.asked)


async def test_a_branch_that_does_not_match_its_hash_drops_only_that_subtree(autojump_clock: trio.testing.MockClock, key: PrivateKey,
                                                                               rng: random.Random) -> None:
    nodes = records(40, rng)  # 4 branches of at most 13 under the ENR root
    tree, url, zone = signed_tree(key, DOMAIN, nodes)
    top = tree.entries[tree.root.eroot]
    assert isinstance(top, BranchEntry)
    victim = top.children[0]
    bad = tree.entries[victim]
    assert isinstance(bad, BranchEntry)
    zone[f"{victim}.{DOMAIN}"] = "enrtree-branch:" + ",".join(reversed(bad.children))
    c = client(FakeResolver(zone))
    result = await c.sync_tree(url)
    lost = {bytes(e.enr.node_id) for h in bad.children if isinstance(e := tree.entries[h], ENREntry)}
    assert ids(result.nodes) == ids(nodes) - lost and lost
    assert [type(e) for e in result.errors] == [HashMismatch]
    assert c.stats.rejected == {"hash_mismatch": 1}


async def test_nxdomain_and_timeouts_for_some_names_leave_the_rest(autojump_clock: trio.testing.MockClock, key: PrivateKey, rng: random.Random) -> None:
    nodes = records(20, rng)
    tree, url, zone = signed_tree(key, DOMAIN, nodes)
    leaves = [h for h, e in tree.entries.items() if isinstance(e, ENREntry)]
    del zone[f"{leaves[0]}.{DOMAIN}"]
    zone[f"{leaves[1]}.{DOMAIN}"] = HANG
    c = client(FakeResolver(zone), timeout=5.0)
    with trio.fail_after(60):
        result = await c.sync_tree(url)
    assert len(result.nodes) == 18
    assert {type(e) for e in result.errors} == {NameNotFound, QueryTimeout}
    assert c.stats.failures == {"nxdomain": 1, "timeout": 1}


async def test_a_loop_of_links_is_walked_once_per_tree(autojump_clock: trio.testing.MockClock, rng: random.Random) -> None:
    ka, kb = PrivateKey.generate(rng), PrivateKey.generate(rng)
    from p2p.dnsdisc import LinkEntry

    url_a, url_b = LinkEntry("a.example.org", ka.public_key).url, LinkEntry("b.example.org", kb.public_key).url
    nodes_a, nodes_b = records(5, rng), records(5, rng, port_base=31000)
    _, _, zone_a = signed_tree(ka, "a.example.org", nodes_a, [url_b, url_a])  # B, and itself
    _, _, zone_b = signed_tree(kb, "b.example.org", nodes_b, [url_a])
    resolver = FakeResolver({**zone_a, **zone_b})
    result = await client(resolver).sync_tree(url_a)
    assert ids(result.nodes) == ids(nodes_a + nodes_b) and len(result.trees) == 2
    seen: set[bytes] = set()
    with trio.fail_after(30):
        async with open_dns_iterator([url_a], resolver=resolver, rate_limit=None, max_nodes=200,
                                     rng=random.Random(1)) as it:
            async for node in it:
                seen.add(bytes(node.id))
    assert seen == ids(nodes_a + nodes_b)


@pytest.mark.parametrize(("limits", "reason", "kept"), [
    (Limits(max_depth=1), "limit_depth", 0),  # 200 records need two branch levels
    (Limits(max_width=12), "limit_width", None),  # branches of 13: only the narrow one is kept
    (Limits(max_entries=100), "limit_entries", None),
])
async def test_a_tree_past_the_bounds_loses_that_subtree(autojump_clock: trio.testing.MockClock, key: PrivateKey, rng: random.Random, limits: Limits,
                                                        reason: str, kept: int | None) -> None:
    _, url, zone = signed_tree(key, DOMAIN, records(200, rng))
    c = client(FakeResolver(zone), limits=limits)
    result = await c.sync_tree(url)
    assert c.stats.rejected.get(reason, 0) >= 1
    assert all(isinstance(e, TreeLimitExceeded) for e in result.errors)
    if kept is not None:
        assert len(result.nodes) == kept
    else:
        assert 0 < len(result.nodes) < 200


async def test_links_past_max_trees_are_not_followed(autojump_clock: trio.testing.MockClock, rng: random.Random) -> None:
    from p2p.dnsdisc import LinkEntry

    keys = [PrivateKey.generate(rng) for _ in range(4)]
    urls = [LinkEntry(f"t{i}.example.org", k.public_key).url for i, k in enumerate(keys)]
    zone: dict[str, object] = {}
    for i, k in enumerate(keys):
        zone.update(signed_tree(k, f"t{i}.example.org", records(2, rng, port_base=30000 + 10 * i),
                                urls[i + 1:])[2])
    c = client(FakeResolver(zone), limits=Limits(max_trees=2))
    result = await c.sync_tree(urls[0])
    assert len(result.trees) == 2 and len(result.nodes) == 4
    assert c.stats.rejected.get("limit_links", 0) >= 1


async def test_an_enr_in_the_link_subtree_is_refused(autojump_clock: trio.testing.MockClock, key: PrivateKey, rng: random.Random) -> None:
    tree, url, zone = signed_tree(key, DOMAIN, records(1, rng))
    enr_text = zone[f"{tree.root.eroot}.{DOMAIN}"]
    # a root whose link subtree is the ENR leaf
    from p2p.dnsdisc.records import RootEntry

    root = RootEntry(tree.root.eroot, tree.root.eroot, 2).signed(key)
    zone[DOMAIN] = root.text()
    c = client(FakeResolver(zone))
    result = await c.sync_tree(url)
    assert len(result.nodes) == 1 and isinstance(enr_text, str)
    assert c.stats.rejected == {"wrong_type": 1}


async def test_a_changed_root_is_walked_again(autojump_clock: trio.testing.MockClock, key: PrivateKey, rng: random.Random) -> None:
    old, new = records(3, rng), records(3, rng, port_base=32000)
    _, url, zone1 = signed_tree(key, DOMAIN, old, seq=1)
    _, _, zone2 = signed_tree(key, DOMAIN, new, seq=2)
    resolver = FakeResolver(zone1)
    clock = trio.current_time
    seen_old: set[bytes] = set()
    seen_new: set[bytes] = set()
    async with open_dns_iterator([url], resolver=resolver, rate_limit=None, clock=clock,
                                 limits=Limits(recheck_interval=600.0)) as it:
        with trio.fail_after(60):
            while seen_old != ids(old):
                seen_old.add(bytes((await it.__anext__()).id))
        resolver.records = zone2
        await trio.sleep(601)
        with trio.fail_after(60):
            while seen_new != ids(new):
                node = await it.__anext__()
                seen_new.add(bytes(node.id))
        # a root with a lower seq (a stale cache) is ignored: the walk stays on seq 2
        resolver.records = {**zone1, **{k: v for k, v in zone2.items() if k != DOMAIN}}
        await trio.sleep(601)
        for _ in range(10):
            assert bytes((await it.__anext__()).id) in ids(new)


async def test_aclose_ends_a_pending_next_and_the_iteration(autojump_clock: trio.testing.MockClock, key: PrivateKey, rng: random.Random) -> None:
    _, url, zone = signed_tree(key, DOMAIN, records(2, rng))
    zone = {DOMAIN: zone[DOMAIN]} | {k: HANG for k in zone if k != DOMAIN}
    it = open_dns_iterator([url], resolver=FakeResolver(zone), rate_limit=None, timeout=1e9)
    done: list[str] = []

    async def consume() -> None:
        async for _ in it:
            pass
        done.append("stopped")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.sleep(5)
        await it.aclose()
    assert done == ["stopped"]
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


async def test_the_rate_limit_spaces_queries(autojump_clock: trio.testing.MockClock, key: PrivateKey, rng: random.Random) -> None:
    _, url, zone = signed_tree(key, DOMAIN, records(40, rng))
    c = DNSClient(FakeResolver(zone), rate_limit=3.0, burst=10)
    start = trio.current_time()
    await c.sync_tree(url)
    queries = c.stats.queries
    assert queries > 40
    assert trio.current_time() - start >= (queries - 10) / 3.0 - 0.01
    assert c.stats.rate_limited >= queries - 10


async def test_the_iterator_walks_from_the_cache_after_the_first_pass(autojump_clock: trio.testing.MockClock, key: PrivateKey, rng: random.Random) -> None:
    _, url, zone = signed_tree(key, DOMAIN, records(10, rng))
    resolver = FakeResolver(zone)
    c = client(resolver)
    async with c.iterator([url], max_nodes=50) as it:
        got = [n async for n in it]
    assert len(got) == 50 and len(ids(got)) == 10
    assert c.stats.cache_hits > 0 and len(resolver.asked) < 20


async def test_records_without_an_ip_are_skipped_by_the_iterator(autojump_clock: trio.testing.MockClock, rng: random.Random, key: PrivateKey) -> None:
    plain = [ENR.build(PrivateKey.generate(rng)) for _ in range(2)]
    _, url, zone = signed_tree(key, DOMAIN, plain + records(1, rng))
    c = client(FakeResolver(zone))
    async with c.iterator([url], max_nodes=3) as it:
        got = [n async for n in it]
    assert len(ids(got)) == 1
    assert c.stats.rejected["no_endpoint"] >= 2


async def test_refusals_are_exported_as_metrics(autojump_clock: trio.testing.MockClock, key: PrivateKey,
                                                rng: random.Random) -> None:
    from p2p.metrics import ServerMetrics

    tree, url, zone = signed_tree(key, DOMAIN, records(20, rng))
    leaves = [h for h, e in tree.entries.items() if isinstance(e, ENREntry)]
    zone[f"{leaves[0]}.{DOMAIN}"] = zone[f"{leaves[1]}.{DOMAIN}"]  # another entry's content
    del zone[f"{leaves[2]}.{DOMAIN}"]
    c = client(FakeResolver(zone))
    metrics = ServerMetrics()
    metrics.watch_dnsdisc(c)
    result = await c.sync_tree(url)
    assert len(result.nodes) == 18
    assert metrics.value("p2p_dnsdisc_rejected_total", reason="hash_mismatch") == 1
    assert metrics.value("p2p_dnsdisc_lookup_failures_total", reason="nxdomain") == 1
    assert metrics.value("p2p_dnsdisc_queries_total") == c.stats.queries == len(tree.entries) + 1
    assert b"p2p_dnsdisc_nodes_total 18.0" in metrics.render()
