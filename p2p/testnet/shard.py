"""A shard: some of a testnet's nodes, all in this process, and what can be asked of them.

The runner talks to every shard through the same few calls (start nodes, stats, lookup, chat)
whether the shard lives in its own process or in a child process (:mod:`p2p.testnet.worker`).
A node is either a discovery-only node (``open_discovery``) or a full server (``open_server``)
with the chosen protocols.
"""

from __future__ import annotations

import gc
import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from p2p.crypto import PrivateKey
from p2p.enode import Node, NodeID

logger = logging.getLogger(__name__)

KNOWN_PROTOCOLS = ("chat",)
START_CONCURRENCY = 16  # nodes starting at once in one shard: binding and first pings are bursty
# RLPx dials (connect, handshake, Hello) running at once across all servers of one shard. A
# handshake costs ~1.5 ms of CPU on each side; hundreds at once in one event loop would each
# take seconds and miss their 5 s deadlines, and the retries make it worse.
DIALS_PER_SHARD = 64
# Lookups running at once across all nodes of one shard (a lone node's default bound is 16 per
# process). A lookup mostly waits for replies, and in a busy process each round trip waits for
# the loop: with too few slots, nodes queue for their first lookup while their tables hold only
# the bootnode, and their dialers have nobody to dial.
LOOKUPS_PER_SHARD = 16
# How far a node's join announcement travels in the testnet's chat: every join flooding the
# whole network costs nodes x links messages, all of them in this process. One hop: the join
# reaches the node's neighbours (who also get its nick on connecting); with 2 hops a 500-node
# chat testnet converged in 75 s instead of 41 s (text messages still reach every node).
ANNOUNCE_HOPS = 1
# Garbage-collector thresholds of a process hosting a testnet shard. Hundreds of nodes allocate
# fast (packets, Cancelled exceptions, frames) and hold millions of long-lived objects, so with
# Python's default (700, 10, 10) the collector ran thousands of times and took ~40 % of a
# 500-server run's CPU; with these it takes ~5 %, and the RSS at the end was the same.
GC_THRESHOLDS = (20_000, 50, 1000)


def tune_gc() -> tuple[int, int, int]:
    """Set this process's collector thresholds for hosting many nodes; returns the old ones.
    Called by the testnet command and its worker processes, not by the nodes themselves."""
    old = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    return old


# Every node of a local testnet dials from the same few addresses, and a process hosting
# hundreds of nodes lags by more than a second at times: the per-address cap and the short auth
# deadline that guard a node on the internet would only refuse honest neighbours here.
TESTNET_INBOUND: dict[str, Any] = {"max_pending_per_ip": 1_000_000, "auth_timeout": 5.0}


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """How a shard builds its nodes; the same for every shard of one testnet."""

    host: str = "127.0.0.1"
    protocols: tuple[str, ...] = ()
    servers: bool = False  # full servers even without protocols
    max_peers: int = 15
    seed: int | None = None  # node keys from a seeded generator, for reproducible runs

    @property
    def full(self) -> bool:
        return self.servers or bool(self.protocols)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "protocols": list(self.protocols), "servers": self.servers,
                "max_peers": self.max_peers, "seed": self.seed}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "ShardSpec":
        return cls(host=obj["host"], protocols=tuple(obj["protocols"]), servers=obj["servers"],
                   max_peers=obj["max_peers"], seed=obj["seed"])


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A started node as the runner knows it."""

    index: int  # testnet-wide
    id: str  # hex node ID
    enode: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "enode": self.enode}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "NodeRef":
        return cls(index=obj["index"], id=obj["id"], enode=obj["enode"])


@dataclass(slots=True)
class _Running:
    index: int
    key: PrivateKey
    disc: Any = None  # the discovery service (own or the server's)
    server: Any = None
    chat: Any = None
    received: set[str] = field(default_factory=set)  # chat message IDs (hex) this node got


def _table_of(running: _Running) -> Any:
    if running.disc is not None:
        return running.disc.table
    server = running.server
    disc = getattr(server, "discovery", None)
    return None if disc is None else disc.table


class LocalShard:
    """Nodes of one testnet living in this process, in a nursery the caller owns."""

    def __init__(self, nursery: trio.Nursery, spec: ShardSpec) -> None:
        self._nursery = nursery
        self._spec = spec
        self._nodes: dict[int, _Running] = {}
        self._rng = random.Random(spec.seed) if spec.seed is not None else random.SystemRandom()
        # Import what the nodes use before the baseline, so memory per node is the nodes' own.
        import p2p.discover  # noqa: F401

        if spec.full:
            import p2p.server  # noqa: F401
        if "chat" in spec.protocols:
            import protocols.chat.service  # noqa: F401
        self._rss_base = _rss()
        self._dial_limiter = trio.CapacityLimiter(DIALS_PER_SHARD)
        from p2p.discover import DiscoveryConfig

        self._discovery_config = DiscoveryConfig(lookup_limiter=trio.CapacityLimiter(LOOKUPS_PER_SHARD))

    def _key(self, index: int) -> PrivateKey:
        if self._spec.seed is None:
            return PrivateKey.generate()
        # A distinct, reproducible key per testnet-wide index, whichever shard holds the node.
        return PrivateKey.generate(rng=random.Random(self._spec.seed * 1_000_003 + index))

    async def start_nodes(self, indices: Sequence[int], bootnodes: Sequence[str],
                          hosts: Sequence[str] | None = None) -> list[NodeRef]:
        """Start one node per index, bootstrapped from ``bootnodes`` (enode URLs), each bound
        to its entry of ``hosts`` (default: the spec's host)."""
        boot = tuple(Node.from_url(url) for url in bootnodes)
        refs: list[NodeRef] = []
        limiter = trio.CapacityLimiter(START_CONCURRENCY)
        host_of = dict(zip(indices, hosts)) if hosts is not None else {}

        async def start_one(index: int) -> None:
            async with limiter:
                host = host_of.get(index, self._spec.host)
                running = await self._nursery.start(self._run_node, index, boot, host)
            self._nodes[index] = running
            refs.append(self._ref(running))

        async with trio.open_nursery() as starting:
            for index in indices:
                starting.start_soon(start_one, index)
        return sorted(refs, key=lambda r: r.index)

    def _ref(self, running: _Running) -> NodeRef:
        if running.server is not None:
            node = running.server.local_node
        else:
            node = running.disc.local_node
        return NodeRef(running.index, node.id.hex(), node.to_url())

    async def _run_node(self, index: int, boot: tuple[Node, ...], host: str,
                        task_status: trio.TaskStatus[_Running] = trio.TASK_STATUS_IGNORED) -> None:
        key = self._key(index)
        running = _Running(index, key)
        if not self._spec.full:
            from p2p.discover import open_discovery

            async with open_discovery(key, (host, 0), bootnodes=boot, config=self._discovery_config) as disc:
                running.disc = disc
                task_status.started(running)
                await trio.sleep_forever()
        from p2p.server import open_server

        protocols = []
        if "chat" in self._spec.protocols:
            from protocols.chat.service import ChatService

            chat = ChatService(key, nick=f"node{index}", announce_hops=ANNOUNCE_HOPS)
            seen = running.received
            chat.on_message(lambda msg: seen.add(msg.id.hex()))
            running.chat = chat
            protocols.append(chat.protocol)
        async with open_server(private_key=key, listen=(host, 0), protocols=protocols,
                               bootnodes=boot, max_peers=self._spec.max_peers,
                               dial_limiter=self._dial_limiter,
                               discovery_config=self._discovery_config,
                               **TESTNET_INBOUND) as server:
            running.server = server
            task_status.started(running)
            await trio.sleep_forever()

    # --- questions from the runner ---

    def stats(self) -> dict[str, Any]:
        """Per node (in index order): table size and peer count; and this process's memory."""
        indices = sorted(self._nodes)
        tables: list[int] = []
        peers: list[int] = []
        for i in indices:
            running = self._nodes[i]
            table = _table_of(running)
            tables.append(len(table) if table is not None else 0)
            peers.append(len(running.server.peers()) if running.server is not None else 0)
        dropped = sum(int(r.chat.dropped) for r in self._nodes.values() if r.chat is not None)
        return {"indices": indices, "tables": tables, "peers": peers, "chat_dropped": dropped,
                "rss": _rss(), "rss_base": self._rss_base}

    async def lookup(self, index: int, target_hex: str) -> dict[str, Any]:
        """A lookup of ``target_hex`` from node ``index``: found or not, time, rounds if known."""
        running = self._nodes[index]
        disc = running.disc if running.disc is not None else getattr(running.server, "discovery", None)
        if disc is None:
            raise LookupError("node has no discovery")
        target = NodeID.from_hex(target_hex)
        detailed = getattr(disc, "lookup_detailed", None)
        if detailed is not None:
            r = await detailed(target)
            return {"found": r.found(target), "seconds": r.seconds, "rounds": r.rounds,
                    "packets": r.packets, "queries": r.queries, "results": len(r.nodes)}
        t0 = trio.current_time()
        found = await disc.lookup(target)
        return {"found": any(n.id == target for n in found), "seconds": trio.current_time() - t0,
                "rounds": None, "packets": None, "queries": None, "results": len(found)}

    async def chat_send(self, index: int, text: str) -> str:
        running = self._nodes[index]
        if running.chat is None:
            raise LookupError("node runs no chat")
        msg = await running.chat.send(text)
        msg_id: str = msg.id.hex()
        running.received.add(msg_id)  # the author has its own message
        return msg_id

    def chat_received(self, ids: Sequence[str]) -> dict[str, int]:
        """For each message ID, how many of this shard's nodes have it."""
        return {i: sum(1 for r in self._nodes.values() if i in r.received) for i in ids}

    def random_index(self) -> int:
        return self._rng.choice(sorted(self._nodes))


def _rss() -> int:
    try:
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except ImportError:  # pragma: no cover - psutil is a dependency; be lenient anyway
        return 0


Factory = Callable[[trio.Nursery, ShardSpec], LocalShard]
