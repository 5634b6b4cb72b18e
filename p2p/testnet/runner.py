"""Run a local testnet and measure it: start, convergence, lookups, chat, summary.

Nothing here prints: progress goes to a callback as :class:`Progress` values, and the result
is a JSON-able summary dict. :mod:`p2p.cli.testnet` draws them.
"""

from __future__ import annotations

import logging
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol as TypingProtocol

import trio

from p2p.enode import Node
from p2p.testnet.shard import LocalShard, NodeRef, ShardSpec, check_discovery

logger = logging.getLogger(__name__)

FULL_TABLE = 16  # "table filled": one full bucket's worth of nodes (Kademlia k)
DEFAULT_PEERS = 5  # peers every server node must reach: its outbound dial target
DIAL_RATIO = 3  # servers dial max_peers / 3 outbound (go-ethereum's default), so max = 3 x target
LOOKUP_CONCURRENCY = 8  # lookups in flight during the lookup phase
LOOKUP_TIMEOUT = 20.0  # seconds one lookup may take before it counts as failed
CHAT_TIMEOUT = 15.0  # seconds a chat message may take to reach every node
CHAT_GAP = 0.2  # seconds between the chat messages sent
CHAT_POLL = 0.05  # seconds between checks of who has received what
START_TIMEOUT = 600.0  # seconds the shards may take to start their nodes
# Revalidation pings a process's nodes may send per second, all nodes of the process together.
# Each node of a real network has a machine to itself and pings a table entry every 5 s on
# average (go-ethereum's pace); thousands of nodes sharing two cores at that pace spend most of
# their CPU on it (2,000 pings a second at 10,000 nodes, each with its Pong and often an ENR
# request, every packet signed and its key recovered), and the more nodes, the longer the
# convergence and the more revalidations per node: the cost grows as N squared. Revalidation
# finds dead nodes, and a testnet has none, so its pace is stretched to fit this budget.
REVALIDATIONS_PER_SHARD = 30.0


class Shard(TypingProtocol):
    async def start_nodes(self, indices: Sequence[int], bootnodes: Sequence[str],
                          hosts: Sequence[str] | None = None) -> list[NodeRef]: ...
    async def stats(self) -> dict[str, Any]: ...
    async def lookup(self, index: int, target_hex: str) -> dict[str, Any]: ...
    async def chat_send(self, index: int, text: str) -> str: ...
    async def chat_received(self, ids: Sequence[str]) -> dict[str, int]: ...
    async def holders(self, target_hex: str, near: Sequence[str] = ()) -> tuple[int, int, int, int]: ...
    async def aclose(self) -> None: ...


class _InProcess:
    """:class:`LocalShard` behind the same async calls as :class:`RemoteShard`."""

    def __init__(self, shard: LocalShard) -> None:
        self._shard = shard

    async def start_nodes(self, indices: Sequence[int], bootnodes: Sequence[str],
                          hosts: Sequence[str] | None = None) -> list[NodeRef]:
        return await self._shard.start_nodes(indices, bootnodes, hosts)

    async def stats(self) -> dict[str, Any]:
        return self._shard.stats()

    async def lookup(self, index: int, target_hex: str) -> dict[str, Any]:
        return await self._shard.lookup(index, target_hex)

    async def chat_send(self, index: int, text: str) -> str:
        return await self._shard.chat_send(index, text)

    async def chat_received(self, ids: Sequence[str]) -> dict[str, int]:
        return self._shard.chat_received(ids)

    async def holders(self, target_hex: str, near: Sequence[str] = ()) -> tuple[int, int, int, int]:
        return self._shard.holders(target_hex, near)

    async def aclose(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class TestnetConfig:
    __test__ = False  # a name starting with "Test" that pytest must not collect

    nodes: int
    protocols: tuple[str, ...] = ()
    seconds: float = 60.0  # convergence deadline
    processes: int = 0  # 0: every node in this process; P: spread over P child processes
    servers: bool = False  # full servers (RLPx peers) even without protocols
    peers: int = DEFAULT_PEERS
    lookups: int = 50
    messages: int = 3
    interval: float = 0.5  # seconds between progress samples
    host: str = "127.0.0.1"
    seed: int | None = None
    discovery: str = "v4"  # v4, v5 or both: the discovery protocols every node speaks
    # Set by p2p.testnet.netns: a command prefix per child process (``ip netns exec NS``) and
    # an address per node index; empty for the ordinary loopback testnet.
    launchers: tuple[tuple[str, ...], ...] = ()
    hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.nodes < 2:
            raise ValueError("a testnet needs at least 2 nodes")
        if self.processes < 0:
            raise ValueError("processes must be 0 (in this process) or more")
        check_discovery(self.discovery)

    @property
    def full(self) -> bool:
        return self.servers or bool(self.protocols)

    @property
    def table_target(self) -> int:
        return min(FULL_TABLE, self.nodes - 1)

    @property
    def peer_target(self) -> int:
        return min(self.peers, self.nodes - 1) if self.full else 0

    def spec(self) -> ShardSpec:
        return ShardSpec(host=self.host, protocols=self.protocols, servers=self.servers,
                         max_peers=max(self.peers * DIAL_RATIO, self.peers + 1), seed=self.seed,
                         discovery=self.discovery, revalidate_interval=revalidate_interval(self))


@dataclass(frozen=True, slots=True)
class Progress:
    phase: str  # starting, converging, lookups, chat, done
    elapsed: float
    nodes: int
    up: int
    table_min: int
    table_median: float
    table_max: int
    full_tables: int  # nodes whose table holds the target
    peers_min: int
    peers_median: float
    peers_max: int
    peered: int  # nodes with their target peer count
    lookups_done: int
    lookups_ok: int
    messages_sent: int
    deliveries: int  # (message, node) pairs delivered so far
    rss: int  # bytes, every process of the testnet
    rss_base: int  # bytes those processes held before their first node started
    cpu: float = 0.0  # seconds of CPU (user + sys) that every process of the testnet spent so far
    packets_sent: int = 0  # discovery datagrams every node has sent so far (v4 and v5)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _State:
    phase: str = "starting"
    lookups_done: int = 0
    lookups_ok: int = 0
    messages: list[str] = field(default_factory=list)
    deliveries: int = 0
    history: list[Progress] = field(default_factory=list)
    last_stats: list[dict[str, Any]] = field(default_factory=list)


def _figures(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "mean": 0, "max": 0}
    # the mean too: the median of a small integer (a lookup's rounds) jumps a whole step when
    # half the values do, so two networks are compared by their means
    return {"min": min(values), "median": statistics.median(values), "mean": statistics.fmean(values),
            "max": max(values)}


class Testnet:
    """One run. ``await run()`` returns the summary; ``history`` keeps every sample."""

    __test__ = False

    def __init__(self, config: TestnetConfig, on_progress: Callable[[Progress], None] | None = None,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self._on_progress = on_progress
        self._rng = rng or (random.Random(config.seed) if config.seed is not None else random.SystemRandom())
        self._state = _State()
        self._shards: list[Shard] = []
        self._owner: dict[int, Shard] = {}
        self._refs: dict[int, NodeRef] = {}
        self._t0 = 0.0
        self._cpu0 = 0.0

    @property
    def history(self) -> list[Progress]:
        return self._state.history

    async def run(self) -> dict[str, Any]:
        cfg = self.config
        self._t0 = trio.current_time()
        self._cpu0 = time.process_time()
        self._load_start = _load()
        async with trio.open_nursery() as nursery:
            try:
                summary = await self._run(nursery)
            finally:
                with trio.CancelScope(shield=True):
                    for shard in self._shards:
                        await shard.aclose()
                nursery.cancel_scope.cancel()
        logger.info("testnet of %d nodes done: converged=%s", cfg.nodes, summary["converged"])
        return summary

    async def _run(self, nursery: trio.Nursery) -> dict[str, Any]:
        cfg = self.config
        await self._open_shards(nursery)
        nursery.start_soon(self._sample_forever)

        # The bootnode (node 0) first: every other node needs its enode URL (v4) or its
        # record (v5, which learns a node's key and address from nothing else).
        with trio.fail_after(START_TIMEOUT):
            boot = await self._shards[0].start_nodes([0], [], [cfg.hosts[0]] if cfg.hosts else None)
            self._register(self._shards[0], boot)
            bootnodes = [boot[0].enode if cfg.discovery == "v4" else boot[0].enr]
            plan = self._plan(cfg.nodes)
            async with trio.open_nursery() as starting:
                for shard, indices in plan:
                    starting.start_soon(self._start, shard, indices, bootnodes)
        start_seconds = self._elapsed()

        self._state.phase = "converging"
        table_fill: float | None = None
        table_fill_99: float | None = None
        peered: float | None = None
        deadline = self._t0 + cfg.seconds
        while trio.current_time() < deadline:
            progress = await self._sample()
            if table_fill_99 is None and progress.full_tables >= 0.99 * cfg.nodes:
                table_fill_99 = progress.elapsed
            if table_fill is None and progress.full_tables == cfg.nodes:
                table_fill = progress.elapsed
            if peered is None and progress.peered == cfg.nodes:
                peered = progress.elapsed
            if table_fill is not None and peered is not None:
                break
            await trio.sleep(min(cfg.interval, max(0.0, deadline - trio.current_time())))
        converged = table_fill is not None and peered is not None
        at_convergence = self._state.history[-1] if self._state.history else await self._sample()

        lookups = await self._lookups() if converged and cfg.lookups > 0 else None
        chat = await self._chat() if converged and "chat" in cfg.protocols else None

        self._state.phase = "done"
        final = await self._sample()
        rss_total = sum(int(s["rss"]) for s in self._state.last_stats)
        rss_base = sum(int(s["rss_base"]) for s in self._state.last_stats)
        nodes = cfg.nodes
        # Without convergence, the figures "at convergence" are the last sample before the deadline.
        point = "convergence" if converged else "deadline"
        return {
            "nodes": cfg.nodes,
            "processes": max(1, shard_count(cfg)),  # the processes the nodes ran in
            "child_processes": shard_count(cfg),  # 0: the nodes ran in the command's own process
            "mode": "server" if cfg.full else "discovery",
            "protocols": list(cfg.protocols),
            "discovery": cfg.discovery,
            "converged": converged,
            "deadline_seconds": cfg.seconds,
            "start_seconds": start_seconds,
            "table_target": cfg.table_target,
            "peer_target": cfg.peer_target,
            "table_fill_seconds": table_fill,
            "table_fill_99_seconds": table_fill_99,  # 99% of the tables full: the bulk of the network
            "peers_seconds": peered,
            "converged_seconds": max(table_fill, peered) if converged else None,  # type: ignore[type-var]
            # Discovery datagrams sent per node until then: a convergence cost less tied to this
            # host's CPU than the time (``p2p simulate`` reports the same figure), though the
            # converged nodes keep sending while others wait for the process's lookup slots.
            "packets_to_converge_per_node": at_convergence.packets_sent / cfg.nodes if converged else None,
            "table_size": {"min": at_convergence.table_min, "median": at_convergence.table_median,
                           "max": at_convergence.table_max},
            "full_tables": at_convergence.full_tables,
            "peers": {"min": at_convergence.peers_min, "median": at_convergence.peers_median,
                      "max": at_convergence.peers_max},
            "peered": at_convergence.peered,
            "lookups": lookups,
            "chat": chat,
            "memory": {"rss_bytes": rss_total, "baseline_bytes": rss_base,
                       "per_node_bytes": (rss_total - rss_base) / nodes},
            # user + sys of every process (children and this one) until convergence (or the
            # deadline) and until the end, lookups included
            "cpu": {"seconds": at_convergence.cpu, "per_node_seconds": at_convergence.cpu / nodes,
                    "end_seconds": final.cpu},
            "load_average": {"start": self._load_start, "end": _load()},  # 1, 5, 15 minutes
            "final_table_size": {"min": final.table_min, "median": final.table_median, "max": final.table_max},
            "final_peers": {"min": final.peers_min, "median": final.peers_median, "max": final.peers_max},
            "distinct_ips": len({Node.from_url(r.enode).ip for r in self._refs.values()}),
            "elapsed_seconds": self._elapsed(),
            # When each figure was sampled, and when (seconds since the start) those samples were taken.
            "sampled": {"table_size": point, "full_tables": point, "peers": point, "peered": point,
                        "final_table_size": "end", "final_peers": "end", "memory": "end", "cpu": point},
            "sample_seconds": {point: at_convergence.elapsed, "end": final.elapsed},
        }

    # --- shards ---

    async def _open_shards(self, nursery: trio.Nursery) -> None:
        spec = self.config.spec()
        if self.config.processes == 0:
            self._shards = [_InProcess(LocalShard(nursery, spec))]
            return
        # Imported here: ``python -m p2p.testnet.worker`` must not find itself already imported.
        from p2p.testnet.worker import RemoteShard

        for k in range(shard_count(self.config)):
            prefix = self.config.launchers[k] if self.config.launchers else ()
            self._shards.append(await RemoteShard.open(nursery, spec, prefix=prefix))

    def _plan(self, n: int) -> list[tuple[Shard, list[int]]]:
        per = plan(n, len(self._shards))
        per[0] = per[0][1:]  # the bootnode is already running
        return [(shard, idx) for shard, idx in zip(self._shards, per) if idx]

    async def _start(self, shard: Shard, indices: list[int], bootnodes: list[str]) -> None:
        hosts = [self.config.hosts[i] for i in indices] if self.config.hosts else None
        refs = await shard.start_nodes(indices, bootnodes, hosts)
        self._register(shard, refs)

    def _register(self, shard: Shard, refs: list[NodeRef]) -> None:
        for ref in refs:
            self._owner[ref.index] = shard
            self._refs[ref.index] = ref

    # --- sampling ---

    def _elapsed(self) -> float:
        return trio.current_time() - self._t0

    async def _sample_forever(self) -> None:
        # While nodes start (and during the later phases) the display still moves.
        while True:
            await trio.sleep(self.config.interval)
            if self._state.phase in ("starting", "lookups", "chat"):
                await self._sample()

    async def _sample(self) -> Progress:
        cfg = self.config
        stats = [await shard.stats() for shard in self._shards]
        self._state.last_stats = stats
        tables = [t for s in stats for t in s["tables"]]
        peers = [p for s in stats for p in s["peers"]]
        t = _figures(tables)
        p = _figures(peers)
        progress = Progress(
            phase=self._state.phase, elapsed=self._elapsed(), nodes=cfg.nodes, up=len(tables),
            table_min=int(t["min"]), table_median=t["median"], table_max=int(t["max"]),
            full_tables=sum(1 for x in tables if x >= cfg.table_target),
            peers_min=int(p["min"]), peers_median=p["median"], peers_max=int(p["max"]),
            peered=sum(1 for x in peers if x >= cfg.peer_target),
            lookups_done=self._state.lookups_done, lookups_ok=self._state.lookups_ok,
            messages_sent=len(self._state.messages), deliveries=self._state.deliveries,
            rss=sum(int(s["rss"]) for s in stats), rss_base=sum(int(s["rss_base"]) for s in stats),
            cpu=self._cpu(stats),
            packets_sent=sum(int(s.get("packets_sent", 0)) for s in stats))
        self._state.history.append(progress)
        if self._on_progress is not None:
            self._on_progress(progress)
        return progress

    def _cpu(self, stats: list[dict[str, Any]]) -> float:
        shards = sum(float(s.get("cpu", 0.0)) for s in stats)
        if self.config.processes == 0:
            return shards  # the one shard is this process: its figure already counts the runner
        return shards + time.process_time() - self._cpu0

    # --- lookups ---

    async def _lookups(self) -> dict[str, Any]:
        """Lookups of random member IDs from other random members."""
        self._state.phase = "lookups"
        cfg = self.config
        indices = sorted(self._refs)
        pairs = []
        for _ in range(cfg.lookups):
            target, source = self._rng.sample(indices, 2)
            pairs.append((source, target))
        seconds: list[float] = []
        rounds: list[float] = []
        packets: list[float] = []
        failures: list[str] = []
        missed: list[tuple[int, int, int, int]] = []  # per missed lookup: Shard.holders of its target
        missed_failures: list[int | None] = []  # and its queries that got no answer
        timed_out = 0
        limiter = trio.CapacityLimiter(LOOKUP_CONCURRENCY)

        async def one(source: int, target: int) -> None:
            nonlocal timed_out
            async with limiter:
                result: dict[str, Any] | None = None
                with trio.move_on_after(LOOKUP_TIMEOUT):
                    try:
                        result = await self._owner[source].lookup(source, self._refs[target].id)
                    except Exception as exc:  # noqa: BLE001 - a failed lookup is a figure, not a crash
                        failures.append(f"{type(exc).__name__}: {exc}")
                self._state.lookups_done += 1
                if result is None:
                    timed_out += 1
                    return
                seconds.append(float(result["seconds"]))
                if result.get("rounds") is not None:
                    rounds.append(float(result["rounds"]))
                if result.get("packets") is not None:
                    packets.append(float(result["packets"]))
                if result["found"]:
                    self._state.lookups_ok += 1
                else:
                    missed.append(await self._holders(self._refs[target].id))
                    missed_failures.append(result.get("failures"))

        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for source, target in pairs:
                nursery.start_soon(one, source, target)
        return {
            "count": cfg.lookups,
            "found": self._state.lookups_ok,
            "success_rate": self._state.lookups_ok / cfg.lookups,
            "seconds": _figures(seconds),
            "rounds": _figures(rounds) if rounds else None,
            "packets": _figures(packets) if packets else None,
            "errors": failures[:5],
            # per lookup that did not find its target, how many tables held the target then
            # (0: the network had not heard of it), and in how many of them it had answered
            # (only those entries are passed on in answers to FindNode)
            "missed_known_by": [m[0] for m in missed],
            "missed_known_live_by": [m[1] for m in missed],
            # and the same among the target's FULL_TABLE closest nodes, where every lookup of
            # it ends: 0 held says its neighbourhood had not heard of it
            "missed_known_by_closest": [m[2] for m in missed],
            "missed_known_live_by_closest": [m[3] for m in missed],
            "missed_failures": missed_failures,  # queries of the missed lookup that got no answer (v4)
            "timed_out": timed_out,  # lookups that took over LOOKUP_TIMEOUT (their slot wait included)
            "phase_seconds": trio.current_time() - t0,
        }

    # --- chat ---

    async def _chat(self) -> dict[str, Any]:
        """A few messages from random nodes; how many nodes each one reached, and how fast."""
        self._state.phase = "chat"
        cfg = self.config
        indices = sorted(self._refs)
        sent_at: dict[str, float] = {}
        reached: dict[str, int] = {}
        complete_at: dict[str, float] = {}
        all_sent = trio.Event()

        async def watch() -> None:
            # Polled while sending too, so the time to reach everyone is not the sending time.
            while True:
                ids = list(sent_at)
                if ids:
                    reached.update(await self._reached(ids))
                    now = trio.current_time()
                    for msg_id in ids:
                        if reached[msg_id] >= cfg.nodes and msg_id not in complete_at:
                            complete_at[msg_id] = now - sent_at[msg_id]
                    self._state.deliveries = sum(reached.values())
                if all_sent.is_set() and len(complete_at) == len(sent_at):
                    return
                await trio.sleep(CHAT_POLL)

        with trio.move_on_after(CHAT_TIMEOUT + cfg.messages * CHAT_GAP):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                for k in range(cfg.messages):
                    source = self._rng.choice(indices)
                    text = f"testnet message {k} from node {source}"
                    msg_id = await self._owner[source].chat_send(source, text)
                    sent_at[msg_id] = trio.current_time()
                    self._state.messages.append(msg_id)
                    await trio.sleep(CHAT_GAP)
                all_sent.set()
        return {
            "messages": len(sent_at),
            "delivered_to_all": len(complete_at),
            "reached": [reached.get(m, 0) for m in sent_at],
            "seconds_to_all": _figures(list(complete_at.values())),
            # Messages the chat services dropped because a peer's queue was full (all kinds).
            "dropped": sum(int(s.get("chat_dropped", 0)) for s in self._state.last_stats),
        }

    async def _holders(self, target_hex: str) -> tuple[int, int, int, int]:
        """:meth:`Shard.holders` of a node over every shard, with its FULL_TABLE closest nodes."""
        t = int(target_hex, 16)
        near = sorted((r.id for r in self._refs.values() if r.id != target_hex), key=lambda i: int(i, 16) ^ t)
        counts = [await shard.holders(target_hex, near[:FULL_TABLE]) for shard in self._shards]
        held, live, held_near, live_near = (sum(c[k] for c in counts) for k in range(4))
        return held, live, held_near, live_near

    async def _reached(self, ids: list[str]) -> dict[str, int]:
        total = {i: 0 for i in ids}
        for shard in self._shards:
            for msg_id, count in (await shard.chat_received(ids)).items():
                total[msg_id] += count
        return total


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def curve_point(summary: dict[str, Any]) -> dict[str, Any]:
    """One size of a ``--curve``: time to converge, CPU seconds and memory per node."""
    lookups = summary.get("lookups") or {}
    return {
        "nodes": summary["nodes"], "processes": summary["processes"], "converged": summary["converged"],
        "interrupted": bool(summary.get("interrupted")), "start_seconds": summary["start_seconds"],
        "converged_seconds": summary.get("converged_seconds"),
        "cpu_seconds": summary["cpu"]["seconds"], "cpu_per_node_seconds": summary["cpu"]["per_node_seconds"],
        "memory_per_node_bytes": summary["memory"]["per_node_bytes"],
        "lookups_found": lookups.get("found"), "lookups_count": lookups.get("count"),
        "load_average": summary.get("load_average"),
    }


def n_log_n(points: Sequence[dict[str, Any]], key: str, *, per_node: bool) -> list[float | None]:
    """The N log N reference for ``key`` scaled to the first point that has it: the value each
    size would have if the total grew as N log N from there (per node: as log N)."""
    first = next((p for p in points if p.get(key) is not None), None)
    if first is None:
        return [None for _ in points]
    n0, v0 = first["nodes"], float(first[key])

    def grow(n: int) -> float:
        return (math.log(n) if per_node else n * math.log(n)) / (math.log(n0) if per_node else n0 * math.log(n0))

    return [v0 * grow(p["nodes"]) for p in points]


def revalidate_interval(config: TestnetConfig) -> float | None:
    """The revalidation interval that keeps each process within ``REVALIDATIONS_PER_SHARD``
    (a node pings once per half interval on average), or None when discovery's default does."""
    from p2p.discover.service import REVALIDATE_INTERVAL

    per_process = math.ceil(config.nodes / max(1, shard_count(config)))
    needed = 2 * per_process / REVALIDATIONS_PER_SHARD
    return needed if needed > REVALIDATE_INTERVAL else None


def shard_count(config: TestnetConfig) -> int:
    """Child processes a testnet uses (0: everything in this process)."""
    if config.processes == 0:
        return 0
    return min(config.processes, config.nodes)


def plan(nodes: int, shards: int) -> list[list[int]]:
    """Node indices per shard: contiguous blocks of near-equal size, node 0 (the bootnode)
    first on shard 0. Contiguous blocks let each network namespace hold one address range."""
    shards = max(1, shards)
    base, extra = divmod(nodes, shards)
    out: list[list[int]] = []
    start = 0
    for k in range(shards):
        size = base + (1 if k < extra else 0)
        out.append(list(range(start, start + size)))
        start += size
    return out


async def run_testnet(config: TestnetConfig,
                      on_progress: Callable[[Progress], None] | None = None) -> tuple[dict[str, Any], list[Progress]]:
    """Run one testnet; returns its summary and every progress sample."""
    net = Testnet(config, on_progress)
    summary = await net.run()
    return summary, net.history


__all__ = ["Progress", "Testnet", "TestnetConfig", "run_testnet", "FULL_TABLE", "plan", "shard_count",
           "curve_point", "n_log_n"]
