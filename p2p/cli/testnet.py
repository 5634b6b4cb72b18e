"""``p2p testnet``: many nodes on this machine, live progress, and a summary.

    p2p testnet --nodes 20 --protocols chat            # a live table, then the summary
    p2p testnet --nodes 500 --json                     # JSON lines, the last one the summary
    p2p testnet --nodes 2000 --processes 2 --plot convergence.png
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import trio

from p2p.cli._output import emit
from p2p.testnet.runner import Progress, Testnet, TestnetConfig, shard_count
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
    emit("testnet_start", nodes=config.nodes, processes=max(1, shard_count(config)),
         child_processes=shard_count(config), protocols=list(config.protocols),
         mode="server" if config.full else "discovery", table_target=config.table_target,
         peer_target=config.peer_target, deadline_seconds=config.seconds)

    def on_progress(p: Progress) -> None:
        emit("progress", **p.to_json())

    summary, history = trio.run(_run, config, on_progress, args)
    emit("summary", ok=_ok(summary), **summary)
    return summary, history


# --- the live display -------------------------------------------------------------------------

BAR_WIDTH = 24  # characters of a progress bar
VALUE_WIDTH = 46  # the value column of the live table: every frame as wide as the widest row
LABEL_WIDTH = 12  # the label column of the live table ("tables >= 16")


def _bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = int(width * done / total) if total else 0
    return "█" * filled + "░" * (width - filled) + f" {done}/{total}"


def _spread(lo: float, mid: float, hi: float, unit: str = "") -> str:
    return f"min {lo:g}  median {mid:g}  max {hi:g}{unit}"


def _title(config: TestnetConfig) -> str:
    protocols = ", " + ",".join(config.protocols) if config.protocols else ""
    return f"p2p testnet: {config.nodes} nodes ({'server' if config.full else 'discovery'}{protocols})"


def _progress_table(config: TestnetConfig, p: Progress | None) -> Any:
    """One frame of the live display. Every frame, the first included, has the same rows and
    width, so that the display does not jump and its title is never squeezed."""
    from rich.table import Table

    title = _title(config)
    table = Table(title=title, show_header=False, expand=False, min_width=len(title) + 4)
    table.add_column("what", style="bold", no_wrap=True, min_width=LABEL_WIDTH)
    table.add_column("value", no_wrap=True, min_width=VALUE_WIDTH)
    n = config.nodes
    if p is None:
        table.add_row("phase", f"starting  (  0.0 s of {config.seconds:.0f})")
        table.add_row("nodes up", _bar(0, n))
        table.add_row(f"tables >= {config.table_target}", _bar(0, n))
        table.add_row("table size", "-")
        if config.full:
            table.add_row(f"peers >= {config.peer_target}", _bar(0, n))
            table.add_row("peers", "-")
        table.add_row("lookups", "-")
        if "chat" in config.protocols:
            table.add_row("chat", "-")
        table.add_row("memory", "-")
        return table
    table.add_row("phase", f"{p.phase}  ({p.elapsed:5.1f} s of {config.seconds:.0f})")
    table.add_row("nodes up", _bar(p.up, p.nodes))
    table.add_row(f"tables >= {config.table_target}", _bar(p.full_tables, p.nodes))
    table.add_row("table size", _spread(p.table_min, p.table_median, p.table_max))
    if config.full:
        table.add_row(f"peers >= {config.peer_target}", _bar(p.peered, p.nodes))
        table.add_row("peers", _spread(p.peers_min, p.peers_median, p.peers_max))
    table.add_row("lookups", f"{p.lookups_ok} found of {p.lookups_done} done")
    if "chat" in config.protocols:
        table.add_row("chat", f"{p.messages_sent} sent, {p.deliveries} deliveries")
    per_node = (p.rss - p.rss_base) / max(1, p.up) / 1024
    table.add_row("memory", f"{p.rss / 2**20:.0f} MiB ({per_node:.0f} KiB per node above the baseline)")
    return table


def _summary_table(summary: dict[str, Any]) -> Any:
    """The summary, one short figure per row (readable at 80 columns), grouped by the moment
    its sample was taken: at convergence (or at the deadline), or at the end of the run."""
    from rich.table import Table

    def after(v: float | None) -> str:
        return "not reached" if v is None else f"after {v:.2f} s"

    def spread(d: dict[str, Any] | None, unit: str = "") -> str:
        return _spread(d["min"], d["median"], d["max"], unit) if d else "-"

    def moment(label: str, seconds: float) -> None:
        table.add_section()
        table.add_row(f"[italic]{label}[/italic]", f"[italic]sampled {seconds:.2f} s after the start[/italic]")

    ok = _ok(summary)
    nodes = summary["nodes"]
    table = Table(title="summary: " + ("[green]converged[/green]" if ok else "[red]NOT converged[/red]"),
                  show_header=False)
    table.add_column("figure", style="bold", no_wrap=True)
    table.add_column("value")
    processes = summary["processes"]
    table.add_row("nodes", f"{nodes} ({summary['mode']}, {processes} process{'es' if processes > 1 else ''})")
    table.add_row("all nodes started", after(summary["start_seconds"]))
    table.add_row(f"every table >= {summary['table_target']}", after(summary["table_fill_seconds"]))
    if summary["peer_target"]:
        table.add_row(f"every node >= {summary['peer_target']} peers", after(summary["peers_seconds"]))

    times = summary["sample_seconds"]
    point = "convergence" if "convergence" in times else "deadline"
    moment(f"at {'convergence' if point == 'convergence' else 'the deadline'}", times[point])
    table.add_row("  table size", spread(summary["table_size"]))
    table.add_row(f"  tables >= {summary['table_target']}", f"{summary['full_tables']}/{nodes} nodes")
    if summary["peer_target"]:
        table.add_row("  peers per node", spread(summary["peers"]))
        table.add_row(f"  >= {summary['peer_target']} peers", f"{summary['peered']}/{nodes} nodes")

    lookups = summary.get("lookups")
    if lookups:
        table.add_section()
        table.add_row("lookups", f"{lookups['found']}/{lookups['count']} found ({100 * lookups['success_rate']:.0f}%)")
        table.add_row("  time", f"median {lookups['seconds']['median'] * 1000:.0f} ms")
        if lookups.get("rounds"):
            table.add_row("  rounds", spread(lookups["rounds"]))
    chat = summary.get("chat")
    if chat:
        table.add_section()
        table.add_row("chat", f"{chat['delivered_to_all']}/{chat['messages']} messages reached all {nodes} nodes")
        if chat["delivered_to_all"]:
            table.add_row("  time to all", f"median {chat['seconds_to_all']['median'] * 1000:.0f} ms")
        reached = chat["reached"]
        if reached:
            table.add_row("  nodes reached", _spread(min(reached), statistics.median(reached), max(reached),
                                                     " per message"))

    moment("at the end", times["end"])
    table.add_row("  table size", spread(summary["final_table_size"]))
    if summary["peer_target"]:
        table.add_row("  peers per node", spread(summary["final_peers"]))
    table.add_row("  memory per node", f"{summary['memory']['per_node_bytes'] / 1024:.0f} KiB")
    return table


def _run_live(config: TestnetConfig, args: argparse.Namespace) -> tuple[dict[str, Any], list[Progress]]:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if not console.is_terminal:
        # Piped: no frames to redraw. The last one and the summary, each on lines of its own
        # (rich's Live leaves its last line open when it writes to a file).
        last: list[Progress] = []
        summary, history = trio.run(_run, config, last.append, args)
        console.print(_progress_table(config, last[-1] if last else None))
    else:
        with Live(_progress_table(config, None), console=console, refresh_per_second=4, transient=False) as live:
            def on_progress(p: Progress) -> None:
                live.update(_progress_table(config, p))

            summary, history = trio.run(_run, config, on_progress, args)
    console.print()
    console.print(_summary_table(summary))
    if args.plot:
        console.print(f"plot: {args.plot}")
    return summary, history
