"""``p2p keygen`` and ``p2p nodedb list|show|seeds``, through the real command entry point."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import stat
import struct
import subprocess
import time
from pathlib import Path

import plyvel
import pytest

from p2p.cli import main
from p2p.crypto import PrivateKey, load_node_key
from p2p.enode.enr import ENR
from p2p.enode.node import Node, NodeID
from p2p.enode.nodedb import DB_VERSION, NodeDB

REPO = Path(__file__).resolve().parents[2]
P2P = REPO / ".venv" / "bin" / "p2p"


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- keygen ----------------------------------------------------------------------------------

def test_keygen_prints_a_consistent_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen"]) == 0
    out = dict(line.split(": ", 1) for line in lines(capsys.readouterr().out))
    key = PrivateKey.from_hex(out["private_key"])
    assert out["public_key"] == key.public_key.to_bytes().hex()
    assert out["id"] == NodeID.from_pubkey(key.public_key).hex()
    assert main(["keygen"]) == 0
    again = dict(line.split(": ", 1) for line in lines(capsys.readouterr().out))
    assert again["private_key"] != out["private_key"]


def test_keygen_out_file_json_and_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.key"
    assert main(["keygen", "--out", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "private_key" not in info and info["file"] == str(path)
    key = load_node_key(path)
    assert info["public_key"] == key.public_key.to_bytes().hex()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert main(["keygen", "--out", str(path)]) == 1  # an existing key is never overwritten silently
    assert "exists" in capsys.readouterr().err
    assert load_node_key(path) == key
    os.chmod(path, 0o644)
    assert main(["keygen", "--out", str(path), "--force"]) == 0
    capsys.readouterr()
    assert load_node_key(path) != key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_keygen_unwritable_place_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "--out", str(tmp_path / "missing-dir" / "node.key")]) == 1
    assert "cannot write" in capsys.readouterr().err


# --- nodedb ----------------------------------------------------------------------------------

@pytest.fixture
def filled(tmp_path: Path) -> tuple[str, list[Node]]:
    rng = random.Random(11)
    path = str(tmp_path / "nodes")
    nodes = []
    now = time.time()
    with NodeDB.open(path) as db:
        for i in range(6):
            key = PrivateKey.generate(rng)
            ip = ipaddress.IPv4Address(f"127.0.0.{i + 1}")
            node = Node(key.public_key, ip, 30300 + i, 30400 + i)
            if i == 0:
                node = node.with_enr(ENR.build(key, 4, ip=ip, udp=30300, tcp=30400))
            db.update_node(node)
            nodes.append(node)
        for node in nodes[:4]:
            db.update_last_pong_received(node.id, node.ip, now - 100)
        db.update_last_pong_received(nodes[4].id, nodes[4].ip, now - 30 * 86400)  # too old for a seed
        db.update_last_ping_received(nodes[0].id, nodes[0].ip, now - 50)
        db.update_find_fails(nodes[0].id, nodes[0].ip, 2)
    return path, nodes


def test_list_text_and_json(filled: tuple[str, list[Node]], capsys: pytest.CaptureFixture[str]) -> None:
    path, nodes = filled
    assert main(["nodedb", "list", path]) == 0
    out = lines(capsys.readouterr().out)
    assert len(out) == len(nodes)
    by_id = {line.split()[0]: line for line in out}
    assert set(by_id) == {n.id.hex() for n in nodes}
    assert nodes[0].to_url() in by_id[nodes[0].id.hex()]
    assert "pong 100s ago" in by_id[nodes[1].id.hex()]
    assert "pong never" in by_id[nodes[5].id.hex()]
    assert main(["nodedb", "list", path, "--json"]) == 0
    objs = [json.loads(line) for line in lines(capsys.readouterr().out)]
    assert {o["id"] for o in objs} == {n.id.hex() for n in nodes}
    first = next(o for o in objs if o["id"] == nodes[0].id.hex())
    assert first["event"] == "node" and first["enode"] == nodes[0].to_url() and first["seq"] == 4
    assert 99 <= first["last_pong_age"] < 200
    assert next(o for o in objs if o["id"] == nodes[5].id.hex())["last_pong_age"] is None


def test_show(filled: tuple[str, list[Node]], capsys: pytest.CaptureFixture[str]) -> None:
    path, nodes = filled
    assert main(["nodedb", "show", path, nodes[0].id.hex(), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["enode"] == nodes[0].to_url()
    assert nodes[0].enr is not None and obj["enr"] == nodes[0].enr.to_text()
    assert obj["endpoints"] == [{"ip": "127.0.0.1", "last_ping_age": pytest.approx(50, abs=60),
                                 "last_pong_age": pytest.approx(100, abs=60), "find_fails": 2}]
    assert main(["nodedb", "show", path, nodes[1].to_url()]) == 0  # by enode URL too
    text = capsys.readouterr().out
    assert f"id: {nodes[1].id.hex()}" in text and "enr: -" in text
    assert main(["nodedb", "show", path, "ab" * 32]) == 1
    assert "no node" in capsys.readouterr().err
    assert main(["nodedb", "show", path, "xyz"]) == 2
    assert "not a node ID" in capsys.readouterr().err


def test_seeds(filled: tuple[str, list[Node]], capsys: pytest.CaptureFixture[str]) -> None:
    path, nodes = filled
    assert main(["nodedb", "seeds", path, "--json"]) == 0
    objs = [json.loads(line) for line in lines(capsys.readouterr().out)]
    assert sorted(o["id"] for o in objs) == sorted(n.id.hex() for n in nodes[:4])  # fresh ones only
    assert all(o["event"] == "seed" for o in objs)
    assert main(["nodedb", "seeds", path, "--count", "2"]) == 0
    out = lines(capsys.readouterr().out)
    assert len(out) == 2 and {line.split()[0] for line in out} <= {n.id.hex() for n in nodes[:4]}
    assert main(["nodedb", "seeds", path, "--max-age", "10"]) == 0
    assert lines(capsys.readouterr().out) == []
    assert main(["nodedb", "seeds", path, "--max-age", str(60 * 86400), "--count", "100"]) == 0
    assert len(lines(capsys.readouterr().out)) == 5


def test_other_version_is_reported_not_wiped(filled: tuple[str, list[Node]],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path, nodes = filled
    raw = plyvel.DB(path)
    raw.put(b"version", struct.pack(">Q", DB_VERSION + 1))
    raw.close()
    assert main(["nodedb", "list", path]) == 1
    err = capsys.readouterr().err
    assert "version" in err and str(DB_VERSION + 1) in err
    raw = plyvel.DB(path)
    try:
        assert raw.get(b"n:" + nodes[0].id + b":v4") is not None  # untouched
    finally:
        raw.close()


def test_missing_and_busy_database(tmp_path: Path, filled: tuple[str, list[Node]],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nodedb", "list", str(tmp_path / "nope")]) == 1
    assert "no node database" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()
    path, _ = filled
    with NodeDB.open(path):  # a running node holds the store
        assert main(["nodedb", "list", path]) == 1
        assert "cannot open" in capsys.readouterr().err


def test_console_script(filled: tuple[str, list[Node]]) -> None:
    path, nodes = filled
    res = subprocess.run([str(P2P), "nodedb", "list", path, "--json"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert {json.loads(line)["id"] for line in lines(res.stdout)} == {n.id.hex() for n in nodes}
    res = subprocess.run([str(P2P), "keygen", "--json"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert PrivateKey.from_hex(info["private_key"]).public_key.to_bytes().hex() == info["public_key"]
