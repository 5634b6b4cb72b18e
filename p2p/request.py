"""Request/response over a typed protocol: request IDs, matching, timeouts and in-flight bounds.

Each request goes out as ``[request_id, body]`` (eth/66); the ID is this layer's, unique per
peer and protocol. ``Requests.request`` waits for a slot (at most ``max_in_flight`` requests to
one peer per protocol: more callers wait, which is back-pressure on them, not memory), sends,
and waits at most ``timeout`` for the response with the same ID and the expected type. A slot
is freed when the response arrives, at the timeout, or when the peer goes away.

A response nobody waits for (an unknown ID, a second answer, the wrong type) is dropped and
counted; ``max_unsolicited`` of them within ``unsolicited_window`` disconnect the peer. A
response that comes after its request timed out is dropped and counted as late, without a
strike: an honest but slow peer sends those.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import trio

from p2p.disconnect import DisconnectReason
from p2p.flowcontrol import Strikes

REQUEST_TIMEOUT = 10.0  # seconds; go-ethereum's eth requests and our eth service waited as long
MAX_IN_FLIGHT = 16  # requests to one peer per protocol at once; the eth service's old bound
# Unsolicited responses tolerated per peer: a peer may answer twice after a reconnect race, but
# one that keeps sending answers to nothing makes us decode for nothing.
MAX_UNSOLICITED = 16  # within UNSOLICITED_WINDOW
UNSOLICITED_WINDOW = 60.0  # seconds
UNSOLICITED_REASON = DisconnectReason.SUBPROTOCOL_ERROR
# IDs remembered after their request ended, to tell a late or second answer from an unknown one.
RECENT_IDS = 4 * MAX_IN_FLIGHT


class RequestError(Exception):
    """A request that got no answer: the peer went away or the layer refused it."""


class RequestTimeout(RequestError, trio.TooSlowError):
    """No response within the request's timeout (its slot is free again)."""


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Bounds of one protocol's requests to one peer (see the module constants for reasons)."""

    timeout: float = REQUEST_TIMEOUT
    max_in_flight: int = MAX_IN_FLIGHT
    max_unsolicited: int = MAX_UNSOLICITED
    unsolicited_window: float = UNSOLICITED_WINDOW
    reason: DisconnectReason = UNSOLICITED_REASON

    def __post_init__(self) -> None:
        if not self.timeout > 0 or self.max_in_flight < 1 or self.max_unsolicited < 1:
            raise ValueError("timeout must be positive, max_in_flight and max_unsolicited at least 1")


class RequestStats:
    """Counts of one protocol's requests, for ``p2p/metrics.py`` (plain ints, read when scraped)."""

    __slots__ = ("outcomes", "unsolicited", "slot_waits", "disconnects")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}  # ok, timeout, closed
        self.unsolicited: dict[str, int] = {}  # unknown, duplicate, late, mismatched
        self.slot_waits = 0  # requests that waited for a slot (back-pressure acted)
        self.disconnects = 0  # peers disconnected for unsolicited responses

    def count(self, table: MutableMapping[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


class _Pending:
    __slots__ = ("expect", "event", "value")

    def __init__(self, expect: type) -> None:
        self.expect = expect
        self.event = trio.Event()
        self.value: Any = None


class TooManyUnsolicited(Exception):
    """The peer passed ``max_unsolicited``; ``reason`` is the disconnect reason."""

    def __init__(self, message: str, reason: DisconnectReason) -> None:
        super().__init__(message)
        self.reason = reason


class Requests:
    """The requests of one protocol to one peer."""

    __slots__ = ("_limits", "_stats", "_clock", "_slots", "_pending", "_recent", "_next", "_strikes", "_closed")

    def __init__(self, limits: RequestLimits, stats: RequestStats, clock: Callable[[], float],
                 rng: random.Random | None = None) -> None:
        self._limits = limits
        self._stats = stats
        self._clock = clock
        self._slots = trio.Semaphore(limits.max_in_flight)
        self._pending: dict[int, _Pending] = {}
        self._recent: OrderedDict[int, str] = OrderedDict()  # ended request ID -> "late" / "duplicate"
        # A random start: IDs of a new connection do not repeat the old one's.
        self._next = (rng or random.SystemRandom()).getrandbits(62)
        self._strikes = Strikes(limits.max_unsolicited, limits.unsolicited_window)
        self._closed = False

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def request(self, send: Callable[[int], Awaitable[None]], expect: type,
                      timeout: float | None = None) -> Any:
        """Take a slot, ``send(request_id)``, and return the response of type ``expect``."""
        if self._closed:
            raise RequestError("peer is gone")
        if self._slots.value == 0:
            self._stats.slot_waits += 1
        async with self._slots:
            if self._closed:
                raise RequestError("peer is gone")
            request_id = self._next
            self._next = (self._next + 1) % (1 << 64)
            pending = self._pending[request_id] = _Pending(expect)
            outcome = "closed"
            try:
                await send(request_id)
                with trio.move_on_after(self._limits.timeout if timeout is None else timeout):
                    await pending.event.wait()
                if pending.value is not None:
                    outcome = "ok"
                    return pending.value
                if self._closed:
                    raise RequestError("peer is gone")
                outcome = "timeout"
                self._remember(request_id, "late")
                raise RequestTimeout(f"no {expect.__name__} within the timeout")
            finally:
                del self._pending[request_id]
                self._stats.count(self._stats.outcomes, outcome)

    def deliver(self, request_id: int, msg: Any) -> bool:
        """A response arrived: True when a request took it. Raises :class:`TooManyUnsolicited`."""
        pending = self._pending.get(request_id)
        if pending is not None and pending.value is None and type(msg) is pending.expect:
            pending.value = msg
            pending.event.set()
            self._remember(request_id, "duplicate")
            return True
        if pending is not None:
            kind = "mismatched" if pending.value is None else "duplicate"
        else:
            kind = self._recent.pop(request_id, "unknown")
            if kind == "late":  # once: a second late answer is a duplicate
                self._remember(request_id, "duplicate")
                self._stats.count(self._stats.unsolicited, kind)
                return False
        self._stats.count(self._stats.unsolicited, kind)
        if self._strikes.add(self._clock()):
            self._stats.disconnects += 1
            raise TooManyUnsolicited(f"{self._limits.max_unsolicited} unsolicited responses within "
                                     f"{self._limits.unsolicited_window:g} s (last: {kind} ID {request_id})",
                                     self._limits.reason)
        return False

    def close(self) -> None:
        """The peer is gone: wake every waiter (they raise ``RequestError``)."""
        self._closed = True
        for pending in self._pending.values():
            pending.event.set()

    def _remember(self, request_id: int, kind: str) -> None:
        self._recent[request_id] = kind
        self._recent.move_to_end(request_id)
        while len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)


__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_UNSOLICITED",
    "REQUEST_TIMEOUT",
    "RequestError",
    "RequestLimits",
    "RequestStats",
    "RequestTimeout",
    "Requests",
    "TooManyUnsolicited",
    "UNSOLICITED_WINDOW",
]
