"""``p2p node``: run a full node (RLPx listener, discovery, dialer, sub-protocols) until Ctrl-C.

With ``--json`` every line of stdout is one JSON object: first ``listening`` (``enode``,
``enr``), then ``peer_added`` for every peer already connected, then ``peer_added`` /
``peer_removed`` and the sub-protocols' own events.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

import trio

from p2p.cli._args import BadArgument, add_key_arguments, load_key, parse_enode_list, parse_hostport
from p2p.cli._writer import OUTPUT_QUEUE, OutputWriter, open_output, queue_size
from p2p.crypto import PrivateKey
from p2p.disconnect import DisconnectReason
from p2p.enode import Node, NodeID
from p2p.protocol import Protocol
from p2p.protocol_registry import UnknownProtocol, create
from p2p.server import PeerAdded, PeerRemoved, open_server, parse_nat

log = logging.getLogger(__name__)

DEFAULT_ADDR = "127.0.0.1:30303"  # devp2p's usual port; loopback unless told otherwise


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("node", help="run a devp2p node")
    add_key_arguments(p, hex_help="node private key as hex", file_help="file holding the node private key (hex)")
    p.add_argument("--addr", default=DEFAULT_ADDR, metavar="HOST:PORT",
                   help=f"TCP listen address; discovery uses the same UDP port (default {DEFAULT_ADDR})")
    p.add_argument("--bootnodes", default="", metavar="URL,...", help="enode URLs of discovery bootstrap nodes")
    p.add_argument("--staticnodes", default="", metavar="URL,...", help="enode URLs to stay connected to")
    p.add_argument("--trustednodes", default="", metavar="URL,...", help="enode URLs admitted above --maxpeers")
    p.add_argument("--maxpeers", type=int, default=50, metavar="N", help="maximum number of peers (default 50)")
    p.add_argument("--nodiscover", action="store_true", help="do not run discovery (no UDP, no dialing of found nodes)")
    p.add_argument("--nodedb", metavar="PATH", help="node database directory (default: in memory)")
    p.add_argument("--protocols", default="", metavar="NAME,...",
                   help="sub-protocols to run, by registered name (e.g. chat,eth)")
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics on this address")
    p.add_argument("--nat", default="none", metavar="none|extip:IP", help="address advertised in the ENR and enode")
    p.add_argument("--netrestrict", metavar="CIDR,...", help="only connect to / accept these networks")
    p.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    p.add_argument("--output-queue", type=queue_size, default=OUTPUT_QUEUE, metavar="LINES",
                   help=f"lines of stdout held for a slow reader before they are dropped (default {OUTPUT_QUEUE})")
    p.set_defaults(func=run)


def _nodes(text: str, what: str) -> list[Node]:
    try:
        return parse_enode_list(text, what)
    except BadArgument as exc:
        raise SystemExit(f"p2p node: {exc}") from exc


def _key(args: argparse.Namespace) -> PrivateKey:
    try:
        return load_key(args)
    except BadArgument as exc:
        raise SystemExit(f"p2p node: cannot use the node key: {exc}") from exc


def _reason(reason: DisconnectReason | int) -> str:
    return reason.name.lower() if isinstance(reason, DisconnectReason) else str(reason)


async def _main(args: argparse.Namespace) -> int:
    # stdout goes through a bounded queue: a reader that pauses loses lines, the node nothing.
    async with open_output(as_json=args.json, limit=args.output_queue) as output:
        return await _serve(args, output)


async def _serve(args: argparse.Namespace, output: OutputWriter) -> int:
    key = _key(args)
    node_id = NodeID.from_pubkey(key.public_key)
    out = output.emit
    try:
        host, port = parse_hostport(args.addr)
        metrics = parse_hostport(args.metrics, flag="--metrics") if args.metrics else None
        parse_nat(args.nat)
    except ValueError as exc:
        print(f"p2p node: {exc}", file=sys.stderr)
        return 2
    protocols: list[Protocol] = []
    services: list[Any] = []  # kept alive for the node's lifetime
    for name in (n.strip() for n in args.protocols.split(",")):
        if not name:
            continue
        try:
            service, made = create(name, emit=out, node_id=node_id, private_key=key)
        except UnknownProtocol as exc:
            print(f"p2p node: {exc}", file=sys.stderr)
            return 2
        services.append(service)
        protocols.extend(made)
    async with open_server(
        key, (host, port), protocols,
        bootnodes=_nodes(args.bootnodes, "bootnode"),
        static_nodes=_nodes(args.staticnodes, "static node"),
        trusted_nodes=_nodes(args.trustednodes, "trusted node"),
        max_peers=args.maxpeers,
        discovery=not args.nodiscover,
        node_db_path=args.nodedb,
        nat=args.nat,
        netrestrict=args.netrestrict,
        metrics_addr=metrics,
    ) as server:
        server.metrics.watch_output(output)
        fields: dict[str, Any] = {"enode": server.enode, "enr": server.enr.to_text(), "id": server.id.hex(),
                                  "tcp": server.tcp_port,
                                  "udp": server.discovery.udp_port if server.discovery is not None else None}
        if server.metrics_port is not None:
            fields["metrics"] = f"{metrics[0] if metrics else host}:{server.metrics_port}"
        # Replay: a static peer may have connected while open_server started.
        with server.events(replay=True) as events:
            out("listening", **fields)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with trio.open_nursery() as nursery:
                    async def stop_on_signal() -> None:
                        async for _ in signals:
                            nursery.cancel_scope.cancel()
                            return

                    nursery.start_soon(stop_on_signal)
                    async for event in events:
                        if isinstance(event, PeerAdded):
                            p = event.peer
                            out("peer_added", id=p.id.hex(), client=p.client, caps=[str(c) for c in p.caps],
                                inbound=p.inbound, remote=f"{p.remote[0]}:{p.remote[1]}")
                        elif isinstance(event, PeerRemoved):
                            out("peer_removed", id=event.peer.id.hex(), reason=_reason(event.reason),
                                remote_requested=event.remote_requested)
    out("stopped")
    return 0


def run(args: argparse.Namespace) -> int:
    from p2p.enode.nodedb import NodeDBError, NodeDBForeign

    try:
        return trio.run(_main, args)
    except KeyboardInterrupt:
        return 130
    except NodeDBError as exc:
        # another program's database named by --nodedb is a usage error; a store in use or
        # unreadable is a run-time one
        print(f"p2p node: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, NodeDBForeign) else 1
