"""Discovery protects its table members in the node database: a flood never evicts them."""

from __future__ import annotations

import os

import trio

from p2p.discover import DiscoveryConfig, open_discovery
from p2p.enode.nodedb import NodeDB, NodeDBLimits
from tests.discover.conftest import make_keys
from tests.server.helpers import until

CONFIG = DiscoveryConfig(refresh_on_start=False, revalidate=False)


async def test_table_members_are_protected_while_in_the_table() -> None:
    boot_key, a_key, c_key = make_keys(3, seed=4242)
    with NodeDB.open(None, limits=NodeDBLimits(max_unprotected=10)) as db:
        with trio.fail_after(20):
            async with open_discovery(boot_key, nodedb=db, config=CONFIG) as boot:
                async with open_discovery(a_key, config=CONFIG) as a:
                    await a.ping(boot.local_node)  # boot pings back, a answers: a enters boot's table
                    await until(lambda: a.local_id in boot.table, timeout=10)
                    assert db.is_protected(a.local_id)
                    for _ in range(100):  # strangers that only ping: far past the bound
                        db.update_last_ping_received(os.urandom(32), a.local_node.ip, 1.0)
                    assert db.unprotected_count == 10 and db.stats.evicted_nodes >= 90
                    stored = db.node(a.local_id)
                    assert stored is not None and stored.udp_port == a.udp_port
                    assert db.last_pong_received(a.local_id, a.local_node.ip) > 0
                # a is gone: revalidation finds it silent and drops it from the table
                assert await boot.revalidate_once() == a.local_node
                assert a.local_id not in boot.table and not db.is_protected(a.local_id)
                assert db.node(a.local_id) is not None  # kept, as the most recently seen
                async with open_discovery(c_key, config=CONFIG) as c:
                    await c.ping(boot.local_node)
                    await until(lambda: c.local_id in boot.table, timeout=10)
                    assert db.is_protected(c.local_id)
            assert db.protected_count == 0  # released when discovery stopped: the database outlives it
