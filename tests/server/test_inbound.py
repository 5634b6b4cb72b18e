"""The pending-handshake slots as a policy (no sockets), and the inbound throttle table."""

from __future__ import annotations

import ipaddress

from p2p.dial import InboundLimiter
from p2p.inbound import PendingHandshakes, Verdict

A = ipaddress.ip_address("10.0.0.1")
B = ipaddress.ip_address("10.0.0.2")


def test_one_address_gets_its_share_of_slots_only() -> None:
    slots = PendingHandshakes(max_pending=10, max_per_ip=3)
    for i in range(3):
        assert slots.admit(A).verdict is Verdict.ADMIT
        slots.add(A, float(i))
    assert slots.admit(A).verdict is Verdict.PER_IP
    assert slots.admit(A, exempt=True).verdict is Verdict.ADMIT  # a trusted node's address
    assert slots.admit(B).verdict is Verdict.ADMIT


def test_a_full_table_evicts_the_oldest_without_auth() -> None:
    slots = PendingHandshakes(max_pending=3, max_per_ip=3)
    first, second, third = (slots.add(A, float(i)) for i in range(3))
    slots.authenticated(first)
    admission = slots.admit(B)
    assert admission.verdict is Verdict.EVICT and admission.victim is second
    slots.evict(second)
    assert len(slots) == 2 and slots.count(A) == 2
    slots.add(B, 4.0)
    assert slots.admit(B).victim is third


def test_a_table_full_of_authenticated_handshakes_makes_newcomers_wait() -> None:
    slots = PendingHandshakes(max_pending=2, max_per_ip=2)
    for entry in (slots.add(A, 0.0), slots.add(B, 0.0)):
        slots.authenticated(entry)
    assert slots.admit(B).verdict is Verdict.FULL
    assert not slots.has_room()


def test_finished_frees_the_slot_once() -> None:
    slots = PendingHandshakes(max_pending=2, max_per_ip=1)
    entry = slots.add(A, 0.0)
    slots.finished(entry)
    slots.finished(entry)
    assert len(slots) == 0 and slots.count(A) == 0
    assert slots.admit(A).verdict is Verdict.ADMIT


def test_a_full_throttle_table_forgets_its_oldest_addresses() -> None:
    limiter = InboundLimiter(interval=30.0, max_entries=3)
    addresses = [ipaddress.ip_address(f"10.0.1.{i}") for i in range(5)]
    for i, ip in enumerate(addresses):
        assert limiter.check(ip, now=float(i)) is None  # a new address is never refused
    assert limiter.evicted == 2
    assert list(limiter.recent) == addresses[2:]
    assert limiter.check(addresses[4], now=5.0) == "too many attempts from this IP"
    assert limiter.check(addresses[0], now=5.0) is None  # forgotten early, so allowed again


def test_expired_throttle_entries_go_before_live_ones() -> None:
    limiter = InboundLimiter(interval=1.0, max_entries=2)
    limiter.check(A, now=0.0)
    limiter.check(B, now=0.5)
    c = ipaddress.ip_address("10.0.0.3")
    assert limiter.check(c, now=1.2) is None  # A expired at 1.0: dropped, not evicted
    assert limiter.evicted == 0
    assert set(limiter.recent) == {B, c}
