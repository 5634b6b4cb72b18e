"""A loopback testnet of 100 discovery nodes in one process, bootstrapped from one bootnode."""

from __future__ import annotations

from collections.abc import Callable

import trio

from p2p.discover.testnet import open_local_testnet

NODES = 100
SAMPLES = 50


async def test_100_nodes_converge_and_lookups_find_members(record_property: Callable[[str, object], None]) -> None:
    with trio.fail_after(60):
        async with open_local_testnet(NODES, seed=7) as net:
            assert len(net.nodes) == NODES
            seconds = await net.wait_converged(40)
            # every table holds its closest member and at least a bucket's worth of nodes
            assert all(len(d.table) >= 16 for d in net.nodes)
            check = await net.lookup_check(SAMPLES)
            summary = check.summary()
            record_property("convergence_seconds", round(seconds, 2))
            record_property("lookups", summary)
            print(f"\n100-node testnet: converged in {seconds:.1f} s; lookups {summary}")
            assert check.samples == SAMPLES
            assert check.success_rate >= 0.99, summary
            assert 1 <= summary["mean_rounds"] <= 6
            assert summary["mean_packets"] < 200
            # nobody in the testnet saw anything malformed
            for d in net.nodes:
                for reason in ("bad_hash", "bad_signature", "bad_rlp", "bad_fields", "expired", "too_small"):
                    assert d.stats.drops[reason] == 0
