"""A resolver over a dict of TXT records, and trees of signed test records."""

from __future__ import annotations

import random

import trio

from p2p.crypto import PrivateKey
from p2p.dnsdisc import NameNotFound, Tree, make_tree
from p2p.enode import ENR

HANG = object()  # a name whose query never gets an answer


class FakeResolver:
    """TXT records by name (no trailing dot); every lookup is recorded."""

    def __init__(self, records: dict[str, object] | None = None) -> None:
        self.records: dict[str, object] = dict(records or {})
        self.asked: list[str] = []

    async def lookup_txt(self, name: str) -> list[str]:
        self.asked.append(name)
        value = self.records.get(name.lower(), self.records.get(name))
        if value is HANG:
            await trio.sleep_forever()
        if value is None:
            raise NameNotFound(name, "no such name (NXDOMAIN)")
        if isinstance(value, str):
            return [value]
        assert isinstance(value, list)
        return value


def records(count: int, rng: random.Random, *, port_base: int = 30000) -> list[ENR]:
    return [ENR.build(PrivateKey.generate(rng), seq=1, ip="127.0.0.1", tcp=port_base + i, udp=port_base + i)
            for i in range(count)]


def signed_tree(key: PrivateKey, domain: str, nodes: list[ENR], links: list[str] = (), seq: int = 1,
                ) -> tuple[Tree, str, dict[str, object]]:
    tree, url = make_tree(seq, nodes, list(links)).sign(key, domain)
    return tree, url, dict(tree.to_txt(domain))
