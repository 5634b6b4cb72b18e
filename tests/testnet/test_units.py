"""The testnet's pure parts: how nodes are spread, addresses, the summary figures."""

from __future__ import annotations

import ipaddress
import math

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
    assert _figures([3, 1, 2]) == {"min": 1, "median": 2, "mean": 2.0, "max": 3}
    assert _figures([1, 1, 4])["mean"] == 2.0  # the median says 1
    assert _figures([]) == {"min": 0, "median": 0, "mean": 0, "max": 0}


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


def test_revalidation_keeps_within_the_process_budget_and_small_testnets_keep_the_default() -> None:
    from p2p.discover.service import REVALIDATE_INTERVAL
    from p2p.testnet.runner import REVALIDATIONS_PER_SHARD, revalidate_interval

    assert revalidate_interval(TestnetConfig(nodes=100, processes=2)) is None
    assert TestnetConfig(nodes=100).spec().revalidate_interval is None
    for nodes, processes in ((2000, 2), (10_000, 2), (10_000, 0), (5000, 4)):
        interval = revalidate_interval(TestnetConfig(nodes=nodes, processes=processes))
        assert interval is not None and interval > REVALIDATE_INTERVAL
        per_process = -(-nodes // max(1, processes))
        assert per_process * 2 / interval == pytest.approx(REVALIDATIONS_PER_SHARD, rel=0.01)


def test_n_log_n_reference_is_scaled_to_the_first_point() -> None:
    from p2p.testnet.runner import n_log_n

    points = [{"nodes": 500, "t": None}, {"nodes": 1000, "t": 10.0}, {"nodes": 4000, "t": 50.0}]
    assert n_log_n(points, "t", per_node=False) == pytest.approx(
        [10.0 * 500 * math.log(500) / (1000 * math.log(1000)), 10.0, 10.0 * 4000 * math.log(4000) / (1000 * math.log(1000))])
    assert n_log_n(points, "t", per_node=True)[2] == pytest.approx(10.0 * math.log(4000) / math.log(1000))
    assert n_log_n([{"nodes": 10, "t": None}], "t", per_node=True) == [None]
