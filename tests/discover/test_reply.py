"""Reply matching: a request ends when its reply is complete, when a partial reply settles,
or at its timeout. Virtual time (MockClock), so the ends are exact."""

from __future__ import annotations

import ipaddress
import random

import pytest
import trio
import trio.testing

from p2p.crypto import PrivateKey
from p2p.discover.reply import Match, Pending, PendingReplies, Settle
from p2p.enode import Node

TIMEOUT = 0.5
GRACE = 0.1
NODE = Node(PrivateKey.generate(random.Random(5)).public_key, ipaddress.ip_address("127.0.0.1"), 30303, 30303)


def _parts(settling: set[str], completing: set[str]) -> Match[str]:
    def match(reply: str) -> tuple[bool, bool | Settle]:
        if reply in completing:
            return True, True
        if reply in settling:
            return True, Settle(GRACE)
        return True, False

    return match


async def _request(replies: PendingReplies[str, str], match: Match[str],
                   arrivals: list[tuple[float, str]]) -> tuple[Pending[str, str], float]:
    """Request under key "k"; deliver each (delay, reply) of ``arrivals``; the Pending and
    the virtual seconds the request took."""
    out: list[tuple[Pending[str, str], float]] = []

    async def ask() -> None:
        t0 = trio.current_time()
        p = await replies.request("k", NODE, match, lambda: None, TIMEOUT)
        out.append((p, trio.current_time() - t0))

    async with trio.open_nursery() as n:
        n.start_soon(ask)
        for delay, reply in arrivals:
            await trio.sleep(delay)
            replies.deliver("k", reply)
    return out[0]


async def test_a_settling_part_ends_the_request_after_its_grace(autojump_clock: trio.testing.MockClock) -> None:
    p, took = await _request(PendingReplies(8), _parts({"tail"}, set()), [(0.01, "tail")])
    assert p.done and p.result == "tail"
    assert took == pytest.approx(0.01 + GRACE)


async def test_a_later_part_completes_a_settling_request_at_once(autojump_clock: trio.testing.MockClock) -> None:
    replies: PendingReplies[str, str] = PendingReplies(8)
    p, took = await _request(replies, _parts({"tail"}, {"head"}), [(0.01, "tail"), (0.03, "head")])
    assert p.done and p.result == "head"
    assert took == pytest.approx(0.04)
    assert replies.deliver("k", "late") is False  # nobody waits any more


async def test_a_partial_reply_that_does_not_settle_waits_out_the_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    p, took = await _request(PendingReplies(8), _parts(set(), set()), [(0.01, "part")])
    assert not p.done and p.result == "part"
    assert took == pytest.approx(TIMEOUT)
