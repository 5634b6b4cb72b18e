"""Slots for inbound handshakes in progress, sans-IO: who may start one, and who gives way.

An inbound connection holds a slot from accept until its Hello is done. Idle connections are
the cheapest attack on a listener (no crypto, no bytes), so the slots are guarded three ways:

- one address may hold only ``max_per_ip`` slots at once (trusted nodes' addresses exempt);
- the auth message must arrive within a short deadline (the server enforces it);
- when every slot is taken, a newcomer replaces the oldest connection that has not yet sent
  its auth, instead of waiting behind it.

The server asks :meth:`PendingHandshakes.admit` for each accepted connection and reports
progress back (:meth:`authenticated`, :meth:`finished`); time is passed in, so the policy is
tested without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from p2p.enode import IPAddress

MAX_PENDING = 50  # inbound handshakes in progress at once (go-ethereum's defaultMaxPendingPeers is 50)
# Handshakes in progress from one address. An honest node makes one connection to us; a few
# nodes behind one NAT may dial at the same moment. Any more is one host hoarding the slots.
MAX_PENDING_PER_IP = 8


class Verdict(Enum):
    ADMIT = "admit"  # a free slot
    EVICT = "evict"  # every slot is taken: admit after evicting :attr:`Admission.victim`
    PER_IP = "per_ip"  # refuse: the address holds its share of slots already
    FULL = "full"  # every slot is held by a connection past its auth: wait for one to end


@dataclass(slots=True, eq=False)
class Pending:
    """One inbound handshake in progress."""

    ip: IPAddress
    started: float
    exempt: bool
    authed: bool = False
    evicted: bool = False


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    victim: Pending | None = None


@dataclass(slots=True)
class PendingHandshakes:
    max_pending: int = MAX_PENDING
    max_per_ip: int = MAX_PENDING_PER_IP
    _entries: list[Pending] = field(default_factory=list)  # oldest first
    _per_ip: dict[IPAddress, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._entries)

    def count(self, ip: IPAddress) -> int:
        return self._per_ip.get(ip, 0)

    def admit(self, ip: IPAddress, *, exempt: bool = False) -> Admission:
        """What to do with a connection just accepted from ``ip``; changes nothing."""
        if not exempt and self._per_ip.get(ip, 0) >= self.max_per_ip:
            return Admission(Verdict.PER_IP)
        if len(self._entries) < self.max_pending:
            return Admission(Verdict.ADMIT)
        victim = self.oldest_unauthenticated()
        if victim is None:
            return Admission(Verdict.FULL)
        return Admission(Verdict.EVICT, victim)

    def oldest_unauthenticated(self) -> Pending | None:
        for entry in self._entries:
            if not entry.authed and not entry.evicted:
                return entry
        return None

    def has_room(self) -> bool:
        """Whether a newcomer could get a slot now (free, or by eviction)."""
        return len(self._entries) < self.max_pending or self.oldest_unauthenticated() is not None

    def add(self, ip: IPAddress, now: float, *, exempt: bool = False) -> Pending:
        entry = Pending(ip, now, exempt)
        self._entries.append(entry)
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return entry

    def evict(self, entry: Pending) -> None:
        """Take ``entry``'s slot away at once (its task is told to stop by the caller)."""
        entry.evicted = True
        self.finished(entry)

    def authenticated(self, entry: Pending) -> None:
        entry.authed = True

    def finished(self, entry: Pending) -> None:
        """The handshake is over (peer, failure or eviction); idempotent."""
        try:
            self._entries.remove(entry)
        except ValueError:
            return
        left = self._per_ip[entry.ip] - 1
        if left:
            self._per_ip[entry.ip] = left
        else:
            del self._per_ip[entry.ip]


__all__ = ["Admission", "MAX_PENDING", "MAX_PENDING_PER_IP", "Pending", "PendingHandshakes", "Verdict"]
