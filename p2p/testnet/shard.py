"""A shard: some of a testnet's nodes, all in this process, and what can be asked of them.

The runner talks to every shard through the same few calls (start nodes, stats, lookup, chat)
whether the shard lives in its own process or in a child process (:mod:`p2p.testnet.worker`).
A node is either a discovery-only node (``open_discovery``) or a full server (``open_server``)
with the chosen protocols, and speaks discovery v4 (the default), v5, or both on its one UDP
socket (``ShardSpec.discovery``).
"""

from __future__ import annotations

import gc
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from p2p.crypto import PrivateKey
from p2p.enode import ENR, Node, NodeID, Signer
from p2p.enode.nodedb import SharedBytes
from p2p.limits import ProcessLimits

logger = logging.getLogger(__name__)

KNOWN_PROTOCOLS = ("chat",)
DISCOVERY_MODES = ("v4", "v5", "both")  # what ``p2p testnet --discovery`` accepts
START_CONCURRENCY = 16  # nodes starting at once in one shard: binding and first pings are bursty
# The same for discovery-only nodes. Each start waits for a few passes of the event loop, and with
# 64 lookups running, a pass over thousands of nodes' tasks is slow: with 16 at once, 2,000 nodes
# took 60-90 s to start (a node's first lookup waits for a slot anyway, so starting faster costs
# no burst); with 256, 1,000 nodes started in 1.3 s.
DISCOVERY_START_CONCURRENCY = 256
# RLPx dials (connect, handshake, Hello) running at once across all servers of one shard. A
# handshake costs ~1.5 ms of CPU on each side; hundreds at once in one event loop would each
# take seconds and miss their 5 s deadlines, and the retries make it worse.
DIALS_PER_SHARD = 64
# Lookups running at once across all nodes of one shard (a lone node's default bound is 16 per
# process). A lookup mostly waits for replies, and in a busy process each round trip waits for
# the loop: with too few slots, nodes queue for their first lookup while their tables hold only
# the bootnode, and their dialers have nobody to dial.
LOOKUPS_PER_SHARD = 16
# The same bound for discovery-only nodes, which have no dials competing for the loop. A node's
# table holds only the bootnode until its first lookup, so the first lookups of thousands of
# nodes started together queue here: 1,000 nodes in one process converged in 28 s with 64 slots
# against 41 s with 16, with a few more reply timeouts (0.25 against 0.07 per node).
DISCOVERY_LOOKUPS_PER_SHARD = 64
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
TESTNET_MAX_PENDING_PER_IP = 1_000_000
TESTNET_AUTH_TIMEOUT = 5.0
# Mean pause between a full server's table liveness checks is half of this (go-ethereum: 10 s).
# Revalidation guards a long-lived table against nodes that left; nothing leaves a testnet while
# it converges, and at 10 s the checks were a fifth of the discovery packets of 1,000 servers,
# each signed and recovered in the same busy processes that run the RLPx handshakes.
TESTNET_SERVER_REVALIDATE = 60.0


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """How a shard builds its nodes; the same for every shard of one testnet."""

    host: str = "127.0.0.1"
    protocols: tuple[str, ...] = ()
    servers: bool = False  # full servers even without protocols
    max_peers: int = 15
    seed: int | None = None  # node keys from a seeded generator, for reproducible runs
    discovery: str = "v4"  # one of DISCOVERY_MODES
    # Revalidation interval of discovery-only nodes (None: discovery's default); see
    # p2p.testnet.runner.revalidate_interval for why a large testnet stretches it.
    revalidate_interval: float | None = None

    @property
    def full(self) -> bool:
        return self.servers or bool(self.protocols)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "protocols": list(self.protocols), "servers": self.servers,
                "max_peers": self.max_peers, "seed": self.seed, "discovery": self.discovery,
                "revalidate_interval": self.revalidate_interval}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "ShardSpec":
        return cls(host=obj["host"], protocols=tuple(obj["protocols"]), servers=obj["servers"],
                   max_peers=obj["max_peers"], seed=obj["seed"], discovery=obj.get("discovery", "v4"),
                   revalidate_interval=obj.get("revalidate_interval"))


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A started node as the runner knows it."""

    index: int  # testnet-wide
    id: str  # hex node ID
    enode: str
    enr: str = ""  # its signed record (``enr:...``): what a v5 node needs of a bootnode

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "enode": self.enode, "enr": self.enr}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "NodeRef":
        return cls(index=obj["index"], id=obj["id"], enode=obj["enode"], enr=obj.get("enr", ""))


@dataclass(slots=True)
class _Running:
    index: int
    key: PrivateKey
    disc: Any = None  # the discovery service (own or the server's)
    server: Any = None
    chat: Any = None
    received: set[str] = field(default_factory=set)  # chat message IDs (hex) this node got


def _disc_of(running: _Running) -> Any:
    if running.disc is not None:
        return running.disc
    return getattr(running.server, "discovery", None)


def _table_of(running: _Running) -> Any:
    disc = _disc_of(running)
    return None if disc is None else disc.table


def parse_bootnode(text: str) -> Node:
    """A bootnode given as an ``enr:`` record (it then carries the record v5 needs) or an
    ``enode://`` URL."""
    return Node.from_enr(ENR.from_text(text)) if text.startswith("enr:") else Node.from_url(text)


def check_discovery(mode: str) -> None:
    """Raise ValueError if nodes cannot speak ``mode`` (before any node starts)."""
    if mode not in DISCOVERY_MODES:
        raise ValueError(f"discovery must be one of {', '.join(DISCOVERY_MODES)}, not {mode!r}")


def discovery_config(mode: str, lookup_limiter: trio.CapacityLimiter, revalidate_interval: float | None = None,
                     nodedb_shared: SharedBytes | None = None) -> Any:
    """The discovery config of a testnet node speaking ``mode`` (one of DISCOVERY_MODES),
    revalidating every ``revalidate_interval`` seconds on average (None: discovery's default),
    its in-memory node database sharing keys and records through ``nodedb_shared`` (a
    :class:`p2p.enode.nodedb.SharedBytes`, one per process).

    With v5 on, loopback and LAN sources are exempt from v5's per-IP packet budget, as the
    table's IP limits exempt them: every node of a local testnet sends from the same address.
    """
    from dataclasses import replace

    from p2p.discover import DiscoveryConfig

    check_discovery(mode)
    base = DiscoveryConfig(lookup_limiter=lookup_limiter, nodedb_shared=nodedb_shared)
    if revalidate_interval is not None:
        base = replace(base, revalidate_interval=revalidate_interval)
    if mode == "v4":
        return base
    from p2p.discover.table import is_lan
    from p2p.discover.v5 import V5Config

    v5 = replace(base, v5=True, v5_config=V5Config(rate_limit_exempt=is_lan))
    return v5 if mode == "both" else replace(v5, v4=False)


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
        self._cpu_base = time.process_time()  # user + sys of this process before its first node
        # One object for every bound the shard's nodes share: servers take it whole, and
        # discovery-only nodes its lookup limiter.
        self._limits = ProcessLimits.of(dials=DIALS_PER_SHARD,
                                        lookups=LOOKUPS_PER_SHARD if spec.full else DISCOVERY_LOOKUPS_PER_SHARD)
        assert self._limits.lookups is not None
        self._discovery_config = discovery_config(
            spec.discovery, self._limits.lookups,
            TESTNET_SERVER_REVALIDATE if spec.full else spec.revalidate_interval, SharedBytes())

    def _key(self, index: int) -> PrivateKey:
        if self._spec.seed is None:
            return PrivateKey.generate()
        # A distinct, reproducible key per testnet-wide index, whichever shard holds the node.
        return PrivateKey.generate(rng=random.Random(self._spec.seed * 1_000_003 + index))

    async def start_nodes(self, indices: Sequence[int], bootnodes: Sequence[str],
                          hosts: Sequence[str] | None = None) -> list[NodeRef]:
        """Start one node per index, bootstrapped from ``bootnodes`` (enode URLs or ``enr:``
        records; v5 needs the records), each bound to its entry of ``hosts`` (default: the
        spec's host)."""
        boot = tuple(parse_bootnode(text) for text in bootnodes)
        refs: list[NodeRef] = []
        limiter = trio.CapacityLimiter(START_CONCURRENCY if self._spec.full else DISCOVERY_START_CONCURRENCY)
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
        disc = _disc_of(running)
        record = disc.enr.to_text() if disc is not None else ""
        return NodeRef(running.index, node.id.hex(), node.to_url(), record)

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
        from p2p.server import ServerConfig, open_server

        protocols = []
        if "chat" in self._spec.protocols:
            from protocols.chat.service import ChatService

            chat = ChatService(Signer(key), nick=f"node{index}", announce_hops=ANNOUNCE_HOPS)
            seen = running.received
            chat.on_message(lambda msg: seen.add(msg.id.hex()))
            running.chat = chat
            protocols.append(chat.protocol)
        config = ServerConfig(bootnodes=boot, max_peers=self._spec.max_peers, limits=self._limits,
                              discovery_config=self._discovery_config,
                              max_pending_per_ip=TESTNET_MAX_PENDING_PER_IP, auth_timeout=TESTNET_AUTH_TIMEOUT)
        async with open_server(key, (host, 0), protocols, config) as server:
            running.server = server
            task_status.started(running)
            await trio.sleep_forever()

    # --- questions from the runner ---

    def stats(self) -> dict[str, Any]:
        """Per node (in index order): table size and peer count; and this process's memory and
        CPU time (user + sys) spent since the shard was made."""
        indices = sorted(self._nodes)
        tables: list[int] = []
        peers: list[int] = []
        for i in indices:
            running = self._nodes[i]
            table = _table_of(running)
            tables.append(len(table) if table is not None else 0)
            peers.append(len(running.server.peers()) if running.server is not None else 0)
        dropped = sum(int(r.chat.dropped) for r in self._nodes.values() if r.chat is not None)
        sent = sum(packets_sent(d) for d in map(_disc_of, self._nodes.values()) if d is not None)
        return {"indices": indices, "tables": tables, "peers": peers, "chat_dropped": dropped,
                "rss": _rss(), "rss_base": self._rss_base, "cpu": time.process_time() - self._cpu_base,
                "packets_sent": sent}

    async def lookup(self, index: int, target_hex: str) -> dict[str, Any]:
        """A lookup of ``target_hex`` from node ``index``: found or not, time, rounds if known.
        With v5 on, the lookup runs over v5."""
        disc = _disc_of(self._nodes[index])
        if disc is None:
            raise LookupError("node has no discovery")
        return await measure_lookup(disc, NodeID.from_hex(target_hex), self._spec.discovery)

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

    def holders(self, target_hex: str, near: Sequence[str] = ()) -> tuple[int, int, int, int]:
        """How many of this shard's nodes hold ``target_hex`` in their table, how many of
        those have had an answer from it (a FindNode is answered with such entries when there
        are any), and the same two counts among ``near`` (hex IDs: the target's closest nodes,
        where a lookup ends). After a missed lookup: had the network not heard of the target,
        had its neighbourhood not, or had it and would not pass it on?"""
        target = NodeID.from_hex(target_hex)
        near_ids = set(near)
        held = live = held_near = live_near = 0
        for running in self._nodes.values():
            disc = _disc_of(running)
            entry = disc.table.entry(target) if disc is not None else None
            if entry is not None:
                is_live, is_near = entry.live_checks > 0, disc.local_id.hex() in near_ids
                held += 1
                live += is_live
                held_near += is_near
                live_near += is_live and is_near
        return held, live, held_near, live_near

    def random_index(self) -> int:
        return self._rng.choice(sorted(self._nodes))


async def measure_lookup(disc: Any, target: NodeID, discovery: str, *, v5_detail: bool = False) -> dict[str, Any]:
    """One lookup of ``target`` by the discovery service ``disc`` and what it cost: found or
    not, time, rounds and packets when the engine counts them. Over v5 when ``discovery``
    (one of DISCOVERY_MODES) has it; its rounds and packets only with ``v5_detail`` (the
    testnet's summary reports none for v5). The testnet and the simulator (:mod:`p2p.sim`)
    both measure their lookups here, so that their figures mean the same."""
    v5 = getattr(disc, "v5", None)
    if discovery != "v4":
        if v5 is None:
            raise LookupError("node runs no discovery v5")
        if v5_detail:
            return _detailed(await v5.lookup_detailed(target), target)
        t0 = trio.current_time()
        found = await v5.lookup(target)
        return {"found": any(n.id == target for n in found), "seconds": trio.current_time() - t0,
                "rounds": None, "packets": None, "queries": None, "failures": None, "results": len(found)}
    detailed = getattr(disc, "lookup_detailed", None)
    if detailed is not None:
        return _detailed(await detailed(target), target)
    t0 = trio.current_time()
    found = await disc.lookup(target)
    return {"found": any(n.id == target for n in found), "seconds": trio.current_time() - t0,
            "rounds": None, "packets": None, "queries": None, "failures": None, "results": len(found)}


def _detailed(r: Any, target: NodeID) -> dict[str, Any]:
    """A :class:`p2p.discover.lookup.LookupResult` as :func:`measure_lookup` reports it."""
    return {"found": r.found(target), "seconds": r.seconds, "rounds": r.rounds,
            "packets": r.packets, "queries": r.queries, "failures": r.failures, "results": len(r.nodes)}


def packets_sent(disc: Any) -> int:
    """Datagrams a discovery service has sent (v4 and v5), as its stats count them."""
    total = 0
    for engine in (disc, getattr(disc, "v5", None)):
        stats = getattr(engine, "stats", None)
        if stats is not None:
            total += sum(stats.packets_out.values())
    return total


def _rss() -> int:
    try:
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except ImportError:  # pragma: no cover - psutil is a dependency; be lenient anyway
        return 0


Factory = Callable[[trio.Nursery, ShardSpec], LocalShard]
