"""The network a simulation runs on: latency, loss, NAT and churn, and the parsers of their flags.

:class:`NetworkModel` plugs into :class:`p2p.discover.transport.MemoryNetwork` through its
``loss`` and ``latency`` hooks, which the network calls once per datagram when it is sent.
Both hooks run for every simulated datagram (millions in a large run), so they do a few dict
look-ups, one keyed hash (the link's delay) and at most one draw from the random generator.

- Latency: each link (a pair of addresses, the same both ways) has one one-way delay, drawn
  from the declared distribution (:func:`parse_latency`: fixed, uniform, normal clipped at 0,
  or lognormal) by hashing the pair with the run's seed. A path's delay is a property of the
  route, not of the packet: a draw per datagram would reorder back-to-back datagrams (a
  Neighbors answer's two packets, say) far more often than a real path does. Hashing instead of
  storing keeps the model's memory flat however many of the N^2 links a run touches.
- Loss: each datagram is dropped with the declared probability, independently.
- NAT: a share of the nodes sit behind a NAT with address-restricted filtering: a datagram
  reaches them only from an address they sent to within ``nat_timeout`` (the mapping is opened
  and refreshed by outbound datagrams only, RFC 4787 REQ-6). The mapping keeps the node's own
  address (no port translation is simulated), so the records other nodes hold for it look
  reachable and are not: the effect NAT has on a discovery table.
- Churn (:func:`churn_events`): nodes leave and join as two Poisson processes.

Everything here draws from a ``random.Random`` it is given, so a seeded run repeats exactly.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

import trio

Address = tuple[str, int]

NAT_TIMEOUT: Final = 120.0  # seconds a NAT keeps an outbound mapping open (RFC 4787 REQ-5: at least 2 minutes)
NAT_MAPPINGS: Final = 1 << 18  # mappings held at once across all NATs: ~100 B each, so NAT state peaks near 30 MB (rebuild included)
NAT_SWEEP_MIN: Final = 1024  # mappings held before the first sweep of expired ones: below, sweeping costs more than it frees
MAX_DURATION: Final = 7 * 86400.0  # seconds: a simulated week covers every refresh and expiry cycle; more is a typo that runs for hours
MAX_LATENCY: Final = 10.0  # seconds one way: above any real path (geostationary satellite ~0.3 s), and far above discovery's 1 s reply timeouts
MAX_SIGMA: Final = 2.0  # lognormal sigma: at 2 the 99th percentile is already 100x the median; beyond, the tail is the whole model
MAX_CHURN_PER_HOUR: Final = 60.0  # a node's mean session of one minute: shorter, and tables never settle, so the run measures only churn

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"  # no sign, exponent, inf or nan: every accepted form is plain digits
_UNIT_SECONDS: Final = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_ORDER: Final = ("h", "m", "s", "ms")
_DURATION_RE = re.compile(rf"(?:{_NUMBER}(?:ms|h|m|s))+")
_DURATION_PART_RE = re.compile(rf"({_NUMBER})(ms|h|m|s)")
_SHARE_RE = re.compile(rf"({_NUMBER})(%?)")
_CHURN_RE = re.compile(rf"({_NUMBER})(%?)/(h|m|s)")
_CHURN_UNIT_PER_HOUR: Final = {"h": 1.0, "m": 60.0, "s": 3600.0}

DURATION_FORMS: Final = "1h, 30m, 90s, 250ms, 1h30m or 3600 (seconds)"
SHARE_FORMS: Final = "0.3 or 30%, between 0 and 1"
LATENCY_FORMS: Final = ("0, 30ms (fixed), uniform:10ms-100ms, normal:50ms,10ms (mean, standard deviation; "
                        "clipped at 0) or lognormal:50ms,0.5 (median, sigma)")
CHURN_FORMS: Final = "0, 10%/h, 0.1/h or 5%/m (share of the nodes leaving, and as many joining, per hour or minute)"


def _seconds(text: str) -> float | None:
    """``text`` as seconds, or None when it is not a duration."""
    t = text.strip().lower()
    if re.fullmatch(_NUMBER, t):
        return float(t)
    if not _DURATION_RE.fullmatch(t):
        return None
    parts = _DURATION_PART_RE.findall(t)
    ranks = [_UNIT_ORDER.index(unit) for _, unit in parts]
    if any(a >= b for a, b in zip(ranks, ranks[1:])):
        return None  # "30m1h", "1s1s": units once each, largest first
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def parse_duration(text: str) -> float:
    """``"1h"``, ``"30m"``, ``"90s"``, ``"250ms"``, ``"1h30m"``, ``"3600"`` as seconds."""
    seconds = _seconds(text)
    if seconds is None:
        raise ValueError(f"duration {text!r}: expected {DURATION_FORMS}")
    if not seconds <= MAX_DURATION:
        raise ValueError(f"duration {text!r}: at most {MAX_DURATION / 86400:g} days; expected {DURATION_FORMS}")
    return seconds


def parse_share(text: str) -> float:
    """``"0.3"`` or ``"30%"`` as 0.3; it must lie in [0, 1]."""
    match = _SHARE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"share {text!r}: expected {SHARE_FORMS}")
    value = float(match[1]) / (100.0 if match[2] else 1.0)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"share {text!r}: above 1; expected {SHARE_FORMS}")
    return value


def parse_loss(text: str) -> float:
    """A share (:func:`parse_share`) below 1: at a loss of 1 nothing arrives and nothing can be measured."""
    value = parse_share(text)
    if value >= 1.0:
        raise ValueError(f"loss {text!r}: must be below 1 (100%); expected {SHARE_FORMS}")
    return value


class LatencyModel(Protocol):
    """A distribution of one-way delays."""

    def quantile(self, p: float) -> float:
        """The delay in seconds (>= 0) below which a share ``p`` of links lie, 0 < p < 1: the
        inverse of the distribution function, so a uniform ``p`` gives a delay drawn from it."""
        ...

    def describe(self) -> str:
        """The distribution in words, e.g. ``"uniform 10ms-100ms"``, for summaries."""
        ...


_STANDARD_NORMAL: Final = statistics.NormalDist()
_LINK_STEPS: Final = float(1 << 52)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"


@dataclass(frozen=True, slots=True)
class FixedLatency:
    seconds: float

    def quantile(self, p: float) -> float:
        return self.seconds

    def describe(self) -> str:
        return f"fixed {_ms(self.seconds)}"


@dataclass(frozen=True, slots=True)
class UniformLatency:
    low: float
    high: float

    def quantile(self, p: float) -> float:
        return self.low + (self.high - self.low) * p

    def describe(self) -> str:
        return f"uniform {_ms(self.low)}-{_ms(self.high)}"


@dataclass(frozen=True, slots=True)
class NormalLatency:
    mean: float
    stddev: float

    def quantile(self, p: float) -> float:
        value = self.mean + self.stddev * _STANDARD_NORMAL.inv_cdf(p)
        return value if value > 0.0 else 0.0  # clipped: a datagram cannot arrive before it left

    def describe(self) -> str:
        return f"normal {_ms(self.mean)} sd {_ms(self.stddev)} (clipped at 0)"


@dataclass(frozen=True, slots=True)
class LognormalLatency:
    median: float
    sigma: float

    def quantile(self, p: float) -> float:
        return self.median * math.exp(self.sigma * _STANDARD_NORMAL.inv_cdf(p))

    def describe(self) -> str:
        return f"lognormal median {_ms(self.median)} sigma {self.sigma:g}"


def parse_latency(text: str) -> LatencyModel:
    """``"0"``, ``"30ms"`` (fixed), ``"uniform:10ms-100ms"``, ``"normal:50ms,10ms"`` (mean,
    standard deviation; clipped at 0), ``"lognormal:50ms,0.5"`` (median, sigma)."""

    def refuse(why: str) -> ValueError:
        return ValueError(f"latency {text!r}: {why}; expected {LATENCY_FORMS}")

    def delay(part: str) -> float:
        seconds = _seconds(part)
        if seconds is None:
            raise refuse(f"{part!r} is not a duration")
        if not seconds <= MAX_LATENCY:
            raise refuse(f"{part.strip()} is above the {MAX_LATENCY:g} s cap")
        return seconds

    kind, sep, args = text.strip().lower().partition(":")
    if not sep:
        return FixedLatency(delay(kind))
    if kind == "uniform":
        low, dash, high = args.partition("-")
        if not dash:
            raise refuse("uniform takes low-high")
        lo, hi = delay(low), delay(high)
        if lo > hi:
            raise refuse("low above high")
        return UniformLatency(lo, hi)
    if kind in ("normal", "lognormal"):
        first, comma, second = args.partition(",")
        if not comma:
            raise refuse(f"{kind} takes two values separated by a comma")
        if kind == "normal":
            return NormalLatency(delay(first), delay(second))
        median = delay(first)
        if median <= 0.0:
            raise refuse("the lognormal median must be above 0")
        if not re.fullmatch(_NUMBER, second.strip()) or not float(second) <= MAX_SIGMA:
            raise refuse(f"sigma must be a number from 0 to {MAX_SIGMA:g}")
        return LognormalLatency(median, float(second))
    raise refuse(f"unknown distribution {kind!r}")


@dataclass(frozen=True, slots=True)
class ChurnRate:
    per_hour: float  # share of the nodes that leave (and as many join) per hour

    def describe(self) -> str:
        return f"{self.per_hour * 100:g}%/h"


def parse_churn(text: str) -> ChurnRate:
    """``"0"``, ``"10%/h"``, ``"0.1/h"``, ``"5%/m"`` (also ``/s``) as a share per hour."""
    t = text.strip().lower()
    if re.fullmatch(_NUMBER, t) and float(t) == 0.0:
        return ChurnRate(0.0)
    match = _CHURN_RE.fullmatch(t)
    if match is None:
        raise ValueError(f"churn {text!r}: expected {CHURN_FORMS}")
    per_hour = float(match[1]) / (100.0 if match[2] else 1.0) * _CHURN_UNIT_PER_HOUR[match[3]]
    if not per_hour <= MAX_CHURN_PER_HOUR:
        raise ValueError(f"churn {text!r}: above the cap of {MAX_CHURN_PER_HOUR * 100:g}%/h "
                         f"(a mean session of {3600 / MAX_CHURN_PER_HOUR:g} s); expected {CHURN_FORMS}")
    return ChurnRate(per_hour)


def churn_events(rate: ChurnRate, nodes: int, duration: float, rng: random.Random) -> Iterator[tuple[float, str]]:
    """Time-ordered ``(virtual second, "leave" | "join")`` in ``[0, duration)``: leaves and joins
    are two independent Poisson processes, each at ``rate.per_hour * nodes / 3600`` per second,
    so the population stays near ``nodes``. Drawn lazily: memory does not grow with the count."""
    if nodes < 0 or not duration >= 0.0:
        raise ValueError(f"churn over {nodes} nodes for {duration} s: both must be >= 0")
    each = rate.per_hour * nodes / 3600.0
    if each <= 0.0:
        return
    # The superposition of the two processes is one Poisson process at twice the rate whose
    # events are leaves or joins with equal chance: one exponential draw per event, in order.
    t = 0.0
    while True:
        t += rng.expovariate(2.0 * each)
        if t >= duration:
            return
        yield t, ("leave" if rng.random() < 0.5 else "join")


class NetworkModel:
    """Loss, latency and NAT for a :class:`~p2p.discover.transport.MemoryNetwork`:
    ``MemoryNetwork(loss=model.loss_hook, latency=model.latency_hook)``.

    Nodes placed with :meth:`add_node` are behind NAT in the declared share: not by a coin
    per node but by spreading the share evenly over the order of placement (from a random
    offset), so that 30% of 10 nodes is 3 nodes, not anything from 0 to 10. An address
    never placed is public.

    NAT state is one map (inside, remote) -> last outbound time, in order of last use. It is
    rebuilt without the expired mappings when it has doubled since the last sweep (amortised
    O(1) per datagram), and never holds more than ``max_mappings`` (the oldest go first,
    counted in ``nat_evicted``), so its memory is bounded whatever the traffic.
    """

    def __init__(self, *, latency: LatencyModel, loss: float = 0.0, nat_share: float = 0.0,
                 rng: random.Random, nat_timeout: float = NAT_TIMEOUT, max_mappings: int = NAT_MAPPINGS,
                 clock: Callable[[], float] = trio.current_time) -> None:
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss {loss}: must be at least 0 and below 1")
        if not 0.0 <= nat_share <= 1.0:
            raise ValueError(f"nat_share {nat_share}: must lie in [0, 1]")
        if not 0.0 < nat_timeout < math.inf:
            raise ValueError(f"nat_timeout {nat_timeout}: must be a positive number of seconds")
        if max_mappings < 1:
            raise ValueError(f"max_mappings {max_mappings}: must be at least 1")
        self.latency = latency
        self.loss = loss
        self.nat_share = nat_share
        self.nat_timeout = nat_timeout
        self.max_mappings = max_mappings
        self._clock = clock
        self._quantile = latency.quantile  # bound once: the hooks run per datagram
        self._random = rng.random
        self._link_key = rng.getrandbits(64).to_bytes(8, "big")  # which delay each link gets, fixed per run
        self._placed = 0
        self._offset = rng.random()
        self._nat_since: dict[Address, float] = {}  # node behind NAT -> when it was placed
        self._mappings: dict[tuple[Address, Address], float] = {}  # (inside, remote) -> last outbound, oldest first
        self._sweep_at = min(max_mappings, NAT_SWEEP_MIN)
        self._sent = 0
        self._dropped_loss = 0
        self._dropped_nat = 0
        self._nat_evicted = 0

    def add_node(self, addr: Address, *, nat: bool | None = None) -> bool:
        """Places a node and returns whether it is behind NAT: as given by ``nat``, or decided
        by the declared share when ``nat`` is None (e.g. ``nat=False`` for bootnodes)."""
        if nat is None:
            self._placed += 1
            share = self.nat_share
            nat = math.floor(self._placed * share + self._offset) > math.floor((self._placed - 1) * share + self._offset)
        if nat:
            try:
                self._nat_since[addr] = self._clock()
            except RuntimeError:  # placed before trio runs: no mapping can be older than the node
                self._nat_since[addr] = -math.inf
        else:
            self._nat_since.pop(addr, None)
        return nat

    def remove_node(self, addr: Address) -> None:
        """The node left. Its mappings expire in time; a node placed later at the same address
        does not inherit them (mappings older than a node's placement do not count)."""
        self._nat_since.pop(addr, None)

    def behind_nat(self, addr: Address) -> bool:
        return addr in self._nat_since

    @property
    def nat_nodes(self) -> int:
        """Nodes behind NAT now."""
        return len(self._nat_since)

    @property
    def mapping_count(self) -> int:
        """NAT mappings held (expired ones included until the next sweep)."""
        return len(self._mappings)

    def loss_hook(self, data: bytes, src: Address, dst: Address) -> bool:
        """True when the datagram from ``src`` to ``dst`` is lost: by chance, or to ``dst``'s NAT.
        Opens (or refreshes) ``src``'s NAT mapping for ``dst`` either way: the datagram left."""
        self._sent += 1
        nat = self._nat_since
        if src in nat:
            mappings = self._mappings
            key = (src, dst)
            mappings.pop(key, None)  # re-inserted at the end: the map stays in order of last use
            mappings[key] = self._clock()
            if len(mappings) > self._sweep_at:
                self._sweep()
        if self.loss and self._random() < self.loss:
            self._dropped_loss += 1
            return True
        since = nat.get(dst)
        if since is not None:
            opened = self._mappings.get((dst, src))
            if opened is None or opened < since or self._clock() - opened >= self.nat_timeout:
                self._dropped_nat += 1
                return True
        return False

    def latency_hook(self, data: bytes, src: Address, dst: Address) -> float:
        """One-way seconds in flight: the delay of the link from ``src`` to ``dst``."""
        return self.link_latency(src, dst)

    def link_latency(self, a: Address, b: Address) -> float:
        """The one-way delay between ``a`` and ``b``: the same both ways and for every datagram
        of a run, drawn from the latency model by a keyed hash of the pair."""
        if b < a:
            a, b = b, a
        digest = hashlib.blake2b(f"{a[0]}:{a[1]}/{b[0]}:{b[1]}".encode(), digest_size=8, key=self._link_key).digest()
        # 52 bits and a half step: p lies strictly inside (0, 1), where every quantile is finite
        return self._quantile(((int.from_bytes(digest, "big") >> 12) + 0.5) / _LINK_STEPS)

    def _sweep(self) -> None:
        """Forgets expired mappings; past ``max_mappings``, the oldest too, a quarter more than
        needed so that a full table is not rebuilt on every datagram."""
        oldest_open = self._clock() - self.nat_timeout
        live = [(key, t) for key, t in self._mappings.items() if t > oldest_open]
        if len(live) > self.max_mappings:
            keep = self.max_mappings - self.max_mappings // 4
            self._nat_evicted += len(live) - keep
            live = live[len(live) - keep:]
        self._mappings = dict(live)
        self._sweep_at = min(self.max_mappings, max(NAT_SWEEP_MIN, 2 * len(live)))

    @property
    def counters(self) -> dict[str, int]:
        """``sent`` (datagrams to an address with an endpoint), ``dropped_loss``, ``dropped_nat``,
        ``nat_evicted`` (mappings forgotten early because ``max_mappings`` were held)."""
        return {"sent": self._sent, "dropped_loss": self._dropped_loss, "dropped_nat": self._dropped_nat,
                "nat_evicted": self._nat_evicted}

    def describe(self) -> dict[str, Any]:
        """The model as JSON-able values, for a run's summary."""
        return {"latency": self.latency.describe(), "loss": self.loss, "nat_share": self.nat_share,
                "nat_timeout": self.nat_timeout}
