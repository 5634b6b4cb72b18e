"""Whole discovery nodes (``open_discovery``) on the in-memory network under trio's MockClock:
bonding, table filling, lookups and revalidation of many nodes, in virtual time."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace

import trio
import trio.testing

from p2p.discover import Discovery, DiscoveryConfig, open_discovery
from p2p.discover.table import BUCKET_SIZE
from p2p.discover.transport import MemoryEndpoint, MemoryNetwork
from tests.discover.conftest import make_keys

PORT = 30303
# Wall seconds allowed for a whole network's run: generous for a loaded 2-core machine.
WALL_BUDGET = 60.0


class MemNet:
    def __init__(self, nodes: list[Discovery], endpoints: list[MemoryEndpoint]) -> None:
        self.nodes = nodes
        self.endpoints = endpoints

    def closest_member(self, disc: Discovery, among: Sequence[Discovery]) -> bytes:
        me = int.from_bytes(disc.local_id, "big")
        others = [d for d in among if d is not disc]
        return min(others, key=lambda d: int.from_bytes(d.local_id, "big") ^ me).local_id

    def converged(self, among: Sequence[Discovery] | None = None) -> bool:
        """Every table holds its node's closest member and at least min(16, n - 1) nodes."""
        members = list(among or self.nodes)
        want = min(BUCKET_SIZE, len(members) - 1)
        return all(len(d.table) >= want and self.closest_member(d, members) in d.table for d in members)

    async def wait(self, cond: object, timeout: float, poll: float = 1.0) -> float:
        """Virtual seconds until ``cond()``; raises trio.TooSlowError after ``timeout``."""
        t0 = trio.current_time()
        with trio.fail_after(timeout):
            while not cond():  # type: ignore[operator]
                await trio.sleep(poll)
        return trio.current_time() - t0


@asynccontextmanager
async def memnet(n: int, config: DiscoveryConfig, *, seed: int = 1,
                 net: MemoryNetwork | None = None) -> AsyncIterator[MemNet]:
    """``n`` nodes at 127.0.x.y:30303 on one in-memory network, each bootstrapped from node 0."""
    net = net or MemoryNetwork()
    keys = make_keys(n, seed=seed)
    nodes: list[Discovery] = []
    endpoints: list[MemoryEndpoint] = []
    async with AsyncExitStack() as stack:
        for i in range(n):
            ep = net.endpoint(f"127.0.{i // 250}.{i % 250 + 1}", PORT)
            stack.callback(ep.close)
            boot = (nodes[0].local_node,) if i else ()
            cfg = replace(config, rng=random.Random(seed * 1000 + i))
            nodes.append(await stack.enter_async_context(
                open_discovery(keys[i], bootnodes=boot, config=cfg, transport=ep)))
            endpoints.append(ep)
        yield MemNet(nodes, endpoints)


V4_NET = DiscoveryConfig()


async def test_100_v4_nodes_converge_and_find_each_other(autojump_clock: trio.testing.MockClock) -> None:
    wall0, t0 = time.monotonic(), trio.current_time()
    async with memnet(100, V4_NET, seed=7) as mn:
        await mn.wait(mn.converged, timeout=600)
        virtual = trio.current_time() - t0
        rng = random.Random(3)
        for _ in range(10):
            searcher, target = rng.sample(mn.nodes, 2)
            result = await searcher.lookup_detailed(target.local_id)
            assert result.found(target.local_id)
        # bonding happened both ways: every node answered and was answered over v4
        assert all(d.stats.packets_in["pong"] > 0 and d.stats.packets_in["ping"] > 0 for d in mn.nodes)
    wall = time.monotonic() - wall0
    print(f"100 v4 nodes converged in {virtual:.1f} virtual s; whole test {wall:.1f} wall s")
    assert wall < WALL_BUDGET


async def test_silent_v4_node_is_evicted_by_revalidation(autojump_clock: trio.testing.MockClock) -> None:
    async with memnet(20, V4_NET, seed=11) as mn:
        await mn.wait(mn.converged, timeout=600)
        silent = mn.nodes[5]
        holders = [d for d in mn.nodes if silent.local_id in d.table]
        assert len(holders) >= BUCKET_SIZE
        mn.endpoints[5].close()  # it neither hears nor answers any more
        alive = [d for d in mn.nodes if d is not silent]
        virtual = await mn.wait(lambda: all(silent.local_id not in d.table for d in alive), timeout=1800)
        print(f"silent node evicted from {len(holders)} tables in {virtual:.0f} virtual s")
        # the others are still there for one another
        assert all(len(d.table) >= BUCKET_SIZE for d in alive)


V5_ONLY = DiscoveryConfig(v4=False, v5=True)


async def test_v5_only_nodes_converge_find_each_other_and_send_no_v4(
        autojump_clock: trio.testing.MockClock) -> None:
    wall0, t0 = time.monotonic(), trio.current_time()
    async with memnet(50, V5_ONLY, seed=5) as mn:
        await mn.wait(mn.converged, timeout=600)
        virtual = trio.current_time() - t0
        rng = random.Random(4)
        for _ in range(10):
            searcher, target = rng.sample(mn.nodes, 2)
            result = await searcher.lookup_detailed(target.local_id)
            assert result.found(target.local_id)
        for d in mn.nodes:
            assert d.v4 is None and d.v5 is not None
            assert sum(d.stats.packets_out.values()) == 0  # not one v4 packet
            # a node whose table filled from others' requests alone may never have asked one
            assert sum(d.v5.stats.packets_in.values()) > 0
        answered = [d for d in mn.nodes if d.v5 is not None and d.v5.stats.packets_in["pong"] + d.v5.stats.packets_in["nodes"]]
        assert len(answered) >= len(mn.nodes) - 2
    wall = time.monotonic() - wall0
    print(f"50 v5-only nodes converged in {virtual:.1f} virtual s; whole test {wall:.1f} wall s")
    assert wall < WALL_BUDGET


async def test_silent_v5_only_node_is_evicted_by_v5_revalidation(autojump_clock: trio.testing.MockClock) -> None:
    async with memnet(24, V5_ONLY, seed=13) as mn:
        await mn.wait(mn.converged, timeout=600)
        silent = mn.nodes[3]
        mn.endpoints[3].close()
        alive = [d for d in mn.nodes if d is not silent]
        await mn.wait(lambda: all(silent.local_id not in d.table for d in alive), timeout=1800)
        assert all(len(d.table) >= BUCKET_SIZE for d in alive)
        assert sum(d.v5.stats.packets_out["ping"] for d in alive if d.v5 is not None) > 0


DUAL = DiscoveryConfig(v5=True)


async def test_v5_only_nodes_in_a_shared_table_survive_revalidation(autojump_clock: trio.testing.MockClock) -> None:
    """A node running both protocols keeps v5-only nodes: they are revalidated over v5 (a v4
    Ping they would ignore used to evict them), and v4 lookups never query them."""
    net = MemoryNetwork()
    async with memnet(12, V5_ONLY, seed=17, net=net) as v5net:
        await v5net.wait(v5net.converged, timeout=600)
        ep = net.endpoint("127.0.1.1", PORT)
        key = make_keys(1, seed=18)[0]
        async with open_discovery(key, bootnodes=[v5net.nodes[0].local_node], config=DUAL, transport=ep) as dual:
            v5_ids = {d.local_id for d in v5net.nodes}
            await v5net.wait(lambda: len(v5_ids & set(n.id for n in dual.table.nodes())) >= 8, timeout=600)
            held = v5_ids & {n.id for n in dual.table.nodes()}
            for _ in range(3):
                # Reseeding from the node database, which does not say which protocol a node
                # speaks, must not mark them as v4 nodes (v4 lookups would then drop them).
                await dual.refresh()
                assert all(dual.table.protocols(i) == {"v5"} for i in held)
            await trio.sleep(300)  # ~60 revalidations
            assert held <= {n.id for n in dual.table.nodes()}
            assert dual.v5 is not None and dual.v5.stats.packets_out["ping"] >= 10
            assert dual.stats.packets_out.get("find_node", 0) == 0  # no v4 lookup asked them
            assert all(dual.table.protocols(i) == {"v5"} for i in held)
        ep.close()


async def test_v5_contacts_seed_the_table_after_a_restart(autojump_clock: trio.testing.MockClock) -> None:
    from p2p.enode.nodedb import NodeDB

    net = MemoryNetwork()
    async with memnet(6, V5_ONLY, seed=21, net=net) as v5net:
        await v5net.wait(v5net.converged, timeout=600)
        key = make_keys(1, seed=22)[0]
        with NodeDB.open(None) as db:
            ep = net.endpoint("127.0.1.1", PORT)
            async with open_discovery(key, bootnodes=[v5net.nodes[0].local_node], config=V5_ONLY,
                                      nodedb=db, transport=ep) as d:
                await v5net.wait(lambda: len(d.table) >= 5, timeout=600)
                known = {n.id for n in d.table.nodes()}
            ep.close()
            ep = net.endpoint("127.0.1.1", PORT)
            async with open_discovery(key, config=V5_ONLY, nodedb=db, transport=ep) as d:
                assert known <= {n.id for n in d.table.nodes()}  # no bootnode: all from the database
                assert {via for _, via in d.table.members()} == {"v5"}
            ep.close()


async def test_nodes_of_one_process_can_share_their_node_databases_copies(
        autojump_clock: trio.testing.MockClock) -> None:
    from p2p.enode.nodedb import SharedBytes

    shared = SharedBytes()
    async with memnet(20, replace(V4_NET, nodedb_shared=shared), seed=19) as mn:
        await mn.wait(mn.converged, timeout=600)
        # each of the 20 nodes is stored by 16 or more databases; the copies shared grow with
        # the nodes (a record, its key, the keys of its ping and pong times, its IP), not with
        # the databases that store them
        stored = sum(sum(1 for _ in d.nodedb.iter_nodes()) for d in mn.nodes)
        assert stored >= 20 * BUCKET_SIZE
        assert 2 * len(mn.nodes) <= len(shared) <= 8 * len(mn.nodes)


async def test_a_node_looks_itself_up_again_as_its_table_doubles(autojump_clock: trio.testing.MockClock) -> None:
    """A node that joined a young network looks itself up again once its table has doubled
    (from two buckets' worth), instead of waiting half an hour for its refresh; a table that
    stops growing brings no more lookups."""
    from p2p.discover.table import BUCKET_SIZE
    from p2p.discover.tablemaint import REGROWN_FACTOR

    cfg = replace(V4_NET, small_table_refresh=None, refresh_random_lookups=0, revalidate=False)
    net = MemoryNetwork()
    keys = make_keys(70, seed=23)
    async with AsyncExitStack() as stack:
        early: list[Discovery] = []
        for i in range(2):
            ep = net.endpoint(f"127.0.2.{i + 1}", PORT)
            boot = (early[0].local_node,) if early else ()
            early.append(await stack.enter_async_context(
                open_discovery(keys[i], bootnodes=boot, config=replace(cfg, rng=random.Random(i)), transport=ep)))
        joiner = early[1]
        await trio.sleep(5)
        assert joiner.maintenance.self_lookups == 1 and len(joiner.table) < BUCKET_SIZE
        # 68 more nodes join through the early node: their pings fill its table
        for i in range(2, 70):
            ep = net.endpoint(f"127.0.2.{i + 1}", PORT)
            await stack.enter_async_context(open_discovery(
                keys[i], bootnodes=(joiner.local_node,), config=replace(cfg, rng=random.Random(i)), transport=ep))
        t0 = trio.current_time()
        with trio.fail_after(120):
            while joiner.maintenance.self_lookups < 2:
                await trio.sleep(1)
        assert trio.current_time() - t0 < cfg.refresh_interval / 10
        assert len(joiner.table) >= REGROWN_FACTOR * BUCKET_SIZE
        await trio.sleep(60)  # let the joins settle
        settled = joiner.maintenance.self_lookups
        size = len(joiner.table)
        await trio.sleep(600)
        assert len(joiner.table) < REGROWN_FACTOR * size  # 70 nodes: it cannot double again
        assert joiner.maintenance.self_lookups == settled
        print(f"self lookups {settled}, table {size} -> {len(joiner.table)}")
