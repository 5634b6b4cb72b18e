"""Who to dial and when, sans-IO: static nodes with backoff, discovered nodes up to a share of
``max_peers``, a dial history, and a bound on dials in flight. The server's dial task asks this
object, dials, and reports back; time is passed in, so the policy is tested without sockets.

Also here: :class:`InboundLimiter`, the inbound side's per-IP throttle and netrestrict check.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from p2p.enode import IPAddress, Node, NodeID

DIAL_RATIO = 3  # go-ethereum's defaultDialRatio: a third of the peer slots are dialed out
MAX_ACTIVE_DIALS = 16  # go-ethereum's defaultMaxPendingPeers for dials in flight
DIAL_HISTORY_EXPIRY = 30.0  # seconds before the same node is dialed again (inbound throttle is 30 s too)
DIAL_TIMEOUT = 15.0  # go-ethereum's defaultDialTimeout: TCP connect + RLPx + Hello
STATIC_BACKOFF_MIN = 1.0  # first retry of a static node that failed or dropped
STATIC_BACKOFF_MAX = 60.0  # retries of an unreachable static node settle at this interval
STATIC_STABLE_AFTER = 30.0  # a static peer connected this long resets its backoff
INBOUND_THROTTLE = 30.0  # go-ethereum's inboundThrottleTime: one inbound attempt per IP per 30 s
MAX_THROTTLE_ENTRIES = 100_000  # bound on the throttle map under a flood from many addresses


class DialRefused(Exception):
    """Why the scheduler will not dial a node now (already connected, in history, ...)."""


@dataclass(slots=True)
class _Static:
    node: Node
    next_attempt: float = 0.0
    failures: int = 0
    connected_at: float | None = None


@dataclass(slots=True)
class DialScheduler:
    """The dial policy. ``now`` arguments are seconds from the server's clock."""

    self_id: NodeID
    max_dial_peers: int
    max_active: int = MAX_ACTIVE_DIALS
    history_expiry: float = DIAL_HISTORY_EXPIRY
    backoff_min: float = STATIC_BACKOFF_MIN
    backoff_max: float = STATIC_BACKOFF_MAX
    stable_after: float = STATIC_STABLE_AFTER
    rng: random.Random = field(default_factory=random.SystemRandom)
    static: dict[NodeID, _Static] = field(default_factory=dict)
    connected: dict[NodeID, bool] = field(default_factory=dict)  # id -> counts as dialed peer
    dialing: dict[NodeID, Node] = field(default_factory=dict)
    history: dict[NodeID, float] = field(default_factory=dict)  # id -> time it may be dialed again

    # -- configuration -------------------------------------------------------------------

    def add_static(self, node: Node, now: float = 0.0) -> None:
        if node.id == self.self_id or node.id in self.static:
            return
        self.static[node.id] = _Static(node, next_attempt=now)

    def remove_static(self, node_id: NodeID) -> None:
        self.static.pop(node_id, None)

    # -- peer set ------------------------------------------------------------------------

    def peer_added(self, node_id: NodeID, dialed: bool, now: float) -> None:
        self.connected[node_id] = dialed
        st = self.static.get(node_id)
        if st is not None:
            st.connected_at = now

    def peer_removed(self, node_id: NodeID, now: float) -> None:
        self.connected.pop(node_id, None)
        st = self.static.get(node_id)
        if st is not None:
            if st.connected_at is not None and now - st.connected_at >= self.stable_after:
                st.failures = 0
            st.connected_at = None
            st.next_attempt = now + self._backoff(st.failures)
            st.failures += 1

    @property
    def dialed_peers(self) -> int:
        return sum(1 for dialed in self.connected.values() if dialed)

    # -- decisions -----------------------------------------------------------------------

    def _backoff(self, failures: int) -> float:
        base = min(self.backoff_max, self.backoff_min * (2 ** min(failures, 30)))
        return base * (0.9 + 0.2 * self.rng.random())  # jitter, so restarts do not synchronize

    def free_dyn_slots(self) -> int:
        """How many discovered nodes may be dialed now. Twice the missing dialed peers, as
        go-ethereum, because many dials fail."""
        want = 2 * max(0, self.max_dial_peers - self.dialed_peers)
        return max(0, min(self.max_active, want) - len(self.dialing))

    def due_static(self, now: float) -> list[Node]:
        """Static nodes to dial now (not connected, not in flight, backoff elapsed)."""
        room = self.max_active - len(self.dialing)
        out: list[Node] = []
        for node_id, st in self.static.items():
            if room <= 0:
                break
            if node_id in self.connected or node_id in self.dialing or st.next_attempt > now:
                continue
            out.append(st.node)
            room -= 1
        return out

    def check_dyn(self, node: Node, now: float) -> None:
        """Raise :class:`DialRefused` unless the discovered ``node`` may be dialed now."""
        if node.id == self.self_id:
            raise DialRefused("is self")
        if node.id in self.connected:
            raise DialRefused("already connected")
        if node.id in self.dialing:
            raise DialRefused("already dialing")
        if node.id in self.static:
            raise DialRefused("static node (dialed on its own schedule)")
        if self.history.get(node.id, 0.0) > now:
            raise DialRefused("dialed recently")
        if node.tcp_port == 0:
            raise DialRefused("no TCP port")
        if self.free_dyn_slots() <= 0:
            raise DialRefused("no free dial slot")

    def dial_started(self, node: Node, now: float) -> None:
        self.dialing[node.id] = node
        self.history[node.id] = now + self.history_expiry

    def dial_finished(self, node: Node, now: float, ok: bool) -> None:
        self.dialing.pop(node.id, None)
        st = self.static.get(node.id)
        if st is not None and not ok:
            st.next_attempt = now + self._backoff(st.failures)
            st.failures += 1
        self.expire_history(now)

    def expire_history(self, now: float) -> None:
        if len(self.history) > 4 * max(16, self.max_active):
            self.history = {k: t for k, t in self.history.items() if t > now}

    def next_static_time(self) -> float | None:
        """When the earliest waiting static node becomes due (None if none waits)."""
        times = [st.next_attempt for nid, st in self.static.items()
                 if nid not in self.connected and nid not in self.dialing]
        return min(times) if times else None


def parse_netrestrict(cidrs: Iterable[str] | str | None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    """``"10.0.0.0/8,127.0.0.0/8"`` or a list of CIDRs, as go-ethereum's ``--netrestrict``."""
    if cidrs is None:
        return None
    if isinstance(cidrs, str):
        cidrs = [c for c in (part.strip() for part in cidrs.split(",")) if c]
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


@dataclass(slots=True)
class InboundLimiter:
    """Per-IP throttle (one attempt per ``interval``; loopback exempt unless asked) and the
    netrestrict allow-list for inbound connections."""

    interval: float = INBOUND_THROTTLE
    throttle_loopback: bool = False
    netrestrict: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    max_entries: int = MAX_THROTTLE_ENTRIES
    recent: dict[IPAddress, float] = field(default_factory=dict)  # ip -> time it may come again, oldest first
    evicted: int = 0  # addresses forgotten early because the table was full

    def allowed_network(self, ip: IPAddress) -> bool:
        return self.netrestrict is None or any(ip in net for net in self.netrestrict)

    def check(self, ip: IPAddress, now: float) -> str | None:
        """None if an inbound connection from ``ip`` may proceed (and records it), else why not."""
        if not self.allowed_network(ip):
            return "not in netrestrict"
        if ip.is_loopback and not self.throttle_loopback:
            return None
        recent = self.recent
        until = recent.pop(ip, None)
        if until is not None and until > now:
            recent[ip] = until
            return "too many attempts from this IP"
        # Entries are kept in the order they expire (one interval after insertion), so the
        # expired ones and, when still full, the oldest are at the front. A full table forgets
        # its oldest addresses rather than refusing every new one.
        while recent:
            first = next(iter(recent))
            if recent[first] > now and len(recent) < self.max_entries:
                break
            if recent[first] > now:
                self.evicted += 1
            del recent[first]
        recent[ip] = now + self.interval
        return None


__all__ = [
    "DIAL_HISTORY_EXPIRY",
    "DIAL_RATIO",
    "DIAL_TIMEOUT",
    "DialRefused",
    "DialScheduler",
    "INBOUND_THROTTLE",
    "InboundLimiter",
    "MAX_ACTIVE_DIALS",
    "parse_netrestrict",
]
