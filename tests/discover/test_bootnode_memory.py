"""100,000 distinct keys bond with a ``p2p bootnode``: its memory grows by less than 32 MiB.

The bootnode runs as a subprocess, so that its RSS is its own; the keys bond over UDP on
loopback with real signed packets (Ping, the bootnode's ping back, our Pong). Without the
node database's bound each bonded key stayed for 24 hours, about 0.6 KiB each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.discover.bond_flood import bond_many, neighbors_answered

REPO = Path(__file__).resolve().parents[2]
KEYS = 100_000
PHASES = 4  # the flood in four parts: the last key of each early part is checked for eviction
WARMUP = 2_000  # bonds before the baseline: code paths, table and caches warmed up
MAX_GROWTH = 32 * 2**20  # the outcome
FLOOD_DEADLINE = 240.0  # seconds; about 70 s on an idle two-core machine


def _start_bootnode(out: Path) -> tuple[subprocess.Popen[bytes], int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with out.open("wb") as f:  # stdout to a file: table events are printed, and nobody drains a pipe
        proc = subprocess.Popen([sys.executable, "-m", "p2p", "bootnode", "--addr", "127.0.0.1:0", "--json"],
                                stdout=f, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        first = out.read_text().split("\n", 1)
        if len(first) == 2:
            enode = json.loads(first[0])["enode"]
            return proc, int(enode.rsplit(":", 1)[1].split("?")[0])
        assert proc.poll() is None, "the bootnode exited"
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the bootnode did not start")


def test_100k_keys_bonding_grow_a_bootnode_by_less_than_32_mib(tmp_path: Path) -> None:
    proc, port = _start_bootnode(tmp_path / "out.jsonl")
    try:
        rss = psutil.Process(proc.pid)
        deadline = time.monotonic() + FLOOD_DEADLINE
        warm = bond_many(port, WARMUP, deadline=deadline)
        assert warm.bonded == WARMUP
        time.sleep(0.5)  # the last bonds' stores are done
        before = rss.memory_info().rss
        early = []
        for _ in range(PHASES):
            part = bond_many(port, KEYS // PHASES, deadline=deadline)
            assert part.bonded == KEYS // PHASES, f"only {part.bonded} bonds before the deadline"
            early.append(part.last_key)
        time.sleep(0.5)
        grown = rss.memory_info().rss - before
        assert grown < MAX_GROWTH, f"RSS grew by {grown / 2**20:.1f} MiB for {KEYS} keys"
        assert proc.poll() is None
        # the keys bonded for real (the latest is answered), and the bound acted: keys bonded
        # 25,000 or more keys ago were dropped (one may have made it into the table)
        last = early.pop()
        assert last is not None and neighbors_answered(port, last, timeout=5.0)
        forgotten = sum(not neighbors_answered(port, key, timeout=1.0) for key in early if key is not None)
        assert forgotten >= len(early) - 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
