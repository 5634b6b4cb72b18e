"""Every ordinary mistake ends in one line on stderr naming the value at fault, no traceback,
and exit status 2 (a value that cannot work) or 1 (a port or database that is busy); all
through the real ``p2p`` command."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import plyvel
import pytest

from p2p.enode.nodedb import NodeDB

REPO = Path(__file__).resolve().parents[2]
P2P = str(REPO / ".venv" / "bin" / "p2p")
NOT_HERE = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never an address of this host
BAD_ENODE = "enode://xyz@127.0.0.1:30303"


def p2p(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([P2P, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line(res: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert res.returncode == status, res.stderr
    assert lines[0].startswith("p2p "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A TCP and a UDP socket on one port of 127.0.0.1, held for the test."""
    for _ in range(20):
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            tcp.close()
            udp.close()
            continue
        tcp.listen()
        try:
            yield port
        finally:
            tcp.close()
            udp.close()
        return
    raise AssertionError("no free TCP+UDP port pair")


@pytest.fixture
def places(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("not a directory\n")
    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "thesis.txt").write_text("precious\n")
    (tmp_path / "badkey").write_text("zz\n")
    return tmp_path


# (arguments, exit status, words the line must hold); {t} is the test's directory.
USAGE_CASES = [
    (["node", "--addr", f"{NOT_HERE}:0"], 2, ["--addr", NOT_HERE, "not an address of this host"]),
    (["node", "--addr", "no-such-host.invalid:0"], 2, ["--addr", "no-such-host.invalid"]),
    (["node", "--netrestrict", "10.0.0.0/33"], 2, ["--netrestrict", "10.0.0.0/33"]),
    (["node", "--netrestrict", "foo"], 2, ["--netrestrict", "'foo'"]),
    (["node", "--nodedb", "{t}/file"], 2, ["--nodedb", "is a file"]),
    (["node", "--nodedb", "{t}/missing/db"], 2, ["--nodedb", "missing", "does not exist"]),
    (["node", "--nodedb", "{t}/papers"], 2, ["--nodedb", "thesis.txt", "not a node database"]),
    (["chat", "--nick", "", "--nodiscover"], 2, ["--nick", "1 to 32 bytes"]),
    (["chat", "--nick", "n" * 33, "--nodiscover"], 2, ["--nick", "got 33"]),
    (["testnet", "--plot", "{t}/missing/plot.png"], 2, ["--plot", "does not exist"]),
    (["node", "--maxpeers", "-1"], 2, ["--maxpeers", "-1"]),
    (["chat", "--nick", "a", "--maxpeers", "-1"], 2, ["--maxpeers", "-1"]),
    (["testnet", "--seconds", "-1"], 2, ["--seconds", "-1"]),
    (["testnet", "--peers", "-1"], 2, ["--peers", "-1"]),
    (["testnet", "--processes", "0"], 2, ["--processes", "0"]),
    (["node", "--protocols", "nope"], 2, ["--protocols", "'nope'", "chat", "eth"]),
    (["testnet", "--protocols", "eth"], 2, ["--protocols eth", "chat"]),
    (["node", "-v", "9"], 2, ["--verbosity", "'9'"]),
]
SAME_STATUS_CASES = [
    ([command, *nick, *flag] if command == "chat" else [command, *flag], 2, words)
    for command, nick in (("node", []), ("bootnode", []), ("chat", ["--nick", "a"]))
    for flag, words in ((["--nodekey", "{t}/badkey"], ["--nodekey", "badkey"]),
                        (["--nodekeyhex", "zz"], ["--nodekeyhex"]),
                        (["--bootnodes", BAD_ENODE], ["bootnode", "enode://xyz"]))
]


@pytest.mark.parametrize(("args", "status", "words"), USAGE_CASES + SAME_STATUS_CASES,
                         ids=lambda v: " ".join(v) if isinstance(v, list) and all(isinstance(a, str) for a in v)
                         and v and v[0] in ("node", "bootnode", "chat", "testnet") else None)
def test_bad_value_is_one_line(places: Path, args: list[str], status: int, words: list[str]) -> None:
    res = p2p(*(a.replace("{t}", str(places)) for a in args))
    assert_one_line(res, status, *(w.replace("{t}", str(places)) for w in words))
    assert sorted(p.name for p in (places / "papers").iterdir()) == ["thesis.txt"]  # nothing created there
    assert not (places / "missing").exists()


@pytest.mark.parametrize("args", [["node", "--addr", "127.0.0.1:{port}"],
                                  ["node", "--addr", "127.0.0.1:0", "--port", "{port}"],
                                  ["node", "--addr", "127.0.0.1:0", "--metrics", "127.0.0.1:{port}"],
                                  ["bootnode", "--addr", "127.0.0.1:{port}"],
                                  ["chat", "--nick", "a", "--addr", "127.0.0.1:{port}"]])
def test_port_in_use_is_one_line(busy_port: int, args: list[str]) -> None:
    res = p2p(*(a.replace("{port}", str(busy_port)) for a in args))
    flag = args[args.index(next(a for a in args if "{port}" in a)) - 1]
    assert_one_line(res, 1, flag, str(busy_port), "already in use")


def test_nodedb_held_by_a_running_node(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    with NodeDB.open(path):
        pass
    node = subprocess.Popen([P2P, "node", "--addr", "127.0.0.1:0", "--nodedb", path, "--json"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert node.stdout is not None and '"listening"' in node.stdout.readline()
        res = p2p("node", "--nodedb", path, "--addr", "127.0.0.1:0")
        assert_one_line(res, 1, "--nodedb", "in use", "p2p node", f"pid {node.pid}")
        res = p2p("nodedb", "list", path)
        assert_one_line(res, 1, path, "in use", "p2p node", f"pid {node.pid}")
    finally:
        node.terminate()
        node.communicate(timeout=20)
    assert node.returncode == 0


def test_nodedb_list_on_other_directories_leaves_nothing(tmp_path: Path) -> None:
    papers = tmp_path / "papers"
    papers.mkdir()
    (papers / "thesis.txt").write_text("precious\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    foreign = tmp_path / "foreign"
    raw = plyvel.DB(str(foreign), create_if_missing=True)
    raw.put(b"\x00\xffsomething", b"\x01\x02")
    raw.close()
    assert_one_line(p2p("nodedb", "list", str(papers)), 2, "not a node database", "thesis.txt")
    assert_one_line(p2p("nodedb", "list", str(empty)), 2, "not a node database", "empty")
    line = assert_one_line(p2p("nodedb", "list", str(foreign)), 1, "not a node database")
    assert "\\x" not in line
    assert_one_line(p2p("nodedb", "list", str(tmp_path / "nope")), 1, "no such directory")
    assert [p.name for p in papers.iterdir()] == ["thesis.txt"]  # no LOCK, no LOG
    assert list(empty.iterdir()) == []


def test_nodedb_show_takes_a_short_id(tmp_path: Path) -> None:
    import ipaddress
    import random

    from p2p.crypto import PrivateKey
    from p2p.enode.node import Node

    path = str(tmp_path / "db")
    rng = random.Random(3)
    with NodeDB.open(path) as db:
        nodes = [Node(PrivateKey.generate(rng).public_key, ipaddress.IPv4Address("127.0.0.1"), 30300 + i, 30300 + i)
                 for i in range(3)]
        for node in nodes:
            db.update_node(node)
    res = p2p("nodedb", "show", path, nodes[1].id.short())
    assert res.returncode == 0, res.stderr
    assert f"id: {nodes[1].id.hex()}" in res.stdout
    assert_one_line(p2p("nodedb", "show", path, "0" * 15 + "z"), 2, "not a node ID")


def test_version_and_verbosity_after_the_command() -> None:
    res = p2p("--version")
    assert res.returncode == 0 and res.stdout.startswith("p2p (trio-devp2p) ")
    for args in (["-v", "4", "keygen"], ["keygen", "-v", "debug"], ["keygen", "--verbosity", "0"]):
        res = p2p(*args)
        assert res.returncode == 0 and "private_key" in res.stdout, (args, res.stderr)


def test_help_has_no_markup_and_one_metavar_style() -> None:
    for command in ("node", "bootnode", "chat", "testnet", "keygen", "bench"):
        out = p2p(command, "--help").stdout
        assert "``" not in out and ":class:" not in out and ":mod:" not in out, command
        assert "(default" in out or command in ("keygen",), command
    node = p2p("node", "--help").stdout
    chat = p2p("chat", "--help").stdout
    for flag in ("--nat none|extip:IP", "--netrestrict CIDR,...", "--trustednodes URL,...", "--metrics HOST:PORT",
                 "--port PORT"):
        assert flag in node and flag in chat, flag
    assert "--nat none|extip:IP" in p2p("bootnode", "--help").stdout
