"""Servers with discovery on: UDP on the TCP port, and peers found through discovery get dialed."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from p2p import Protocol, open_server, ServerConfig
from p2p.crypto import PrivateKey
from p2p.enode.nodedb import NodeDB
from tests.server.helpers import until


async def test_nodes_found_by_discovery_are_dialed() -> None:
    rng = random.Random(77)
    keys = [PrivateKey.generate(rng) for _ in range(4)]
    proto = Protocol("disc", 1, 1)
    with trio.fail_after(30):
        async with open_server(keys[0], protocols=[proto]) as boot:
            assert boot.discovery is not None and boot.discovery.udp_port == boot.tcp_port
            assert boot.enr.udp == boot.enr.tcp == boot.tcp_port
            async with open_server(keys[1], protocols=[proto], config=ServerConfig(bootnodes=[boot.local_node])) as a, \
                    open_server(keys[2], protocols=[proto], config=ServerConfig(bootnodes=[boot.local_node])) as b:
                # everyone learns of everyone through the bootnode, and dials them
                await until(lambda: all(len(s.peers()) >= 2 for s in (boot, a, b)), timeout=25, interval=0.05)
                ids = {s.id for s in (boot, a, b)}
                for s in (boot, a, b):
                    assert {p.id for p in s.peers()} == ids - {s.id}
                text = boot.metrics.render().decode()
                assert 'p2p_discovery_packets_total{direction="in",type="ping"}' in text
                assert "p2p_discovery_table_size" in text


async def test_nodiscover_opens_no_udp_socket() -> None:
    with trio.fail_after(10):
        async with open_server(config=ServerConfig(discovery=False)) as s:
            assert s.discovery is None and s.local_node.udp_port == 0
            # nothing bound the UDP port: we can
            sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            await sock.bind(("127.0.0.1", s.tcp_port))
            sock.close()


def _count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)
    return walk(trio.lowlevel.current_root_task())  # type: ignore[arg-type]


async def test_shutdown_stops_discovery_and_closes_the_node_database(tmp_path: Path) -> None:
    path = str(tmp_path / "nodes")
    rng = random.Random(78)
    keys = [PrivateKey.generate(rng) for _ in range(2)]
    before = _count_tasks()
    with trio.fail_after(20):
        async with open_server(keys[0], config=ServerConfig(node_db_path=path, allow_useless_peers=True)) as boot, \
                open_server(keys[1], config=ServerConfig(bootnodes=[boot.local_node], allow_useless_peers=True)) as other:
            await until(lambda: boot.peer_count() == 1 and other.peer_count() == 1, timeout=15)
            assert boot.discovery is not None
            udp_port = boot.discovery.udp_port
        assert _count_tasks() == before
    # the UDP port is free again and the database is closed (LevelDB allows one opener)
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", udp_port))
    sock.close()
    with NodeDB.open(path) as db:
        assert db.node(other.id) is not None  # what discovery learnt was kept
