"""A dial limiter shared by the servers of one process (local testnets): dials wait for a slot,
their deadline starts with the slot, and a dial no longer needed by then is not made."""

from __future__ import annotations

import trio

from p2p.crypto import PrivateKey
from p2p.limits import ProcessLimits
from p2p.server import ServerConfig, open_server


async def test_shared_dial_limiter_bounds_and_skips_unneeded_dials() -> None:
    limiter = trio.CapacityLimiter(1)
    keys = [PrivateKey.generate() for _ in range(3)]
    with trio.fail_after(10):
        async with open_server(keys[0], config=ServerConfig(discovery=False)) as a, \
                open_server(keys[1], config=ServerConfig(discovery=False)) as b, \
                open_server(keys[2], config=ServerConfig(discovery=False, limits=ProcessLimits(dials=limiter),
                                                         max_peers=3)) as c:
            # While the slot is taken, a dial waits (0.5 s, longer than its 0.3 s dial timeout, which starts only with the slot).
            c.dial_timeout = 0.3
            async with trio.open_nursery() as nursery:
                async with limiter:
                    c._scheduler.dial_started(a.local_node, trio.current_time())
                    nursery.start_soon(c._dial_task, a.local_node, "dyn", None)
                    await trio.sleep(0.5)
                    assert c.peer_count() == 0 and limiter.statistics().tasks_waiting == 1
                while c.peer_count() < 1:
                    await trio.sleep(0.01)
                # Its outbound share (max_peers // 3 = 1) is full: a queued dial is dropped unmade.
                c._scheduler.dial_started(b.local_node, trio.current_time())
                await c._dial_task(b.local_node, "dyn", None)
                assert c.peer_count() == 1 and b.peer_count() == 0
                assert c.metrics.dials.labels("not_needed")._value.get() == 1
                nursery.cancel_scope.cancel()


async def test_process_lookup_limiter_reaches_discovery() -> None:
    lookups = trio.CapacityLimiter(3)
    with trio.fail_after(10):
        async with open_server(config=ServerConfig(limits=ProcessLimits(lookups=lookups))) as s:
            assert s.discovery is not None and s.discovery.config.lookup_limiter is lookups
