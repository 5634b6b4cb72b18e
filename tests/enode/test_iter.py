"""FairMix and the node iterators, on a MockClock: fairness, stalled sources, timeouts, closing."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from p2p.crypto import PrivateKey
from p2p.enode import Node
from p2p.enode.iter import MIX_TIMEOUT, FairMix, NodeIterator, StaticNodes, TooManySources

RNG = random.Random(5)
LOOP = ipaddress.ip_address("127.0.0.1")


def _nodes(n: int) -> list[Node]:
    return [Node(PrivateKey.generate(RNG).public_key, LOOP, 30303 + i, 30303 + i) for i in range(n)]


POOL = _nodes(40)


class Paced:
    """A source that yields a node every ``every`` seconds (forever, or ``limit`` times), or
    never (``every`` infinite: a stalled source). Records whether it was closed."""

    def __init__(self, nodes: list[Node], every: float, limit: int | None = None) -> None:
        self.nodes = nodes
        self.every = every
        self.limit = limit
        self.closed = False
        self.i = 0

    def __aiter__(self) -> "Paced":
        return self

    async def __anext__(self) -> Node:
        if self.closed or (self.limit is not None and self.i >= self.limit):
            raise StopAsyncIteration
        await trio.sleep(self.every)
        node = self.nodes[self.i % len(self.nodes)]
        self.i += 1
        return node

    async def aclose(self) -> None:
        self.closed = True


async def _take(mix: FairMix, n: int) -> list[tuple[Node, str]]:
    out = []
    for _ in range(n):
        out.append((await mix.__anext__(), mix.last_source))
    return out


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def test_sources_match_the_interface() -> None:
    async def gen() -> AsyncIterator[Node]:
        yield POOL[0]

    assert isinstance(StaticNodes(POOL[:1]), NodeIterator)
    assert isinstance(gen(), NodeIterator)
    assert isinstance(FairMix(), NodeIterator)
    assert isinstance(Paced(POOL, 1.0), NodeIterator)


async def test_each_source_gets_its_turn(clock: trio.testing.MockClock) -> None:
    mix = FairMix()
    srcs = {name: Paced(POOL[i * 10:(i + 1) * 10], every=0.01) for i, name in enumerate("abc")}
    for name, src in srcs.items():
        mix.add_source(src, name)
    async with trio.open_nursery() as nursery:
        await nursery.start(mix.run)
        got = await _take(mix, 30)
        await mix.aclose()
    counts = Counter(name for _, name in got)
    assert counts == {"a": 10, "b": 10, "c": 10}
    # round-robin: every window of three holds each source once
    for i in range(0, 30, 3):
        assert {name for _, name in got[i:i + 3]} == {"a", "b", "c"}
    assert all(src.closed for src in srcs.values())


async def test_a_fast_source_does_not_crowd_out_a_slower_one(clock: trio.testing.MockClock) -> None:
    mix = FairMix(timeout=1.0)
    mix.add_source(Paced(POOL[:10], every=0.001), "fast")
    mix.add_source(Paced(POOL[10:20], every=0.5), "slow")
    async with trio.open_nursery() as nursery:
        await nursery.start(mix.run)
        got = await _take(mix, 20)
        await mix.aclose()
    assert Counter(name for _, name in got) == {"fast": 10, "slow": 10}


async def test_a_stalled_source_does_not_stall_the_others(clock: trio.testing.MockClock) -> None:
    mix = FairMix()
    stalled = Paced(POOL[:1], every=float("inf"))
    mix.add_source(stalled, "stalled")
    mix.add_source(Paced(POOL[10:20], every=0.01), "live")
    async with trio.open_nursery() as nursery:
        await nursery.start(mix.run)
        t0 = trio.current_time()
        got = await _take(mix, 10)
        elapsed = trio.current_time() - t0
        misses = {s.name: s.timeouts for s in mix.sources}
        await mix.aclose()
    assert {name for _, name in got} == {"live"}
    # The stalled source's turns cost at most its timeout, halved at each miss.
    assert elapsed <= 10 * 0.01 + 2 * MIX_TIMEOUT
    assert misses == {"stalled": 5, "live": 0} and mix.fallbacks == 5
    assert stalled.closed


async def test_the_timeout_halves_on_misses_and_resets_on_delivery(clock: trio.testing.MockClock) -> None:
    mix = FairMix(timeout=1.0)
    late = Paced(POOL[:5], every=1.2)  # misses a full turn (1 s), makes the halved one (0.5 s)
    mix.add_source(late, "late")
    mix.add_source(Paced(POOL[10:40], every=0.0), "quick")
    async with trio.open_nursery() as nursery:
        await nursery.start(mix.run)
        got = await _take(mix, 12)
        stats = {s.name: s for s in mix.sources}
        await mix.aclose()
    names = [name for _, name in got]
    # Each late node: a missed turn (a quick node instead), quick's own turn, then the late
    # node within the halved wait; its delivery resets the wait to a full second, so the
    # pattern repeats instead of the late source being starved by ever shorter waits.
    assert names == ["quick", "quick", "late", "quick"] * 3
    assert stats["late"].timeouts == 3 and stats["quick"].timeouts == 0


async def test_strict_mix_waits_for_each_source(clock: trio.testing.MockClock) -> None:
    mix = FairMix(timeout=-1)
    mix.add_source(Paced(POOL[:3], every=5.0), "slow")
    mix.add_source(Paced(POOL[10:40], every=0.0), "quick")
    async with trio.open_nursery() as nursery:
        await nursery.start(mix.run)
        got = await _take(mix, 6)
        await mix.aclose()
    assert [name for _, name in got] == ["slow", "quick"] * 3


async def test_ended_sources_leave_and_sources_come_and_go(clock: trio.testing.MockClock) -> None:
    mix = FairMix()
    mix.add_source(StaticNodes(POOL[:2]), "once")
    async with trio.open_nursery() as nursery:
        await nursery.start(mix.run)
        first = await _take(mix, 2)
        assert [n for n, _ in first] == POOL[:2]
        await trio.sleep(0.01)
        assert mix.sources == []  # the list ended: it left the mix
        added = Paced(POOL[20:30], every=0.01)
        mix.add_source(added, "added")
        assert (await mix.__anext__()) == POOL[20]
        assert mix.remove_source(added) and not mix.remove_source(added)
        await trio.sleep(0.01)
        assert added.closed and mix.sources == []
        with trio.move_on_after(5) as waiting:  # no source: the mix waits, it does not end
            await mix.__anext__()
        assert waiting.cancelled_caught
        await mix.aclose()


async def test_a_failing_source_leaves_without_harm(clock: trio.testing.MockClock) -> None:
    class Broken(Paced):
        async def __anext__(self) -> Node:
            raise ValueError("broken")

    mix = FairMix()
    broken = Broken(POOL, 0.0)
    mix.add_source(broken, "broken")
    mix.add_source(Paced(POOL[10:20], every=0.01), "good")
    async with trio.open_nursery() as nursery:
        await nursery.start(mix.run)
        got = await _take(mix, 5)
        await mix.aclose()
    assert {name for _, name in got} == {"good"} and broken.closed


async def test_closing_ends_a_waiting_reader_and_closes_every_source(clock: trio.testing.MockClock) -> None:
    mix = FairMix()
    srcs = [Paced(POOL, every=float("inf")) for _ in range(3)]
    for s in srcs:
        mix.add_source(s)
    ended: list[bool] = []

    async def read() -> None:
        async for _ in mix:
            pass
        ended.append(True)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(mix.run)
            nursery.start_soon(read)
            await trio.sleep(10)
            await mix.aclose()
    assert ended == [True] and all(s.closed for s in srcs)
    with pytest.raises(StopAsyncIteration):
        await mix.__anext__()
    with pytest.raises(trio.ClosedResourceError):
        mix.add_source(StaticNodes(POOL))


async def test_closing_before_running_closes_the_sources() -> None:
    mix = FairMix()
    src = Paced(POOL, every=1.0)
    mix.add_source(src)
    await mix.aclose()
    assert src.closed


async def test_sources_are_bounded() -> None:
    mix = FairMix(max_sources=2)
    mix.add_source(StaticNodes(POOL[:1]))
    mix.add_source(StaticNodes(POOL[:1]))
    with pytest.raises(TooManySources):
        mix.add_source(StaticNodes(POOL[:1]))
    assert mix.refused_sources == 1
    await mix.aclose()


async def test_static_nodes_once_and_cycling(clock: trio.testing.MockClock) -> None:
    assert [n async for n in StaticNodes(POOL[:3])] == POOL[:3]
    cyc = StaticNodes(POOL[:2], cycle=True, interval=30.0)
    t0 = trio.current_time()
    got = [await cyc.__anext__() for _ in range(5)]
    assert got == POOL[:2] * 2 + POOL[:1]
    assert trio.current_time() - t0 == pytest.approx(60.0)  # paced: one pass per interval
    await cyc.aclose()
    with pytest.raises(StopAsyncIteration):
        await cyc.__anext__()
