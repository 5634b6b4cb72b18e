"""The node database on disk: layout versions, crashes, damaged files, inspection mode."""

from __future__ import annotations

import logging
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import plyvel
import pytest

from p2p.crypto import PrivateKey
from p2p.enode.node import Node, NodeID
from p2p.enode.nodedb import (
    DB_VERSION,
    NodeDB,
    NodeDBCorrupt,
    NodeDBError,
    NodeDBForeign,
    NodeDBVersionMismatch,
)
from tests.enode.test_nodedb import make_nodes

WRITER = Path(__file__).with_name("nodedb_writer.py")
REPO = Path(__file__).resolve().parents[2]


def _fill(path: str, count: int, seed: int = 1) -> list[Node]:
    nodes = make_nodes(random.Random(seed), count)
    with NodeDB.open(path) as db:
        db.update_nodes(nodes)
        for n in nodes:
            db.update_last_pong_received(n.id, n.ip, 1234.0)
        db.store_local_seq(9)
    with NodeDB.open(path):  # reopening moves the write-ahead log into a table file
        pass
    return nodes


def _set_version(path: str, version: int) -> None:
    raw = plyvel.DB(path)
    raw.put(b"version", struct.pack(">Q", version))
    raw.close()


def test_new_store_gets_the_version_key(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    NodeDB.open(path).close()
    raw = plyvel.DB(path)
    try:
        assert raw.get(b"version") == struct.pack(">Q", DB_VERSION)
    finally:
        raw.close()


def test_version_mismatch_wipes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(tmp_path / "db")
    nodes = _fill(path, 5)
    _set_version(path, DB_VERSION + 1)
    with caplog.at_level(logging.WARNING, logger="p2p.enode.nodedb"):
        with NodeDB.open(path) as db:
            assert list(db.iter_nodes()) == []
            assert db.node(nodes[0].id) is None
            assert db.local_seq() == 0
            db.update_node(nodes[0])
    assert any("wiping" in r.getMessage() for r in caplog.records)
    with NodeDB.open(path) as db:  # the recreated store is ours now: kept on the next open
        assert db.node(nodes[0].id) == nodes[0]


def _foreign(path: str, count: int = 100, version: bytes | None = None) -> None:
    """Another program's LevelDB: ``count`` keys of its own, and maybe a "version" key of its own."""
    raw = plyvel.DB(path, create_if_missing=True)
    for i in range(count):
        raw.put(b"n:other-%03d" % i if i % 2 else b"key-%03d" % i, b"value %d" % i)
    if version is not None:
        raw.put(b"version", version)
    raw.close()


def _raw_count(path: str) -> int:
    raw = plyvel.DB(path)
    try:
        return sum(1 for _ in raw.iterator(include_value=False))
    finally:
        raw.close()


@pytest.mark.parametrize("version", [None, b"2.1", b""])
def test_foreign_store_is_refused_untouched(tmp_path: Path, version: bytes | None) -> None:
    path = str(tmp_path / "db")
    _foreign(path, version=version)
    before = _raw_count(path)
    with pytest.raises(NodeDBForeign) as info:
        NodeDB.open(path)
    assert info.value.path == path and path in str(info.value) and "\n" not in str(info.value)
    assert _raw_count(path) == before == 100 + (version is not None)
    raw = plyvel.DB(path)
    try:
        assert raw.get(b"key-000") == b"value 0" and raw.get(b"n:other-099") == b"value 99"
    finally:
        raw.close()
    NodeDB.open(path + "-ours").close()  # the error names no lock left behind: other stores still open


def test_a_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"not a database\n")
    with pytest.raises(NodeDBForeign, match="not a directory"):
        NodeDB.open(str(path))
    assert path.read_bytes() == b"not a database\n" and os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("command", ["node", "bootnode"])
def test_cli_refuses_foreign_nodedb_with_one_line(tmp_path: Path, command: str) -> None:
    path = str(tmp_path / "other-program.db")
    _foreign(path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "p2p", command, "--addr", "127.0.0.1:0", "--nodedb", path],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and path in lines[0] and lines[0].startswith(f"p2p {command}: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert _raw_count(path) == 100


def test_same_version_keeps_data(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    nodes = _fill(path, 50)
    with NodeDB.open(path) as db:
        assert sorted(n.id for n in db.iter_nodes()) == sorted(n.id for n in nodes)
        assert db.last_pong_received(nodes[3].id, nodes[3].ip) == 1234.0
        assert db.local_seq() == 9


def test_store_in_use_is_a_clear_error(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    with NodeDB.open(path):
        with pytest.raises(NodeDBError, match="in use"):
            NodeDB.open(path)


# --- a writer killed with SIGKILL ------------------------------------------------------------

def test_sigkill_during_write_loop_keeps_acknowledged_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(WRITER), path, "77"], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    written = -1
    deadline = time.monotonic() + 30
    try:
        while written < 400 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            written = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    # read through the buffered reader: lines that readline() already buffered are in it, and
    # communicate() would read past them from the raw pipe
    rest = proc.stdout.read()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    for line in rest.split():  # writes acknowledged between our last read and the kill
        written = int(line)
    assert written >= 400, "the writer did not get going in time"

    rng = random.Random(77)
    keys = [PrivateKey.generate(rng) for _ in range(written + 1)]
    with NodeDB.open(path) as db:
        stored = {n.id for n in db.iter_nodes()}
        for i, key in enumerate(keys):
            node = db.node(NodeID.from_pubkey(key.public_key))
            assert node is not None, f"node {i} of {written} lost"
            assert node.udp_port == 30000 + i % 1000
            assert db.last_pong_received(node.id, node.ip) == 1000.0 + i
        # at most the one write in flight at the kill may be there beyond the acknowledged ones
        assert written + 1 <= len(stored) <= written + 2
        db.update_node(make_nodes(random.Random(5), 1)[0])  # and it takes writes again


# --- damaged files -----------------------------------------------------------------------------

def _garble(path: str, suffix: str, how: str) -> list[str]:
    hit = []
    for name in sorted(os.listdir(path)):
        if name == suffix or name.endswith(suffix) or (suffix == "MANIFEST" and name.startswith("MANIFEST-")):
            f = os.path.join(path, name)
            data = bytearray(Path(f).read_bytes())
            if how == "junk":
                data = bytearray((b"\xde\xad\xbe\xef" * (len(data) // 4 + 1))[: len(data)])
            elif how == "flip":
                for i in range(len(data) // 3, min(len(data), len(data) // 3 + 64)):
                    data[i] ^= 0xFF
            elif how == "truncate":
                data = data[: len(data) // 2]
            Path(f).write_bytes(bytes(data))
            hit.append(name)
    return hit


@pytest.mark.parametrize("target,how", [
    ("CURRENT", "junk"),
    ("MANIFEST", "junk"),
    ("MANIFEST", "truncate"),
    (".ldb", "junk"),
    (".ldb", "flip"),
    (".ldb", "truncate"),
    (".log", "junk"),
])
def test_garbled_store_reopens(tmp_path: Path, caplog: pytest.LogCaptureFixture, target: str, how: str) -> None:
    path = str(tmp_path / "db")
    nodes = _fill(path, 2000)
    # a small write after the last reopen, so that a write-ahead log with content exists too
    with NodeDB.open(path) as db:
        db.store_local_seq(10)
    assert _garble(path, target, how), f"no {target} file in {os.listdir(path)}"
    with caplog.at_level(logging.WARNING, logger="p2p.enode.nodedb"):
        with NodeDB.open(path) as db:
            survivors = list(db.iter_nodes())
            by_id = {n.id: n for n in nodes}
            assert all(by_id[n.id] == n for n in survivors)  # whatever survived is intact
            seeds = db.query_seeds(10, 1e12)  # and everything works
            assert len(seeds) == min(10, len(survivors))
            db.update_node(nodes[0])
            assert db.node(nodes[0].id) == nodes[0]
    messages = [r.getMessage() for r in caplog.records]
    if target in ("CURRENT", "MANIFEST", ".ldb"):
        assert any("damaged" in m for m in messages), messages
        assert any("repaired" in m or "moved aside" in m for m in messages), messages
    if any("moved aside" in m for m in messages):
        assert any(name.startswith("db.corrupt-") for name in os.listdir(tmp_path))
    if target in ("CURRENT", "MANIFEST"):  # the tables are intact: repair finds every node
        assert len(survivors) == len(nodes)
    with NodeDB.open(path) as db:  # the repaired store stays healthy
        assert db.node(nodes[0].id) == nodes[0]


def test_unrepairable_store_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "db")
    _fill(path, 100)
    _garble(path, "CURRENT", "junk")

    def failing_repair(p: str) -> None:
        raise plyvel.CorruptionError(b"Corruption: beyond repair")

    monkeypatch.setattr(plyvel, "repair_db", failing_repair)
    with caplog.at_level(logging.WARNING, logger="p2p.enode.nodedb"):
        with NodeDB.open(path) as db:
            assert list(db.iter_nodes()) == []
    assert any("moved aside" in r.getMessage() for r in caplog.records)
    aside = [name for name in os.listdir(tmp_path) if name.startswith("db.corrupt-")]
    assert len(aside) == 1
    assert "CURRENT" in os.listdir(tmp_path / aside[0])  # the old files are kept for a post-mortem


def test_missing_current_file_is_repaired_not_started_empty(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    path = str(tmp_path / "db")
    nodes = _fill(path, 500)
    with NodeDB.open(path) as db:  # some records only in the write-ahead log, too
        extra = make_nodes(random.Random(8), 20)
        db.update_nodes(extra)
    os.remove(os.path.join(path, "CURRENT"))
    with caplog.at_level(logging.WARNING, logger="p2p.enode.nodedb"):
        with NodeDB.open(path) as db:
            assert {n.id for n in db.iter_nodes()} == {n.id for n in nodes + extra}
            assert db.last_pong_received(nodes[7].id, nodes[7].ip) == 1234.0
            assert db.local_seq() == 9
    messages = [r.getMessage() for r in caplog.records]
    assert any("no CURRENT file" in m and path in m for m in messages), messages
    assert any("repaired" in m for m in messages), messages


def test_missing_current_file_that_cannot_be_repaired_is_moved_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "db")
    _fill(path, 100)
    os.remove(os.path.join(path, "CURRENT"))
    monkeypatch.setattr(plyvel, "repair_db", lambda p: None)  # a repair that achieves nothing
    with caplog.at_level(logging.WARNING, logger="p2p.enode.nodedb"):
        with NodeDB.open(path) as db:
            assert list(db.iter_nodes()) == []
    assert any("moved aside" in r.getMessage() for r in caplog.records)
    aside = [name for name in os.listdir(tmp_path) if name.startswith("db.corrupt-")]
    assert len(aside) == 1
    assert any(name.endswith(".ldb") for name in os.listdir(tmp_path / aside[0]))  # the data is kept


# --- inspection mode ----------------------------------------------------------------------------

def test_inspect_does_not_touch_another_version(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    nodes = _fill(path, 3)
    _set_version(path, DB_VERSION + 5)
    with pytest.raises(NodeDBVersionMismatch) as info:
        NodeDB.open(path, inspect=True)
    assert info.value.found == DB_VERSION + 5
    _set_version(path, DB_VERSION)
    with NodeDB.open(path, inspect=True) as db:
        assert db.node(nodes[0].id) == nodes[0]


def test_inspect_missing_or_damaged(tmp_path: Path) -> None:
    with pytest.raises(NodeDBError, match="no node database"):
        NodeDB.open(str(tmp_path / "nothing"), inspect=True)
    assert not (tmp_path / "nothing").exists()
    path = str(tmp_path / "db")
    _fill(path, 3)
    _garble(path, "CURRENT", "junk")
    with pytest.raises(NodeDBCorrupt):
        NodeDB.open(path, inspect=True)
    assert Path(path, "CURRENT").read_bytes().startswith(b"\xde\xad")  # left as it was
