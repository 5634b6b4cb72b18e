"""Servers with discovery on: UDP on the TCP port, and peers found through discovery get dialed."""

from __future__ import annotations

import random

import trio

from p2p import Protocol, open_server
from p2p.crypto import PrivateKey
from tests.server.helpers import until


async def test_nodes_found_by_discovery_are_dialed() -> None:
    rng = random.Random(77)
    keys = [PrivateKey.generate(rng) for _ in range(4)]
    proto = Protocol("disc", 1, 1)
    with trio.fail_after(30):
        async with open_server(keys[0], protocols=[proto]) as boot:
            assert boot.discovery is not None and boot.discovery.udp_port == boot.tcp_port
            assert boot.enr.udp == boot.enr.tcp == boot.tcp_port
            async with open_server(keys[1], protocols=[proto], bootnodes=[boot.local_node]) as a, \
                    open_server(keys[2], protocols=[proto], bootnodes=[boot.local_node]) as b:
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
        async with open_server(discovery=False) as s:
            assert s.discovery is None and s.local_node.udp_port == 0
            # nothing bound the UDP port: we can
            sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            await sock.bind(("127.0.0.1", s.tcp_port))
            sock.close()
