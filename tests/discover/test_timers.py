"""Refresh and revalidation timers on trio's MockClock: half an hour passes in milliseconds."""

from __future__ import annotations

import trio
import trio.testing

from p2p.discover import DiscoveryConfig, NodeRemoved, open_discovery
from tests.discover.conftest import make_keys

KEYS = make_keys(3, seed=99)


async def test_refresh_on_start_and_every_30_minutes(autojump_clock: trio.testing.MockClock) -> None:
    config = DiscoveryConfig(revalidate=False, refresh_random_lookups=3)
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
