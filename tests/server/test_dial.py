"""The dial policy and the inbound limiter, sans-IO: time is a number passed in."""

from __future__ import annotations

import ipaddress
import random

import pytest

from p2p.crypto import PrivateKey
from p2p.dial import (
    DIAL_HISTORY_EXPIRY,
    MAX_ACTIVE_DIALS,
    DialRefused,
    DialScheduler,
    InboundLimiter,
    parse_netrestrict,
)
from p2p.enode import Node

RNG = random.Random(5)


def node(i: int, port: int = 30303) -> Node:
    return Node(PrivateKey.generate(random.Random(i)).public_key, ipaddress.ip_address("127.0.0.1"), port, port)


SELF = node(0)


def sched(max_dial_peers: int = 10, **kw: object) -> DialScheduler:
    return DialScheduler(SELF.id, max_dial_peers=max_dial_peers, rng=random.Random(1), **kw)  # type: ignore[arg-type]


def test_history_blocks_redial_for_30_seconds() -> None:
    s = sched()
    n = node(1)
    s.check_dyn(n, 0.0)
    s.dial_started(n, 0.0)
    s.dial_finished(n, 1.0, ok=False)
    with pytest.raises(DialRefused, match="recently"):
        s.check_dyn(n, DIAL_HISTORY_EXPIRY - 0.1)
    s.check_dyn(n, DIAL_HISTORY_EXPIRY + 0.1)


def test_refuses_self_connected_dialing_static_and_portless() -> None:
    s = sched()
    with pytest.raises(DialRefused, match="self"):
        s.check_dyn(SELF, 0)
    s.peer_added(node(1).id, dialed=True, now=0)
    with pytest.raises(DialRefused, match="connected"):
        s.check_dyn(node(1), 0)
    s.dial_started(node(2), 0)
    with pytest.raises(DialRefused, match="dialing"):
        s.check_dyn(node(2), 0)
    s.add_static(node(3))
    with pytest.raises(DialRefused, match="static"):
        s.check_dyn(node(3), 0)
    with pytest.raises(DialRefused, match="TCP"):
        s.check_dyn(node(4, port=0), 0)


def test_at_most_16_dials_in_flight() -> None:
    s = sched(max_dial_peers=100)
    for i in range(1, 100):
        try:
            s.check_dyn(node(i), 0)
        except DialRefused as exc:
            assert "slot" in str(exc)
            break
        s.dial_started(node(i), 0)
    assert len(s.dialing) == MAX_ACTIVE_DIALS == 16
    s.dial_finished(node(1), 1, ok=False)
    s.check_dyn(node(200), 1)


def test_dyn_slots_follow_dialed_peers() -> None:
    s = sched(max_dial_peers=3)  # e.g. max_peers 10 / ratio 3
    assert s.free_dyn_slots() == 6  # twice the missing dialed peers
    s.peer_added(node(1).id, dialed=True, now=0)
    s.peer_added(node(2).id, dialed=True, now=0)
    s.peer_added(node(3).id, dialed=False, now=0)  # inbound peers do not count
    assert s.free_dyn_slots() == 2
    s.dial_started(node(4), 0)
    assert s.free_dyn_slots() == 1
    s.peer_added(node(5).id, dialed=True, now=0)
    assert s.free_dyn_slots() == 0
    with pytest.raises(DialRefused, match="slot"):
        s.check_dyn(node(6), 0)


def test_static_nodes_backoff_and_redial() -> None:
    s = sched(backoff_min=1.0, backoff_max=8.0)
    n = node(1)
    s.add_static(n, now=0)
    assert s.due_static(0) == [n]
    waits = []
    now = 0.0
    for _ in range(6):
        s.dial_started(n, now)
        assert s.due_static(now) == []  # in flight
        s.dial_finished(n, now, ok=False)
        nxt = s.next_static_time()
        assert nxt is not None
        waits.append(nxt - now)
        assert s.due_static(nxt - 0.01) == []
        now = nxt
        assert s.due_static(now) == [n]
    # doubling with +-10% jitter, capped
    for got, want in zip(waits, [1, 2, 4, 8, 8, 8]):
        assert want * 0.9 <= got <= want * 1.1
    # connected: not due; dropped after a long stable session: retried after the minimum
    s.dial_started(n, now)
    s.dial_finished(n, now, ok=True)
    s.peer_added(n.id, dialed=True, now=now)
    assert s.due_static(now + 100) == [] and s.next_static_time() is None
    s.peer_removed(n.id, now + 100)
    nxt = s.next_static_time()
    assert nxt is not None and 0.9 <= nxt - (now + 100) <= 1.1


def test_static_dials_limited_by_active_dials() -> None:
    s = sched(max_active=4)
    for i in range(1, 10):
        s.add_static(node(i))
    due = s.due_static(0)
    assert len(due) == 4
    for n in due:
        s.dial_started(n, 0)
    assert s.due_static(0) == []


def test_inbound_limiter_throttle_and_loopback() -> None:
    lim = InboundLimiter(interval=30.0)
    ip = ipaddress.ip_address("10.0.0.1")
    lo = ipaddress.ip_address("127.0.0.1")
    assert lim.check(ip, 0.0) is None
    assert lim.check(ip, 10.0) == "too many attempts from this IP"
    assert lim.check(ip, 30.5) is None
    assert all(lim.check(lo, t) is None for t in (0.0, 0.1, 0.2))  # loopback exempt
    strict = InboundLimiter(interval=30.0, throttle_loopback=True)
    assert strict.check(lo, 0.0) is None and strict.check(lo, 1.0) is not None


def test_netrestrict() -> None:
    nets = parse_netrestrict("10.0.0.0/8, 192.168.1.0/24")
    lim = InboundLimiter(netrestrict=nets)
    assert lim.check(ipaddress.ip_address("10.2.3.4"), 0) is None
    assert lim.check(ipaddress.ip_address("192.168.2.1"), 0) == "not in netrestrict"
    assert parse_netrestrict(None) is None
    assert InboundLimiter().allowed_network(ipaddress.ip_address("8.8.8.8"))
