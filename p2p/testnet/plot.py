"""Convergence over time as a PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from p2p.testnet.runner import Progress


def write_plot(path: str, history: Sequence[Progress], summary: dict[str, Any]) -> None:
    """Table fill and peers against time, with the convergence moments marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p.elapsed for p in history]
    fig, (ax_table, ax_peers) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    n = summary["nodes"]
    ax_table.plot(t, [p.table_median for p in history], label="table size, median")
    ax_table.plot(t, [p.table_min for p in history], label="table size, min", linestyle="--")
    ax_table.axhline(summary["table_target"], color="grey", linewidth=0.8, label="table target")
    ax_nodes = ax_table.twinx()
    ax_nodes.plot(t, [100.0 * p.full_tables / n for p in history], color="tab:green",
                  label="nodes with a full table (%)")
    ax_nodes.plot(t, [100.0 * p.up / n for p in history], color="tab:olive", linestyle=":",
                  label="nodes up (%)")
    ax_nodes.set_ylim(0, 105)
    ax_nodes.set_ylabel("% of nodes")
    ax_table.set_ylabel("nodes in table")
    lines = ax_table.get_legend_handles_labels()
    more = ax_nodes.get_legend_handles_labels()
    ax_table.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right", fontsize="small")
    if summary.get("table_fill_seconds") is not None:
        ax_table.axvline(summary["table_fill_seconds"], color="tab:green", linewidth=0.8)

    ax_peers.plot(t, [p.peers_median for p in history], label="peers, median")
    ax_peers.plot(t, [p.peers_min for p in history], label="peers, min", linestyle="--")
    ax_peers.plot(t, [p.peers_max for p in history], label="peers, max", linestyle=":")
    if summary.get("peer_target"):
        ax_peers.axhline(summary["peer_target"], color="grey", linewidth=0.8, label="peer target")
    if summary.get("peers_seconds") is not None:
        ax_peers.axvline(summary["peers_seconds"], color="tab:green", linewidth=0.8)
    ax_peers.set_xlabel("seconds since start")
    ax_peers.set_ylabel("connected peers")
    ax_peers.legend(loc="lower right", fontsize="small")
    mode = summary.get("mode", "")
    state = "converged" if summary.get("converged") else "did not converge"
    fig.suptitle(f"testnet of {n} nodes ({mode}), {state}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
