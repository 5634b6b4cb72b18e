"""The iterative Kademlia lookup, sans-IO.

The service asks :meth:`Lookup.next_queries` which nodes to query (at most ``alpha`` at a
time, closest unasked first), reports each answer with :meth:`Lookup.on_reply` or
:meth:`Lookup.on_failure`, and stops when :attr:`Lookup.finished`: nothing in flight and no
unasked node among the ``k`` closest seen.

``rounds`` is the length of the longest referral chain the lookup followed: a node from the
local table is at depth 1, a node learnt from a depth-d node at depth d + 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from p2p.enode import Node

ALPHA = 3  # Kademlia concurrency factor, as go-ethereum
LOOKUP_RESULTS = 16  # nodes a lookup returns: a bucket's worth, as go-ethereum


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


__all__ = ["ALPHA", "LOOKUP_RESULTS", "Lookup", "LookupResult"]
