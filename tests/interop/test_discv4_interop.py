"""Discovery v4 against @ethereumjs/devp2p's DPT: each finds the other through a bootnode,
with ours as the bootnode and with theirs as the bootnode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from p2p.crypto import PrivateKey, PublicKey
from p2p.discover import Discovery, DiscoveryConfig, open_discovery
from p2p.enode import Node, NodeID
from p2p.testing import JsonLinesProcess, open_json_process

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "discv4_dpt.mjs"
# The JS node pings back within its own 4 s timeout; ours keep go-ethereum's 500 ms but
# revalidate rarely, so a test never waits on a ban.
CONFIG = DiscoveryConfig(reply_timeout=0.5, random_lookup_spread=0.5, revalidate_interval=30.0)


class JSNode:
    """The DPT subprocess and what it reported last."""

    def __init__(self, lines: JsonLinesProcess) -> None:
        self.lines = lines
        self.port = 0
        self.pubkey = ""
        self.table: set[str] = set()
        self.added: set[str] = set()
        self.errors: list[str] = []
        self.listening = trio.Event()

    @property
    def node(self) -> Node:
        return Node(PublicKey(bytes.fromhex(self.pubkey)), "127.0.0.1", self.port, self.port)  # type: ignore[arg-type]

    @property
    def id(self) -> NodeID:
        return NodeID.from_pubkey(bytes.fromhex(self.pubkey))

    def knows(self, disc: Discovery) -> bool:
        return disc.local_node.pubkey.to_bytes().hex() in self.table

    async def read(self) -> None:
        while True:
            self._on(await self.lines.next_event())

    def _on(self, ev: dict[str, Any]) -> None:
        kind = ev["event"]
        if kind == "listening":
            self.port, self.pubkey = ev["port"], ev["pubkey"]
            self.listening.set()
        elif kind == "table":
            self.table = set(ev["pubkeys"])
        elif kind == "peer_added":
            self.added.add(ev["pubkey"])
        elif kind == "error":
            self.errors.append(ev["message"])


@asynccontextmanager
async def js_node(*args: str) -> AsyncIterator[JSNode]:
    # stdin stays open: the script exits when it closes
    async with open_json_process(["node", str(SCRIPT), *args], cwd=HERE) as lines, trio.open_nursery() as n:
        js = JSNode(lines)
        n.start_soon(js.read)
        with trio.fail_after(15):
            await js.listening.wait()
        yield js
        n.cancel_scope.cancel()


@asynccontextmanager
async def our_node(seed: int, boots: tuple[Node, ...] = ()) -> AsyncIterator[Discovery]:
    import random

    key = PrivateKey.generate(random.Random(seed))
    async with open_discovery(key, ("127.0.0.1", 0), bootnodes=boots, config=CONFIG) as disc:
        yield disc


async def until(cond: Any, timeout: float, poke: Any = None) -> None:
    with trio.fail_after(timeout):
        while not cond():
            if poke is not None:
                await poke()
            await trio.sleep(0.2)


def _url(disc: Discovery) -> str:
    n = disc.local_node
    return Node(n.pubkey, n.ip, n.udp_port, n.udp_port).to_url()


async def test_js_node_joins_through_our_bootnode() -> None:
    with trio.fail_after(60):
        async with our_node(1) as boot, our_node(2, (boot.local_node,)) as ours:
            await until(lambda: ours.local_id in boot.table, 10)
            async with js_node("--bootnode", _url(boot), "--refresh", "1000") as js:
                # the bootnode and the JS node hold each other
                await until(lambda: js.id in boot.table and js.knows(boot), 20)
                # through the bootnode, our other node and the JS node find each other
                await until(lambda: js.id in ours.table and js.knows(ours), 30, poke=ours.lookup)
                entry = ours.table.get(js.id)
                assert entry is not None and entry.udp_port == js.port
                assert js.errors == [], js.errors
                for d in (boot, ours):
                    assert d.stats.drops["bad_hash"] == d.stats.drops["bad_signature"] == 0
                    assert d.stats.drops["bad_rlp"] == d.stats.drops["bad_fields"] == 0


async def test_our_nodes_join_through_js_bootnode() -> None:
    with trio.fail_after(60):
        async with js_node("--refresh", "1000") as js:
            boot = (js.node,)
            async with our_node(3, boot) as a, our_node(4, boot) as b:
                # each of ours and the JS bootnode hold each other
                await until(lambda: all(js.id in d.table and js.knows(d) for d in (a, b)), 20)
                # and ours find each other through it
                await until(lambda: b.local_id in a.table and a.local_id in b.table, 30, poke=a.lookup)
                found = await a.find_node(js.node, b.local_node.pubkey.to_bytes())
                assert b.local_id in {n.id for n in found}
                assert js.errors == [], js.errors
