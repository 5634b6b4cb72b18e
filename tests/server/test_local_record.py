"""The server's one record: its LocalNode, with the TCP (and UDP) port set, its seq kept in the
node database across restarts, and entries other subsystems set."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from p2p import ENR, open_server, ServerConfig
from p2p.crypto import PrivateKey

KEY = PrivateKey.generate(random.Random(5))


async def test_record_without_discovery() -> None:
    with trio.fail_after(10):
        async with open_server(KEY, config=ServerConfig(discovery=False)) as s:
            record = ENR.from_text(s.enr.to_text())
            assert record.tcp == s.tcp_port and record.udp is None and str(record.ip) == "127.0.0.1"
            assert record.node_id == s.id == s.local.id
            assert s.local_node.enr == s.enr and s.enode == s.local.node.to_url()
            before = s.enr.seq
            s.local.set("test", b"\x01")  # a protocol's own entry
            assert s.enr.seq == before + 1 and s.enr["test"] == b"\x01"


async def test_seq_resumes_after_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "nodes")
    seqs = []
    with trio.fail_after(20):
        for _ in range(2):
            async with open_server(KEY, config=ServerConfig(node_db_path=db)) as s:
                assert s.enr.udp == s.discovery.udp_port and s.enr.tcp == s.tcp_port  # type: ignore[union-attr]
                seqs.append(s.enr.seq)
    assert seqs[1] > seqs[0]


async def test_server_owns_the_expiry_of_the_database_it_opens() -> None:
    with trio.fail_after(10):
        async with open_server(KEY) as s:
            db = s.node_db
            assert db is not None and db.expiry_owner is not None
        assert db.expiry_owner is None and db.closed
