"""Messages waiting to go to one neighbour (sans-IO), shared fairly between their sources.

A message's *source* is the neighbour it came from (None for this node's own). Sources take
turns (round robin), and when the outbox is full the source holding the most places loses its
newest message, so a flooding neighbour fills only its own share: an honest author's lines
that arrive through another neighbour still go out, in order, at their turn.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from p2p import NodeID

from protocols.chat.messages import Announce, ChatMessage

Source = NodeID | None


class Outbox:
    """At most ``capacity`` messages, of which at most ``announce_share`` announcements (a burst
    of joins, a whole network starting, must not leave text without room)."""

    def __init__(self, capacity: int, announce_share: int) -> None:
        if capacity < 1 or not 0 <= announce_share <= capacity:
            raise ValueError("capacity must be at least 1 and announce_share within it")
        self.capacity = capacity
        self.announce_share = announce_share
        self._queues: OrderedDict[Source, deque[ChatMessage]] = OrderedDict()  # next turn first
        self._size = 0
        self._announces = 0

    def __len__(self) -> int:
        return self._size

    def put(self, source: Source, msg: ChatMessage) -> ChatMessage | None:
        """Queue ``msg``; returns the message dropped to make room (``msg`` itself when it does
        not fit), or None."""
        announce = isinstance(msg, Announce)
        if announce and self._announces >= self.announce_share:
            return msg
        dropped: ChatMessage | None = None
        if self._size >= self.capacity:
            hog = max(self._queues, key=lambda s: len(self._queues[s]))
            if len(self._queues[hog]) <= len(self._queues.get(source, ())) + 1:
                return msg  # the source is (about to be) the largest: it loses its own newest
            dropped = self._queues[hog].pop()
            self._forget(dropped)
            if not self._queues[hog]:
                del self._queues[hog]
        queue = self._queues.get(source)
        if queue is None:
            queue = self._queues[source] = deque()
        queue.append(msg)
        self._size += 1
        self._announces += announce
        return dropped

    def pop(self) -> ChatMessage | None:
        """The next message to send, taking sources in turn; None when empty."""
        while self._queues:
            source, queue = next(iter(self._queues.items()))
            if not queue:
                del self._queues[source]
                continue
            msg = queue.popleft()
            if queue:
                self._queues.move_to_end(source)
            else:
                del self._queues[source]
            self._forget(msg)
            return msg
        return None

    def _forget(self, msg: ChatMessage) -> None:
        self._size -= 1
        self._announces -= isinstance(msg, Announce)
