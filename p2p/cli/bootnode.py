"""``p2p bootnode``: a discovery-only node (discovery v4 over UDP, no RLPx).

    p2p bootnode [--nodekeyhex HEX | --nodekey FILE] [--addr HOST:PORT | --port PORT]
                 [--bootnodes URL,...] [--nodedb PATH] [--nat none|extip:IP]
                 [--netrestrict CIDR,...] [--v5] [--json]

Without a key flag the node runs with an ephemeral key. With ``--json`` the first line is
``{"event": "listening", "enode": ..., "enr": ...}``, then one ``node_added`` per node already
in the table (the bootnodes, the database's seeds), then one ``node_added`` / ``node_removed``
object (with ``id`` and ``enode``) per table change.
"""

from __future__ import annotations

import argparse
from functools import partial

from p2p.cli._args import (
    add_key_arguments,
    add_listen_arguments,
    check_listen,
    check_nodedb,
    listen_address,
    load_key,
    nat,
    netrestrict,
    parse_enode_list,
    subcommand,
)
from p2p.cli._output import emit
from p2p.cli._run import Stop, run_command
from p2p.crypto import PrivateKey
from p2p.enode import Node
from p2p.server import parse_nat

DEFAULT_ADDR = "127.0.0.1:30301"  # go-ethereum's bootnode port


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subcommand(sub, "bootnode", help="run a discovery-only node", doc=__doc__)
    add_key_arguments(p, hex_help="the node key as 64 hex digits", file_help="read the node key (hex) from FILE")
    add_listen_arguments(p, default=DEFAULT_ADDR, help="UDP address to listen on (port 0 picks one)")
    p.add_argument("--bootnodes", default="", metavar="URL,...",
                   help="comma-separated enode:// or enr: URLs of nodes to join")
    p.add_argument("--nodedb", metavar="PATH",
                   help="keep the node database in PATH, new or empty the first time (default: in memory)")
    p.add_argument("--nat", default="none", type=nat, metavar="none|extip:IP",
                   help="address advertised in the ENR and enode")
    p.add_argument("--netrestrict", type=netrestrict, metavar="CIDR,...",
                   help="only talk to these networks: other packets are dropped, other nodes not kept")
    p.add_argument("--v5", action="store_true", help="also run discovery v5 on the same UDP port")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    p.set_defaults(func=run)


def _url(node: Node) -> str:
    # A bootnode has no TCP listener; print the UDP port in the usual place, as bootnodes do.
    return Node(node.pubkey, node.ip, node.udp_port, node.udp_port).to_url()


async def _serve(args: argparse.Namespace, key: PrivateKey, listen: tuple[str, int], boots: list[Node],
                 stop: Stop) -> None:
    from contextlib import AsyncExitStack

    from p2p.dial import parse_netrestrict
    from p2p.discover import DiscoveryConfig, NodeAdded, open_discovery
    from p2p.enode.expiry import expiring
    from p2p.enode.nodedb import NodeDB

    async with AsyncExitStack() as stack:
        db = stack.enter_context(NodeDB.open(args.nodedb)) if args.nodedb else None
        if db is not None:
            await stack.enter_async_context(expiring(db))  # we opened it: we run its expiry
        config = DiscoveryConfig(netrestrict=parse_netrestrict(args.netrestrict), v5=args.v5)
        async with open_discovery(key, listen, bootnodes=boots, nodedb=db, config=config,
                                  advertised_ip=parse_nat(args.nat)) as disc:
            # The bootnodes entered the table while open_discovery started: the replay reports them.
            events = disc.subscribe(replay=True)
            me = disc.local_node
            if args.json:
                emit("listening", enode=_url(me), enr=disc.enr.to_text(), id=me.id.hex())
            else:
                print(f"listening on {listen[0]}:{disc.udp_port}\n{_url(me)}\n{disc.enr.to_text()}", flush=True)
            with stop.until_stopped():
                async for ev in events:
                    name = "node_added" if isinstance(ev, NodeAdded) else "node_removed"
                    if args.json:
                        emit(name, id=ev.node.id.hex(), enode=_url(ev.node), table=len(disc.table), via=ev.via)
                    else:
                        print(f"{name} {ev.node.id.short()} {_url(ev.node)} via {ev.via} (table {len(disc.table)})",
                              flush=True)
    if args.json:
        emit("stopped")


def run(args: argparse.Namespace) -> int:
    key = load_key(args)
    listen = listen_address(args, any_host="0.0.0.0")
    boots = parse_enode_list(args.bootnodes, "bootnode")
    check_listen("--addr" if args.port is None else "--port", listen, udp=True, tcp=False)
    if args.nodedb:
        check_nodedb(args.nodedb)
    return run_command("bootnode", partial(_serve, args, key, listen, boots))
