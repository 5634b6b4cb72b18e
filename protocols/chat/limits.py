"""Rate limits of the chat protocol (sans-IO: the clock is a parameter, nothing sleeps).

``ChatLimits`` holds every bound a remote peer meets, with the reason for each default;
``KeyedBuckets`` enforces the per-author rate. The per-neighbour rate is the typed layer's flow
control (``p2p.flowcontrol``, whose ``TokenBucket`` and ``Strikes`` this module re-exports).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from p2p.flowcontrol import FlowControl, RateLimit, Strikes, TokenBucket

__all__ = ["ChatLimits", "KeyedBuckets", "Strikes", "TokenBucket"]

# A signed message is only valid this close to the receiver's clock, so a replay can only
# happen within it; 2 minutes covers clocks a little off and a message crossing a big network.
TIME_WINDOW = 120.0  # seconds either side of our wall clock

# Per author, counted after the signature proved who the author is (else a forger could spend
# an honest author's tokens). A person typing fast writes about 1 line/s and pastes a few
# lines at once; a bot answers a few messages a second.
AUTHOR_RATE = 5.0  # messages per second, sustained
AUTHOR_BURST = 20  # messages at once (a pasted paragraph)
MAX_AUTHORS = 4096  # authors whose buckets are remembered; the least recent is forgotten

# Per neighbour, counted before anything costly (decoding aside): a signature check costs far
# more than a token. A neighbour forwards every author of the network, so its rate is the
# whole chat's traffic we accept on one link: 20 authors at their full AUTHOR_RATE.
PEER_RATE = 100.0  # messages per second, sustained
PEER_BURST = 400  # messages at once (a few seconds of the full rate, e.g. after a stall)

# What we forward to one neighbour is paced at half its limit on us, so that an honest node
# never trips a neighbour's PEER limit even when the network bunches its sends together: only
# the flooder itself exceeds it.
FORWARD_RATE = PEER_RATE / 2
FORWARD_BURST = PEER_BURST // 2

# This node's own messages (lines, announcements) go out at half the author limit the
# neighbours apply, so that delays that bunch them on the way never make a neighbour drop them.
OWN_RATE_SHARE = 0.5

# A neighbour over its rate loses the excess; one that keeps at it is disconnected. An honest
# neighbour paces below our rate (FORWARD_RATE), so drops mean a flooder or a broken peer; a
# flood reaches 100 within a fraction of a second, a single overshoot does not.
PEER_MAX_DROPS = 100  # drops within PEER_DROP_WINDOW that disconnect a peer
PEER_DROP_WINDOW = 10.0  # seconds


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """The bounds of one chat service (see the module constants for the reason of each)."""

    time_window: float = TIME_WINDOW
    author_rate: float = AUTHOR_RATE
    author_burst: int = AUTHOR_BURST
    max_authors: int = MAX_AUTHORS
    peer_rate: float = PEER_RATE
    peer_burst: int = PEER_BURST
    forward_rate: float = FORWARD_RATE
    forward_burst: int = FORWARD_BURST
    peer_max_drops: int = PEER_MAX_DROPS
    peer_drop_window: float = PEER_DROP_WINDOW

    def __post_init__(self) -> None:
        for name in ("time_window", "author_rate", "peer_rate", "forward_rate", "peer_drop_window"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        for name in ("author_burst", "max_authors", "peer_burst", "forward_burst", "peer_max_drops"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def flow_control(self) -> FlowControl:
        """The per-neighbour rate, over text and announcements together, as flow control."""
        return FlowControl((RateLimit(self.peer_rate, self.peer_burst, name="peer"),),
                           max_drops=self.peer_max_drops, drop_window=self.peer_drop_window)


K = TypeVar("K", bound=Hashable)


class KeyedBuckets(Generic[K]):
    """One bucket per key, at most ``capacity`` keys: the least recently used is forgotten (it
    comes back with a full bucket, which costs the attacker a new key per burst, and a new key
    still passes the per-peer bucket first)."""

    def __init__(self, rate: float, burst: int, capacity: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = burst
        self._capacity = capacity
        self._clock = clock
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def take(self, key: K) -> bool:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate, self._burst, now)
            if len(self._buckets) > self._capacity:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)
