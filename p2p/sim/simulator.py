"""The simulator: the real discovery code, many nodes, one in-memory network, virtual time.

Every node is an ordinary :func:`p2p.discover.open_discovery` (v4, v5 or both: tables,
bonding, lookups, revalidation, refresh) on an endpoint of one
:class:`~p2p.discover.transport.MemoryNetwork`, whose loss and latency hooks are the
:class:`~p2p.sim.netmodel.NetworkModel`'s. Everything runs in one trio run under
``trio.testing.MockClock(autojump_threshold=0)``: when every task waits, the clock jumps to the
next deadline, so an hour of protocol timers passes in as much wall time as the packets cost.
Packets and records use the null identity scheme (:mod:`p2p.enode.identity`): no curve
arithmetic per packet, and only inside this simulation.

What a run measures (its summary, the shape ``p2p/sim/plot.py`` draws): convergence (every live
table holds at least ``min(16, n - 1)`` nodes, as ``p2p testnet`` counts it), lookups of random
live members by random live members after that (measured by the testnet's own
:func:`p2p.testnet.shard.measure_lookup`), and the tables' quality at the end.
"""

from __future__ import annotations

import bisect
import gc
import logging
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager as ContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from collections import Counter

import trio
import trio.testing

from p2p.crypto import PrivateKey
from p2p.discover import DiscoveryConfig, open_discovery
from p2p.discover.transport import MemoryNetwork
from p2p.enode import Node, NodeID
from p2p.enode.identity import NullIdentity, NullKey, simulation_scope
from p2p.enode.nodedb import SharedBytes
from p2p.sim.netmodel import Address, ChurnRate, LatencyModel, NetworkModel, churn_events, parse_latency
from p2p.testnet.runner import FULL_TABLE, LOOKUP_CONCURRENCY, LOOKUP_TIMEOUT
from p2p.testnet.shard import DISCOVERY_MODES, GC_THRESHOLDS, check_discovery, measure_lookup, packets_sent

logger = logging.getLogger(__name__)

# The largest network the simulator is meant for (the size of the real discovery networks, with
# room). A converged node holds ~300 KB (measured: its table, node database, tasks, caches), so
# the largest runs need tens of GB; the command says so up front.
MAX_NODES: Final = 100_000
NODE_MEMORY: Final = 300_000  # bytes per converged simulated node, measured at 300-2,000 nodes
MAX_DURATION: Final = 7 * 24 * 3600.0  # a week of virtual time; longer runs repeat the same hour
MAX_LOOKUPS: Final = 100_000  # lookups measured per run; each keeps a few numbers
MAX_BOOTNODES: Final = 64  # every node is told of all of them
MAX_RUNS: Final = 32  # sizes in one ``--nodes 500,1000,...`` sweep
MAX_CHURN_EVENTS: Final = 10_000_000  # leaves and joins in one run: a bound on the node index
PORT: Final = 30303  # every simulated node listens on it, each at its own 127.x.y.z address
JOIN_RATE: Final = 100.0  # nodes joining per virtual second at the start, so the bootnodes are not all hit at t=0
SAMPLE_INTERVAL: Final = 0.5  # virtual seconds between convergence checks (``p2p testnet``'s default interval)
LATE_SAMPLE_INTERVAL: Final = 10.0  # and once converged: only progress reports need them then
PROGRESS_INTERVAL: Final = 2.0  # wall seconds between progress reports
CLOSEST_K: Final = FULL_TABLE  # the "true k-closest" a table is scored against
CLOSEST_SAMPLE: Final = 2000  # nodes whose true closest set is computed at the end (exact, per node)
DELIVERY_TICK: Final = 0.001  # arrival times are rounded up to this grid; 1 ms is far below any reply timeout
DEFAULT_LATENCY: Final = "uniform:10ms-100ms"  # one-way delay between hosts on the internet, roughly


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulated network. Times are virtual seconds."""

    nodes: int
    duration: float = 3600.0
    discovery: str = "v4"  # one of DISCOVERY_MODES
    latency: LatencyModel = field(default_factory=lambda: parse_latency(DEFAULT_LATENCY))
    loss: float = 0.0
    nat_share: float = 0.0
    churn: ChurnRate = ChurnRate(0.0)
    lookups: int = 100
    bootnodes: int = 1
    join_rate: float = JOIN_RATE
    seed: int | None = None
    stop_at_convergence: bool = False

    def __post_init__(self) -> None:
        if not 2 <= self.nodes <= MAX_NODES:
            raise ValueError(f"nodes must be 2-{MAX_NODES} (memory: ~{NODE_MEMORY // 1000} KB per simulated node)")
        if not 0 < self.duration <= MAX_DURATION:
            raise ValueError(f"duration must be above 0 and at most {MAX_DURATION / 86400:g} days")
        check_discovery(self.discovery)
        if not 0 <= self.loss < 1:
            raise ValueError("loss must lie in [0, 1)")
        if not 0 <= self.nat_share <= 1:
            raise ValueError("nat share must lie in [0, 1]")
        if not 0 <= self.lookups <= MAX_LOOKUPS:
            raise ValueError(f"lookups must be 0-{MAX_LOOKUPS}")
        if not 1 <= self.bootnodes <= min(MAX_BOOTNODES, self.nodes):
            raise ValueError(f"bootnodes must be 1-{min(MAX_BOOTNODES, self.nodes)}")
        if not (self.join_rate > 0 and math.isfinite(self.join_rate)):
            raise ValueError("join rate must be a positive number")
        if self.churn.per_hour < 0:
            raise ValueError("churn must not be negative")

    @property
    def table_target(self) -> int:
        return min(FULL_TABLE, self.nodes - 1)


@dataclass(frozen=True, slots=True)
class SimProgress:
    """A progress sample; ``virtual_seconds`` is simulated time, ``wall_seconds`` real time."""

    phase: str  # starting, converging, lookups, done
    nodes: int
    virtual_seconds: float
    wall_seconds: float
    up: int
    converged_share: float  # live nodes whose table holds the target
    lookups_done: int
    lookups_found: int
    packets: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _SimNode:
    index: int
    addr: Address
    key: PrivateKey
    bootnode: bool
    disc: Any = None
    scope: trio.CancelScope | None = None
    slot: int = -1  # place in the live list


def node_address(index: int) -> Address:
    """The distinct loopback address of node ``index`` (127.1.0.0 upwards)."""
    if not 0 <= index < (255 << 16):
        raise ValueError(f"node index {index} out of the simulated address range")
    return f"127.{1 + (index >> 16)}.{(index >> 8) & 255}.{index & 255}", PORT


def _figures(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "median": 0.0, "mean": 0.0, "max": 0.0}
    return {"min": float(min(values)), "median": float(statistics.median(values)),
            "mean": statistics.fmean(values), "max": float(max(values))}


def _rss() -> int:
    try:
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except ImportError:  # pragma: no cover - psutil is a dependency
        return 0


def closest_share(tables: dict[bytes, set[bytes]], live: Sequence[bytes], *, k: int = CLOSEST_K,
                  sample: int = CLOSEST_SAMPLE, rng: random.Random | None = None) -> float:
    """Mean share of each node's true ``k`` closest live nodes (XOR distance) found in its table,
    over up to ``sample`` nodes of ``tables``. Exact per node: the k closest all lie in the
    smallest ID-prefix block holding k others (anything outside differs in a higher bit), and
    such a block is a contiguous range of the sorted IDs."""
    ids = sorted(int.from_bytes(i, "big") for i in live)
    want = min(k, len(ids) - 1)
    if want <= 0 or not tables:
        return 1.0
    owners = list(tables)
    if len(owners) > sample:
        owners = (rng or random.Random(0)).sample(owners, sample)
    shares = []
    def block(x: int, free_bits: int) -> tuple[int, int]:
        base = (x >> free_bits) << free_bits
        return bisect.bisect_left(ids, base), bisect.bisect_left(ids, base + (1 << free_bits))

    for owner in owners:
        x = int.from_bytes(owner, "big")
        low, high = 0, 256  # the block of ``high`` free bits (the whole ID space) holds them all
        while high - low > 1:  # the fewest free bits whose block holds ``want`` others besides x
            mid = (low + high) // 2
            lo, hi = block(x, mid)
            if hi - lo - 1 >= want:
                high = mid
            else:
                low = mid
        lo, hi = block(x, high)
        candidates = sorted((y ^ x, y) for y in ids[lo:hi] if y != x)[:want]
        table = tables[owner]
        found = sum(1 for _, y in candidates if y.to_bytes(32, "big") in table)
        shares.append(found / want)
    return sum(shares) / len(shares)


class Simulation:
    """One simulated network. ``run()`` (inside :func:`run_simulation`'s trio run) returns
    the summary; ``partial_summary()`` gives one at any time (after a stop, say)."""

    def __init__(self, config: SimConfig, on_progress: Callable[[SimProgress], None] | None = None) -> None:
        self.config = config
        self._on_progress = on_progress
        self._rng = random.Random(config.seed) if config.seed is not None else random.Random()
        self._model = NetworkModel(latency=config.latency, loss=config.loss, nat_share=config.nat_share,
                                   rng=random.Random(self._rng.getrandbits(64)))
        self._net = MemoryNetwork(loss=self._loss, latency=self._latency)
        self._nodes: dict[int, _SimNode] = {}
        self._live: list[_SimNode] = []
        self._next_index = 0
        self._boot: tuple[Node, ...] = ()
        self._identity: NullIdentity | None = None
        self._nodedb_shared = SharedBytes()  # every simulated node stores the same few records
        self._wall_base = time.time()
        self._t_wall = time.monotonic()
        self._last_report = -math.inf
        self.packets = 0
        self._sent_by_gone = 0  # datagrams sent by nodes that left
        self.phase = "starting"
        self.converged_seconds: float | None = None
        self.packets_at_convergence: int | None = None
        self.left = 0
        self.joined = 0
        self._lookups: list[dict[str, Any]] = []
        self._lookup_errors = 0
        self.history: list[SimProgress] = []
        self._rss_base = 0
        self._t0 = 0.0

    # -- the network's hooks --------------------------------------------------------------

    def _loss(self, data: bytes, src: Address, dst: Address) -> bool:
        self.packets += 1
        return self._model.loss_hook(data, src, dst)

    def _latency(self, data: bytes, src: Address, dst: Address) -> float:
        # Arrivals on a 1 ms grid: packets due in the same tick are delivered in one pass of
        # trio's run loop instead of one pass (and one clock jump) each.
        now = trio.current_time()
        due = math.ceil((now + self._model.latency_hook(data, src, dst)) / DELIVERY_TICK) * DELIVERY_TICK
        return max(0.0, due - now)

    def _virtual_wall(self) -> float:
        return self._wall_base + trio.current_time()

    # -- nodes ---------------------------------------------------------------------------

    def _discovery_config(self, rng: random.Random) -> DiscoveryConfig:
        assert self._identity is not None
        # Each simulated node is a host of its own: its own lookup slots, not one process's.
        base = DiscoveryConfig(rng=rng, wall_clock=self._virtual_wall, identity=self._identity,
                               lookup_limiter=trio.CapacityLimiter(16), nodedb_shared=self._nodedb_shared)
        if self.config.discovery == "v4":
            return base
        from p2p.discover.table import is_lan
        from p2p.discover.v5 import V5Config

        # Loopback sources are exempt from v5's per-IP budget, as in ``p2p testnet``.
        v5 = replace(base, v5=True, v5_config=V5Config(rng=rng, rate_limit_exempt=is_lan))
        return v5 if self.config.discovery == "both" else replace(v5, v4=False)

    def _new_node(self, bootnode: bool = False) -> _SimNode:
        index = self._next_index
        self._next_index += 1
        seed_rng = random.Random(self._rng.getrandbits(64))
        key = NullKey.of(PrivateKey.generate(rng=seed_rng))
        node = _SimNode(index, node_address(index), key, bootnode)
        self._nodes[index] = node
        return node

    async def _run_node(self, node: _SimNode, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        endpoint = self._net.endpoint(*node.addr)
        # a bootnode behind NAT would be unreachable for every joiner: bootnodes are public, as in the real network
        self._model.add_node(node.addr, nat=False if node.bootnode else None)
        rng = random.Random(self._rng.getrandbits(64))
        try:
            with trio.CancelScope() as scope:
                node.scope = scope
                async with open_discovery(node.key, bootnodes=self._boot, config=self._discovery_config(rng),
                                          transport=endpoint) as disc:
                    node.disc = disc
                    node.slot = len(self._live)
                    self._live.append(node)
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            if node.disc is not None:
                self._sent_by_gone += packets_sent(node.disc)
            endpoint.close()
            self._model.remove_node(node.addr)
            self._drop_live(node)
            node.disc = None
            self._nodes.pop(node.index, None)

    def _drop_live(self, node: _SimNode) -> None:
        if node.slot < 0:
            return
        last = self._live.pop()
        if last is not node:
            self._live[node.slot] = last
            last.slot = node.slot
        node.slot = -1

    def _random_live(self, count: int, *, leavers: bool = False) -> list[_SimNode]:
        pool = self._live if not leavers else [n for n in self._live if not n.bootnode]
        return self._rng.sample(pool, count) if len(pool) >= count else []

    # -- the run -------------------------------------------------------------------------

    async def run(self, until_stopped: Callable[[], ContextManager[Any]] | None = None) -> dict[str, Any]:
        """Run the network for the configured duration; its summary. ``until_stopped`` (the
        command's stop) ends the run early: the summary then has what was measured so far and
        ``"interrupted": true``."""
        self._identity = NullIdentity()
        self._rss_base = _rss()
        self._t_wall = time.monotonic()
        self._t0 = trio.current_time()
        finished = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._net.run_delivery)
            with until_stopped() if until_stopped is not None else nullcontext():
                await self._start(nursery)
                nursery.start_soon(self._sample_loop)
                await self._main()
                finished = True
            self.phase = "done"
            summary = self.summary()  # while the nodes still run: their tables are the figures
            nursery.cancel_scope.cancel()
        if not finished:
            summary["interrupted"] = True
        return summary

    async def _start(self, nursery: trio.Nursery) -> None:
        cfg = self.config
        boot = []
        for _ in range(cfg.bootnodes):
            node = self._new_node(bootnode=True)
            await nursery.start(self._run_node, node)
            boot.append(node.disc.local_node)
        self._boot = tuple(boot)
        nursery.start_soon(self._join_rest, nursery)
        if cfg.churn.per_hour > 0:
            nursery.start_soon(self._churn, nursery)

    async def _join_rest(self, nursery: trio.Nursery) -> None:
        cfg = self.config
        gap = 1.0 / cfg.join_rate
        t0 = trio.current_time()
        for k in range(cfg.nodes - cfg.bootnodes):
            await trio.sleep_until(t0 + k * gap)
            await nursery.start(self._run_node, self._new_node())
        self.phase = "converging"

    async def _churn(self, nursery: trio.Nursery) -> None:
        cfg = self.config
        rng = random.Random(self._rng.getrandbits(64))
        t0 = trio.current_time()
        for n, (at, kind) in enumerate(churn_events(cfg.churn, cfg.nodes, cfg.duration, rng)):
            if n >= MAX_CHURN_EVENTS:
                logger.warning("churn stopped after %d events", n)
                return
            await trio.sleep_until(t0 + at)
            if kind == "leave":
                victims = self._random_live(1, leavers=True)
                if victims and victims[0].scope is not None:
                    victims[0].scope.cancel()
                    self._drop_live(victims[0])
                    self.left += 1
            else:
                await nursery.start(self._run_node, self._new_node())
                self.joined += 1

    async def _main(self) -> None:
        cfg = self.config
        t0 = self._t0
        end = t0 + cfg.duration
        # Lookups start once converged, or at half the run when it does not converge by then.
        with trio.move_on_at(t0 + cfg.duration / 2):
            while self.converged_seconds is None:
                await trio.sleep(SAMPLE_INTERVAL)
        if cfg.stop_at_convergence and self.converged_seconds is not None:
            return
        if cfg.lookups:
            self.phase = "lookups"
            await self._run_lookups(end)
        await trio.sleep_until(end)

    async def _run_lookups(self, end: float) -> None:
        cfg = self.config
        now = trio.current_time()
        span = max(0.0, end - now - LOOKUP_TIMEOUT)
        gap = span / cfg.lookups
        limiter = trio.CapacityLimiter(LOOKUP_CONCURRENCY)

        async def one(source: _SimNode, target: _SimNode) -> None:
            async with limiter:
                disc = source.disc
                if disc is None:  # left while waiting
                    return
                result: dict[str, Any] | None = None
                with trio.move_on_after(LOOKUP_TIMEOUT):
                    try:
                        result = await measure_lookup(disc, NodeID(target.key.public_key.keccak()), cfg.discovery,
                                                      v5_detail=True)
                    except Exception as exc:  # noqa: BLE001 - a failed lookup is a figure, not a crash
                        logger.debug("lookup failed: %s", exc)
                        self._lookup_errors += 1
                self._lookups.append(result if result is not None else {"found": False})

        async with trio.open_nursery() as lookups:
            for k in range(cfg.lookups):
                await trio.sleep_until(now + k * gap)
                pair = self._random_live(2)
                if not pair:
                    self._lookups.append({"found": False})
                    continue
                lookups.start_soon(one, pair[0], pair[1])

    async def _sample_loop(self) -> None:
        target = self.config.table_target
        while True:
            await trio.sleep(SAMPLE_INTERVAL if self.converged_seconds is None else LATE_SAMPLE_INTERVAL)
            live = self._live
            full = sum(1 for n in live if len(n.disc.table) >= target) if live else 0
            now = trio.current_time()
            if (self.converged_seconds is None and self.phase != "starting" and live
                    and full == len(live)):
                self.converged_seconds = now - self._t0
                self.packets_at_convergence = sum(packets_sent(n.disc) for n in live) + self._sent_by_gone
            wall = time.monotonic() - self._t_wall
            if wall - self._last_report >= PROGRESS_INTERVAL:
                self._last_report = wall
                self._report(full)

    def _report(self, full: int | None = None) -> SimProgress:
        live = self._live
        if full is None:
            target = self.config.table_target
            full = sum(1 for n in live if n.disc is not None and len(n.disc.table) >= target)
        found = sum(1 for r in self._lookups if r.get("found"))
        p = SimProgress(phase=self.phase, nodes=self.config.nodes, virtual_seconds=trio.current_time() - self._t0,
                        wall_seconds=time.monotonic() - self._t_wall, up=len(live),
                        converged_share=full / len(live) if live else 0.0, lookups_done=len(self._lookups),
                        lookups_found=found, packets=self.packets)
        self.history.append(p)
        if self._on_progress is not None:
            self._on_progress(p)
        return p

    # -- figures -------------------------------------------------------------------------

    def _table_figures(self) -> dict[str, Any]:
        live = [n for n in self._live if n.disc is not None]
        live_ids = {bytes(n.disc.local_id) for n in live}
        sizes: list[float] = []
        entries = live_entries = 0
        tables: dict[bytes, set[bytes]] = {}
        for n in live:
            members = {bytes(m.id) for m in n.disc.table}
            tables[bytes(n.disc.local_id)] = members
            sizes.append(len(members))
            entries += len(members)
            live_entries += len(members & live_ids)
        share = closest_share(tables, list(live_ids), rng=random.Random(0)) if tables else 0.0
        return {"live_share": live_entries / entries if entries else 0.0, "closest_share": share,
                "size": _figures(sizes)}

    def _packet_figures(self) -> dict[str, dict[str, int]]:
        """Datagrams the live nodes sent, by type, and those they dropped, by reason."""
        sent: Counter[str] = Counter()
        drops: Counter[str] = Counter()
        for n in self._live:
            for engine in (n.disc, getattr(n.disc, "v5", None)):
                stats = getattr(engine, "stats", None)
                if stats is not None:
                    sent.update(stats.packets_out)
                    drops.update(stats.drops)
        return {"packets_by_type": dict(sent), "drops": dict(drops)}

    def summary(self) -> dict[str, Any]:
        cfg = self.config
        found = sum(1 for r in self._lookups if r.get("found"))
        count = len(self._lookups)
        hops = [float(r["rounds"]) for r in self._lookups if r.get("rounds") is not None]
        packets = [float(r["packets"]) for r in self._lookups if r.get("packets") is not None]
        rss = _rss()
        wall = time.monotonic() - self._t_wall
        converged = self.converged_seconds is not None
        return {
            "nodes": cfg.nodes,
            "discovery": cfg.discovery,
            "duration_seconds": cfg.duration,
            "virtual_seconds": trio.current_time() - self._t0,
            "converged": converged,
            "converged_seconds": self.converged_seconds,
            "table_target": cfg.table_target,
            "packets_to_converge_per_node": (self.packets_at_convergence / cfg.nodes
                                             if self.packets_at_convergence is not None else None),
            "lookups": {"count": count, "found": found, "success_rate": found / count if count else 0.0,
                        "hops": _figures(hops), "packets": _figures(packets), "errors": self._lookup_errors},
            "table": self._table_figures(),
            "packets": self.packets,
            **self._packet_figures(),
            "up": len(self._live),
            # the settings (the plot's subtitle names them); what the network did is in "network"
            "model": {**self._model.describe(), "bootnodes": cfg.bootnodes, "join_rate": cfg.join_rate,
                      "churn_per_hour": cfg.churn.per_hour, "seed": cfg.seed},
            "network": {**self._model.counters, "dropped": self._net.dropped},
            "churn": {"left": self.left, "joined": self.joined},
            "wall_seconds": wall,
            # per node that runs now: a stopped run may not have started them all
            "memory": {"rss_bytes": rss, "per_node_bytes": max(0, rss - self._rss_base) / max(1, len(self._live))},
        }


def run_simulation(config: SimConfig, on_progress: Callable[[SimProgress], None] | None = None) -> dict[str, Any]:
    """Run one simulated network in its own trio run under a MockClock; its summary."""
    sim = Simulation(config, on_progress)
    old = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)  # millions of long-lived objects, as in a testnet shard
    try:
        with simulation_scope():
            return trio.run(sim.run, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        gc.set_threshold(*old)


__all__ = [
    "DISCOVERY_MODES",
    "MAX_NODES",
    "NODE_MEMORY",
    "SimConfig",
    "SimProgress",
    "Simulation",
    "closest_share",
    "node_address",
    "run_simulation",
]
