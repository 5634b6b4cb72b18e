"""A testnet worker in a child process answers the runner over its pipe: here, how many of its
nodes hold a given node in their tables, how many have had an answer from it, and how many of
the holders are among given nodes (what the summary reports for a missed lookup)."""

from __future__ import annotations

import os

import trio

from p2p.testnet.shard import ShardSpec
from p2p.testnet.worker import RemoteShard

NODES = 6
FILL_DEADLINE = 60.0  # seconds for 6 nodes on loopback to learn of each other; ~2 s when quiet


async def test_a_worker_counts_the_tables_that_hold_a_node() -> None:
    async with trio.open_nursery() as nursery:
        shard = await RemoteShard.open(nursery, ShardSpec(seed=7))
        try:
            boot = await shard.start_nodes([0], [])
            refs = boot + await shard.start_nodes(range(1, NODES), [boot[0].enode])
            with trio.fail_after(FILL_DEADLINE):
                while min((await shard.stats())["tables"]) < NODES - 1:
                    await trio.sleep(0.2)
            # every other node holds each node once every table is full
            held = [await shard.holders(ref.id) for ref in refs]
            assert [count for count, _, _, _ in held] == [NODES - 1] * NODES
            assert all(0 <= live <= count for count, live, _, _ in held)
            assert sum(live for _, live, _, _ in held) >= NODES  # each bonded through a Ping answered
            assert all(near == live_near == 0 for _, _, near, live_near in held)  # none named as near
            # of the nodes named as near the target, those that hold it (itself never does)
            near = [refs[1].id, refs[2].id, refs[3].id]
            _, _, held_near, live_near = await shard.holders(refs[3].id, near)
            assert held_near == 2 and 0 <= live_near <= 2
            assert await shard.holders(os.urandom(32).hex(), near) == (0, 0, 0, 0)
        finally:
            await shard.aclose()
            nursery.cancel_scope.cancel()
