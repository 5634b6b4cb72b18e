"""The testnet's pure parts: how nodes are spread, addresses, the summary figures."""

from __future__ import annotations

import ipaddress

import pytest

from p2p.testnet.netns import NODES_PER_SUBNET, node_address
from p2p.testnet.runner import TestnetConfig, _figures, plan, shard_count


@pytest.mark.parametrize(("nodes", "shards"), [(1, 1), (2, 2), (10, 3), (2000, 2), (7, 7)])
def test_plan_covers_every_node_once_in_contiguous_blocks(nodes: int, shards: int) -> None:
    groups = plan(nodes, shards)
    assert len(groups) == shards
    assert [i for g in groups for i in g] == list(range(nodes))
    assert groups[0][0] == 0  # the bootnode lives on the first shard
    sizes = [len(g) for g in groups]
    assert max(sizes) - min(sizes) <= 1


def test_node_addresses_are_distinct_private_and_share_subnets_by_four() -> None:
    addrs = [node_address(i) for i in range(3000)]
    assert len(set(addrs)) == 3000
    for a in addrs[:50] + addrs[-50:]:
        ip = ipaddress.IPv4Address(a)
        assert ip in ipaddress.IPv4Network("10.0.0.0/8")
        assert a.split(".")[3] not in ("0", "255")
    subnets = {a.rsplit(".", 1)[0] for a in addrs}
    assert len(subnets) == 3000 // NODES_PER_SUBNET


def test_targets_follow_network_size() -> None:
    assert TestnetConfig(nodes=12).table_target == 11
    assert TestnetConfig(nodes=17).table_target == 16
    assert TestnetConfig(nodes=500).table_target == 16
    assert TestnetConfig(nodes=500).peer_target == 0  # discovery only: no peers to reach
    assert TestnetConfig(nodes=500, protocols=("chat",)).peer_target == 5
    assert TestnetConfig(nodes=3, protocols=("chat",)).peer_target == 2
    assert shard_count(TestnetConfig(nodes=3, processes=8)) == 3
    assert shard_count(TestnetConfig(nodes=30)) == 0
    with pytest.raises(ValueError):
        TestnetConfig(nodes=1)


def test_figures() -> None:
    assert _figures([3, 1, 2]) == {"min": 1, "median": 2, "max": 3}
    assert _figures([]) == {"min": 0, "median": 0, "max": 0}


def test_tune_gc_raises_the_collector_thresholds() -> None:
    import gc

    from p2p.testnet.shard import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    try:
        assert tune_gc() == before
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > before[0]  # fewer young collections than the default
    finally:
        gc.set_threshold(*before)
