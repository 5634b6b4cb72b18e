"""``p2p testnet``: many nodes on this machine, live progress, and a summary.

    p2p testnet --nodes 20 --protocols chat            # a live table, then the summary
    p2p testnet --nodes 500 --json                     # JSON lines, the last one the summary
    p2p testnet --nodes 2000 --processes 2 --plot convergence.png
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from typing import Any

from p2p.cli._args import BadArgument, count, seconds, subcommand
from p2p.cli._output import emit
from p2p.cli._run import Stop, run_command
from p2p.testnet.runner import Progress, Testnet, TestnetConfig
from p2p.testnet.shard import KNOWN_PROTOCOLS


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subcommand(sub, "testnet", help="run a local testnet and report how it converges", doc=__doc__)
    p.add_argument("--nodes", type=count(2), default=20, metavar="N", help="number of nodes, the bootnode included")
    p.add_argument("--protocols", default="", metavar="NAME,...",
                   help=f"sub-protocols the nodes run ({', '.join(KNOWN_PROTOCOLS)}); with any, nodes are full servers")
    p.add_argument("--servers", action="store_true",
                   help="full servers (RLPx peers) even without protocols; default: discovery only")
    p.add_argument("--peers", type=count(0), default=5, metavar="N", help="peers each server node must reach")
    p.add_argument("--seconds", type=seconds(positive=True), default=60.0, metavar="SECONDS",
                   help="convergence deadline")
    p.add_argument("--processes", type=count(1), metavar="N",
                   help="spread the nodes over N child processes (default: all in this one)")
    p.add_argument("--lookups", type=count(0), default=50, metavar="N", help="lookups after convergence")
    p.add_argument("--messages", type=count(0), default=3, metavar="N",
                   help="chat messages sent with --protocols chat")
    p.add_argument("--interval", type=seconds(positive=True), default=0.5, metavar="SECONDS",
                   help="time between progress samples")
    p.add_argument("--seed", type=int, metavar="N", help="seed for node keys and choices, for reproducible runs")
    p.add_argument("--netns", action="store_true",
                   help="put nodes in Linux network namespaces with their own addresses (root only)")
    p.add_argument("--json", action="store_true", help="progress as JSON lines, the last one the summary")
    p.add_argument("--plot", metavar="FILE", help="write a PNG of convergence over time to FILE")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> TestnetConfig:
    protocols = tuple(p.strip() for p in args.protocols.split(",") if p.strip())
    for name in protocols:
        if name not in KNOWN_PROTOCOLS:
            from p2p.cli.node import known_protocols

            if name in known_protocols():
                raise BadArgument(f"--protocols {name}: testnet nodes run only {', '.join(KNOWN_PROTOCOLS)} "
                                  f"(the testnet measures those; run {name} with p2p node --protocols {name})")
            raise BadArgument(f"--protocols: unknown protocol {name!r} (known: {', '.join(known_protocols())}; "
                              f"testnet runs {', '.join(KNOWN_PROTOCOLS)})")
    try:
        return TestnetConfig(nodes=args.nodes, protocols=protocols, seconds=args.seconds,
                             processes=args.processes or 0, servers=args.servers, peers=args.peers,
                             lookups=args.lookups, messages=args.messages, interval=args.interval,
                             seed=args.seed)
    except ValueError as exc:
        raise BadArgument(str(exc)) from exc


def _check_plot(path: str) -> None:
    """Refuse a plot that could not be written, now rather than after the run."""
    if os.path.isdir(path):
        raise BadArgument(f"--plot {path}: is a directory, give a FILE.png")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BadArgument(f"--plot {path}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise BadArgument(f"--plot {path}: directory {folder} is not writable")
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise BadArgument("--plot needs matplotlib (pip install matplotlib)")


def _ok(summary: dict[str, Any]) -> bool:
    chat = summary.get("chat")
    return bool(summary["converged"]) and (chat is None or chat["delivered_to_all"] == chat["messages"])


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.plot:
        _check_plot(args.plot)
    if args.netns:
        from p2p.testnet import netns

        try:
            netns.check_available()
        except netns.NetnsError as exc:
            raise BadArgument(f"--netns: {exc}") from exc
    from p2p.testnet.shard import tune_gc

    tune_gc()
    runs: list[Testnet] = []
    result: dict[str, Any] = {}
    if args.json:
        status = _run_json(config, args, runs, result)
    else:
        status = _run_live(config, args, runs, result)
    if "summary" not in result:
        return status  # failed before it started; the error is printed
    if args.plot:
        from p2p.testnet.plot import write_plot

        write_plot(args.plot, runs[0].history, result["summary"])
    return 0 if _ok(result["summary"]) or result["summary"].get("interrupted") else 1


async def _run(config: TestnetConfig, on_progress: Any, args: argparse.Namespace,
               runs: list[Testnet], result: dict[str, Any], stop: Stop) -> None:
    with stop.until_stopped():
        if args.netns:
            from p2p.testnet import netns

            async with netns.namespaces(config) as placed:
                runs.append(Testnet(placed, on_progress))
                result["summary"] = await runs[0].run()
            return
        runs.append(Testnet(config, on_progress))
        result["summary"] = await runs[0].run()
    if "summary" not in result and runs:
        result["summary"] = interrupted_summary(config, runs[0].history)


def _first(history: list[Progress], reached: Any) -> float | None:
    return next((p.elapsed for p in history if reached(p)), None)


def interrupted_summary(config: TestnetConfig, history: list[Progress]) -> dict[str, Any]:
    """The summary's figures as far as the samples taken before a stop show them."""
    last = history[-1] if history else None
    rss, base = (last.rss, last.rss_base) if last else (0, 0)
    return {
        "nodes": config.nodes, "processes": config.processes,
        "mode": "server" if config.full else "discovery", "protocols": list(config.protocols),
        "converged": False, "interrupted": True, "deadline_seconds": config.seconds,
        "start_seconds": _first(history, lambda p: p.up == config.nodes),
        "table_target": config.table_target, "peer_target": config.peer_target,
        "table_fill_seconds": _first(history, lambda p: p.full_tables == config.nodes),
        "peers_seconds": _first(history, lambda p: p.peered == config.nodes),
        "table_size": {"min": last.table_min, "median": last.table_median, "max": last.table_max} if last else None,
        "peers": {"min": last.peers_min, "median": last.peers_median, "max": last.peers_max} if last else None,
        "lookups": None, "chat": None,
        "memory": {"rss_bytes": rss, "baseline_bytes": base, "per_node_bytes": (rss - base) / config.nodes},
        "elapsed_seconds": last.elapsed if last else 0.0,
    }


def _run_json(config: TestnetConfig, args: argparse.Namespace, runs: list[Testnet], result: dict[str, Any]) -> int:
    emit("testnet_start", nodes=config.nodes, processes=config.processes, protocols=list(config.protocols),
         mode="server" if config.full else "discovery", table_target=config.table_target,
         peer_target=config.peer_target, deadline_seconds=config.seconds)

    def on_progress(p: Progress) -> None:
        emit("progress", **p.to_json())

    status = run_command("testnet", partial(_run, config, on_progress, args, runs, result))
    if "summary" in result:
        emit("summary", ok=_ok(result["summary"]), **result["summary"])
    return status


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
    if summary.get("interrupted"):
        title = f"summary: [yellow]interrupted[/yellow] after {summary['elapsed_seconds']:.1f} s"
    else:
        title = "summary: " + ("[green]converged[/green]" if ok else "[red]NOT converged[/red]")
    table = Table(title=title, show_header=False)
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


def _run_live(config: TestnetConfig, args: argparse.Namespace, runs: list[Testnet], result: dict[str, Any]) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    with Live(_progress_table(config, None), console=console, refresh_per_second=4, transient=False) as live:
        def on_progress(p: Progress) -> None:
            live.update(_progress_table(config, p))

        status = run_command("testnet", partial(_run, config, on_progress, args, runs, result))
    if "summary" in result:
        console.print(_summary_table(result["summary"]))
        if args.plot:
            console.print(f"plot: {args.plot}")
    return status
