"""``p2p bench crawl``: how fast ``p2p crawl`` verifies the nodes of a loopback testnet.

A one-process testnet of ``--crawl-nodes`` discovery nodes (500; 100 with ``--quick``) is
started and left to converge; then each run crawls it from a fresh crawler (new key, so every
node is pinged, bonded and asked for its record) until the lookups stop finding anything new.
Figures: ``verified_per_s``, nodes that answered their check per second of crawling (median
over the runs), and for each run the nodes found and alive and the crawl's length. The
testnet's nodes answer from the same process and core as the crawler: on a real network the
crawler's share of the CPU is the whole process, and its rate is bound by round trips instead.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import trio

from p2p.bench._stats import summary

TESTNET_DEADLINE = 300.0  # seconds the testnet may take to converge before the bench gives up
CRAWL_DEADLINE = 300.0  # seconds one crawl run may take
QUIET_LOOKUPS = 3  # a crawl ends when this many lookups in a row found nothing new
CRAWLER_LOOKUPS = 4  # the crawler's own lookup slots: the testnet's refreshes do not hold them up


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--crawl-nodes", type=int, default=500, metavar="N",
                        help="testnet size for the crawl benchmark (quick mode: 100)")


async def _bench(n: int, runs: int) -> dict[str, Any]:
    from p2p.crawl import CrawlConfig, Crawler
    from p2p.crypto import PrivateKey
    from p2p.discover import DiscoveryConfig, open_discovery
    from p2p.discover.testnet import open_local_testnet

    t0 = time.perf_counter()
    async with open_local_testnet(n) as net:
        try:
            await net.wait_converged(TESTNET_DEADLINE)
        except trio.TooSlowError:
            return {"converged": False, "testnet_seconds": time.perf_counter() - t0}
        testnet_seconds = time.perf_counter() - t0
        members = {d.local_id for d in net.nodes}
        config = CrawlConfig(seconds=CRAWL_DEADLINE, quiet_lookups=QUIET_LOOKUPS, revalidate_interval=0)
        out = []
        for _ in range(runs):
            disc_config = DiscoveryConfig(refresh_on_start=False, revalidate=False,
                                          lookup_limiter=trio.CapacityLimiter(CRAWLER_LOOKUPS))
            async with open_discovery(PrivateKey.generate(), ("127.0.0.1", 0),
                                      bootnodes=[net.bootnode.local_node], config=disc_config) as disc:
                crawler = Crawler(disc, {}, config)
                w0 = time.perf_counter()
                nodes = await crawler.run()
                wall = time.perf_counter() - w0
            s = crawler.stats
            out.append({"found": s.found, "alive": s.alive, "checked": s.checked, "in_set": len(nodes),
                        "members_found": len(set(nodes) & members), "seconds": round(wall, 3),
                        "lookups": s.lookups, "verified_per_s": s.alive / wall if wall > 0 else 0.0})
    return {"converged": True, "testnet_seconds": testnet_seconds, "runs": out}


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False))
    n = 100 if quick else int(getattr(args, "crawl_nodes", 500))
    runs = max(1, min(3, int(getattr(args, "repeat", 1))))
    result = trio.run(_bench, n, runs)
    if not result["converged"]:
        return {"nodes": n, **result}
    rates = [r["verified_per_s"] for r in result["runs"]]
    return {"nodes": n, "verified_per_s": summary(rates), "testnet_seconds": result["testnet_seconds"],
            "runs": result["runs"]}
