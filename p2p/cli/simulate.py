"""``p2p simulate``: the real discovery code on a simulated network, in virtual time.

    p2p simulate --nodes 1000 --duration 1h                    # a live view, then the summary
    p2p simulate --nodes 250,500,1000,2000 --plot sim.png      # figures against N
    p2p simulate --nodes 500 --latency lognormal:50ms,0.5 --loss 1% --nat-share 30% --churn 10%/h
    p2p simulate --nodes 2000 --json                           # JSON lines, the last one the summary

Every node runs the same discovery code as a real one (tables, bonding, lookups, revalidation,
refresh) on an in-memory network with a virtual clock; packets carry a null signature that only
a simulation accepts. See docs/simulation.md.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from p2p.cli._args import BadArgument, count, subcommand
from p2p.cli._output import emit
from p2p.cli._run import Stop, run_command
from p2p.cli.testnet import _check_plot
from p2p.sim.simulator import (
    DEFAULT_LATENCY,
    JOIN_RATE,
    MAX_NODES,
    NODE_MEMORY,
    MAX_RUNS,
    SimConfig,
    SimProgress,
    Simulation,
)
from p2p.testnet.shard import DISCOVERY_MODES


def _parsed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser raising ValueError: its one-line message is the error."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def _node_counts(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        part = part.strip()
        try:
            n = int(part)
        except ValueError:
            raise ValueError(f"not a whole number: {part!r}") from None
        if not 2 <= n <= MAX_NODES:
            raise ValueError(f"{n} nodes: must be 2-{MAX_NODES} (memory: ~{NODE_MEMORY // 1000} KB per simulated node)")
        sizes.append(n)
    if not 1 <= len(sizes) <= MAX_RUNS:
        raise ValueError(f"at most {MAX_RUNS} sizes in one run")
    return sizes


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"must be above 0, got {text}")
    return value


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from p2p.sim.netmodel import parse_churn, parse_duration, parse_latency, parse_loss, parse_share

    p = subcommand(sub, "simulate", help="simulate a discovery network in virtual time", doc=__doc__)
    p.add_argument("--nodes", type=_parsed(_node_counts), default=[1000], metavar="N[,N...]",
                   help=f"network size, or sizes run one after the other (at most {MAX_RUNS}); default 1000")
    p.add_argument("--duration", type=_parsed(parse_duration), default=3600.0, metavar="TIME",
                   help="simulated time per run: 1h, 30m, 90s, 1h30m; default 1h")
    p.add_argument("--discovery", choices=DISCOVERY_MODES, default="v4", help="discovery protocols the nodes speak")
    p.add_argument("--latency", type=_parsed(parse_latency), default=DEFAULT_LATENCY, metavar="MODEL",
                   help="one-way delay of each link (one draw per pair of nodes, both ways): 0, 30ms, "
                        "uniform:10ms-100ms, normal:50ms,10ms, lognormal:50ms,0.5")
    p.add_argument("--loss", type=_parsed(parse_loss), default=0.0, metavar="SHARE",
                   help="share of packets lost: 0.01 or 1%%")
    p.add_argument("--nat-share", type=_parsed(parse_share), default=0.0, metavar="SHARE",
                   help="share of nodes behind NAT (no inbound packet unless they sent to that peer lately)")
    p.add_argument("--churn", type=_parsed(parse_churn), default="0", metavar="RATE",
                   help="share of the nodes leaving (and as many joining) per hour or minute: 10%%/h, 0.1/h, 5%%/m")
    p.add_argument("--lookups", type=count(0), default=100, metavar="N",
                   help="lookups of random members by random members after convergence, spread over the rest")
    p.add_argument("--bootnodes", type=count(1), default=1, metavar="N", help="bootnodes every node starts from")
    p.add_argument("--join-rate", type=_parsed(_positive), default=JOIN_RATE, metavar="N",
                   help="nodes joining per simulated second at the start")
    p.add_argument("--until-converged", action="store_true",
                   help="end each run when it converges (no lookups): for time to converge alone")
    p.add_argument("--seed", type=int, metavar="N", help="seed for keys, the network model and choices")
    p.add_argument("--json", action="store_true", help="progress as JSON lines, the last one the summary")
    p.add_argument("--plot", metavar="FILE", help="write a PNG of the figures against N to FILE")
    p.set_defaults(func=run)


def _configs(args: argparse.Namespace) -> list[SimConfig]:
    try:
        return [SimConfig(nodes=n, duration=args.duration, discovery=args.discovery, latency=args.latency,
                          loss=args.loss, nat_share=args.nat_share, churn=args.churn, lookups=args.lookups,
                          bootnodes=min(args.bootnodes, n), join_rate=args.join_rate,
                          seed=args.seed, stop_at_convergence=args.until_converged)
                for n in args.nodes]
    except ValueError as exc:
        raise BadArgument(str(exc)) from exc


def _ok(summary: dict[str, Any]) -> bool:
    return all(r["converged"] for r in summary["runs"])


def _summary(runs: list[dict[str, Any]], interrupted: bool) -> dict[str, Any]:
    """One run's fields at the top level; with several, only ``runs`` (and the sizes)."""
    out: dict[str, Any] = dict(runs[0]) if len(runs) == 1 else {"nodes": [r["nodes"] for r in runs]}
    out["runs"] = runs
    if interrupted:
        out["interrupted"] = True
    return out


async def _main(configs: list[SimConfig], on_progress: Callable[[SimProgress], None], runs: list[dict[str, Any]],
                stop: Stop) -> None:
    from p2p.enode.identity import simulation_scope

    with simulation_scope():
        for config in configs:
            if stop.requested:
                return
            summary = await Simulation(config, on_progress).run(stop.until_stopped)
            runs.append(summary)


def run(args: argparse.Namespace) -> int:
    import trio.testing

    configs = _configs(args)
    if args.plot:
        _check_plot(args.plot)
    from p2p.testnet.shard import tune_gc

    tune_gc()
    runs: list[dict[str, Any]] = []
    clock = trio.testing.MockClock(autojump_threshold=0)
    if args.json:
        emit("simulate_start", nodes=[c.nodes for c in configs], duration_seconds=args.duration,
             discovery=args.discovery, latency=args.latency.describe(), loss=args.loss, nat_share=args.nat_share,
             churn_per_hour=args.churn.per_hour, lookups=args.lookups, seed=args.seed)

        def on_progress(p: SimProgress) -> None:
            emit("progress", **p.to_json())

        status = run_command("simulate", partial(_main, configs, on_progress, runs), clock=clock)
    else:
        status = _run_live(configs, runs, clock)
    if not runs:
        return status
    interrupted = any(r.get("interrupted") for r in runs) or len(runs) < len(configs)
    summary = _summary(runs, interrupted)
    if args.plot:
        from p2p.sim.plot import write_plot

        write_plot(runs, args.plot)
    if args.json:
        emit("summary", ok=_ok(summary), **summary)
    else:
        from rich.console import Console

        console = Console()
        console.print(_summary_table(summary))
        if args.plot:
            console.print(f"plot: {args.plot}")
    return 0 if _ok(summary) or interrupted else 1


# --- the live display -------------------------------------------------------------------------

BAR_WIDTH = 24  # characters of a progress bar


def _bar(share: float, width: int = BAR_WIDTH) -> str:
    filled = int(width * share)
    return "█" * filled + "░" * (width - filled) + f" {100 * share:.0f}%"


def _duration(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 3600:.1f} h"


def _progress_table(configs: list[SimConfig], done: int, p: SimProgress | None) -> Any:
    from rich.table import Table

    config = configs[min(done, len(configs) - 1)]
    title = f"p2p simulate: {config.nodes} nodes ({config.discovery}), run {done + 1} of {len(configs)}"
    table = Table(title=title, show_header=False, min_width=len(title) + 4)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value", no_wrap=True, min_width=40)
    if p is None:
        table.add_row("phase", "starting")
        return table
    table.add_row("phase", p.phase)
    table.add_row("simulated", f"{_duration(p.virtual_seconds)} of {_duration(config.duration)}")
    table.add_row("wall", f"{p.wall_seconds:.0f} s")
    table.add_row("nodes up", f"{p.up}")
    table.add_row(f"tables >= {config.table_target}", _bar(p.converged_share))
    table.add_row("lookups", f"{p.lookups_found} found of {p.lookups_done} done")
    table.add_row("packets", f"{p.packets:,}")
    return table


def _run_live(configs: list[SimConfig], runs: list[dict[str, Any]], clock: Any) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if not console.is_terminal:
        last: list[SimProgress] = []
        status = run_command("simulate", partial(_main, configs, last.append, runs), clock=clock)
        console.print(_progress_table(configs, max(0, len(runs) - 1), last[-1] if last else None))
        return status
    with Live(_progress_table(configs, 0, None), console=console, refresh_per_second=4, transient=False) as live:
        def on_progress(p: SimProgress) -> None:
            live.update(_progress_table(configs, len(runs), p))

        return run_command("simulate", partial(_main, configs, on_progress, runs), clock=clock)


def _summary_table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    title = "summary" + (" [yellow](interrupted)[/yellow]" if summary.get("interrupted") else "")
    table = Table(title=title)
    for column in ("nodes", "converged", "lookups found", "hops med/max", "packets/lookup", "live share",
                   "closest share", "wall", "memory/node"):
        table.add_column(column, justify="right")
    for r in summary["runs"]:
        lk = r["lookups"]
        conv = f"{r['converged_seconds']:.0f} s" if r["converged"] else "no"
        table.add_row(str(r["nodes"]), conv, f"{lk['found']}/{lk['count']}",
                      f"{lk['hops']['median']:g}/{lk['hops']['max']:g}", f"{lk['packets']['median']:g}",
                      f"{r['table']['live_share']:.2f}", f"{r['table']['closest_share']:.2f}",
                      f"{r['wall_seconds']:.0f} s", f"{r['memory']['per_node_bytes'] / 1024:.0f} KiB")
    return table
