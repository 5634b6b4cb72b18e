"""Local testnets: many nodes on this machine, measured while they find each other.

    summary, history = await run_testnet(TestnetConfig(nodes=50, protocols=("chat",)))

:mod:`p2p.testnet.runner` runs and measures, :mod:`p2p.testnet.shard` holds the nodes of one
process, :mod:`p2p.testnet.worker` puts shards in child processes, :mod:`p2p.testnet.plot`
draws convergence over time. ``p2p testnet`` (:mod:`p2p.cli.testnet`) is the command.
"""

from p2p.testnet.runner import FULL_TABLE, Progress, Testnet, TestnetConfig, run_testnet

__all__ = ["FULL_TABLE", "Progress", "Testnet", "TestnetConfig", "run_testnet"]
