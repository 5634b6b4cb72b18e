"""``p2p testnet``: many nodes on this machine, live progress, and a summary.

    p2p testnet --nodes 20 --protocols chat            # a live table, then the summary
    p2p testnet --nodes 500 --json                     # JSON lines, the last one the summary
    p2p testnet --nodes 2000 --processes 2 --plot convergence.png
    p2p testnet --nodes 100 --discovery v5             # nodes find each other over discovery v5
    p2p testnet --curve 500,1000,2000 --plot curve.png # cost against size: time, CPU and memory per node
"""

from __future__ import annotations

import argparse
import os
import statistics
from functools import partial
from typing import Any

from p2p.cli._args import BadArgument, count, seconds, subcommand
from p2p.cli._output import emit
from p2p.cli._run import Stop, run_command
from p2p.testnet.runner import Progress, Testnet, TestnetConfig, curve_point, n_log_n, shard_count
from p2p.testnet.shard import DISCOVERY_MODES, KNOWN_PROTOCOLS


DEFAULT_NODES = 20
# Without --processes, a testnet of this many nodes or more runs in one child process per core:
# one Python process uses one core, and below this size starting processes costs more than it saves.
AUTO_PROCESSES_FROM = 200
# Without --seconds, the convergence deadline: a minute, or this long per node for larger testnets
# (the nodes share this machine's cores, so convergence takes time in proportion to their number;
# 10,000 nodes converge in about 4 minutes on 2 cores).
DEFAULT_SECONDS = 60.0
SECONDS_PER_NODE = 0.04
MAX_CURVE_SIZES = 20  # sizes one --curve runs, one after the other


def curve_sizes(text: str) -> list[int]:
    """``--curve`` sizes: a comma-separated list of node counts, each 2 or more."""
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not part for part in parts):
        raise argparse.ArgumentTypeError(f"give node counts separated by commas, e.g. 500,1000, not {text!r}")
    if len(parts) > MAX_CURVE_SIZES:
        raise argparse.ArgumentTypeError(f"at most {MAX_CURVE_SIZES} sizes, got {len(parts)}")
    return [count(2)(part) for part in parts]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subcommand(sub, "testnet", help="run a local testnet and report how it converges", doc=__doc__)
    p.add_argument("--nodes", type=count(2), metavar="N",
                   help=f"number of nodes, the bootnode included (default {DEFAULT_NODES})")
    p.add_argument("--curve", type=curve_sizes, metavar="N,...",
                   help="run one testnet per size in turn (fresh processes each) and report time to "
                        "converge, CPU seconds and memory per node against N; with --plot, a PNG of those")
    p.add_argument("--protocols", default="", metavar="NAME,...",
                   help=f"sub-protocols the nodes run ({', '.join(KNOWN_PROTOCOLS)}); with any, nodes are full servers")
    p.add_argument("--servers", action="store_true",
                   help="full servers (RLPx peers) even without protocols; default: discovery only")
    p.add_argument("--discovery", choices=DISCOVERY_MODES, default="v4",
                   help="discovery protocols the nodes speak (both: v4 and v5 on one socket); "
                        "lookups after convergence run over v5 when v5 is on")
    p.add_argument("--peers", type=count(0), default=5, metavar="N", help="peers each server node must reach")
    p.add_argument("--seconds", type=seconds(positive=True), metavar="SECONDS",
                   help=f"convergence deadline (default {DEFAULT_SECONDS:g}, or {SECONDS_PER_NODE * 1000:g} ms "
                        f"per node when that is longer)")
    p.add_argument("--processes", type=count(1), metavar="N",
                   help=f"spread the nodes over N child processes (default: one per core from "
                        f"{AUTO_PROCESSES_FROM} nodes and with --curve, else all in this one)")
    p.add_argument("--lookups", type=count(0), default=50, metavar="N", help="lookups after convergence")
    p.add_argument("--messages", type=count(0), default=3, metavar="N",
                   help="chat messages sent with --protocols chat")
    p.add_argument("--interval", type=seconds(positive=True), default=0.5, metavar="SECONDS",
                   help="time between progress samples")
    p.add_argument("--seed", type=int, metavar="N", help="seed for node keys and choices, for reproducible runs")
    p.add_argument("--netns", action="store_true",
                   help="put nodes in Linux network namespaces with their own addresses (root only)")
    p.add_argument("--json", action="store_true", help="progress as JSON lines, the last one the summary")
    p.add_argument("--plot", metavar="FILE",
                   help="write a PNG of convergence over time to FILE (with --curve: cost against size)")
    p.set_defaults(func=run)


def _processes(args: argparse.Namespace, nodes: int) -> int:
    if args.processes:
        return int(args.processes)
    # A curve's sizes each get fresh processes, so that no run inherits another's memory.
    if args.curve or nodes >= AUTO_PROCESSES_FROM:
        return max(1, os.cpu_count() or 1)
    return 0


def _config(args: argparse.Namespace, nodes: int | None = None) -> TestnetConfig:
    n = nodes if nodes is not None else (args.nodes or DEFAULT_NODES)
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
        return TestnetConfig(nodes=n, protocols=protocols,
                             seconds=args.seconds or max(DEFAULT_SECONDS, SECONDS_PER_NODE * n),
                             processes=_processes(args, n), servers=args.servers, peers=args.peers,
                             lookups=args.lookups, messages=args.messages, interval=args.interval,
                             seed=args.seed, discovery=args.discovery)
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
    if args.curve and args.nodes is not None:
        raise BadArgument("--curve and --nodes: give one (--curve runs one testnet per size)")
    config = _config(args, args.curve[0] if args.curve else None)
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
    if args.curve:
        return _run_curve(args)
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
    table = {"min": last.table_min, "median": last.table_median, "max": last.table_max} if last else None
    peers = {"min": last.peers_min, "median": last.peers_median, "max": last.peers_max} if last else None
    at = last.elapsed if last else 0.0
    return {
        "nodes": config.nodes, "processes": max(1, shard_count(config)), "child_processes": shard_count(config),
        "mode": "server" if config.full else "discovery", "protocols": list(config.protocols),
        "discovery": config.discovery, "converged": False, "interrupted": True, "deadline_seconds": config.seconds,
        "start_seconds": _first(history, lambda p: p.up == config.nodes),
        "table_target": config.table_target, "peer_target": config.peer_target,
        "table_fill_seconds": _first(history, lambda p: p.full_tables == config.nodes),
        "peers_seconds": _first(history, lambda p: p.peered == config.nodes),
        "table_size": table, "full_tables": last.full_tables if last else 0,
        "peers": peers, "peered": last.peered if last else 0,
        "lookups": None, "chat": None,
        "memory": {"rss_bytes": rss, "baseline_bytes": base, "per_node_bytes": (rss - base) / config.nodes},
        "cpu": {"seconds": last.cpu if last else 0.0, "per_node_seconds": (last.cpu if last else 0.0) / config.nodes,
                "end_seconds": last.cpu if last else 0.0},
        "final_table_size": table, "final_peers": peers,
        "elapsed_seconds": at,
        "sampled": {"table_size": "interrupted", "full_tables": "interrupted", "peers": "interrupted",
                    "peered": "interrupted", "final_table_size": "end", "final_peers": "end", "memory": "end",
                    "cpu": "interrupted"},
        "sample_seconds": {"interrupted": at, "end": at},
    }


def _run_json(config: TestnetConfig, args: argparse.Namespace, runs: list[Testnet], result: dict[str, Any]) -> int:
    emit("testnet_start", nodes=config.nodes, processes=max(1, shard_count(config)),
         child_processes=shard_count(config), protocols=list(config.protocols),
         mode="server" if config.full else "discovery", discovery=config.discovery,
         table_target=config.table_target,
         peer_target=config.peer_target, deadline_seconds=config.seconds)

    def on_progress(p: Progress) -> None:
        emit("progress", **p.to_json())

    status = run_command("testnet", partial(_run, config, on_progress, args, runs, result))
    if "summary" in result:
        emit("summary", ok=_ok(result["summary"]), **result["summary"])
    return status


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
    over = "" if config.discovery == "v4" else f", over {config.discovery.replace('both', 'v4+v5')}"
    return f"p2p testnet: {config.nodes} nodes ({'server' if config.full else 'discovery'}{protocols}{over})"


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
    if summary.get("interrupted"):
        title = f"summary: [yellow]interrupted[/yellow] after {summary['elapsed_seconds']:.1f} s"
    else:
        title = "summary: " + ("[green]converged[/green]" if ok else "[red]NOT converged[/red]")
    table = Table(title=title, show_header=False)
    table.add_column("figure", style="bold", no_wrap=True)
    table.add_column("value")
    processes = summary["processes"]
    table.add_row("nodes", f"{nodes} ({summary['mode']}, {processes} process{'es' if processes > 1 else ''})")
    table.add_row("discovery", summary.get("discovery", "v4"))
    table.add_row("all nodes started", after(summary["start_seconds"]))
    table.add_row(f"every table >= {summary['table_target']}", after(summary["table_fill_seconds"]))
    if summary["peer_target"]:
        table.add_row(f"every node >= {summary['peer_target']} peers", after(summary["peers_seconds"]))

    times = summary["sample_seconds"]
    point = next(p for p in ("convergence", "deadline", "interrupted") if p in times)
    moment({"convergence": "at convergence", "deadline": "at the deadline", "interrupted": "when interrupted"}[point],
           times[point])
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


def _run_live(config: TestnetConfig, args: argparse.Namespace, runs: list[Testnet], result: dict[str, Any]) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if not console.is_terminal:
        # Piped: no frames to redraw. The last one and the summary, each on lines of its own
        # (rich's Live leaves its last line open when it writes to a file).
        last: list[Progress] = []
        status = run_command("testnet", partial(_run, config, last.append, args, runs, result))
        console.print(_progress_table(config, last[-1] if last else None))
    else:
        with Live(_progress_table(config, None), console=console, refresh_per_second=4, transient=False) as live:
            def on_progress(p: Progress) -> None:
                live.update(_progress_table(config, p))

            status = run_command("testnet", partial(_run, config, on_progress, args, runs, result))
    if "summary" in result:
        console.print()
        console.print(_summary_table(result["summary"]))
        if args.plot and not args.curve:
            console.print(f"plot: {args.plot}")
    return status


# --- the curve ----------------------------------------------------------------------------------


def _run_curve(args: argparse.Namespace) -> int:
    """One testnet per ``--curve`` size, each with fresh processes and its usual output; then
    the curve: per size the time to converge, CPU seconds per node and memory per node."""
    sizes: list[int] = args.curve
    if args.json:
        emit("curve_start", sizes=sizes)
    points: list[dict[str, Any]] = []
    interrupted = False
    failed_status: int | None = None
    try:
        for nodes in sizes:
            config = _config(args, nodes)
            runs: list[Testnet] = []
            result: dict[str, Any] = {}
            status = (_run_json if args.json else _run_live)(config, args, runs, result)
            if "summary" not in result:
                failed_status = status  # failed before it started; the error is printed
                break
            point = curve_point(result["summary"])
            points.append(point)
            if args.json:
                emit("curve_point", **point)
            if point["interrupted"]:
                interrupted = True
                break
    except KeyboardInterrupt:  # between two runs, where no trio run catches the signal
        interrupted = True
    ok = bool(points) and len(points) == len(sizes) and all(p["converged"] for p in points)
    curve = {"sizes": sizes, "points": points, "interrupted": interrupted,
             "reference": {"converged_seconds": n_log_n(points, "converged_seconds", per_node=False),
                           "cpu_per_node_seconds": n_log_n(points, "cpu_per_node_seconds", per_node=True)}}
    if args.json:
        emit("curve_summary", ok=ok, **curve)
    elif points:
        from rich.console import Console

        console = Console()
        console.print()
        console.print(_curve_table(curve))
    if args.plot and points:
        from p2p.testnet.plot import write_curve_plot

        write_curve_plot(args.plot, points)
        if not args.json:
            print(f"plot: {args.plot}")
    if failed_status is not None:
        return failed_status
    return 0 if ok or interrupted else 1


def _curve_table(curve: dict[str, Any]) -> Any:
    from rich.table import Table

    def fmt(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    title = "curve" + (": [yellow]interrupted[/yellow]" if curve["interrupted"] else "")
    table = Table(title=title)
    for column in ("nodes", "converged", "N log N", "CPU ms/node", "log N", "KiB/node", "load"):
        table.add_column(column, justify="right")
    refs = curve["reference"]
    for p, t_ref, c_ref in zip(curve["points"], refs["converged_seconds"], refs["cpu_per_node_seconds"]):
        load = p.get("load_average") or {}
        table.add_row(str(p["nodes"]),
                      fmt(p["converged_seconds"], ".1f") + " s" if p["converged"] else "[red]no[/red]",
                      fmt(t_ref, ".1f"), fmt(p["cpu_per_node_seconds"] * 1000, ".0f"),
                      fmt(None if c_ref is None else c_ref * 1000, ".0f"),
                      fmt(p["memory_per_node_bytes"] / 1024, ".0f"),
                      " / ".join(f"{x:.1f}" for x in (load.get("start", [None])[0], load.get("end", [None])[0])
                                 if x is not None) or "-")
    return table
