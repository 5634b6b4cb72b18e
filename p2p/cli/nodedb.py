"""``p2p nodedb list|show|seeds PATH``: look into a node database without changing it.

The database is opened for inspection: nothing is created, wiped or repaired. A store of
another layout version, a damaged one, or one held open by a running node is reported and
the command exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from p2p.cli._args import BadArgument, CommandFailed, check_nodedb, count, seconds, subcommand
from p2p.cli._output import emit
from p2p.enode.node import Node, NodeID
from p2p.enode.nodedb import NodeDB, NodeDBError

DEFAULT_SEED_COUNT = 30  # as many as discovery asks for at start-up
DEFAULT_SEED_MAX_AGE = 5 * 24 * 3600.0  # go-ethereum's seed age limit: five days


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subcommand(sub, "nodedb", help="inspect a node database", doc=__doc__)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    ls = subcommand(actions, "list", help="every node: id, enode URL, age of the last pong")
    ls.add_argument("path", metavar="PATH", help="node database directory")
    ls.add_argument("--json", action="store_true", help="one JSON object per node and line")

    show = subcommand(actions, "show", help="one node with its ENR and per-IP fields")
    show.add_argument("path", metavar="PATH", help="node database directory")
    show.add_argument("id", metavar="ID", help="node ID (64 hex digits, or a unique prefix such as the 16 that other commands print) "
                           "or enode URL")
    show.add_argument("--json", action="store_true", help="print a JSON object")

    seeds = subcommand(actions, "seeds", help="the random fresh nodes a node would start from")
    seeds.add_argument("path", metavar="PATH", help="node database directory")
    seeds.add_argument("--count", type=count(0), default=DEFAULT_SEED_COUNT, metavar="N", help="how many")
    seeds.add_argument("--max-age", type=seconds(), default=DEFAULT_SEED_MAX_AGE, metavar="SECONDS",
                       help="newest pong at most this old")
    seeds.add_argument("--json", action="store_true", help="one JSON object per node and line")
    p.set_defaults(func=run)


def _pong(db: NodeDB, node: Node) -> float:
    return db.last_pong_received(node.id, node.ip)


def _age(now: float, t: float) -> float | None:
    return None if t <= 0 else round(now - t, 3)


def _age_text(age: float | None) -> str:
    if age is None:
        return "never"
    if age < 120:
        return f"{age:.0f}s ago"
    if age < 7200:
        return f"{age / 60:.0f}m ago"
    if age < 2 * 86400:
        return f"{age / 3600:.1f}h ago"
    return f"{age / 86400:.1f}d ago"


def _fields(db: NodeDB, node: Node, now: float) -> dict[str, Any]:
    return {
        "id": node.id.hex(),
        "enode": node.to_url(),
        "ip": str(node.ip),
        "udp": node.udp_port,
        "tcp": node.tcp_port,
        "seq": node.enr.seq if node.enr is not None else None,
        "last_pong_age": _age(now, _pong(db, node)),
    }


def _print_nodes(db: NodeDB, nodes: list[Node] | Any, as_json: bool, event: str) -> int:
    now = time.time()
    count = 0
    for node in nodes:
        fields = _fields(db, node, now)
        if as_json:
            emit(event, **fields)
        else:
            print(f"{fields['id']}  {fields['enode']}  pong {_age_text(fields['last_pong_age'])}")
        count += 1
    return count


MIN_ID_PREFIX = 8  # hex digits: shorter prefixes match too many nodes to be of use


def _parse_id(db: NodeDB, text: str) -> NodeID:
    """A node ID, an enode URL, or a unique prefix of an ID in ``db``."""
    text = text.strip()
    if text.startswith("enode://"):
        try:
            return Node.from_url(text).id
        except ValueError as exc:
            raise BadArgument(f"bad enode URL {text!r}: {exc}") from exc
    hex_text = text.lower().removeprefix("0x")
    if len(hex_text) == 64:
        try:
            return NodeID.from_hex(hex_text)
        except ValueError:
            pass
    elif MIN_ID_PREFIX <= len(hex_text) < 64 and all(c in "0123456789abcdef" for c in hex_text):
        found = [n.id for n in db.iter_nodes() if n.id.hex().startswith(hex_text)]
        if len(found) > 1:
            raise BadArgument(f"node ID prefix {text!r} matches {len(found)} nodes; give more digits")
        if not found:
            raise CommandFailed(f"no node with an ID starting {hex_text} in {db.path}")
        return found[0]
    raise BadArgument(f"not a node ID (64 hex digits, or at least {MIN_ID_PREFIX} of its first ones) "
                      f"or enode URL: {text!r}")


def run(args: argparse.Namespace) -> int:
    # Checked before LevelDB sees the path: opening would create LOCK and LOG files in any
    # directory, and its own errors are raw bytes.
    check_nodedb(args.path, flag="", create=False)
    try:
        db = NodeDB.open(args.path, inspect=True)
    except NodeDBError as exc:
        raise CommandFailed(str(exc)) from exc
    with db:
        if args.action == "list":
            listed = _print_nodes(db, db.iter_nodes(), args.json, "node")
            if not args.json:
                print(f"{listed} nodes", file=sys.stderr)
            return 0
        if args.action == "seeds":
            _print_nodes(db, db.query_seeds(args.count, args.max_age), args.json, "seed")
            return 0
        return _show(db, args)


def _show(db: NodeDB, args: argparse.Namespace) -> int:
    node_id = _parse_id(db, args.id)
    node = db.node(node_id)
    if node is None:
        raise CommandFailed(f"no node {node_id.hex()} in {args.path}")
    now = time.time()
    fields = _fields(db, node, now)
    fields["enr"] = node.enr.to_text() if node.enr is not None else None
    fields["endpoints"] = [
        {"ip": str(e.ip), "last_ping_age": _age(now, e.last_ping_received),
         "last_pong_age": _age(now, e.last_pong_received), "find_fails": e.find_fails}
        for e in db.endpoints(node_id)
    ]
    if args.json:
        emit("node", **fields)
        return 0
    for key in ("id", "enode", "ip", "udp", "tcp", "seq", "enr"):
        print(f"{key}: {fields[key] if fields[key] is not None else '-'}")
    print(f"last pong: {_age_text(fields['last_pong_age'])}")
    for e in fields["endpoints"]:
        print(f"endpoint {e['ip']}: ping {_age_text(e['last_ping_age'])}, pong {_age_text(e['last_pong_age'])}, "
              f"findnode failures {e['find_fails']}")
    return 0
