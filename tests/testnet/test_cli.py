"""`p2p testnet` end to end, as a user runs it: a subprocess with a deadline, JSON lines out."""

from __future__ import annotations

import json
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
