"""Simulation runs against the number of nodes N as a PNG (matplotlib, Agg canvas: no display).

One quantity per panel, N on the x axis (logarithmic when the runs span more than 10x):
lookup success rate; hops per lookup (median and max); packets per lookup (median); virtual
seconds to converge; table quality (share of live entries, share of the true 16 closest
found). Runs of different discovery modes (v4, v5, both) are separate series. A run that did
not converge is drawn at its length, marked apart: it converged later than that, if at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

FIGURE_WIDTH = 10.0  # inches: the plots and, to their right, the legends
PANEL_HEIGHT = 2.3  # inches per panel
DPI = 100
LOG_SPAN = 10.0  # N spanning more than this factor gets a logarithmic axis, so that small runs are not squeezed
SERIES_COLORS = {"v4": "tab:blue", "v5": "tab:orange", "both": "tab:green"}


def _series(runs: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs by discovery mode, each sorted by N."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(str(run.get("discovery", "")), []).append(run)
    return {mode: sorted(group, key=lambda r: r["nodes"]) for mode, group in sorted(groups.items())}


def _points(group: Sequence[dict[str, Any]], *path: str, when: str | None = None) -> tuple[list[int], list[float]]:
    """(N, value at ``path``) of the runs that have it; with ``when``, only runs with lookups."""
    xs: list[int] = []
    ys: list[float] = []
    for run in group:
        if when == "lookups" and not run.get("lookups", {}).get("count"):
            continue  # no lookup ran: no success rate, hops or packets to show
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            xs.append(run["nodes"])
            ys.append(float(value))
    return xs, ys


def _converged(run: dict[str, Any]) -> bool:
    return bool(run.get("converged")) and run.get("converged_seconds") is not None


def _model_line(runs: Sequence[dict[str, Any]]) -> str:
    """The network model the runs share, in words; nothing when they differ. Only its settings
    (scalars) count: what a run measured (counters, nested) differs from run to run."""
    models = [{k: v for k, v in (run.get("model") or {}).items() if isinstance(v, (str, int, float))} for run in runs]
    if any(m != models[0] for m in models) or not models[0]:
        return ""
    return ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
                     for key, value in models[0].items())


def make_figure(runs: Sequence[dict[str, Any]]) -> Any:
    """The figure (a ``matplotlib.figure.Figure``) of ``runs`` (run summaries of ``p2p simulate``)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    if not runs:
        raise ValueError("no runs to plot")
    fig = Figure(figsize=(FIGURE_WIDTH, PANEL_HEIGHT * 5))
    axes = fig.subplots(5, 1, sharex=True, squeeze=False)[:, 0]
    ax_success, ax_hops, ax_packets, ax_converge, ax_table = axes
    series = _series(runs)
    named = len(series) > 1

    for mode, group in series.items():
        color = SERIES_COLORS.get(mode)
        prefix = f"{mode} " if named else ""
        style: dict[str, Any] = {"marker": "o", "color": color}

        ax_success.plot(*_points(group, "lookups", "success_rate", when="lookups"), label=f"{prefix}success", **style)
        ax_hops.plot(*_points(group, "lookups", "hops", "median", when="lookups"), label=f"{prefix}median", **style)
        ax_hops.plot(*_points(group, "lookups", "hops", "max", when="lookups"), label=f"{prefix}max",
                     linestyle="--", **style)
        ax_packets.plot(*_points(group, "lookups", "packets", "median", when="lookups"), label=f"{prefix}median",
                        **style)
        converged = [r for r in group if _converged(r)]
        ax_converge.plot(*_points(converged, "converged_seconds"), label=f"{prefix}converged", **style)
        late = [r for r in group if not _converged(r)]
        if late:
            ax_converge.plot(*_points(late, "duration_seconds"), label=f"{prefix}not converged (run length)",
                             linestyle="none", marker="x", markersize=9, color=color or "tab:red")
        ax_table.plot(*_points(group, "table", "live_share"), label=f"{prefix}live entries", **style)
        ax_table.plot(*_points(group, "table", "closest_share"), label=f"{prefix}16 closest found",
                      linestyle="--", **{**style, "marker": "s"})

    ax_success.set_ylabel("lookup success")
    ax_hops.set_ylabel("hops per lookup")
    ax_packets.set_ylabel("packets per lookup")
    ax_converge.set_ylabel("seconds to converge")
    ax_table.set_ylabel("table quality")
    for ax in (ax_success, ax_table):
        ax.set_ylim(0.0, 1.05)  # shares: the whole range, so that 0.9 does not look like 0
    for ax in (ax_hops, ax_packets, ax_converge):
        ax.set_ylim(bottom=0.0)

    ns = sorted({int(run["nodes"]) for run in runs})
    if ns[0] > 0 and ns[-1] / ns[0] > LOG_SPAN:
        ax_table.set_xscale("log")
    ax_table.set_xticks(ns, [str(n) for n in ns])
    ax_table.xaxis.set_minor_locator(NullLocator())  # the runs' N only: log minor ticks would be unlabelled noise
    if len(ns) == 1:
        ax_table.set_xlim(ns[0] * 0.5, ns[0] * 1.5)  # one run: a point in the middle, not on the edge
    ax_table.set_xlabel("nodes (N)")

    for ax in axes:
        ax.grid(True, linewidth=0.3)
        # Outside the panel: inside, it would hide points near the top.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0.0)
    title = f"p2p simulate: {len(runs)} run{'s' if len(runs) != 1 else ''} against N"
    model = _model_line(runs)
    fig.suptitle(f"{title}\n{model}" if model else title)
    fig.tight_layout()
    return fig


def write_plot(runs: Sequence[dict[str, Any]], path: str) -> None:
    """The figure of :func:`make_figure` as a PNG at ``path``."""
    make_figure(runs).savefig(path, dpi=DPI)
