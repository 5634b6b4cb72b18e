"""``p2p bench nodedb``: bulk insert rate and ``query_seeds(30, ...)`` latency of the node database.

Baseline, measured in the same run: raw plyvel puts of exactly the bytes the database
writes (keys and values computed before the clock starts), one ``put`` per pair and one
write batch of all pairs. Our figure includes building each record's RLP from a ``Node``,
the stored-seq check of every node and the write, so the ratio is what the database's
own work costs on top of LevelDB.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import plyvel

from p2p.bench._stats import summary
from p2p.crypto import PrivateKey
from p2p.enode.node import Node
from p2p.enode.nodedb import LEVELDB_OPTIONS, NodeDB, NodeDBLimits, encode_record

DEFAULT_COUNT = 100_000  # the workload
QUICK_COUNT = 20_000
SEED_QUERY = 30  # nodes per query_seeds, as discovery asks at start-up
SEED_QUERIES = 300  # queries timed per run; the median is the figure
QUICK_SEED_QUERIES = 100
SEED_MAX_AGE = 5 * 24 * 3600.0
GOAL_INSERT_PER_S = 50_000.0
GOAL_SEEDS_MS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodedb-count", type=int, default=None, metavar="N",
                        help=f"nodes to insert (default {DEFAULT_COUNT}, --quick {QUICK_COUNT})")


def _limits(nodes: list[Node]) -> NodeDBLimits:
    """Room for every node: the figures are of storing and seeking, not of the eviction bound."""
    return NodeDBLimits(max_unprotected=len(nodes))


def _make_nodes(count: int, seed: int = 2024) -> list[Node]:
    rng = random.Random(seed)
    nodes = []
    for i in range(count):
        key = PrivateKey.generate(rng)
        ip = ipaddress.IPv4Address(0x7F000000 + 1 + i % 0xFFFFFD)  # 127.0.0.0/8: loopback only
        nodes.append(Node(key.public_key, ip, 30303 + i % 1000, 30303 + i % 1000))
    return nodes


def _time_ours(path: str, nodes: list[Node]) -> float:
    with NodeDB.open(path, limits=_limits(nodes)) as db:
        start = time.perf_counter()
        db.update_nodes(nodes)
        elapsed = time.perf_counter() - start
    return len(nodes) / elapsed


def _time_ours_single(path: str, nodes: list[Node]) -> float:
    with NodeDB.open(path, limits=_limits(nodes)) as db:
        start = time.perf_counter()
        for node in nodes:
            db.update_node(node)
        elapsed = time.perf_counter() - start
    return len(nodes) / elapsed


def _time_ours_memory(nodes: list[Node]) -> float:
    with NodeDB.open(None, limits=_limits(nodes)) as db:
        start = time.perf_counter()
        db.update_nodes(nodes)
        elapsed = time.perf_counter() - start
    return len(nodes) / elapsed


def _time_raw_puts(path: str, pairs: list[tuple[bytes, bytes]]) -> float:
    db = plyvel.DB(path, create_if_missing=True, **LEVELDB_OPTIONS)
    try:
        put = db.put
        start = time.perf_counter()
        for key, value in pairs:
            put(key, value)
        elapsed = time.perf_counter() - start
    finally:
        db.close()
    return len(pairs) / elapsed


def _time_raw_batch(path: str, pairs: list[tuple[bytes, bytes]]) -> float:
    db = plyvel.DB(path, create_if_missing=True, **LEVELDB_OPTIONS)
    try:
        start = time.perf_counter()
        with db.write_batch() as batch:
            for key, value in pairs:
                batch.put(key, value)
        elapsed = time.perf_counter() - start
    finally:
        db.close()
    return len(pairs) / elapsed


def _seed_query_ms(path: str, nodes: list[Node], queries: int, stale_fraction: float) -> list[float]:
    """Per-query milliseconds of query_seeds on a store of ``nodes`` with that share of stale pongs."""
    now = time.time()
    with NodeDB.open(path, rng=random.Random(5), limits=_limits(nodes)) as db:
        db.update_nodes(nodes)
        cut = int(len(nodes) * stale_fraction)
        for i, node in enumerate(nodes):
            db.update_last_pong_received(node.id, node.ip, now - (10 * SEED_MAX_AGE if i < cut else 60.0))
        db.set_self(nodes[-1].id)
        times = []
        for _ in range(queries):
            start = time.perf_counter()
            got = db.query_seeds(SEED_QUERY, SEED_MAX_AGE)
            times.append((time.perf_counter() - start) * 1000)
            if len(got) < min(SEED_QUERY, len(nodes) - cut - 1) and stale_fraction < 0.9:
                raise RuntimeError(f"query_seeds returned only {len(got)} nodes")
    return times


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False))
    count = getattr(args, "nodedb_count", None) or (QUICK_COUNT if quick else DEFAULT_COUNT)
    runs = max(1, int(getattr(args, "repeat", 3)))
    queries = QUICK_SEED_QUERIES if quick else SEED_QUERIES

    nodes = _make_nodes(count)
    pairs = [(b"n:" + node.id + b":v4", encode_record(node)) for node in nodes]
    single = nodes[: max(1, count // 10)]

    ours, ours_single, memory, raw_puts, raw_batch = [], [], [], [], []
    seeds_ms, seeds_half_stale_ms = [], []
    base = Path(tempfile.mkdtemp(prefix="p2p-bench-nodedb-"))
    try:
        for r in range(runs):  # interleaved, so that drift of the machine hits both sides alike
            ours.append(_time_ours(str(base / f"ours{r}"), nodes))
            raw_puts.append(_time_raw_puts(str(base / f"puts{r}"), pairs))
            raw_batch.append(_time_raw_batch(str(base / f"batch{r}"), pairs))
            ours_single.append(_time_ours_single(str(base / f"single{r}"), single))
            memory.append(_time_ours_memory(nodes))
            seeds_ms.append(statistics.median(_seed_query_ms(str(base / f"seeds{r}"), nodes, queries, 0.0)))
            seeds_half_stale_ms.append(
                statistics.median(_seed_query_ms(str(base / f"stale{r}"), nodes, queries, 0.5)))
            for name in (f"ours{r}", f"puts{r}", f"batch{r}", f"single{r}", f"seeds{r}", f"stale{r}"):
                shutil.rmtree(base / name, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    insert = summary(ours)
    seeds = summary(seeds_ms)
    return {
        "nodes": count,
        "insert_nodes_per_s": insert,
        "insert_single_nodes_per_s": summary(ours_single),
        "insert_memory_nodes_per_s": summary(memory),
        "baseline_raw_puts_per_s": summary(raw_puts),
        "baseline_raw_batch_per_s": summary(raw_batch),
        "insert_ratio_to_raw_puts": summary([o / b for o, b in zip(ours, raw_puts)]),
        "insert_ratio_to_raw_batch": summary([o / b for o, b in zip(ours, raw_batch)]),
        "seeds_query_ms": seeds,
        "seeds_query_half_stale_ms": summary(seeds_half_stale_ms),
        "seeds_per_query": SEED_QUERY,
        "seed_queries_per_run": queries,
        "goals": {
            "insert_nodes_per_s": GOAL_INSERT_PER_S,
            "seeds_query_ms": GOAL_SEEDS_MS,
            "insert_met": insert["median"] >= GOAL_INSERT_PER_S,
            "seeds_met": seeds["median"] < GOAL_SEEDS_MS,
        },
    }
