"""Flow control for the serving side (sans-IO: the clock is a parameter, nothing sleeps).

A protocol declares rate limits per message kind (``RateLimit``: a token bucket per peer); the
typed layer asks a peer's :class:`PeerFlow` before it decodes a message or runs its handler. A
message over its rate is dropped and counted; a peer whose drops reach ``max_drops`` within
``drop_window`` is disconnected with ``reason``: an honest peer paces itself below our limits,
so repeated drops mean a flooder or a broken peer.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from p2p.disconnect import DisconnectReason

# A flood reaches 100 drops within a fraction of a second; a peer unlucky once (a burst after a
# stall) drops a few. The same bound the chat protocol used before it moved here.
MAX_DROPS = 100  # drops within DROP_WINDOW that disconnect a peer
DROP_WINDOW = 10.0  # seconds
# A peer that floods is not breaking the devp2p rules, it is misusing our sub-protocol.
FLOOD_REASON = DisconnectReason.SUBPROTOCOL_ERROR

_EPSILON = 1e-9  # a token short by rounding only is a token: a waiter must not spin on 1e-17 s


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def take(self, now: float) -> bool:
        """Spend a token if there is one; False means the caller is over its rate."""
        self._refill(now)
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens -= 1.0
            return True
        return False

    def spend(self, now: float) -> None:
        """Spend a token even when there is none: the debt delays the next ``take``."""
        self._refill(now)
        self._tokens -= 1.0

    def delay(self, now: float) -> float:
        """Seconds until a token is available (0 when one is)."""
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 - _EPSILON else (1.0 - self._tokens) / self.rate


class Strikes:
    """Times of a peer's recent drops; ``add`` says when they reach ``limit`` within ``window``."""

    __slots__ = ("_limit", "_window", "_times")

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._times: deque[float] = deque(maxlen=limit)

    def add(self, now: float) -> bool:
        self._times.append(now)
        return len(self._times) >= self._limit and now - self._times[0] <= self._window


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` messages a second per peer, ``burst`` at once, over the messages listed (message
    classes or relative codes; none listed: every message of the protocol). ``name`` labels the
    drops in metrics (default: the first message's name, or "all")."""

    rate: float
    burst: int
    messages: tuple[Any, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError("rate must be positive")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        if not self.name:
            first = self.messages[0] if self.messages else None
            label = "all" if first is None else getattr(first, "__name__", str(first))
            object.__setattr__(self, "name", label)

    def codes(self) -> tuple[int, ...]:
        return tuple(m if isinstance(m, int) else int(m.code) for m in self.messages)


@dataclass(frozen=True, slots=True)
class FlowControl:
    """A protocol's rate limits and what happens to a peer that keeps exceeding them."""

    limits: tuple[RateLimit, ...] = ()
    max_drops: int = MAX_DROPS
    drop_window: float = DROP_WINDOW
    reason: DisconnectReason = FLOOD_REASON

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", tuple(self.limits))
        if self.max_drops < 1 or not self.drop_window > 0:
            raise ValueError("max_drops must be at least 1 and drop_window positive")

    def by_code(self, length: int) -> tuple[tuple[int, ...], ...]:
        """For each relative code, the indices of the limits that apply to it."""
        table: list[list[int]] = [[] for _ in range(length)]
        for i, limit in enumerate(self.limits):
            for code in limit.codes() or range(length):
                if not 0 <= code < length:
                    raise ValueError(f"rate limit {limit.name!r}: code {code} is outside the protocol")
                table[code].append(i)
        return tuple(tuple(t) for t in table)


class Verdict(enum.Enum):
    ADMIT = 0
    DROP = 1
    DISCONNECT = 2


class PeerFlow:
    """One peer's buckets for one protocol. ``admit`` returns what to do with a message and,
    for a drop, which limit dropped it."""

    __slots__ = ("_control", "_table", "_buckets", "_strikes")

    def __init__(self, control: FlowControl, table: Sequence[tuple[int, ...]], now: float) -> None:
        self._control = control
        self._table = table
        self._buckets = [TokenBucket(limit.rate, limit.burst, now) for limit in control.limits]
        self._strikes = Strikes(control.max_drops, control.drop_window)

    def admit(self, code: int, now: float) -> tuple[Verdict, RateLimit | None]:
        for i in self._table[code]:
            if not self._buckets[i].take(now):
                verdict = Verdict.DISCONNECT if self._strikes.add(now) else Verdict.DROP
                return verdict, self._control.limits[i]
        return Verdict.ADMIT, None


__all__ = [
    "DROP_WINDOW",
    "FLOOD_REASON",
    "MAX_DROPS",
    "FlowControl",
    "PeerFlow",
    "RateLimit",
    "Strikes",
    "TokenBucket",
    "Verdict",
]
