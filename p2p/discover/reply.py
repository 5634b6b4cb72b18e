"""Reply matching for both discovery protocols: requests waiting for their replies.

A request registers a :class:`Pending` under a key (v4: sender ID, IP and reply type; v5:
sender ID and request ID) with a ``match`` function, sends, and waits until a reply that
``match`` calls complete arrives (or one it calls settling, :class:`Settle`, is followed by
nothing for a while) or the deadline passes. The receive loop hands every reply
to :meth:`PendingReplies.deliver`; a reply nobody waits for is the caller's to drop. The
number of requests waiting at once is bounded: past it a request fails at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import trio

from p2p.discover.errors import RequestTimeout
from p2p.enode import Node

# A reply deadline that fires this much late says the event loop is busy (many nodes in one
# process, a burst of handshakes): the reply may be sitting in our socket, read on the next pass.
LAG_GRACE_MIN = 0.05
LAG_EXTENSIONS = 2  # at most this many extensions of one deadline, each by the lateness seen

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class Settle:
    """What a match returns, in place of True for "complete", when the reply may be complete
    but a part of it may still be on its way: the request ends as complete after ``seconds``,
    or as soon as a later part makes it complete."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


Match = Callable[[R], "tuple[bool, bool | Settle]"]  # reply -> (matched, complete)


async def wait_reply(event: trio.Event, timeout: float) -> bool:
    """Wait up to ``timeout`` for ``event``; True when it is set.

    When the deadline's wake-up comes late (the loop was busy running other tasks), the wait
    is extended by the lateness seen, up to ``LAG_EXTENSIONS`` times: a reply that reached our
    socket in time but was not read yet because of our own load is not the peer's fault. On an
    idle loop wake-ups are punctual and the deadline is exactly ``timeout``.
    """
    deadline = trio.current_time() + timeout
    for _ in range(LAG_EXTENSIONS + 1):
        with trio.move_on_at(deadline):
            await event.wait()
        if event.is_set():
            return True
        now = trio.current_time()
        late = now - deadline
        if late < LAG_GRACE_MIN:
            return False
        deadline = now + min(late, timeout * 4)
    return event.is_set()


class Tally:
    """Packets of one lookup's own queries."""

    __slots__ = ("sent", "received")

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0


class PendingFull(RequestTimeout):
    """Too many requests already wait for replies: this one was not sent."""


class Pending(Generic[K, R]):
    """A request waiting for its reply (or replies) from ``node``."""

    __slots__ = ("key", "node", "info", "match", "done", "event", "result", "tally", "settle_at")

    def __init__(self, key: K, node: Node, match: Match[R], tally: Tally | None, info: Any = None) -> None:
        self.key = key
        self.node = node
        self.info = info  # the requester's own (e.g. v5: the address and message sent)
        self.match = match
        self.done = False
        self.event = trio.Event()
        self.result: R | None = None  # the last matching reply
        self.tally = tally
        self.settle_at: float | None = None  # when a Settle ends the wait as complete


class PendingReplies(Generic[K, R]):
    """The requests of one protocol engine waiting for replies, at most ``max_pending``."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self._waiting: dict[K, list[Pending[K, R]]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        return key in self._waiting

    def first(self, key: K) -> Pending[K, R] | None:
        waiting = self._waiting.get(key)
        return waiting[0] if waiting else None

    async def request(self, key: K, node: Node, match: Match[R], send: Callable[[], Awaitable[None] | None],
                      timeout: float, tally: Tally | None = None, info: Any = None) -> Pending[K, R]:
        """Register, ``send()``, and wait until ``match`` says the reply is complete or
        ``timeout`` passes (then ``done`` is False and ``result`` is the last partial reply).
        Raises :class:`PendingFull` when ``max_pending`` requests already wait."""
        if self._count >= self.max_pending:
            raise PendingFull(f"{self.max_pending} requests already waiting for replies")
        p: Pending[K, R] = Pending(key, node, match, tally, info)
        self._waiting.setdefault(key, []).append(p)
        self._count += 1
        try:
            sent: Any = send()
            if inspect.isawaitable(sent):
                await sent
            if tally is not None:
                tally.sent += 1
            woken = await wait_reply(p.event, timeout)
            while woken and not p.done and p.settle_at is not None:
                # A Settle woke us: wait until then for the rest, and take what came if none does.
                p.event = trio.Event()
                woken = await wait_reply(p.event, max(0.0, p.settle_at - trio.current_time()))
                if not woken:
                    p.done = True
        finally:
            self._forget(p)
        return p

    def deliver(self, key: K, reply: R) -> bool:
        """Offer ``reply`` to the requests waiting under ``key``; True if one took it."""
        waiting = self._waiting.get(key)
        if not waiting:
            return False
        matched = False
        for p in list(waiting):
            if p.done:
                continue
            ok, complete = p.match(reply)
            if not ok:
                continue
            matched = True
            p.result = reply
            if p.tally is not None:
                p.tally.received += 1
            if isinstance(complete, Settle):
                p.settle_at = trio.current_time() + complete.seconds
                p.event.set()
            elif complete:
                p.done = True
                p.event.set()
                self._forget(p)
        return matched

    def _forget(self, p: Pending[K, R]) -> None:
        waiting = self._waiting.get(p.key)
        if waiting is not None and p in waiting:
            waiting.remove(p)
            self._count -= 1
            if not waiting:
                del self._waiting[p.key]


__all__ = ["LAG_EXTENSIONS", "LAG_GRACE_MIN", "Pending", "PendingFull", "PendingReplies", "Settle", "Tally",
           "wait_reply"]
