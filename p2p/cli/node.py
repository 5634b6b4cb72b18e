"""``p2p node``: run a full node (RLPx listener, discovery, dialer, sub-protocols) until Ctrl-C.

With ``--json`` every line of stdout is one JSON object: first ``listening`` (``enode``,
``enr``), then ``peer_added`` / ``peer_removed`` and the sub-protocols' own events.
"""

from __future__ import annotations

import argparse
import logging
from functools import partial
from typing import Any

from p2p.cli._args import BadArgument, add_node_arguments, load_key, server_options, subcommand
from p2p.cli._run import Stop, run_command
from p2p.cli._writer import OUTPUT_QUEUE, OutputWriter, open_output, queue_size
from p2p.crypto import PrivateKey
from p2p.disconnect import DisconnectReason
from p2p.enode import NodeID
from p2p.protocol import Protocol
from p2p.protocol_registry import UnknownProtocol, available, create, get_factory
from p2p.server import PeerAdded, PeerRemoved, open_server

log = logging.getLogger(__name__)

DEFAULT_ADDR = "127.0.0.1:30303"  # devp2p's usual port; loopback unless told otherwise


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subcommand(sub, "node", help="run a devp2p node", doc=__doc__)
    add_node_arguments(p, default_addr=DEFAULT_ADDR)
    p.add_argument("--protocols", default="", metavar="NAME,...",
                   help="sub-protocols to run, by registered name (e.g. chat,eth)")
    p.add_argument("--output-queue", type=queue_size, default=OUTPUT_QUEUE, metavar="LINES",
                   help=f"lines of stdout held for a slow reader before they are dropped (default {OUTPUT_QUEUE})")
    p.set_defaults(func=run)


def _reason(reason: DisconnectReason | int) -> str:
    return reason.name.lower() if isinstance(reason, DisconnectReason) else str(reason)


async def _main(args: argparse.Namespace, key: PrivateKey, options: dict[str, Any], stop: Stop) -> int:
    # stdout goes through a bounded queue: a reader that pauses loses lines, the node nothing.
    async with open_output(as_json=args.json, limit=args.output_queue) as output:
        return await _serve(args, key, options, stop, output)


async def _serve(args: argparse.Namespace, key: PrivateKey, options: dict[str, Any], stop: Stop,
                 output: OutputWriter) -> int:
    node_id = NodeID.from_pubkey(key.public_key)
    out = output.emit
    protocols: list[Protocol] = []
    services: list[Any] = []  # kept alive for the node's lifetime
    for name in (n.strip() for n in args.protocols.split(",")):
        if not name:
            continue
        service, made = create(name, emit=out, node_id=node_id, private_key=key)
        services.append(service)
        protocols.extend(made)
    metrics = options["metrics_addr"]
    async with open_server(protocols=protocols, **options) as server:
        server.metrics.watch_output(output)
        fields: dict[str, Any] = {"enode": server.enode, "enr": server.enr.to_text(), "id": server.id.hex(),
                                  "tcp": server.tcp_port,
                                  "udp": server.discovery.udp_port if server.discovery is not None else None}
        if server.metrics_port is not None:
            fields["metrics"] = f"{metrics[0]}:{server.metrics_port}"
        # Replay: a static peer may have connected while open_server started.
        with server.events(replay=True) as events:
            out("listening", **fields)
            with stop.until_stopped():
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


def check_protocols(text: str) -> None:
    for name in (n.strip() for n in text.split(",")):
        if name:
            try:
                get_factory(name)
            except UnknownProtocol:
                raise BadArgument(f"--protocols: unknown protocol {name!r} "
                                  f"(known: {', '.join(known_protocols())})") from None


def known_protocols() -> list[str]:
    """Every protocol name a node can run: the registered ones and the modules of the
    ``protocols`` package that register themselves when imported."""
    import pkgutil

    import protocols as bundled

    names = set(available())
    for module in pkgutil.iter_modules(bundled.__path__):
        try:
            get_factory(module.name)
        except UnknownProtocol:
            continue
        names.add(module.name)
    return sorted(names)


def run(args: argparse.Namespace) -> int:
    key = load_key(args)
    options = server_options(args, key)
    check_protocols(args.protocols)
    return run_command("node", partial(_main, args, key, options))
