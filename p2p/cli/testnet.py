"""``p2p testnet``: many nodes on this machine, live progress, and a summary.

    p2p testnet --nodes 20 --protocols chat            # a live table, then the summary
    p2p testnet --nodes 500 --json                     # JSON lines, the last one the summary
    p2p testnet --nodes 2000 --processes 2 --plot convergence.png
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import trio

from p2p.cli._output import emit
from p2p.testnet.runner import Progress, Testnet, TestnetConfig
from p2p.testnet.shard import KNOWN_PROTOCOLS


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("testnet", help="run a local testnet and report how it converges")
    p.add_argument("--nodes", type=int, default=20, help="number of nodes, the bootnode included (default 20)")
    p.add_argument("--protocols", default="",
                   help=f"comma-separated sub-protocols the nodes run ({', '.join(KNOWN_PROTOCOLS)}); "
                        "with any, nodes are full servers")
    p.add_argument("--servers", action="store_true",
                   help="full servers (RLPx peers) even without protocols; default: discovery only")
    p.add_argument("--peers", type=int, default=5, help="peers each server node must reach (default 5)")
    p.add_argument("--seconds", type=float, default=60.0, help="convergence deadline (default 60)")
    p.add_argument("--processes", type=int, default=0,
                   help="spread the nodes over this many child processes (default: all in this one)")
    p.add_argument("--lookups", type=int, default=50, help="lookups after convergence (default 50)")
    p.add_argument("--messages", type=int, default=3, help="chat messages sent with --protocols chat (default 3)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between progress samples")
    p.add_argument("--seed", type=int, help="seed for node keys and choices, for reproducible runs")
    p.add_argument("--netns", action="store_true",
                   help="put nodes in Linux network namespaces with their own addresses (root only)")
    p.add_argument("--json", action="store_true", help="progress as JSON lines, the last one the summary")
    p.add_argument("--plot", metavar="FILE.png", help="write a PNG of convergence over time")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> TestnetConfig:
    protocols = tuple(p.strip() for p in args.protocols.split(",") if p.strip())
    unknown = [p for p in protocols if p not in KNOWN_PROTOCOLS]
    if unknown:
        raise SystemExit(f"p2p testnet: unknown protocol(s) {', '.join(unknown)}")
    return TestnetConfig(nodes=args.nodes, protocols=protocols, seconds=args.seconds,
                         processes=args.processes, servers=args.servers, peers=args.peers,
                         lookups=args.lookups, messages=args.messages, interval=args.interval,
                         seed=args.seed)


def _ok(summary: dict[str, Any]) -> bool:
    chat = summary.get("chat")
    return bool(summary["converged"]) and (chat is None or chat["delivered_to_all"] == chat["messages"])


def run(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"p2p testnet: {exc}", file=sys.stderr)
        return 2
    if args.netns:
        from p2p.testnet import netns

        try:
            netns.check_available()
        except netns.NetnsError as exc:
            print(f"p2p testnet: --netns: {exc}", file=sys.stderr)
            return 2
    from p2p.testnet.shard import tune_gc

    tune_gc()
    if args.json:
        summary, history = _run_json(config, args)
    else:
        summary, history = _run_live(config, args)
    if args.plot:
        from p2p.testnet.plot import write_plot

        write_plot(args.plot, history, summary)
    return 0 if _ok(summary) else 1


async def _run(config: TestnetConfig, on_progress: Any,
               args: argparse.Namespace) -> tuple[dict[str, Any], list[Progress]]:
    if args.netns:
        from p2p.testnet import netns

        async with netns.namespaces(config) as placed:
            net = Testnet(placed, on_progress)
            return await net.run(), net.history
    net = Testnet(config, on_progress)
    return await net.run(), net.history


def _run_json(config: TestnetConfig, args: argparse.Namespace) -> tuple[dict[str, Any], list[Progress]]:
    emit("testnet_start", nodes=config.nodes, processes=config.processes, protocols=list(config.protocols),
         mode="server" if config.full else "discovery", table_target=config.table_target,
         peer_target=config.peer_target, deadline_seconds=config.seconds)

    def on_progress(p: Progress) -> None:
        emit("progress", **p.to_json())

    summary, history = trio.run(_run, config, on_progress, args)
    emit("summary", ok=_ok(summary), **summary)
    return summary, history


# --- the live display -------------------------------------------------------------------------


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / total) if total else 0
    return "█" * filled + "░" * (width - filled) + f" {done}/{total}"


def _progress_table(config: TestnetConfig, p: Progress | None) -> Any:
    from rich.table import Table

    table = Table(title=f"p2p testnet: {config.nodes} nodes "
                        f"({'server' if config.full else 'discovery'}"
                        f"{', ' + ','.join(config.protocols) if config.protocols else ''})",
                  show_header=False, expand=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    if p is None:
        table.add_row("phase", "starting")
        return table
    table.add_row("phase", f"{p.phase}  ({p.elapsed:5.1f} s of {config.seconds:.0f})")
    table.add_row("nodes up", _bar(p.up, p.nodes))
    table.add_row(f"tables >= {config.table_target}", _bar(p.full_tables, p.nodes))
    table.add_row("table size", f"min {p.table_min}  median {p.table_median:g}  max {p.table_max}")
    if config.full:
        table.add_row(f"peers >= {config.peer_target}", _bar(p.peered, p.nodes))
        table.add_row("peers", f"min {p.peers_min}  median {p.peers_median:g}  max {p.peers_max}")
    table.add_row("lookups", f"{p.lookups_ok} found of {p.lookups_done} done")
    if "chat" in config.protocols:
        table.add_row("chat", f"{p.messages_sent} sent, {p.deliveries} deliveries")
    per_node = (p.rss - p.rss_base) / max(1, p.up) / 1024
    table.add_row("memory", f"{p.rss / 2**20:.0f} MiB ({per_node:.0f} KiB per node above the baseline)")
    return table


def _summary_table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    def secs(v: float | None) -> str:
        return "not reached" if v is None else f"{v:.2f} s"

    def spread(d: dict[str, Any] | None) -> str:
        if not d:
            return "-"
        return f"min {d['min']:g}  median {d['median']:g}  max {d['max']:g}"

    ok = _ok(summary)
    table = Table(title="summary: " + ("[green]converged[/green]" if ok else "[red]NOT converged[/red]"),
                  show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value")
    table.add_row("nodes", f"{summary['nodes']} ({summary['mode']}, "
                           f"{summary['processes'] or 1} process{'es' if summary['processes'] > 1 else ''})")
    table.add_row("all nodes started", secs(summary["start_seconds"]))
    table.add_row(f"every table >= {summary['table_target']}", secs(summary["table_fill_seconds"]))
    table.add_row("table size", spread(summary["table_size"]))
    if summary["peer_target"]:
        table.add_row(f"every node >= {summary['peer_target']} peers", secs(summary["peers_seconds"]))
        table.add_row("peers per node", spread(summary["peers"]))
    lookups = summary.get("lookups")
    if lookups:
        rounds = f", rounds {spread(lookups['rounds'])}" if lookups.get("rounds") else ""
        table.add_row("lookups", f"{lookups['found']}/{lookups['count']} found "
                                 f"({100 * lookups['success_rate']:.0f}%), "
                                 f"median {lookups['seconds']['median'] * 1000:.0f} ms{rounds}")
    chat = summary.get("chat")
    if chat:
        table.add_row("chat", f"{chat['delivered_to_all']}/{chat['messages']} messages reached all "
                              f"{summary['nodes']} nodes (reached: {chat['reached']}), "
                              f"median {chat['seconds_to_all']['median'] * 1000:.0f} ms")
    mem = summary["memory"]
    table.add_row("memory per node", f"{mem['per_node_bytes'] / 1024:.0f} KiB")
    return table


def _run_live(config: TestnetConfig, args: argparse.Namespace) -> tuple[dict[str, Any], list[Progress]]:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    with Live(_progress_table(config, None), console=console, refresh_per_second=4, transient=False) as live:
        def on_progress(p: Progress) -> None:
            live.update(_progress_table(config, p))

        summary, history = trio.run(_run, config, on_progress, args)
    console.print(_summary_table(summary))
    if args.plot:
        console.print(f"plot: {args.plot}")
    return summary, history
