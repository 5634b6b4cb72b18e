"""Gossip bookkeeping (sans-IO): which message IDs were seen, and where a message goes next.

A node forwards every message it has not seen before to all its other peers, one hop more
than it arrived with. Two things keep this from flooding forever: the seen-set drops a
message the second time it arrives (loops end there), and the hop limit bounds how far a
message travels even if the seen-set has forgotten it. The seen-set is bounded in size and
its entries expire, so memory stays bounded whatever the peers send.

Entries are keyed by the message's ``signing_hash`` (not its ``id`` alone, which anyone can
copy onto other content). A message is only accepted within ``TIME_WINDOW`` of our clock, so
an entry is needed for at most twice that: after it, a replay fails the time check instead.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from p2p import NodeID

from protocols.chat.limits import TIME_WINDOW
from protocols.chat.messages import HOP_LIMIT, ChatMessage, signing_hash

# Messages remembered (about 6 MB): more than one neighbour at its full PEER_RATE brings
# within SEEN_TTL; an entry pushed out early is counted (``evicted``).
SEEN_CAPACITY = 32768
# A message is accepted while its time is within TIME_WINDOW of our clock: first seen at the
# window's start, it can come back until the window's end, 2 x TIME_WINDOW later.
SEEN_TTL = 2 * TIME_WINDOW


class SeenSet:
    """A bounded set of message IDs whose entries expire ``ttl`` seconds after insertion.

    ``clock`` returns seconds (``trio.current_time`` in a service, a counter in tests).
    When full, the oldest entry is evicted: memory never grows past ``capacity``.
    """

    def __init__(self, clock: Callable[[], float], *, capacity: int = SEEN_CAPACITY,
                 ttl: float = SEEN_TTL) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._clock = clock
        self._capacity = capacity
        self._ttl = ttl
        self._entries: OrderedDict[bytes, float] = OrderedDict()  # id -> expiry, oldest first
        self.evicted = 0  # entries dropped because the set was full, for metrics

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._entries)

    def __contains__(self, msg_id: object) -> bool:
        now = self._clock()
        self._expire(now)
        return msg_id in self._entries

    def add(self, msg_id: bytes) -> bool:
        """Remember ``msg_id``; True when it was new (the caller should handle it)."""
        now = self._clock()
        self._expire(now)
        if msg_id in self._entries:
            return False
        if len(self._entries) >= self._capacity:
            self._entries.popitem(last=False)
            self.evicted += 1
        self._entries[msg_id] = now + self._ttl
        return True

    def _expire(self, now: float) -> None:
        # Insertion order is expiry order (a constant TTL), so only the head needs checking.
        while self._entries:
            msg_id, expiry = next(iter(self._entries.items()))
            if expiry > now:
                break
            del self._entries[msg_id]


@dataclass(frozen=True, slots=True)
class Route:
    """What to do with an incoming message: show it or not, and send what to whom."""

    deliver: bool
    forward: ChatMessage | None
    to: tuple[NodeID, ...]


class Gossip:
    """Routing decisions for one node, given its current peers."""

    def __init__(self, local_id: NodeID, clock: Callable[[], float], *,
                 hop_limit: int = HOP_LIMIT, seen: SeenSet | None = None) -> None:
        self.local_id = local_id
        self.hop_limit = hop_limit
        self.seen = seen if seen is not None else SeenSet(clock)
        self.duplicates = 0  # messages dropped as already seen, for metrics

    def originate(self, msg: ChatMessage, peers: Iterable[NodeID]) -> Route:
        """A message this node wrote: remember it (so echoes are dropped) and send to all."""
        self.seen.add(signing_hash(msg))
        return Route(deliver=False, forward=msg, to=tuple(peers))

    def is_duplicate(self, msg: ChatMessage, key: bytes) -> bool:
        """True (and counted) for a message seen before or our own: a cheap check that spares
        the signature check of every copy after the first. ``key`` is its ``signing_hash``."""
        if msg.sender == self.local_id or key in self.seen:
            self.duplicates += 1
            return True
        return False

    def receive(self, msg: ChatMessage, from_peer: NodeID, peers: Iterable[NodeID], *,
                key: bytes | None = None) -> Route:
        """A message that arrived from ``from_peer`` while connected to ``peers``; ``key`` is
        its ``signing_hash`` when the caller has it already."""
        if msg.sender == self.local_id or not self.seen.add(signing_hash(msg) if key is None else key):
            self.duplicates += 1
            return Route(deliver=False, forward=None, to=())
        if msg.hops + 1 > self.hop_limit:
            return Route(deliver=True, forward=None, to=())
        targets = tuple(p for p in peers if p != from_peer and p != msg.sender)
        return Route(deliver=True, forward=msg.forwarded() if targets else None, to=targets)
