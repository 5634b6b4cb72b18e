"""``p2p nodeset info|filter FILE``: look into and filter a nodes.json (go-ethereum's
``devp2p nodeset``), such as one written by ``p2p crawl``.

    p2p nodeset filter nodes.json -min-age 1h -ip 10.0.0.0/8 -enr-key eth -limit 100 --out best.json

Filters take go-ethereum's single-dash spelling or the usual double dash; a node must pass all
of them. The result goes to stdout, or to ``--out``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys

from p2p.cli._args import BadArgument, CommandFailed, count, subcommand
from p2p.enode import NodeID
from p2p.nodeset import NodeEntry, NodeFilter, NodeSetError, apply, dumps, has_key, ip_range, load, min_age, parse_duration, \
    save


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cidr(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a network (CIDR such as 10.0.0.0/8)") from None
    return text


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subcommand(sub, "nodeset", help="inspect and filter a nodes.json", doc=__doc__)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    info = subcommand(actions, "info", help="how many nodes, and their scores")
    info.add_argument("file", metavar="FILE", help="nodes.json")
    info.add_argument("--json", action="store_true", help="print a JSON object")

    f = subcommand(actions, "filter", help="the nodes that pass every filter")
    f.add_argument("file", metavar="FILE", help="nodes.json")
    f.add_argument("-min-age", "--min-age", type=_duration, metavar="DURATION",
                   help="answered over at least this long (last - first response; 90s, 1h30m, 24h)")
    f.add_argument("-ip", "--ip", type=_cidr, metavar="CIDR", help="address in this network")
    f.add_argument("-enr-key", "--enr-key", action="append", default=[], metavar="KEY",
                   help="record has this entry, e.g. eth or snap (repeatable: all of them)")
    f.add_argument("-limit", "--limit", type=count(0), metavar="N", help="keep the N best by score")
    f.add_argument("-out", "--out", metavar="FILE", help="write the result here instead of stdout")
    p.set_defaults(func=run)


def load_nodeset(path: str, flag: str = "") -> dict[NodeID, NodeEntry]:
    """The set in ``path``, or one clear line: BadArgument for what is not a node set,
    CommandFailed for a file that cannot be read."""
    shown = f"{flag} {path}" if flag else path
    try:
        return load(path)
    except NodeSetError as exc:
        raise BadArgument(f"{flag + ' ' if flag else ''}{exc}") from None
    except OSError as exc:
        raise CommandFailed(f"{shown}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    nodes = load_nodeset(args.file)
    if args.action == "info":
        scores = sorted(e.score for e in nodes.values())
        figures = {"nodes": len(nodes), "score_min": scores[0] if scores else None,
                   "score_median": scores[len(scores) // 2] if scores else None,
                   "score_max": scores[-1] if scores else None}
        if args.json:
            print(json.dumps(figures))
        else:
            print(f"{len(nodes)} nodes" + (f", score min {scores[0]} median {scores[len(scores) // 2]} max {scores[-1]}"
                                            if scores else ""))
        return 0
    filters: list[NodeFilter] = []
    if args.min_age is not None:
        filters.append(min_age(args.min_age))
    if args.ip is not None:
        filters.append(ip_range(args.ip))
    filters.extend(has_key(k) for k in args.enr_key)
    kept = apply(nodes, filters, args.limit)
    if args.out:
        try:
            save(args.out, kept)
        except OSError as exc:
            raise CommandFailed(f"--out {args.out}: {exc.strerror or exc}") from None
        print(f"{len(kept)} of {len(nodes)} nodes written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(dumps(kept) + "\n")
    return 0
