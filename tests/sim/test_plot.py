"""The figure of ``p2p simulate`` runs against N: one panel per quantity, one point per run,
written as a PNG for one run and for several."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

from p2p.sim.plot import make_figure, write_plot

PNG = b"\x89PNG\r\n\x1a\n"
PANELS = ["lookup success", "hops per lookup", "packets per lookup", "seconds to converge", "table quality"]


def _run(nodes: int, *, discovery: str = "v4", converged: bool = True, success: float = 0.95,
         lookups: int = 20) -> dict[str, Any]:
    """A run summary as ``p2p simulate`` writes it, with values that depend on N."""
    return {
        "nodes": nodes, "discovery": discovery, "duration_seconds": 600.0,
        "converged": converged, "converged_seconds": 10.0 + nodes / 10 if converged else None,
        "lookups": {"count": lookups, "found": int(lookups * success), "success_rate": success,
                    "hops": {"min": 1.0, "median": 2.0 + nodes / 1000, "max": 5.0 + nodes / 500},
                    "packets": {"min": 10.0, "median": 30.0 + nodes / 100, "max": 90.0}},
        "table": {"live_share": 0.9, "closest_share": 0.8 - nodes / 100_000,
                  "size": {"min": 10.0, "median": 40.0, "max": 60.0}},
        "packets": nodes * 1000, "model": {"latency": "uniform 10ms-100ms", "loss": 0.01, "nat_share": 0.0,
                                           "nat_timeout": 120.0},
        "churn": {"left": 0, "joined": 0}, "wall_seconds": 1.0,
        "memory": {"rss_bytes": 100_000_000, "per_node_bytes": 50_000.0},
    }


def _line(fig: Figure, panel: str, label: str) -> tuple[list[float], list[float]]:
    ax = next(ax for ax in fig.axes if ax.get_ylabel() == panel)
    line = next(line for line in ax.get_lines() if line.get_label() == label)
    return [float(x) for x in np.asarray(line.get_xdata())], [float(y) for y in np.asarray(line.get_ydata())]


def test_one_run_is_one_point_in_each_panel(tmp_path: Path) -> None:
    run = _run(100)
    fig = make_figure([run])
    assert [ax.get_ylabel() for ax in fig.axes] == PANELS
    assert _line(fig, "lookup success", "success") == ([100.0], [0.95])
    assert _line(fig, "seconds to converge", "converged") == ([100.0], [20.0])
    assert _line(fig, "table quality", "16 closest found") == ([100.0], [0.799])
    assert fig.axes[-1].get_xscale() == "linear"
    path = tmp_path / "one.png"
    write_plot([run], str(path))
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 10_000  # axes, points and labels, not an empty canvas


def test_several_runs_are_drawn_against_n_on_a_log_axis_when_they_span_more_than_10x(tmp_path: Path) -> None:
    runs = [_run(1000), _run(30), _run(100), _run(3000, converged=False)]  # unsorted on purpose
    for run in runs:
        run["model"]["counters"] = {"sent": run["nodes"] * 900}  # measured: differs per run, not a setting
    fig = make_figure(runs)
    assert len(fig.axes) == len(PANELS)
    assert fig.axes[-1].get_xscale() == "log"
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()] == ["30", "100", "1000", "3000"]
    xs, ys = _line(fig, "hops per lookup", "max")
    assert xs == [30, 100, 1000, 3000] and ys == [5.0 + n / 500 for n in xs]
    assert _line(fig, "packets per lookup", "median")[1] == [30.0 + n / 100 for n in xs]
    # the run that did not converge is not a convergence time: it is marked apart at its length
    assert _line(fig, "seconds to converge", "converged")[0] == [30, 100, 1000]
    assert _line(fig, "seconds to converge", "not converged (run length)") == ([3000.0], [600.0])
    assert fig.get_suptitle().splitlines() == ["p2p simulate: 4 runs against N",
                                               "latency uniform 10ms-100ms, loss 0.01, nat_share 0, nat_timeout 120"]
    path = tmp_path / "several.png"
    write_plot(runs, str(path))
    assert path.read_bytes()[:8] == PNG


def test_close_n_stays_linear_and_modes_are_separate_series() -> None:
    runs = [_run(n, discovery=mode, success=s) for n in (50, 200) for mode, s in (("v4", 0.9), ("v5", 0.7))]
    runs[0]["model"]["loss"] = 0.05
    fig = make_figure(runs)
    assert fig.get_suptitle() == "p2p simulate: 4 runs against N"  # models differ: none is named
    assert fig.axes[0].get_xscale() == "linear"
    assert _line(fig, "lookup success", "v4 success") == ([50.0, 200.0], [0.9, 0.9])
    assert _line(fig, "lookup success", "v5 success") == ([50.0, 200.0], [0.7, 0.7])


def test_runs_without_lookups_leave_the_lookup_panels_empty_for_them() -> None:
    fig = make_figure([_run(10, lookups=0), _run(20)])
    assert _line(fig, "lookup success", "success") == ([20.0], [0.95])
    assert _line(fig, "table quality", "live entries")[0] == [10.0, 20.0]


def test_no_runs_is_an_error() -> None:
    with pytest.raises(ValueError, match="no runs"):
        make_figure([])
