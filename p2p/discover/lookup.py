"""Lookups and node iterators, shared by both discovery protocols.

:class:`Lookup` is the iterative Kademlia lookup, sans-IO; :func:`run_lookup` drives it with
a protocol's query (v4: FindNode by target key, v5: FINDNODE by distances);
:func:`random_nodes` feeds a dialer from the table and random lookups.

The service asks :meth:`Lookup.next_queries` which nodes to query (at most ``alpha`` at a
time, closest unasked first), reports each answer with :meth:`Lookup.on_reply` or
:meth:`Lookup.on_failure`, and stops when :attr:`Lookup.finished`: nothing in flight and no
unasked node among the ``k`` closest seen.

``rounds`` is the length of the longest referral chain the lookup followed: a node from the
local table is at depth 1, a node learnt from a depth-d node at depth d + 1.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import trio

from p2p.discover.table import Table
from p2p.enode import Node

ALPHA = 3  # Kademlia concurrency factor, as go-ethereum
LOOKUP_RESULTS = 16  # nodes a lookup returns: a bucket's worth, as go-ethereum
# Lookups running at once in one process (every node of one trio run shares the limit). A lone
# node never comes near it; in a one-process testnet, unbounded lookups would saturate the
# event loop until replies miss their 500 ms deadline and the retries make it worse.
LOOKUPS_PER_PROCESS = 16
RECENT_RANDOM_NODES = 1024  # random_nodes() remembers at most this many yielded nodes
RECENT_RANDOM_WINDOW = 30.0  # ... and offers one again after this long (the dial history's 30 s)
RANDOM_NODES_MAX_BACKOFF = 30.0  # pause of random_nodes() when lookups find nothing new
REFRESH_WAIT = 1.0  # random_nodes() re-reads the table this often while a refresh runs

Query = Callable[[Node], Awaitable["list[Node] | None"]]  # a node's answer, None when it failed

_SHARED_LOOKUP_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("discovery_lookups")


def shared_lookup_limiter() -> trio.CapacityLimiter:
    """The lookup limiter of the current trio run (made on first use)."""
    try:
        return _SHARED_LOOKUP_LIMITER.get()
    except LookupError:
        limiter = trio.CapacityLimiter(LOOKUPS_PER_PROCESS)
        _SHARED_LOOKUP_LIMITER.set(limiter)
        return limiter


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What a lookup found and what it cost (the packets are those of its own queries)."""

    target: bytes  # node ID
    nodes: tuple[Node, ...]  # closest first
    queries: int
    failures: int
    rounds: int
    packets_sent: int
    packets_received: int
    seconds: float

    @property
    def packets(self) -> int:
        return self.packets_sent + self.packets_received

    def found(self, node_id: bytes) -> bool:
        return any(n.id == node_id for n in self.nodes)


class Lookup:
    def __init__(self, target: bytes, local_id: bytes, *, alpha: int = ALPHA, k: int = LOOKUP_RESULTS) -> None:
        self.target = target
        self.local_id = local_id
        self.alpha = alpha
        self.k = k
        self._t = int.from_bytes(target, "big")
        self._closest: list[tuple[int, Node]] = []  # (distance, node), sorted, at most k
        self._seen: set[bytes] = {local_id}
        self._asked: set[bytes] = set()
        self._depth: dict[bytes, int] = {}
        self.inflight = 0
        self.queries = 0
        self.failures = 0
        self.rounds = 0

    def add_nodes(self, nodes: Iterable[Node], depth: int = 1) -> None:
        for node in nodes:
            if node.id in self._seen:
                continue
            self._seen.add(node.id)
            d = int.from_bytes(node.id, "big") ^ self._t
            if len(self._closest) >= self.k and d >= self._closest[-1][0]:
                continue
            self._depth[node.id] = depth
            lo, hi = 0, len(self._closest)
            while lo < hi:
                mid = (lo + hi) // 2
                if self._closest[mid][0] < d:
                    lo = mid + 1
                else:
                    hi = mid
            self._closest.insert(lo, (d, node))
            del self._closest[self.k:]

    def next_queries(self) -> list[Node]:
        """Nodes to query now; each is returned once."""
        picked = []
        for _, node in self._closest:
            if self.inflight >= self.alpha:
                break
            if node.id in self._asked:
                continue
            self._asked.add(node.id)
            self.inflight += 1
            self.queries += 1
            self.rounds = max(self.rounds, self._depth.get(node.id, 1))
            picked.append(node)
        return picked

    def on_reply(self, node: Node, found: Iterable[Node]) -> None:
        self.inflight -= 1
        self.add_nodes(found, self._depth.get(node.id, 1) + 1)

    def on_failure(self, node: Node) -> None:
        """A node that did not answer stays among the results, as in go-ethereum: one missed
        reply is no proof of death, and revalidation weeds out the dead."""
        self.inflight -= 1
        self.failures += 1

    @property
    def finished(self) -> bool:
        return self.inflight == 0 and all(n.id in self._asked for _, n in self._closest)

    def closest_node(self) -> Node | None:
        return self._closest[0][1] if self._closest else None

    def result(self) -> list[Node]:
        return [n for _, n in self._closest]


async def run_lookup(lk: Lookup, query: Query) -> None:
    """Drive ``lk`` to the end, ``lk.alpha`` queries at a time."""
    send, recv = trio.open_memory_channel[tuple[Node, "list[Node] | None"]](lk.alpha + 1)

    async def one(node: Node) -> None:
        await send.send((node, await query(node)))

    async with trio.open_nursery() as nursery:
        while True:
            for node in lk.next_queries():
                nursery.start_soon(one, node)
            if lk.finished:
                break
            node, found = await recv.receive()
            if found is None:
                lk.on_failure(node)
            else:
                lk.on_reply(node, found)


async def random_nodes(table: Table, lookup: Callable[[], Awaitable[list[Node]]], *, ready: trio.Event,
                       refreshing: Callable[[], "trio.Event | None"], min_pause: float) -> AsyncIterator[Node]:
    """Nodes for a dialer, endlessly: the table's entries not yielded lately (the table
    keeps growing from refreshes and revalidation), and a random ``lookup()`` only when the
    table has nothing new, so that a dialer in a fresh network mostly reads the table
    instead of adding lookups of its own. A node is offered again once
    ``RECENT_RANDOM_WINDOW`` has passed (its dial may have failed only because it was
    busy then); when nothing is new the pause between lookups doubles from ``min_pause`` up
    to 30 s. Nothing is offered before ``ready`` is set (the first self lookup is over)."""
    await ready.wait()
    recent: OrderedDict[bytes, float] = OrderedDict()  # id -> when yielded, oldest first
    pause = min_pause
    while True:
        now = trio.current_time()
        while recent and (len(recent) > RECENT_RANDOM_NODES
                          or next(iter(recent.values())) <= now - RECENT_RANDOM_WINDOW):
            recent.popitem(last=False)
        fresh = [n for n in table.random_nodes(len(table)) if n.id not in recent]
        running = refreshing()
        if not fresh and running is not None:
            # A refresh is filling the table: look at the table again in a moment rather
            # than add a lookup of our own.
            with trio.move_on_after(REFRESH_WAIT):
                await running.wait()
            continue
        if not fresh:
            fresh = [n for n in await lookup() if n.id not in recent]
        if not fresh:
            await trio.sleep(pause)
            pause = min(pause * 2, RANDOM_NODES_MAX_BACKOFF)
            continue
        pause = min_pause
        for node in fresh:
            if node.id in recent:
                continue
            recent[node.id] = trio.current_time()
            yield node


__all__ = ["ALPHA", "LOOKUPS_PER_PROCESS", "LOOKUP_RESULTS", "Lookup", "LookupResult", "Query", "random_nodes",
           "run_lookup", "shared_lookup_limiter"]
