"""Refresh and revalidation timers on trio's MockClock: half an hour passes in milliseconds."""

from __future__ import annotations

import ipaddress

import pytest
import trio
import trio.testing

from p2p.discover import DiscoveryConfig, NodeRemoved, open_discovery
from p2p.enode import Node
from tests.discover.conftest import make_keys

KEYS = make_keys(3, seed=99)


async def test_refresh_on_start_and_every_30_minutes(autojump_clock: trio.testing.MockClock) -> None:
    # Without the small-table refreshes (the table of this 2-node network never fills).
    config = DiscoveryConfig(revalidate=False, refresh_random_lookups=3, small_table_refresh=None)
    quiet = DiscoveryConfig(refresh_on_start=False, revalidate=False)
    with trio.fail_after(3 * 3600):  # virtual seconds
        async with open_discovery(KEYS[0], config=quiet) as boot, \
                open_discovery(KEYS[1], bootnodes=(boot.local_node,), config=config) as a:
            await trio.sleep(60)
            assert a.stats.lookups == 4  # self lookup and three random ones
            assert boot.local_id in a.table and a.local_id in boot.table
            await trio.sleep(25 * 60)
            assert a.stats.lookups == 4  # not yet: the next refresh is 27-33 minutes on
            await trio.sleep(10 * 60)
            assert a.stats.lookups == 8
            await trio.sleep(60 * 60)
            assert a.stats.lookups >= 12


async def test_revalidation_drops_a_node_that_went_away(autojump_clock: trio.testing.MockClock) -> None:
    quiet = DiscoveryConfig(refresh_on_start=False, revalidate=False)
    checking = DiscoveryConfig(refresh_on_start=False, revalidate=True, revalidate_interval=10.0)
    with trio.fail_after(3600):
        async with open_discovery(KEYS[0], config=checking) as a:
            async with open_discovery(KEYS[2], config=quiet) as b:
                await a.ping(b.local_node)
                with trio.fail_after(5):
                    while b.local_id not in a.table:
                        await trio.sleep(0.01)
                await trio.sleep(60)  # revalidation pings b a few times; it answers
                assert b.local_id in a.table
                events = a.subscribe()
            # b is gone: within a few revalidation rounds it leaves the table
            ev = await events.__anext__()
            assert isinstance(ev, NodeRemoved) and ev.node.id == b.local_id
            assert a.stats.timeouts["pong"] >= 1


async def test_small_table_refreshes_with_backoff(autojump_clock: trio.testing.MockClock) -> None:
    """A table short of 16 nodes refreshes again after about 5 s, 10 s, 20 s, ... doubling up
    to 2 minutes, instead of waiting half an hour after a failed first lookup."""
    config = DiscoveryConfig(revalidate=False, refresh_random_lookups=0, random_lookup_spread=0.0)
    with trio.fail_after(3 * 3600):  # virtual seconds
        async with open_discovery(KEYS[0], config=config) as a:
            times: list[float] = []
            t0 = trio.current_time()
            last = a.stats.lookups
            while trio.current_time() - t0 < 2 * 3600:
                await trio.sleep(0.5)
                if a.stats.lookups != last:
                    last = a.stats.lookups
                    times.append(trio.current_time() - t0)
            gaps = [b - a_ for a_, b in zip(times, times[1:])]
            # The start refresh, then gaps of 5, 10, 20, ... (each within the 10 % jitter).
            assert times[0] < 1
            expected = 5.0
            for gap in gaps[:9]:
                assert 0.85 * expected <= gap <= 1.15 * expected + 0.5, (gap, expected, gaps)
                expected = min(expected * 2, 120.0)
            assert max(gaps) <= 1.1 * 120 + 0.5  # capped at 2 minutes
            # 5 steps up to the cap, then every 2 minutes: about 60 in 2 hours, never more.
            assert 50 <= len(times) <= 2 * 3600 / (0.9 * 120) + 6


async def test_full_table_keeps_the_normal_interval(autojump_clock: trio.testing.MockClock) -> None:
    """With 16 or more nodes in the table, no extra refreshes: the next one is 27-33 min on."""
    config = DiscoveryConfig(refresh_on_start=False, revalidate=False, refresh_random_lookups=0)
    with trio.fail_after(3600):
        async with open_discovery(KEYS[0], config=config) as a:
            for key in make_keys(40, seed=7):
                node = Node(key.public_key, ipaddress.ip_address("127.0.0.1"), 30303, 30303)
                a.table.add_seen(node)
            assert len(a.table) >= 16
            await trio.sleep(26 * 60)
            assert a.stats.lookups == 0



async def test_reply_wait_is_extended_by_the_loop_lateness(autojump_clock: trio.testing.MockClock) -> None:
    """A deadline whose wake-up came late (a busy loop) waits once more; a punctual one does not."""
    from p2p.discover.reply import wait_reply

    async def run(busy: float) -> tuple[bool, float]:
        event = trio.Event()
        t0 = trio.current_time()

        async def replier() -> None:
            await trio.sleep(0.4)
            autojump_clock.jump(busy)  # nothing else ran for this long: a busy loop
            await trio.sleep(0.15)
            event.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(replier)
            ok = await wait_reply(event, 0.5)
        return ok, trio.current_time() - t0

    with trio.fail_after(30):
        # The deadline (0.5 s) woke 0.5 s late: extended, the reply 0.15 s later counts.
        ok, waited = await run(0.6)
        assert ok and waited == pytest.approx(1.15)
        # Punctual wake-up: the reply at 0.55 s is too late.
        ok, waited = await run(0.0)
        assert not ok and waited == pytest.approx(0.55)  # (the nursery waited for the replier)


async def test_refresh_skips_random_lookups_behind_a_lookup_backlog(autojump_clock: trio.testing.MockClock) -> None:
    """With the process's lookup slots backlogged (many nodes of one process refreshing at
    once), a refresh still looks itself up but skips its random lookups instead of queueing
    them behind everyone else's."""
    limiter = trio.CapacityLimiter(1)
    config = DiscoveryConfig(refresh_on_start=False, revalidate=False, refresh_random_lookups=3,
                             random_lookup_spread=1.0, lookup_limiter=limiter)
    quiet = DiscoveryConfig(refresh_on_start=False, revalidate=False)

    async def hold(seconds: float, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with limiter:
            await trio.sleep(seconds)

    with trio.fail_after(3600):  # virtual seconds
        async with open_discovery(KEYS[0], config=quiet) as boot, \
                open_discovery(KEYS[1], bootnodes=(boot.local_node,), config=config) as a, \
                trio.open_nursery() as others:
            await others.start(hold, 1.0)  # takes the one slot: the self lookup queues first
            await trio.sleep(0)
            refreshed = trio.Event()

            async def refresh() -> None:
                await a.refresh()
                refreshed.set()

            others.start_soon(refresh)
            await trio.sleep(0.1)
            for _ in range(17):  # behind it: other nodes' long lookups, 16 left waiting
                await others.start(hold, 1000.0)
                await trio.sleep(0)
            t0 = trio.current_time()
            with trio.fail_after(10):
                await refreshed.wait()
            assert trio.current_time() - t0 < 10
            assert a.stats.lookups == 1  # the self lookup ran
            assert boot.local_id in a.table
            assert a.stats.drops["refresh_lookup_skipped"] == 3
            others.cancel_scope.cancel()


async def test_a_table_filled_and_emptied_again_and_again_costs_one_self_lookup_a_minute(
        autojump_clock: trio.testing.MockClock) -> None:
    """An attacker's nodes bond with us (their Pings fill our table past double its size),
    then vanish, over and over: we look ourselves up for the regrown table at most once per
    REGROWN_MIN_INTERVAL, and an honest node keeps getting its Pongs meanwhile."""
    from contextlib import AsyncExitStack

    from p2p.discover.tablemaint import REGROWN_MIN_INTERVAL

    quiet = DiscoveryConfig(refresh_on_start=False, revalidate=False)
    config = DiscoveryConfig(revalidate=False, refresh_random_lookups=0, small_table_refresh=None)
    attacker_keys = make_keys(40, seed=31)
    cycles, cycle_seconds = 8, 10.0
    with trio.fail_after(3600):
        async with open_discovery(KEYS[0], config=quiet) as honest, \
                open_discovery(KEYS[1], bootnodes=(honest.local_node,), config=config) as a:
            await trio.sleep(5)
            assert a.maintenance.self_lookups == 1
            t0 = trio.current_time()
            for _ in range(cycles):
                async with AsyncExitStack() as stack:
                    attackers = [await stack.enter_async_context(open_discovery(k, config=quiet))
                                 for k in attacker_keys]
                    for attacker in attackers:
                        await attacker.ping(a.local_node)
                    await trio.sleep(1)  # a pinged them back and added them
                    assert len(a.table) >= 32
                    await honest.ping(a.local_node)  # still answered during the flood
                # they are gone; revalidation (off here) would drop them: drop them now
                for attacker in attackers:
                    a.table.remove(attacker.local_id)
                await trio.sleep(cycle_seconds)
            elapsed = trio.current_time() - t0
            regrown = a.maintenance.self_lookups - 1
            print(f"{cycles} fill-and-empty cycles in {elapsed:.0f} virtual s: {regrown} self lookups")
            assert 1 <= regrown <= 1 + elapsed // REGROWN_MIN_INTERVAL
            await honest.ping(a.local_node)
