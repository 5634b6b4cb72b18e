"""The crawler against an in-process loopback testnet: it finds and checks (nearly) every node,
and a crawl with an existing set moves the scores as go-ethereum's does."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from p2p.crawl import CrawlConfig, Crawler
from p2p.crypto import PrivateKey
from p2p.discover import DiscoveryConfig, open_discovery
from p2p.discover.service import Discovery
from p2p.discover.testnet import open_local_testnet
from p2p.enode import Node
from p2p.nodeset import dumps, loads

NODES = 30
CONFIG = CrawlConfig(seconds=60, quiet_lookups=3, revalidate_interval=0)
LEAN = DiscoveryConfig(refresh_on_start=False, revalidate=False)


@asynccontextmanager
async def crawler_disc(boot: Node) -> AsyncIterator[Discovery]:
    async with open_discovery(PrivateKey.generate(), ("127.0.0.1", 0), bootnodes=[boot], config=LEAN) as disc:
        yield disc


async def test_crawl_finds_every_node_and_scores_follow_liveness() -> None:
    rng = random.Random(12)  # not the testnet's seed: keys of its own
    with trio.fail_after(150):
        async with open_local_testnet(NODES - 1, seed=11) as net:
            boot = net.bootnode.local_node
            # One more node, outside the testnet's nursery, so that the test can stop it.
            async with trio.open_nursery() as nursery:
                leaving_scope = trio.CancelScope()

                async def leaving_node(task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
                    with leaving_scope:
                        async with open_discovery(PrivateKey.generate(rng), ("127.0.0.1", 0), bootnodes=[boot]) as d:
                            task_status.started(d.local_node)
                            await trio.sleep_forever()

                leaving: Node = await nursery.start(leaving_node)
                await net.wait_converged(60)
                async with crawler_disc(boot) as disc:
                    t0 = trio.current_time()
                    first = await Crawler(disc, {}, CONFIG).run()
                    took = trio.current_time() - t0
                    ids = {d.local_id for d in net.nodes} | {leaving.id}
                    assert len(set(first) & ids) >= NODES - 2 and set(first) <= ids
                    assert took < 60  # ended when quiet, well before the deadline
                    assert all(e.score == 1 and e.first_response == e.last_response == e.last_check
                               for e in first.values())
                    second = await Crawler(disc, loads(dumps(first)), CONFIG).run()
                    assert set(second) >= set(first)
                    assert all(second[k].score == 2 for k in first)
                    leaving_scope.cancel()
                    await trio.sleep(0.1)
                    third = await Crawler(disc, second, CONFIG).run()
                    assert leaving.id in first
                    assert third[leaving.id].score == 1  # halved: it did not answer
                    assert third[leaving.id].last_response == second[leaving.id].last_response
                    assert all(third[k].score == 3 for k in first if k != leaving.id)
                    fourth = await Crawler(disc, third, CONFIG).run()
                    assert leaving.id not in fourth  # score 0: dropped


async def test_crawl_is_bounded_by_max_nodes_and_time() -> None:
    with trio.fail_after(60):
        async with open_local_testnet(12, seed=5) as net:
            await net.wait_converged(30)
            async with crawler_disc(net.bootnode.local_node) as disc:
                crawler = Crawler(disc, {}, CrawlConfig(seconds=3, max_nodes=4, revalidate_interval=0))
                t0 = trio.current_time()
                out = await crawler.run()
                assert trio.current_time() - t0 < 6  # no quiet end asked: the deadline ends it
                assert crawler.stats.found == 4 and len(out) <= 4 and crawler.stats.dropped_over_limit > 0
