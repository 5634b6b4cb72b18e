"""``p2p dns``: ordinary mistakes are one line and exit 2; signing is go-ethereum's file shape and
bumps seq; the zone file splits long strings and loads in nsd-checkzone."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from p2p.crypto import PrivateKey, save_node_key
from p2p.dnsdisc import parse_url
from p2p.dnsdisc.records import parse_root
from p2p.enode import ENR
from tests.cli.test_errors import assert_one_line, p2p


@pytest.fixture
def tree_dir(tmp_path: Path) -> tuple[Path, str]:
    rng = random.Random(11)
    directory = tmp_path / "nodes.example.org"
    directory.mkdir()
    records = [ENR.build(PrivateKey.generate(rng), ip=f"127.0.2.{i + 1}", tcp=30303, udp=30303) for i in range(20)]
    (directory / "nodes.json").write_text(json.dumps({r.node_id.hex(): {"seq": r.seq, "record": r.to_text()}
                                                      for r in records}))
    save_node_key(PrivateKey.generate(rng), tmp_path / "key")
    return directory, str(tmp_path / "key")


def test_sign_writes_info_and_tree_and_bumps_seq(tree_dir: tuple[Path, str]) -> None:
    directory, key = tree_dir
    first = p2p("dns", "sign", str(directory), "--key", key)
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip()
    link = parse_url(url)
    assert link.domain == "nodes.example.org"
    second = p2p("dns", "sign", str(directory), "--key", key, "--domain", "other.example.org")
    info = json.loads((directory / "enrtree-info.json").read_text())
    assert info["seq"] == 2 and info["url"] == second.stdout.strip() and info["url"].endswith("@other.example.org")
    txt = json.loads((directory / "enrtree.json").read_text())
    root = parse_root(txt["other.example.org"])
    assert root.seq == 2 and root.verifies(link.pubkey)
    assert all(name.endswith(".other.example.org") for name in txt if name != "other.example.org")
    assert p2p("dns", "sign", str(directory), "--key", key, "--seq", "9").returncode == 0
    assert json.loads((directory / "enrtree-info.json").read_text())["seq"] == 9


def test_zonefile_splits_long_strings_and_nsd_checkzone_accepts_it(tree_dir: tuple[Path, str]) -> None:
    directory, key = tree_dir
    assert p2p("dns", "sign", str(directory), "--key", key).returncode == 0
    out = p2p("dns", "to-zonefile", str(directory), "--out", "-")
    assert out.returncode == 0, out.stderr
    branch = next(line for line in out.stdout.splitlines() if "enrtree-branch:" in line and " IN TXT " in line
                  and len(line) > 300)
    parts = branch.split(" IN TXT ", 1)[1].split('" "')
    assert len(parts) == 2 and len(parts[0]) - 1 == 255
    checkzone = shutil.which("nsd-checkzone") or "/usr/sbin/nsd-checkzone"
    if not Path(checkzone).exists():
        pytest.fail("nsd-checkzone is missing: scripts/setup installs nsd")
    (directory / "zone").write_text(out.stdout)
    res = subprocess.run([checkzone, "nodes.example.org", str(directory / "zone")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_changed_nodes_file_is_refused_by_to_zonefile(tree_dir: tuple[Path, str]) -> None:
    directory, key = tree_dir
    assert p2p("dns", "sign", str(directory), "--key", key).returncode == 0
    nodes = json.loads((directory / "nodes.json").read_text())
    nodes.pop(next(iter(nodes)))
    (directory / "nodes.json").write_text(json.dumps(nodes))
    assert_one_line(p2p("dns", "to-zonefile", str(directory)), 2, "signature", "p2p dns sign")


def test_mistakes_are_one_line(tree_dir: tuple[Path, str], tmp_path: Path) -> None:
    directory, key = tree_dir
    assert_one_line(p2p("dns", "sign", str(tmp_path / "none"), "--key", key), 2, "not a directory")
    assert_one_line(p2p("dns", "sign", str(directory), "--key", str(tmp_path / "nokey")), 2, "--key")
    assert_one_line(p2p("dns", "to-zonefile", str(directory)), 2, "p2p dns sign")
    (directory / "nodes.json").write_text('{"00": {"record": "enr:xyz"}}')
    assert_one_line(p2p("dns", "sign", str(directory), "--key", key), 2, "nodes.json", "node 00")
    (directory / "nodes.json").write_text("[")
    assert_one_line(p2p("dns", "sign", str(directory), "--key", key), 2, "not JSON")
    assert_one_line(p2p("dns", "resolve", "enrtree://xyz@nodes.example.org"), 2, "bad URL")
    assert_one_line(p2p("dns", "resolve", "enrtree://AKPYQIUQIL7PSIACI32J7FGZW56E5FKHEFCCOFHILBIMW3M6LWXS2@x.org",
                        "--server", "nowhere"), 2, "--server")
