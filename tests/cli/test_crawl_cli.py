"""``p2p crawl`` as a program against an in-process 30-node testnet, and ``p2p nodeset``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trio

from p2p.cli import main
from p2p.crypto import PrivateKey
from p2p.discover.testnet import open_local_testnet
from p2p.enode import ENR, NodeID
from p2p.nodeset import NodeEntry, dumps, loads
from p2p.testing import open_json_process

NODES = 30
KEYS = {"seq", "record", "score", "firstResponse", "lastResponse", "lastCheck"}


def _p2p(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2p", *args], capture_output=True, text=True, timeout=60)


def _inline(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """``p2p ARGS`` in this process (no trio inside: nodeset only), as a finished process."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


async def test_crawl_a_30_node_testnet_into_nodes_json(tmp_path: Path) -> None:
    out = tmp_path / "nodes.json"
    with trio.fail_after(120):
        async with open_local_testnet(NODES, seed=21) as net:
            await net.wait_converged(60)
            argv = [sys.executable, "-m", "p2p", "crawl", "--json", "--addr", "127.0.0.1:0",
                    "--bootnodes", net.bootnode.local_node.to_url(), "--out", str(out),
                    "--seconds", "60", "--quiet-lookups", "3"]
            t0 = trio.current_time()
            async with open_json_process(argv, stdin=False, name="p2p crawl") as proc:
                start = await proc.wait_for("crawl_start")
                summary = await proc.wait_for("summary")
                assert await proc.process.wait() == 0
            took = trio.current_time() - t0
    assert start["nodes_before"] == 0 and start["bootnodes"] == 1
    ids = {d.local_id.hex() for d in net.nodes}
    data = json.loads(out.read_text())
    assert len(set(data) & ids) >= NODES - 2 and set(data) <= ids
    assert summary["nodes"] == len(data) and summary["alive"] >= NODES - 2 and not summary["interrupted"]
    assert summary["checks_per_second"] > 0 and took < 90
    for node_id, item in data.items():
        assert set(item) == KEYS and item["score"] == 1
        record = ENR.from_text(item["record"])
        assert record.node_id.hex() == node_id and item["seq"] == record.seq
        assert item["firstResponse"].endswith("Z") and datetime.fromisoformat(item["lastCheck"].replace("Z", "+00:00"))


def test_crawl_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"00": {"record": "enr:nope"}}')
    for args, words in ((["--out", str(tmp_path / "x.json")], "give --bootnodes"),
                        (["--out", str(bad)], "--out"),
                        (["--out", str(tmp_path / "no" / "x.json"), "--bootnodes", "enode://x"], "does not exist"),
                        (["--out", str(tmp_path), "--bootnodes", "enode://x"], "is a directory")):
        proc = _p2p("crawl", *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and words in proc.stderr and proc.stderr.startswith("p2p crawl: ")


def _set(tmp_path: Path) -> tuple[Path, dict[NodeID, NodeEntry]]:
    """Four nodes: young and old, 10.x and 127.x, with and without an ``eth`` entry."""
    t = datetime(2024, 1, 1, tzinfo=timezone.utc)
    entries = {}
    for i, (ip, age_h, eth, score) in enumerate([("10.0.0.1", 0, False, 1), ("10.0.0.2", 48, True, 9),
                                                  ("127.0.0.5", 30, True, 4), ("127.0.0.6", 48, False, 7)]):
        key = PrivateKey.generate()
        extra = {"eth": b"\xc7\xc6\x84\xfc\x64\xec\x04\x80"} if eth else {}
        enr = ENR.build(key, ip=ip, udp=30303, tcp=30303, extra=extra)
        entries[enr.node_id] = NodeEntry(enr, score, t, t + timedelta(hours=age_h), t + timedelta(hours=age_h))
    path = tmp_path / "nodes.json"
    path.write_text(dumps(entries))
    return path, entries


def test_nodeset_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, entries = _set(tmp_path)
    by_ip = {str(e.record.ip): k.hex() for k, e in entries.items()}

    def kept(*filters: str) -> set[str]:
        proc = _inline(capsys, "nodeset", "filter", str(path), *filters)
        assert proc.returncode == 0, proc.stderr
        return {ip for ip, k in by_ip.items() if k in json.loads(proc.stdout)}

    assert kept() == set(by_ip)
    assert kept("-min-age", "36h") == {"10.0.0.2", "127.0.0.6"}
    assert kept("--min-age", "24h") == {"10.0.0.2", "127.0.0.5", "127.0.0.6"}
    assert kept("-ip", "10.0.0.0/8") == {"10.0.0.1", "10.0.0.2"}
    assert kept("-enr-key", "eth") == {"10.0.0.2", "127.0.0.5"}
    assert kept("-limit", "2") == {"10.0.0.2", "127.0.0.6"}  # the best two scores
    assert kept("-ip", "127.0.0.0/8", "-enr-key", "eth", "-min-age", "1h") == {"127.0.0.5"}
    out = tmp_path / "best.json"
    proc = _inline(capsys, "nodeset", "filter", str(path), "--ip", "127.0.0.0/8", "--out", str(out))
    assert proc.returncode == 0 and proc.stdout == ""
    assert {str(e.record.ip) for e in loads(out.read_text()).values()} == {"127.0.0.5", "127.0.0.6"}
    info = _inline(capsys, "nodeset", "info", str(path), "--json")
    assert json.loads(info.stdout) == {"nodes": 4, "score_min": 1, "score_median": 7, "score_max": 9}


def test_nodeset_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = _set(tmp_path)
    for args, status, words in ((["filter", str(path), "-min-age", "soon"], 2, "not a duration"),
                                (["filter", str(path), "-ip", "10.0.0.300/8"], 2, "not a network"),
                                (["filter", str(tmp_path / "none.json")], 1, "No such file"),
                                (["info", str(tmp_path)], 1, "")):
        proc = _inline(capsys, "nodeset", *args)
        assert proc.returncode == status, proc.stderr
        assert proc.stderr.count("\n") == 1 and words in proc.stderr
