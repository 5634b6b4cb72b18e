"""`p2p testnet` end to end, as a user runs it: a subprocess with a deadline, JSON lines out."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

RUN_DEADLINE = 120  # seconds a whole `p2p testnet` run may take here before the test fails


def _testnet(*args: str) -> tuple[int, list[dict[str, Any]]]:
    proc = subprocess.run([sys.executable, "-m", "p2p", "testnet", "--json", *args],
                          capture_output=True, text=True, timeout=RUN_DEADLINE)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"no output; stderr: {proc.stderr[-2000:]}"
    return proc.returncode, lines


def _summary(lines: list[dict[str, Any]]) -> dict[str, Any]:
    last = lines[-1]
    assert last["event"] == "summary", last
    return last


@pytest.mark.timeout(RUN_DEADLINE + 10)
def test_discovery_testnet_converges_and_lookups_find_members(tmp_path: Path) -> None:
    plot = tmp_path / "convergence.png"
    status, lines = _testnet("--nodes", "12", "--seconds", "40", "--plot", str(plot))
    summary = _summary(lines)
    assert status == 0, summary
    assert summary["converged"] and summary["ok"]
    assert summary["mode"] == "discovery"
    assert summary["table_target"] == 11  # N - 1 when N <= 17
    assert summary["table_fill_seconds"] is not None and summary["table_fill_seconds"] < 40
    assert summary["table_size"]["min"] >= 11
    assert summary["full_tables"] == 12
    lookups = summary["lookups"]
    assert lookups["count"] == 50 and lookups["success_rate"] >= 0.9
    assert lookups["rounds"]["min"] >= 1
    assert len(lookups["missed_known_by"]) == 50 - lookups["found"] - lookups["timed_out"]
    assert all(live <= held for held, live in zip(lookups["missed_known_by"], lookups["missed_known_live_by"]))
    assert len(lookups["missed_failures"]) == len(lookups["missed_known_by"])
    assert all(live_near <= near <= min(held, 16) for held, near, live_near in zip(
        lookups["missed_known_by"], lookups["missed_known_by_closest"], lookups["missed_known_live_by_closest"]))
    assert summary["memory"]["per_node_bytes"] > 0
    assert summary["processes"] == 1 and summary["child_processes"] == 0  # as the human summary says
    assert lines[0]["event"] == "testnet_start" and lines[0]["processes"] == 1
    assert summary["sampled"]["table_size"] == "convergence" and summary["sampled"]["memory"] == "end"
    # the figures "at convergence" come from the sample that saw the convergence
    assert summary["sample_seconds"]["convergence"] == summary["converged_seconds"]
    assert summary["sample_seconds"]["convergence"] <= summary["sample_seconds"]["end"]
    progress = [line for line in lines if line["event"] == "progress"]
    assert progress and progress[-1]["up"] == 12
    assert all(p["elapsed"] <= q["elapsed"] for p, q in zip(progress, progress[1:]))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.stat().st_size > 10_000  # axes, lines and labels, not an empty canvas


@pytest.mark.timeout(RUN_DEADLINE + 10)
def test_chat_testnet_delivers_every_message_to_every_node() -> None:
    status, lines = _testnet("--nodes", "12", "--seconds", "40", "--protocols", "chat",
                             "--messages", "3", "--lookups", "10")
    summary = _summary(lines)
    assert status == 0, summary
    assert summary["mode"] == "server" and summary["protocols"] == ["chat"]
    assert summary["peer_target"] == 5
    assert summary["peers"]["min"] >= 5
    chat = summary["chat"]
    assert chat["messages"] == 3
    assert chat["delivered_to_all"] == 3
    assert chat["reached"] == [12, 12, 12]


@pytest.mark.timeout(RUN_DEADLINE + 10)
def test_testnet_over_child_processes_converges() -> None:
    status, lines = _testnet("--nodes", "10", "--seconds", "40", "--processes", "2", "--lookups", "10")
    summary = _summary(lines)
    assert status == 0, summary
    assert summary["processes"] == 2 and summary["child_processes"] == 2
    assert summary["full_tables"] == 10
    assert summary["lookups"]["success_rate"] >= 0.9


@pytest.mark.timeout(RUN_DEADLINE + 10)
def test_no_convergence_within_the_deadline_exits_non_zero() -> None:
    # Starting the nodes alone takes longer than this deadline.
    status, lines = _testnet("--nodes", "8", "--seconds", "0.01", "--lookups", "0")
    summary = _summary(lines)
    assert status != 0
    assert summary["converged"] is False and summary["ok"] is False
    assert summary["lookups"] is None  # nothing is measured on a network that did not converge
    assert summary["sampled"]["table_size"] == "deadline" and set(summary["sample_seconds"]) == {"deadline", "end"}


def _netns_unavailable() -> str | None:
    from p2p.testnet import netns

    try:
        netns.check_available()
    except netns.NetnsError as exc:
        return str(exc)
    return None


@pytest.mark.timeout(RUN_DEADLINE + 10)
def test_netns_testnet_gives_every_node_its_own_address() -> None:
    reason = _netns_unavailable()
    if reason is not None:
        pytest.skip(f"network namespaces cannot be created here: {reason}")
    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    status, lines = _testnet("--nodes", "10", "--seconds", "40", "--netns", "--lookups", "10")
    summary = _summary(lines)
    assert status == 0, summary
    assert summary["distinct_ips"] == 10
    assert summary["full_tables"] == 10
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert after == before  # every namespace the run made is gone


@pytest.mark.timeout(RUN_DEADLINE + 10)
def test_testnet_over_v4_and_v5_converges_and_looks_up_over_v5() -> None:
    status, lines = _testnet("--nodes", "20", "--seconds", "60", "--discovery", "both", "--lookups", "20")
    summary = _summary(lines)
    assert status == 0, summary
    assert lines[0]["event"] == "testnet_start" and lines[0]["discovery"] == "both"
    assert summary["discovery"] == "both" and summary["converged"] and summary["full_tables"] == 20
    lookups = summary["lookups"]
    assert lookups["count"] == 20 and not lookups["errors"]
    # v5 lookups report no rounds (v4's do): the lookup phase ran over v5. Entries learned
    # through v4 carry no record, so v5 can start from and relay fewer of them: not every
    # target is found in a network that v4 filled.
    assert lookups["rounds"] is None
    assert lookups["found"] >= 1
    # each missed target was in tables all the same (learned over v4): the lookup missed it
    missed = lookups["count"] - lookups["found"] - lookups["timed_out"]
    assert len(lookups["missed_known_by"]) == len(lookups["missed_known_live_by"]) == missed
    assert len(lookups["missed_known_by_closest"]) == len(lookups["missed_known_live_by_closest"]) == missed
    assert all(1 <= held <= 19 for held in lookups["missed_known_by"]), lookups


@pytest.mark.timeout(RUN_DEADLINE + 10)
def test_testnet_over_v5_alone_converges_and_finds_members() -> None:
    status, lines = _testnet("--nodes", "24", "--seconds", "60", "--discovery", "v5", "--lookups", "20")
    summary = _summary(lines)
    assert status == 0, summary
    assert lines[0]["discovery"] == "v5" and summary["discovery"] == "v5"
    assert summary["converged"] and summary["full_tables"] == 24 and summary["table_size"]["min"] >= 16
    lookups = summary["lookups"]
    assert lookups["count"] == 20 and lookups["rounds"] is None  # run over v5
    assert lookups["success_rate"] >= 0.9, lookups


@pytest.mark.timeout(RUN_DEADLINE + 10)
def test_curve_runs_each_size_and_plots_cost_against_size(tmp_path: Path) -> None:
    plot = tmp_path / "curve.png"
    status, lines = _testnet("--curve", "10,20", "--seconds", "40", "--lookups", "5", "--plot", str(plot))
    assert status == 0, lines[-1]
    assert lines[0] == {"event": "curve_start", "sizes": [10, 20]}
    starts = [line for line in lines if line["event"] == "testnet_start"]
    assert [s["nodes"] for s in starts] == [10, 20]
    assert all(s["child_processes"] >= 1 for s in starts)  # fresh processes for every size
    points = [line for line in lines if line["event"] == "curve_point"]
    assert [p["nodes"] for p in points] == [10, 20]
    curve = lines[-1]
    assert curve["event"] == "curve_summary" and curve["ok"] and not curve["interrupted"]
    assert [p["nodes"] for p in curve["points"]] == [10, 20]
    for p in curve["points"]:
        assert p["converged"] and p["converged_seconds"] > 0
        assert 0 < p["cpu_per_node_seconds"] < 10 and p["cpu_seconds"] == pytest.approx(p["cpu_per_node_seconds"] * p["nodes"])
        assert p["memory_per_node_bytes"] > 0
        assert p["lookups_found"] == 5
        assert len(p["load_average"]["start"]) == 3
    # the reference starts at the first point and grows as N log N from there
    ref = curve["reference"]["converged_seconds"]
    assert ref[0] == pytest.approx(curve["points"][0]["converged_seconds"])
    assert ref[1] == pytest.approx(ref[0] * (20 * math.log(20)) / (10 * math.log(10)))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.stat().st_size > 10_000


@pytest.mark.parametrize("args", [["--curve", "10,x"], ["--curve", "1,10"], ["--curve", ""], ["--curve", "10,,20"],
                                  ["--curve", "10,20", "--nodes", "10"]])
def test_bad_curve_values_are_one_line_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from p2p.cli import main

    try:
        status = main(["testnet", *args])
    except SystemExit as exc:  # argparse's own errors
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "--curve" in err
