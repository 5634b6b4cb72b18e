"""``p2p bench dns``: reading a 10,000-node EIP-1459 tree from a local authoritative DNS server
(NSD on 127.0.0.1): nodes per second and queries issued, for a whole-tree sync (as ``p2p dns
resolve``) and for the random-walk iterator that a dialer uses, with the rate limit lifted so
that the figure is of our client and the server, not of the limit.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import time
from typing import Any

import trio

from p2p.bench._stats import summary
from p2p.crypto import PrivateKey
from p2p.dnsdisc import DNSClient, make_tree
from p2p.dnsdisc.zonefile import render_zone
from p2p.enode import ENR
from p2p.testing.nsd import open_nsd

DEFAULT_COUNT = 10_000  # the workload
QUICK_COUNT = 1_000
DOMAIN = "bench.nodes.example.org"
ITERATOR_SHARE = 10  # the iterator is timed over the first 1/10 of the nodes (random walk: repeats later)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dns-count", type=int, default=None, metavar="N",
                        help=f"nodes in the tree (default {DEFAULT_COUNT}, --quick {QUICK_COUNT})")


def _records(count: int, seed: int = 2024) -> list[ENR]:
    rng = random.Random(seed)
    return [ENR.build(PrivateKey.generate(rng), seq=1, ip=ipaddress.IPv4Address(0x7F000001 + i % 0xFFFFFD),
                      tcp=30303, udp=30303) for i in range(count)]


async def _measure(url: str, port: int, count: int, repeat: int) -> dict[str, Any]:
    sync_rates, sync_queries, iter_rates, iter_queries = [], [], [], []
    for _ in range(repeat):
        client = DNSClient(server=("127.0.0.1", port), rate_limit=None)
        start = time.perf_counter()
        result = await client.sync_tree(url)
        elapsed = time.perf_counter() - start
        if len(result.nodes) != count:
            raise RuntimeError(f"synced {len(result.nodes)} of {count} nodes: {result.errors[:3]}")
        sync_rates.append(count / elapsed)
        sync_queries.append(float(result.queries))

        client = DNSClient(server=("127.0.0.1", port), rate_limit=None)
        want = max(1, count // ITERATOR_SHARE)
        seen: set[bytes] = set()
        start = time.perf_counter()
        async with client.iterator([url]) as it:
            async for node in it:
                seen.add(bytes(node.id))
                if len(seen) >= want:
                    break
        iter_rates.append(want / (time.perf_counter() - start))
        iter_queries.append(float(client.stats.queries))
    return {
        "sync": {"nodes_per_s": summary(sync_rates), "queries": summary(sync_queries)},
        "iterator": {"distinct_nodes": want, "nodes_per_s": summary(iter_rates), "queries": summary(iter_queries)},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    count = args.dns_count or (QUICK_COUNT if args.quick else DEFAULT_COUNT)
    key = PrivateKey.generate(random.Random(1))
    start = time.perf_counter()
    tree, url = make_tree(1, _records(count), []).sign(key, DOMAIN)
    build_s = time.perf_counter() - start
    records = tree.to_txt(DOMAIN)
    zone = render_zone(DOMAIN, records, tree.seq)

    async def main() -> dict[str, Any]:
        async with open_nsd(DOMAIN, zone) as port:
            return await _measure(url, port, count, args.repeat)

    result = trio.run(main)
    return {"nodes": count, "txt_records": len(records), "build_and_sign_s": round(build_s, 3), **result}
