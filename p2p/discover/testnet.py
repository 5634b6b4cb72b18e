"""Many discovery nodes in one process, on loopback: for tests, benchmarks and ``p2p testnet``.

Every node has its own UDP socket on 127.0.0.1 (port 0) and its own tasks, all in one nursery;
a node costs three sleeping tasks and a socket when idle (revalidation and refresh sleep on
trio timers with jitter; nothing polls), so hundreds share one process.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import trio

from p2p.crypto import PrivateKey
from p2p.discover.lookup import LookupResult
from p2p.discover.service import Discovery, DiscoveryConfig, open_discovery
from p2p.discover.table import BUCKET_SIZE
from p2p.enode import Node

START_CONCURRENCY = 16  # nodes starting at once: their first lookups are bursty


@dataclass
class LookupCheck:
    """Lookups of member IDs from other members."""

    samples: int
    found: int
    rounds: list[int]
    packets: list[int]
    seconds: list[float]

    @property
    def success_rate(self) -> float:
        return self.found / self.samples if self.samples else 0.0

    def summary(self) -> dict[str, Any]:
        n = max(1, self.samples)
        return {"samples": self.samples, "found": self.found, "success_rate": self.success_rate,
                "mean_rounds": sum(self.rounds) / n, "max_rounds": max(self.rounds, default=0),
                "mean_packets": sum(self.packets) / n, "mean_seconds": sum(self.seconds) / n}


class LocalTestnet:
    def __init__(self, nodes: list[Discovery], rng: random.Random) -> None:
        self.nodes = nodes
        self._rng = rng

    @property
    def bootnode(self) -> Discovery:
        return self.nodes[0]

    def closest_member(self, disc: Discovery) -> Node:
        me = int.from_bytes(disc.local_id, "big")
        others = (d for d in self.nodes if d is not disc)
        return min(others, key=lambda d: int.from_bytes(d.local_id, "big") ^ me).local_node

    def converged(self) -> bool:
        """Every table holds its node's closest member and at least min(16, n - 1) nodes."""
        want = min(BUCKET_SIZE, len(self.nodes) - 1)
        return all(len(d.table) >= want and self.closest_member(d).id in d.table for d in self.nodes)

    async def wait_converged(self, timeout: float, poll: float = 0.25) -> float:
        """Seconds (trio clock) until :meth:`converged`; raises trio.TooSlowError."""
        t0 = trio.current_time()
        with trio.fail_after(timeout):
            while not self.converged():
                await trio.sleep(poll)
        return trio.current_time() - t0

    async def lookup_check(self, samples: int) -> LookupCheck:
        """For ``samples`` random (searcher, target) pairs of distinct members, look the
        target's ID up from the searcher and count how often it is found."""
        check = LookupCheck(samples, 0, [], [], [])
        for _ in range(samples):
            searcher, target = self._rng.sample(self.nodes, 2)
            result: LookupResult = await searcher.lookup_detailed(target.local_id)
            check.found += result.found(target.local_id)
            check.rounds.append(result.rounds)
            check.packets.append(result.packets)
            check.seconds.append(result.seconds)
        return check


@asynccontextmanager
async def open_local_testnet(
    n: int,
    *,
    seed: int | None = None,
    host: str = "127.0.0.1",
    config: DiscoveryConfig | None = None,
    keys: Sequence[PrivateKey] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> AsyncIterator[LocalTestnet]:
    """``n`` nodes (the first is the bootnode of all others), started ``START_CONCURRENCY``
    at a time; yields once all are listening (not yet converged)."""
    rng = random.Random(seed) if seed is not None else random.Random()
    if keys is None:
        keys = [PrivateKey.generate(rng) for _ in range(n)]
    base = config or DiscoveryConfig()
    nodes: list[Discovery | None] = [None] * n

    async with trio.open_nursery() as nursery:

        async def run(i: int, boot: tuple[Node, ...],
                      task_status: trio.TaskStatus[Discovery] = trio.TASK_STATUS_IGNORED) -> None:
            cfg = replace(base, rng=random.Random(rng.getrandbits(64)))
            async with open_discovery(keys[i], (host, 0), bootnodes=boot, config=cfg) as disc:
                task_status.started(disc)
                await trio.sleep_forever()

        first: Discovery = await nursery.start(run, 0, ())
        nodes[0] = first
        boot = (first.local_node,)
        limiter = trio.CapacityLimiter(START_CONCURRENCY)

        async def start(i: int) -> None:
            async with limiter:
                nodes[i] = await nursery.start(run, i, boot)
            if on_start is not None:
                on_start(i)

        async with trio.open_nursery() as starting:
            for i in range(1, n):
                starting.start_soon(start, i)
        started = [d for d in nodes if d is not None]
        yield LocalTestnet(started, rng)
        nursery.cancel_scope.cancel()


__all__ = ["LocalTestnet", "LookupCheck", "open_local_testnet"]
