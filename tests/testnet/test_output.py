"""What ``p2p testnet`` shows a person: the table and summary when piped or in a terminal at
80 columns, and the convergence plot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from p2p.testnet.plot import make_figure, write_plot
from p2p.testnet.runner import TestnetConfig, run_testnet

RUN_DEADLINE = 120  # seconds one `p2p testnet` run may take here before the test fails
COLUMNS = 80
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal control sequences (cursor, colour)
REDRAW = "\x1b[2K"  # rich erases the previous frame's lines with this before drawing the next


def _human(*args: str, terminal: bool = False) -> str:
    env = {**os.environ, "COLUMNS": str(COLUMNS)}
    env.pop("TTY_COMPATIBLE", None)
    if terminal:
        env["TTY_COMPATIBLE"] = "1"  # rich then draws live frames as on a terminal
    proc = subprocess.run([sys.executable, "-m", "p2p", "testnet", *args], capture_output=True, text=True,
                          timeout=RUN_DEADLINE, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.timeout(RUN_DEADLINE + 10)
def test_piped_output_is_readable_at_80_columns() -> None:
    out = _human("--nodes", "10", "--seconds", "40", "--protocols", "chat", "--lookups", "5")
    lines = out.splitlines()
    assert all(len(line) <= COLUMNS for line in lines), out
    # the summary's title on a line of its own, not after the live table's bottom border
    assert any(line.strip() == "summary: converged" for line in lines), out
    assert all(line.rstrip().endswith("┘") for line in lines if "┘" in line), out
    assert "[" not in out and "]" not in out, out  # no Python lists
    assert not [line for line in lines if re.match(r"^│\s+│", line)], f"a wrapped row:\n{out}"
    assert "10 (server, 1 process)" in out
    sampled = [line for line in lines if "sampled" in line]
    assert len(sampled) == 2 and "at convergence" in sampled[0] and "at the end" in sampled[1], out
    assert re.search(r"nodes reached\s+│ min 10  median 10  max 10 per message", out), out


@pytest.mark.timeout(RUN_DEADLINE + 10)
def test_first_live_frame_has_the_full_width_and_a_one_line_title() -> None:
    out = _human("--nodes", "10", "--seconds", "40", "--lookups", "0", terminal=True)
    frames = [CONTROL.sub("", f).strip("\n").splitlines() for f in out.split(REDRAW)]
    frames = [f for f in frames if len(f) > 2]
    first, later = frames[0], frames[-2]  # the last one also holds the summary
    assert first[0].strip() == "p2p testnet: 10 nodes (discovery)", first
    assert "starting" in first[2]
    assert len(first) == len(later) and {len(line) for line in first[1:]} == {len(line) for line in later[1:]}
    assert [line.split("│")[1].strip() for line in first[2:-1]] == [line.split("│")[1].strip() for line in later[2:-1]]


def _count_axes(fig: Figure) -> None:
    for ax in fig.axes:
        ticks = list(ax.get_yticks())
        assert ticks and all(float(v).is_integer() for v in ticks), (ax.get_ylabel(), ticks)


async def test_plot_has_one_quantity_per_panel_integer_ticks_and_convergence_in_the_legend(tmp_path: Path) -> None:
    config = TestnetConfig(nodes=10, servers=True, seconds=40, lookups=0, interval=0.2, seed=3)
    summary, history = await run_testnet(config)
    assert summary["converged"], summary
    fig = make_figure(history, summary)
    fig.canvas.draw()
    # three panels, no twin axis sharing a panel with a second quantity
    assert [ax.get_ylabel() for ax in fig.axes] == ["nodes in table", "nodes (of 10)", "peers per node"]
    _count_axes(fig)
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None
        labels = [t.get_text() for t in legend.get_texts()]
        assert f"converged: tables full ({summary['table_fill_seconds']:.1f} s)" in labels, labels
        assert f"converged: peers reached ({summary['peers_seconds']:.1f} s)" in labels, labels
    path = tmp_path / "plot.png"
    write_plot(str(path), history, summary)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    discovery = {**summary, "peer_target": 0, "peers_seconds": None, "mode": "discovery"}
    fig = make_figure(history, discovery)
    assert [ax.get_ylabel() for ax in fig.axes] == ["nodes in table", "nodes (of 10)"]
