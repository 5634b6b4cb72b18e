"""``p2p crawl``: walk a discovery v4 network and write what answers to a nodes.json
(go-ethereum's ``devp2p discv4 crawl``).

    p2p crawl --bootnodes enode://...@1.2.3.4:30303 --out nodes.json --seconds 600
    p2p crawl --out nodes.json --seconds 300 --json      # again: rechecks and updates the set

Every node found (by random lookups and by asking every node that answers for its
neighbours) is checked with an ENR request. An existing ``--out`` file is read first and
rechecked: a node's score goes up by one when it answers and is halved when it does not; at 0
it leaves the set. The file is written when the crawl ends (or is stopped with Ctrl-C).
With ``--json`` every line is a JSON object: ``crawl_start``, ``progress``, then ``summary``.
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from typing import Any

from p2p.cli._args import BadArgument, CommandFailed, check_listen, count, load_key, parse_enode_list, \
    parse_hostport, seconds, subcommand
from p2p.cli._output import emit
from p2p.cli._run import Stop, run_command
from p2p.cli.nodeset import load_nodeset
from p2p.crawl import CRAWL_CONCURRENCY, MAX_CRAWL_NODES, REVALIDATE_INTERVAL, CrawlConfig, Crawler, CrawlStats
from p2p.enode import NodeID
from p2p.nodeset import NodeEntry, save

DEFAULT_ADDR = "0.0.0.0:0"  # a crawler talks to the whole network: any interface, any free port
DEFAULT_SECONDS = 1800.0  # go-ethereum's crawl --timeout default: 30 minutes


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subcommand(sub, "crawl", help="crawl a discovery v4 network into a nodes.json", doc=__doc__)
    p.add_argument("--bootnodes", default="", metavar="URL,...",
                   help="enode:// or enr: URLs to start from (needed unless --out already holds nodes)")
    p.add_argument("--out", required=True, metavar="FILE", help="nodes.json to read (if it exists) and write")
    p.add_argument("--seconds", type=seconds(positive=True), default=DEFAULT_SECONDS, metavar="SECONDS",
                   help="crawl this long at most")
    p.add_argument("--concurrency", type=count(1), default=CRAWL_CONCURRENCY, metavar="N", help="checks in flight")
    p.add_argument("--max-nodes", type=count(1), default=MAX_CRAWL_NODES, metavar="N",
                   help="distinct nodes looked at, at most")
    p.add_argument("--revalidate", type=seconds(), default=REVALIDATE_INTERVAL, metavar="SECONDS",
                   help="nodes of --out checked less than this long ago are not checked again")
    p.add_argument("--quiet-lookups", type=count(0), default=0, metavar="N",
                   help="end early once N lookups in a row found nothing new and every check is done "
                        "(0: run for --seconds)")
    p.add_argument("--addr", default=DEFAULT_ADDR, metavar="HOST:PORT", help="UDP address to crawl from")
    p.add_argument("--nodekeyhex", metavar="HEX", help="crawler's private key as hex (default: a new one)")
    p.add_argument("--json", action="store_true", help="progress as JSON lines, the last one the summary")
    p.set_defaults(func=run, nodekey=None)


def _check_out(path: str) -> dict[NodeID, NodeEntry]:
    if os.path.isdir(path):
        raise BadArgument(f"--out {path}: is a directory, give a FILE")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BadArgument(f"--out {path}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise CommandFailed(f"--out {path}: directory {folder} is not writable")
    return load_nodeset(path, "--out") if os.path.exists(path) else {}


async def _crawl(args: argparse.Namespace, config: CrawlConfig, nodes: dict[NodeID, NodeEntry],
                 on_progress: Any, result: dict[str, Any], stop: Stop) -> int:
    from p2p.discover import DiscoveryConfig, open_discovery

    key = load_key(args)
    # The crawler runs its own lookups and checks: no periodic refresh or revalidation of its own.
    disc_config = DiscoveryConfig(refresh_on_start=False, revalidate=False)
    bootnodes = parse_enode_list(args.bootnodes, "bootnode")
    async with open_discovery(key, parse_hostport(args.addr), bootnodes=bootnodes, config=disc_config) as disc:
        crawler = Crawler(disc, nodes, config)
        result["crawler"] = crawler
        with stop.until_stopped():
            await crawler.run(on_progress)
            result["done"] = True
    save(args.out, crawler.output)
    return 0


def _summary(args: argparse.Namespace, result: dict[str, Any], before: int) -> dict[str, Any]:
    crawler: Crawler = result["crawler"]
    return {"ok": True, "interrupted": "done" not in result, "out": args.out, "nodes": len(crawler.output),
            "nodes_before": before, **crawler.stats.to_json()}


def run(args: argparse.Namespace) -> int:
    nodes = _check_out(args.out)
    bootnodes = parse_enode_list(args.bootnodes, "bootnode")
    if not bootnodes and not nodes:
        raise BadArgument("give --bootnodes, or an --out file that already holds nodes")
    check_listen("--addr", parse_hostport(args.addr, any_host="0.0.0.0"), udp=True, tcp=False)
    load_key(args)
    config = CrawlConfig(seconds=args.seconds, concurrency=args.concurrency, max_nodes=args.max_nodes,
                         revalidate_interval=args.revalidate, quiet_lookups=args.quiet_lookups)
    result: dict[str, Any] = {}
    if args.json:
        emit("crawl_start", bootnodes=len(bootnodes), nodes_before=len(nodes), out=args.out,
             deadline_seconds=args.seconds, concurrency=args.concurrency)
        status = run_command("crawl", partial(_crawl, args, config, nodes,
                                              lambda s: emit("progress", **s.to_json()), result))
        if "crawler" in result:
            emit("summary", **_summary(args, result, len(nodes)))
        return status
    return _run_live(args, config, nodes, result)


# --- the live display -------------------------------------------------------------------------

def _table(args: argparse.Namespace, s: CrawlStats | None, before: int) -> Any:
    from rich.table import Table

    title = f"p2p crawl -> {args.out}"
    table = Table(title=title, show_header=False, min_width=len(title) + 4)
    table.add_column("what", style="bold", no_wrap=True, min_width=10)
    table.add_column("value", no_wrap=True, min_width=40)
    if s is None:
        table.add_row("elapsed", f"  0.0 s of {args.seconds:.0f}")
        for label in ("found", "alive", "rate", "set", "lookups"):
            table.add_row(label, "-")
        return table
    table.add_row("elapsed", f"{s.elapsed:5.1f} s of {args.seconds:.0f}")
    table.add_row("found", f"{s.found} nodes ({s.queued} waiting for a check)")
    table.add_row("alive", f"{s.alive} of {s.checked} checked")
    table.add_row("rate", f"{s.rate:.1f} checks/s")
    table.add_row("set", f"{s.added} added, {s.updated} updated, {s.removed} removed (had {before})")
    table.add_row("lookups", f"{s.lookups} lookups, {s.findnodes} FINDNODE")
    return table


def _run_live(args: argparse.Namespace, config: CrawlConfig, nodes: dict[NodeID, NodeEntry],
              result: dict[str, Any]) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    before = len(nodes)
    if not console.is_terminal:
        status = run_command("crawl", partial(_crawl, args, config, nodes, None, result))
    else:
        with Live(_table(args, None, before), console=console, refresh_per_second=4, transient=False) as live:
            status = run_command("crawl", partial(_crawl, args, config, nodes,
                                                  lambda s: live.update(_table(args, s, before)), result))
            if "crawler" in result:  # the final figures, not the last second's
                live.update(_table(args, result["crawler"].stats, before))
    if "crawler" in result:
        crawler: Crawler = result["crawler"]
        if not console.is_terminal:
            console.print(_table(args, crawler.stats, before))
        word = "stopped" if "done" not in result else "done"
        console.print(f"crawl {word}: {len(crawler.output)} nodes in {args.out} "
                      f"({crawler.stats.alive} alive of {crawler.stats.checked} checked, "
                      f"{crawler.stats.rate:.1f} checks/s)")
    return status
