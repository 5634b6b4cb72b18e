"""Crawl a discovery v4 network into a node set (go-ethereum's ``devp2p discv4 crawl``).

Nodes come from the input set (revalidated first), from random lookups, and from a FINDNODE
sent to every node that answered; each node is checked once per run with an ENR request (a
ping first when we have no bond), and its entry updated by :func:`p2p.nodeset.check_result`:
score up when it answered, halved when not, gone at 0.

Everything is bounded: ``concurrency`` checks at a time, at most ``max_nodes`` distinct nodes
seen (more are dropped and counted), and the whole crawl by ``seconds``. With
``quiet_lookups``, the crawl also ends once that many lookups in a row found nothing new and
no check is left, which is how a small network's crawl ends well before its deadline.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import trio

from p2p.discover.errors import DiscoveryError
from p2p.enode import ENR, Node, NodeID
from p2p.nodeset import ADDED, REMOVED, SKIP_INCOMPATIBLE, SKIP_RECENT, UPDATED, NodeEntry, check_result, due, \
    now_utc

log = logging.getLogger(__name__)

CRAWL_CONCURRENCY = 16  # checks in flight: each costs up to a ping, an ENR request and a FINDNODE
MAX_CRAWL_NODES = 100_000  # distinct nodes one crawl looks at; mainnet's discv4 has ~20-30k
REVALIDATE_INTERVAL = 600.0  # go-ethereum's crawl: a node checked this recently is not asked again
QUIET_LOOKUPS = 0  # 0: crawl until the deadline, as go-ethereum; N: stop after N fruitless lookups
LOOKUP_PAUSE = 0.1  # between two random lookups: the checks, not the lookups, are the crawl's work
PROGRESS_INTERVAL = 1.0  # seconds between two progress reports


@dataclass(frozen=True, slots=True)
class CrawlConfig:
    seconds: float = 1800.0  # go-ethereum's crawl timeout default is 30 minutes
    concurrency: int = CRAWL_CONCURRENCY
    max_nodes: int = MAX_CRAWL_NODES
    revalidate_interval: float = REVALIDATE_INTERVAL
    quiet_lookups: int = QUIET_LOOKUPS
    lookup_pause: float = LOOKUP_PAUSE
    progress_interval: float = PROGRESS_INTERVAL

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_nodes < 1:
            raise ValueError("concurrency and max_nodes must be 1 or more")
        if self.seconds <= 0 or self.revalidate_interval < 0:
            raise ValueError("seconds must be above 0 and revalidate_interval 0 or more")


@dataclass(slots=True)
class CrawlStats:
    found: int = 0  # distinct nodes seen (input set included)
    checked: int = 0  # liveness checks made
    alive: int = 0  # checks answered
    added: int = 0
    updated: int = 0
    removed: int = 0
    skipped_recent: int = 0
    skipped_incompatible: int = 0
    dropped_over_limit: int = 0  # nodes not looked at because max_nodes were seen
    lookups: int = 0
    findnodes: int = 0
    elapsed: float = 0.0
    queued: int = 0

    @property
    def rate(self) -> float:
        """Checks per second so far."""
        return self.checked / self.elapsed if self.elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"found": self.found, "checked": self.checked, "alive": self.alive, "added": self.added,
                "updated": self.updated, "removed": self.removed, "skipped_recent": self.skipped_recent,
                "skipped_incompatible": self.skipped_incompatible, "dropped_over_limit": self.dropped_over_limit,
                "lookups": self.lookups, "findnodes": self.findnodes, "queued": self.queued,
                "elapsed_seconds": round(self.elapsed, 3), "checks_per_second": round(self.rate, 2)}


_COUNTERS = {ADDED: "added", UPDATED: "updated", REMOVED: "removed", SKIP_RECENT: "skipped_recent",
             SKIP_INCOMPATIBLE: "skipped_incompatible"}


class Crawler:
    """One crawl through ``disc`` (a running :class:`p2p.discover.Discovery`)."""

    def __init__(self, disc: Any, nodes: Mapping[NodeID, NodeEntry] = {}, config: CrawlConfig = CrawlConfig(),
                 *, now: Callable[[], datetime] = now_utc, rng: random.Random | None = None) -> None:
        self.disc = disc
        self.config = config
        self.input = dict(nodes)
        self.output = dict(nodes)  # input nodes that fail their checks leave it
        self.stats = CrawlStats()
        self._now = now
        self._rng = rng or random.SystemRandom()
        self._seen: set[NodeID] = set()
        self._send, self._recv = trio.open_memory_channel[Node](config.max_nodes)
        self._busy = 0
        self._changed = trio.Event()  # set (and replaced) each time a check ends
        self._t0 = 0.0

    def _offer(self, node: Node) -> None:
        if node.id in self._seen or node.id == self.disc.local_id:
            return
        if len(self._seen) >= self.config.max_nodes:
            self.stats.dropped_over_limit += 1
            return
        self._seen.add(node.id)
        self.stats.found += 1
        self._send.send_nowait(node)  # never blocks: the channel holds max_nodes, seen bounds what enters
        self.stats.queued += 1

    async def run(self, on_progress: Callable[[CrawlStats], None] | None = None) -> dict[NodeID, NodeEntry]:
        """Crawl until the deadline (or quiet, see :class:`CrawlConfig`); the updated set."""
        self._t0 = trio.current_time()
        for entry in self.input.values():
            try:
                self._offer(entry.node)
            except ValueError:  # a record without an address cannot be checked: keep it as it is
                continue
        try:
            with trio.move_on_after(self.config.seconds):
                async with trio.open_nursery() as nursery:
                    for _ in range(self.config.concurrency):
                        nursery.start_soon(self._worker)
                    nursery.start_soon(self._lookups, nursery.cancel_scope)
                    if on_progress is not None:
                        nursery.start_soon(self._report, on_progress)
        finally:
            self._tick()  # also when stopped: the figures of the part that ran
        return self.output

    def _tick(self) -> None:
        self.stats.elapsed = trio.current_time() - self._t0

    async def _report(self, on_progress: Callable[[CrawlStats], None]) -> None:
        while True:
            await trio.sleep(self.config.progress_interval)
            self._tick()
            on_progress(self.stats)

    async def _lookups(self, done: trio.CancelScope) -> None:
        """Random lookups feed the queue; with quiet_lookups, end the crawl when they stop
        finding anything and every check is done."""
        quiet = 0
        while True:
            before = self.stats.found
            try:
                found = await self.disc.lookup()
            except (DiscoveryError, OSError) as exc:
                log.debug("crawl lookup failed: %s", exc)
                found = []
            self.stats.lookups += 1
            for node in found:
                self._offer(node)
            quiet = quiet + 1 if self.stats.found == before else 0
            if self.config.quiet_lookups and quiet >= self.config.quiet_lookups:
                while self.stats.queued or self._busy:
                    await self._changed.wait()
                if self.stats.found == before:
                    done.cancel()
                    return
                quiet = 0
            await trio.sleep(self.config.lookup_pause)

    async def _worker(self) -> None:
        async for node in self._recv:
            self.stats.queued -= 1
            self._busy += 1
            try:
                await self._check(node)
            finally:
                self._busy -= 1
                self._changed.set()
                self._changed = trio.Event()

    async def _check(self, node: Node) -> None:
        entry = self.output.get(node.id)
        now = self._now()
        if not due(entry, now, self.config.revalidate_interval):
            self.stats.skipped_recent += 1
            return
        if entry is not None and entry.record.seq > (node.enr.seq if node.enr is not None else -1):
            node = entry.node  # the address its newest record gives
        record: ENR | None
        try:
            record = await self.disc.request_enr(node)
        except (DiscoveryError, OSError) as exc:  # OSError: an address our socket cannot reach
            log.debug("crawl: %s did not answer: %s", node.id.short(), exc)
            record = None
        self.stats.checked += 1
        updated, status = check_result(entry, record, now, self.config.revalidate_interval)
        setattr(self.stats, _COUNTERS[status], getattr(self.stats, _COUNTERS[status]) + 1)
        if updated is None:
            self.output.pop(node.id, None)
        else:
            self.output[node.id] = updated
        if record is None:
            return
        self.stats.alive += 1
        # It answered: ask it for its neighbours of a random target, the crawl's other source.
        try:
            self.stats.findnodes += 1
            for found in await self.disc.find_node(node, self._rng.randbytes(64)):
                self._offer(found)
        except (DiscoveryError, OSError) as exc:
            log.debug("crawl: FINDNODE to %s failed: %s", node.id.short(), exc)


__all__ = ["CRAWL_CONCURRENCY", "CrawlConfig", "CrawlStats", "Crawler", "MAX_CRAWL_NODES",
           "QUIET_LOOKUPS", "REVALIDATE_INTERVAL"]
