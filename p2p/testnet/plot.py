"""Convergence over time, and cost against size (``--curve``), as PNGs (matplotlib, Agg canvas).

One quantity per panel: the table size, the number of nodes (up, with a full table, with
their peers), and, for server testnets, the peers per node. Every panel is a count, so its
ticks are integers; the moments the testnet converged are vertical lines named in each legend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from p2p.testnet.runner import Progress

FIGURE_WIDTH = 11.0  # inches: the plots and, to their right, the legends
PANEL_HEIGHT = 2.6  # inches per panel
DPI = 100


def make_figure(history: Sequence[Progress], summary: dict[str, Any]) -> Any:
    """The figure (a ``matplotlib.figure.Figure``), for :func:`write_plot` or further drawing."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    t = [p.elapsed for p in history]
    n = summary["nodes"]
    servers = bool(summary.get("peer_target"))
    panels = 3 if servers else 2
    fig = Figure(figsize=(FIGURE_WIDTH, PANEL_HEIGHT * panels))
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    ax_table, ax_nodes = axes[0], axes[1]

    ax_table.plot(t, [p.table_median for p in history], label="median", color="tab:blue")
    ax_table.plot(t, [p.table_min for p in history], label="min", linestyle="--", color="tab:orange")
    ax_table.plot(t, [p.table_max for p in history], label="max", linestyle=":", color="tab:brown")
    ax_table.axhline(summary["table_target"], color="grey", linewidth=0.8, label="target")
    ax_table.set_ylabel("nodes in table")

    ax_nodes.plot(t, [p.up for p in history], color="tab:olive", linestyle=":", label="up")
    ax_nodes.plot(t, [p.full_tables for p in history], color="tab:green",
                  label=f"table >= {summary['table_target']}")
    if servers:
        ax_nodes.plot(t, [p.peered for p in history], color="tab:purple", linestyle="--",
                      label=f">= {summary['peer_target']} peers")
    ax_nodes.set_ylim(0, n * 1.05)
    ax_nodes.set_ylabel(f"nodes (of {n})")

    if servers:
        ax_peers = axes[2]
        ax_peers.plot(t, [p.peers_median for p in history], label="median", color="tab:blue")
        ax_peers.plot(t, [p.peers_min for p in history], label="min", linestyle="--", color="tab:orange")
        ax_peers.plot(t, [p.peers_max for p in history], label="max", linestyle=":", color="tab:brown")
        ax_peers.axhline(summary["peer_target"], color="grey", linewidth=0.8, label="target")
        ax_peers.set_ylabel("peers per node")

    marks = [("table_fill_seconds", "tables full", "tab:green", "-"),
             ("peers_seconds", "peers reached", "tab:purple", "--")]
    for ax in axes:
        for key, what, color, style in marks:
            seconds = summary.get(key)
            if seconds is not None:
                ax.axvline(seconds, color=color, linewidth=0.8, linestyle=style,
                           label=f"converged: {what} ({seconds:.1f} s)")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        # Outside the panel: inside, it would hide the lines where they converge.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0.0)
    axes[-1].set_xlabel("seconds since start")
    state = "converged" if summary.get("converged") else "did not converge"
    fig.suptitle(f"testnet of {n} nodes ({summary.get('mode', '')}), {state}")
    fig.tight_layout()
    return fig


def write_plot(path: str, history: Sequence[Progress], summary: dict[str, Any]) -> None:
    """Table size, nodes converged and peers against time, as a PNG at ``path``."""
    make_figure(history, summary).savefig(path, dpi=DPI)


def make_curve_figure(points: Sequence[dict[str, Any]]) -> Any:
    """The cost of a testnet against its size (``p2p testnet --curve``): time to converge, CPU
    seconds per node and memory per node, each beside an N log N reference scaled to the
    first point (per node: log N), so that faster growth shows as a line pulling away."""
    from matplotlib.figure import Figure

    from p2p.testnet.runner import n_log_n

    n = [p["nodes"] for p in points]
    panels = [
        ("converged_seconds", 1.0, "seconds to converge", False),
        ("cpu_per_node_seconds", 1000.0, "CPU ms per node", True),
        ("memory_per_node_bytes", 1 / 1024, "KiB per node", True),
    ]
    fig = Figure(figsize=(FIGURE_WIDTH, PANEL_HEIGHT * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (key, scale, label, per_node) in zip(axes, panels):
        xs = [x for x, p in zip(n, points) if p.get(key) is not None]
        ys = [float(p[key]) * scale for p in points if p.get(key) is not None]
        ax.plot(xs, ys, marker="o", color="tab:blue", label="measured")
        for x, p in zip(n, points):
            if not p.get("converged"):
                ax.annotate("not converged", (x, 0), textcoords="offset points", xytext=(0, 4),
                            fontsize="small", color="tab:red", ha="center")
        ref = [(x, r * scale) for x, r in zip(n, n_log_n(points, key, per_node=per_node)) if r is not None]
        if ref:
            ax.plot([x for x, _ in ref], [y for _, y in ref], linestyle="--", color="grey",
                    label="log N (total N log N)" if per_node else "N log N", linewidth=1.0)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, linewidth=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0.0)
    axes[-1].set_xlabel("nodes (N)")
    fig.suptitle("testnet cost against size (reference lines scaled to the first point)")
    fig.tight_layout()
    return fig


def write_curve_plot(path: str, points: Sequence[dict[str, Any]]) -> None:
    """The ``--curve`` figure as a PNG at ``path``."""
    make_curve_figure(points).savefig(path, dpi=DPI)
