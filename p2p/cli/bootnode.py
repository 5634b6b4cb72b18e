"""``p2p bootnode``: a discovery-only node (discovery v4 over UDP, no RLPx).

    p2p bootnode --nodekeyhex HEX | --nodekey FILE  --addr HOST:PORT
                 [--bootnodes URL,...] [--nodedb PATH] [--json]

Without a key flag the node runs with an ephemeral key. With ``--json`` the first line is
``{"event": "listening", "enode": ..., "enr": ...}``, then one ``node_added`` per node already
in the table (the bootnodes, the database's seeds), then one ``node_added`` / ``node_removed``
object (with ``id`` and ``enode``) per table change.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack

import trio

from p2p.cli._args import BadArgument, add_key_arguments, load_key, parse_enode_list, parse_hostport
from p2p.cli._output import emit
from p2p.crypto import PrivateKey
from p2p.enode import Node

DEFAULT_ADDR = "127.0.0.1:30301"  # go-ethereum's bootnode port


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("bootnode", help="run a discovery-only node")
    add_key_arguments(p, hex_help="the node key as 64 hex digits", file_help="read the node key (hex) from FILE")
    p.add_argument("--addr", default=DEFAULT_ADDR, metavar="HOST:PORT",
                   help=f"UDP address to listen on (default {DEFAULT_ADDR}; port 0 picks one)")
    p.add_argument("--bootnodes", default="", metavar="URL,...",
                   help="comma-separated enode:// or enr: URLs of nodes to join")
    p.add_argument("--nodedb", metavar="PATH", help="keep the node database in PATH (default: in memory)")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    p.set_defaults(func=run)


def _url(node: Node) -> str:
    # A bootnode has no TCP listener; print the UDP port in the usual place, as bootnodes do.
    return Node(node.pubkey, node.ip, node.udp_port, node.udp_port).to_url()


async def _serve(args: argparse.Namespace, key: PrivateKey, listen: tuple[str, int], boots: list[Node]) -> None:
    from p2p.discover import NodeAdded, open_discovery
    from p2p.enode.nodedb import NodeDB

    with ExitStack() as stack:
        db = stack.enter_context(NodeDB.open(args.nodedb)) if args.nodedb else None
        async with open_discovery(key, listen, bootnodes=boots, nodedb=db) as disc:
            # The bootnodes entered the table while open_discovery started: the replay reports them.
            events = disc.subscribe(replay=True)
            me = disc.local_node
            if args.json:
                emit("listening", enode=_url(me), enr=disc.enr.to_text(), id=me.id.hex())
            else:
                print(f"listening on {listen[0]}:{disc.udp_port}\n{_url(me)}\n{disc.enr.to_text()}", flush=True)
            async for ev in events:
                name = "node_added" if isinstance(ev, NodeAdded) else "node_removed"
                if args.json:
                    emit(name, id=ev.node.id.hex(), enode=_url(ev.node), table=len(disc.table))
                else:
                    print(f"{name} {ev.node.id.short()} {_url(ev.node)} (table {len(disc.table)})", flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        key = load_key(args)
        listen = parse_hostport(args.addr, any_host="0.0.0.0")
        boots = parse_enode_list(args.bootnodes, "bootnode")
    except BadArgument as exc:
        print(f"p2p bootnode: {exc}", file=sys.stderr)
        return 2
    from p2p.enode.nodedb import NodeDBError, NodeDBForeign

    try:
        trio.run(_serve, args, key, listen, boots)
    except NodeDBForeign as exc:  # another program's database named by --nodedb: a usage error
        print(f"p2p bootnode: {exc}", file=sys.stderr)
        return 2
    except (OSError, NodeDBError) as exc:
        print(f"p2p bootnode: {exc}", file=sys.stderr)
        return 1
    return 0
