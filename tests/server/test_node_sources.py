"""The dialer takes its candidates from one FairMix: extra node sources are dialed with
discovery off, and sources can be added while the server runs."""

from __future__ import annotations

import random

import trio

from p2p import Protocol, ServerConfig, open_server
from p2p.crypto import PrivateKey
from p2p.enode import Node
from p2p.enode.iter import StaticNodes
from tests.server.helpers import DEADLINE, until


class FakeDNS:
    """Stands in for a DNS tree iterator: yields its nodes once, then waits, as a synced tree."""

    name = "dns"

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = list(nodes)
        self.closed = False

    def __aiter__(self) -> "FakeDNS":
        return self

    async def __anext__(self) -> Node:
        if self.nodes:
            await trio.lowlevel.checkpoint()
            return self.nodes.pop(0)
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self.closed = True


async def test_nodes_from_a_source_are_dialed_without_discovery() -> None:
    rng = random.Random(31)
    keys = [PrivateKey.generate(rng) for _ in range(3)]
    proto = Protocol("src", 1, 1)
    with trio.fail_after(DEADLINE):
        async with open_server(keys[0], protocols=[proto], config=ServerConfig(discovery=False)) as a, \
                open_server(keys[1], protocols=[proto], config=ServerConfig(discovery=False)) as b:
            source = FakeDNS([a.local_node, b.local_node])
            async with open_server(keys[2], protocols=[proto], config=ServerConfig(
                discovery=False, node_sources=[source])) as c:
                assert c.discovery is None and c.node_mix is not None
                await until(lambda: len(c.peers()) == 2, timeout=DEADLINE)
                assert {p.id for p in c.peers()} == {a.id, b.id}
                assert all(not p.inbound for p in c.peers())
                assert [s.name for s in c.node_mix.sources] == ["dns"]
                assert c.metrics.value("p2p_node_source_nodes_total", source="dns") == 2
            assert source.closed  # the server closed its source on the way out


async def test_a_source_added_while_running_is_dialed() -> None:
    proto = Protocol("src", 1, 1)
    with trio.fail_after(DEADLINE):
        async with open_server(protocols=[proto], config=ServerConfig(discovery=False)) as a, \
                open_server(protocols=[proto], config=ServerConfig(discovery=False, node_sources=[FakeDNS([])])) as c:
            assert c.node_mix is not None
            c.node_mix.add_source(StaticNodes([a.local_node]), "later")
            await until(lambda: len(c.peers()) == 1, timeout=DEADLINE)
            assert c.peers()[0].id == a.id


async def test_without_discovery_or_sources_nothing_is_mixed() -> None:
    async with open_server(config=ServerConfig(discovery=False)) as s:
        assert s.node_mix is None
