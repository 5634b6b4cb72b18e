"""p2p.cli._args: the flag values ``p2p node``, ``p2p bootnode`` and ``p2p chat`` share."""

from __future__ import annotations

import argparse
import ipaddress
import random
from pathlib import Path

import pytest

from p2p.cli._args import BadArgument, add_key_arguments, load_key, parse_enode_list, parse_hostport
from p2p.crypto import PrivateKey, save_node_key
from p2p.enode import ENR, Node


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_key_arguments(p, hex_help="hex", file_help="file")
    return p


def test_hostport_forms_and_errors() -> None:
    assert parse_hostport("127.0.0.1:30303") == ("127.0.0.1", 30303)
    assert parse_hostport("[::1]:0") == ("::1", 0)
    assert parse_hostport(":9") == ("127.0.0.1", 9)
    assert parse_hostport(":9", any_host="0.0.0.0") == ("0.0.0.0", 9)
    for bad in ("nope", "host:", "host:x", "host:65536", "host:-1"):
        with pytest.raises(BadArgument, match=r"^--metrics must be HOST:PORT, got "):
            parse_hostport(bad, flag="--metrics")


def test_key_from_hex_file_or_new(tmp_path: Path) -> None:
    key = PrivateKey.generate(random.Random(5))
    assert load_key(parser().parse_args(["--nodekeyhex", f" {key.to_hex()}\n"])).secret == key.secret
    save_node_key(key, tmp_path / "key")
    assert load_key(parser().parse_args(["--nodekey", str(tmp_path / "key")])).secret == key.secret
    assert load_key(parser().parse_args([])).secret != key.secret
    with pytest.raises(BadArgument, match="not hex"):
        load_key(parser().parse_args(["--nodekeyhex", "zz"]))
    with pytest.raises(BadArgument, match="does not exist"):
        load_key(parser().parse_args(["--nodekey", str(tmp_path / "missing")]))
    with pytest.raises(SystemExit):  # argparse: not both
        parser().parse_args(["--nodekeyhex", key.to_hex(), "--nodekey", "f"])


def test_enode_list_takes_enode_and_enr_urls() -> None:
    a = PrivateKey.generate(random.Random(6))
    b = PrivateKey.generate(random.Random(7))
    enode = Node(a.public_key, ipaddress.ip_address("127.0.0.1"), 30303, 30304).to_url()
    enr = ENR.build(b, ip="127.0.0.1", udp=30305, tcp=30306).to_text()
    nodes = parse_enode_list(f" {enode} ,, {enr}", "bootnode")
    assert [n.pubkey for n in nodes] == [a.public_key, b.public_key]
    assert (nodes[1].udp_port, nodes[1].tcp_port) == (30305, 30306)
    assert parse_enode_list("", "static node") == []
    with pytest.raises(BadArgument, match=r"^bad static node URL 'enode://xyz': "):
        parse_enode_list(f"{enode},enode://xyz", "static node")
    with pytest.raises(BadArgument, match=r"^bad bootnode URL 'enr:xx': "):
        parse_enode_list("enr:xx", "bootnode")


def test_v5_flag_turns_on_discovery_v5_and_is_off_by_default() -> None:
    from p2p.cli import build_parser
    from p2p.cli._args import server_options

    key = PrivateKey.generate(random.Random(1))
    base = ["node", "--addr", "127.0.0.1:0"]
    on = server_options(build_parser().parse_args([*base, "--v5"]), key)
    assert on.config.discovery_config is not None and on.config.discovery_config.v5 is True
    assert server_options(build_parser().parse_args(base), key).config.discovery_config is None
    assert build_parser().parse_args(["bootnode", "--v5"]).v5 is True
    assert build_parser().parse_args(["bootnode"]).v5 is False
