"""Table maintenance for both discovery protocols: refresh (seed, self lookup, random
lookups) and revalidation (ping the least recently checked entry of a random bucket).

Each table entry remembers the protocols it was learned or verified through; revalidation
pings it over those (v4 first), so a node that speaks only v5 is checked over v5 and never
evicted for ignoring a v4 Ping. Refresh runs the lookups of every protocol that runs.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import trio

from p2p.discover.errors import DiscoveryError
from p2p.discover.table import BUCKET_SIZE, V4, V5, Table, protocol_set
from p2p.enode import Node

if TYPE_CHECKING:
    from p2p.discover.service import DiscoveryConfig

logger = logging.getLogger(__name__)

# A table holding fewer than a bucket's worth of nodes (e.g. the first lookup went unanswered)
# refreshes again after ``small_table_refresh`` (5 s), then 10, 20, ... up to 2 minutes,
# instead of waiting half an hour: go-ethereum gets the same effect by re-seeding and looking
# up when a lookup finds the table short. The cap keeps a node whose early lookups all met a
# busy network from backing off for half an hour; in a network of fewer than 16 nodes it
# costs one lookup every 2 minutes.
SMALL_TABLE_REFRESH_MAX = 120.0
# A refresh's random-target lookups are skipped while this many lookups already wait for a slot
# of the process limiter. They are maintenance that can wait for the next refresh; queued
# without bound, 1,000 nodes of one process started together left 3,000 of them in the queue
# (~100 s of a saturated loop at ~30 lookups a second), and every lookup asked for meanwhile
# waited behind them. A lone node never has more than a few lookups waiting.
REFRESH_LOOKUP_BACKLOG = 16
# A node whose self lookup met a young network is known to the few nodes it bonded with
# then; nodes that joined later near its ID never hear of it, and lookups of it end among
# its neighbours without finding it (5 % of lookups in 500-node testnets started together,
# 2 % with this). So it looks itself up again each time its table has grown this many times
# over since its last self lookup, once it holds two buckets' worth (a handful of times over
# its life, as a table grows from 16 to a few hundred entries): its Pings make its new
# neighbours add it. go-ethereum waits for its half-hourly refresh instead.
REGROWN_FACTOR = 2
# Seconds between two such lookups at least: a peer that fills our table with nodes that then
# fail revalidation, again and again, gets us to look ourselves up once a minute at most.
REGROWN_MIN_INTERVAL = 60.0
PROTOCOL_ORDER = (V4, V5)  # an entry known through both is pinged over v4 first

LookupFn = Callable[["bytes | None"], Awaitable[object]]  # target node ID (None: random)
PingFn = Callable[[Node], Awaitable[object]]  # raises DiscoveryError when the node is silent


class Maintenance:
    """Refresh and revalidation of one table, over the protocols in ``lookups`` / ``pingers``."""

    def __init__(self, table: Table, *, config: DiscoveryConfig, rng: random.Random,
                 seed: Callable[[], None], lookups: Mapping[str, LookupFn], pingers: Mapping[str, PingFn],
                 limiter: Callable[[], trio.CapacityLimiter], drops: Counter[str],
                 on_table_change: Callable[[], None], has_bootnodes: bool, nursery: trio.Nursery) -> None:
        self.table = table
        self.config = config
        self._rng = rng
        self._seed = seed
        self._lookups = dict(lookups)
        self._pingers = dict(pingers)
        self._limiter = limiter
        self._drops = drops
        self._on_table_change = on_table_change
        self._has_bootnodes = has_bootnodes
        self._nursery = nursery
        self.refreshing: trio.Event | None = None  # set while a refresh runs
        self.self_lookups = 0  # rounds of self lookups done (a refresh's and the regrown table's)
        self._size_at_self_lookup = 0
        self._regrown: trio.Event | None = None  # set when the table has regrown (see REGROWN_FACTOR)
        # Set once the first refresh's self lookups are over (or when there is none): until then
        # the table holds only seeds, and a dialer fed from it would all dial the bootnodes.
        self.bootstrapped = trio.Event()

    async def refresh(self) -> None:
        """Seed the table, look ourselves up, then look up random targets (go-ethereum's
        doRefresh), over each protocol. Concurrent calls wait for the one running. A random
        lookup is skipped (counted in ``drops``) while the process's lookup slots have a
        backlog: the self lookups always run, since they are what fills a new table."""
        if self.refreshing is not None:
            await self.refreshing.wait()
            return
        self.refreshing = trio.Event()
        try:
            self._seed()
            try:
                await self._look_up_self()
            finally:
                self.bootstrapped.set()
            for _ in range(self.config.refresh_random_lookups):
                for lookup in self._lookups.values():
                    # Spread out: nodes started together would otherwise flood each other at once.
                    await trio.sleep(self._rng.uniform(0, self.config.random_lookup_spread))
                    if self._limiter().statistics().tasks_waiting >= REFRESH_LOOKUP_BACKLOG:
                        self._drops["refresh_lookup_skipped"] += 1
                        continue
                    await lookup(None)
        finally:
            self.refreshing.set()
            self.refreshing = None

    async def _look_up_self(self) -> None:
        for lookup in self._lookups.values():
            await lookup(self.table.local_id)
        self.self_lookups += 1
        self._size_at_self_lookup = len(self.table)

    def table_grew(self) -> None:
        """Called when entries were added: wakes the self lookup of a regrown table."""
        # Called on every table change: nothing to compute unless a wait is armed. Only after
        # a first self lookup: "regrown" means grown since one.
        if self._regrown is None or self.self_lookups == 0:
            return
        if len(self.table) >= REGROWN_FACTOR * max(self._size_at_self_lookup, BUCKET_SIZE):
            self._regrown.set()

    async def _sleep_looking_up_self_as_the_table_grows(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            while True:
                self._regrown = trio.Event()
                self.table_grew()
                await self._regrown.wait()
                self._regrown = None
                await self._look_up_self()
                await trio.sleep(REGROWN_MIN_INTERVAL)

    async def refresh_loop(self) -> None:
        cfg = self.config
        if cfg.refresh_on_start:
            await self.refresh()
        backoff = cfg.small_table_refresh
        while True:
            if backoff is not None and len(self.table) < BUCKET_SIZE:
                wait = min(backoff, cfg.refresh_interval)
                backoff = min(backoff * 2, SMALL_TABLE_REFRESH_MAX, cfg.refresh_interval)
            else:
                wait = cfg.refresh_interval
                backoff = cfg.small_table_refresh
            # Jitter so that nodes started together do not refresh in lock step.
            await self._sleep_looking_up_self_as_the_table_grows(wait * self._rng.uniform(0.9, 1.1))
            await self.refresh()

    async def revalidate_loop(self) -> None:
        empty_since: float | None = None
        while True:
            await trio.sleep(self._rng.uniform(0, self.config.revalidate_interval))
            if len(self.table) == 0 and self._has_bootnodes:
                # Everyone we knew failed: start over from the seeds rather than wait for
                # the next refresh, at most once per reseed interval.
                now = trio.current_time()
                if empty_since is None:
                    empty_since = now
                elif now - empty_since >= self.config.reseed_interval:
                    empty_since = now
                    self._nursery.start_soon(self.refresh)
                continue
            empty_since = None
            await self.revalidate_once()

    def protocols_for(self, node: Node) -> list[str]:
        """The running protocols to ping ``node`` over, in order: those its entry was learned
        or verified through; a node known through none that runs here is tried over v5 when
        it has a record, else over whatever runs."""
        known = self.table.protocols(node.id)
        order = [p for p in PROTOCOL_ORDER if p in known and p in self._pingers]
        if not order:
            order = [V5] if node.enr is not None and V5 in self._pingers else list(self._pingers)[:1]
        return order

    async def revalidate_once(self) -> Node | None:
        """Ping the least recently checked node of a random bucket over its protocols: an
        answer over any moves it to the front (its pinger fetches a newer record it
        advertises), silence over all replaces it."""
        node = self.table.node_to_revalidate()
        if node is None:
            return None
        alive = False
        failed = []
        for proto in self.protocols_for(node):
            try:
                await self._pingers[proto](node)
            except DiscoveryError as exc:
                logger.debug("revalidation of %s over %s failed: %s", node.id.short(), proto, exc)
                failed.append(proto)
                continue
            alive = True
            entry = self.table.entry(node.id)
            if entry is not None and failed:
                # it answers over this protocol, not over those: check it over this one from now on
                entry.protocols = protocol_set((entry.protocols - set(failed)) | {proto})
            break
        self.table.revalidated(node.id, alive)
        self._on_table_change()
        return node


__all__ = ["Maintenance", "REFRESH_LOOKUP_BACKLOG", "REGROWN_FACTOR", "REGROWN_MIN_INTERVAL", "SMALL_TABLE_REFRESH_MAX"]
