"""Helpers of the discv5 engine tests: nodes on an in-memory network."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace

from p2p.crypto import PrivateKey
from p2p.discover.transport import MemoryEndpoint, MemoryNetwork
from p2p.discover.v5 import V5Config, V5Protocol, open_v5
from p2p.enode import ENR, Node

PORT = 30303


@dataclass
class Member:
    key: PrivateKey
    record: ENR
    endpoint: MemoryEndpoint

    @property
    def node(self) -> Node:
        return Node.from_enr(self.record)


def member(net: MemoryNetwork, index: int, rng: random.Random, host: str | None = None) -> Member:
    """A key, a record and an endpoint at 127.0.<index / 250>.<index % 250 + 1>."""
    host = host or f"127.0.{index // 250}.{index % 250 + 1}"
    key = PrivateKey.generate(rng)
    return Member(key, ENR.build(key, 1, ip=host, udp=PORT), net.endpoint(host, PORT))


@asynccontextmanager
async def run(m: Member, *, bootnodes: tuple[ENR, ...] = (), config: V5Config | None = None,
              seed: int = 0) -> AsyncIterator[V5Protocol]:
    cfg = config or V5Config(rng=random.Random(seed))
    async with open_v5(m.endpoint, m.key, m.record, bootnodes=bootnodes, config=cfg) as v5:
        yield v5


@asynccontextmanager
async def network(n: int, *, seed: int = 1, config: V5Config | None = None,
                  net: MemoryNetwork | None = None) -> AsyncIterator[tuple[list[Member], list[V5Protocol]]]:
    """``n`` nodes, each bootstrapped from node 0."""
    rng = random.Random(seed)
    net = net or MemoryNetwork()
    members = [member(net, i, rng) for i in range(n)]
    async with AsyncExitStack() as stack:
        nodes = []
        for i, m in enumerate(members):
            boots = (members[0].record,) if i else ()
            cfg = replace(config or V5Config(), rng=random.Random(seed * 1000 + i))
            nodes.append(await stack.enter_async_context(run(m, bootnodes=boots, config=cfg)))
        yield members, nodes
