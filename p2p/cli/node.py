"""``p2p node``: run a full node (RLPx listener, discovery, dialer, sub-protocols) until Ctrl-C.

With ``--json`` every line of stdout is one JSON object: first ``listening`` (``enode``,
``enr``), then ``peer_added`` / ``peer_removed`` and the sub-protocols' own events.

``--dns enrtree://KEY@DOMAIN`` (repeatable) adds the nodes of an EIP-1459 DNS tree to what the
dialer picks from, mixed fairly with discovery's; with ``--nodiscover`` they are all it dials.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from p2p.cli._args import BadArgument, CommandFailed, ServerOptions, add_node_arguments, load_key, parse_hostport, \
    server_options, subcommand
from p2p.cli._run import Stop, run_command
from p2p.cli._writer import OUTPUT_QUEUE, OutputWriter, open_output, queue_size
from p2p.crypto import PrivateKey
from p2p.disconnect import DisconnectReason
from p2p.enode import Node, Signer
from p2p.enode.iter import NodeIterator
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
    p.add_argument("--dns", action="append", default=[], metavar="enrtree://KEY@DOMAIN",
                   help="also dial nodes of this EIP-1459 DNS tree (repeatable); works with --nodiscover")
    p.add_argument("--dns-server", type=_dns_server, metavar="HOST:PORT",
                   help="DNS server that --dns asks (default: the system's first name server)")
    p.add_argument("--output-queue", type=queue_size, default=OUTPUT_QUEUE, metavar="LINES",
                   help=f"lines of stdout held for a slow reader before they are dropped (default {OUTPUT_QUEUE})")
    p.set_defaults(func=run)


def _dns_server(text: str) -> tuple[str, int]:
    try:
        return parse_hostport(text, flag="--dns-server")
    except BadArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _reason(reason: DisconnectReason | int) -> str:
    return reason.name.lower() if isinstance(reason, DisconnectReason) else str(reason)


async def _main(args: argparse.Namespace, key: PrivateKey, options: ServerOptions, stop: Stop) -> int:
    # stdout goes through a bounded queue: a reader that pauses loses lines, the node nothing.
    async with open_output(as_json=args.json, limit=args.output_queue) as output:
        return await _serve(args, key, options, stop, output)


async def _serve(args: argparse.Namespace, key: PrivateKey, options: ServerOptions, stop: Stop,
                 output: OutputWriter) -> int:
    signer = Signer(key)
    node_id = signer.node_id
    out = output.emit
    protocols: list[Protocol] = []
    services: list[Any] = []  # kept alive for the node's lifetime
    for name in (n.strip() for n in args.protocols.split(",")):
        if not name:
            continue
        service, made = create(name, emit=out, node_id=node_id, signer=signer)
        services.append(service)
        protocols.extend(made)
    metrics = options.config.metrics_addr
    client, factory = default_dns_factory(args.dns_server) if args.dns else (None, None)
    sources = dns_sources(args.dns, factory) if factory is not None else []
    config = replace(options.config, node_sources=sources)
    async with open_server(options.private_key, options.listen, protocols, config) as server:
        if client is not None:
            server.metrics.watch_dnsdisc(client)
        server.metrics.watch_output(output)
        fields: dict[str, Any] = {"enode": server.enode, "enr": server.enr.to_text(), "id": server.id.hex(),
                                  "tcp": server.tcp_port,
                                  "udp": server.discovery.udp_port if server.discovery is not None else None}
        if server.metrics_port is not None and metrics is not None:
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


MAX_DNS_TREES = 16  # --dns flags: each is a mix source with its own walk over DNS

# Makes the node iterator of one ``enrtree://`` URL (p2p.dnsdisc's, unless a test swaps it).
DnsFactory = Callable[[str], NodeIterator]


def check_dns_url(url: str) -> None:
    """``enrtree://<base32 compressed public key>@<domain>`` (EIP-1459), or BadArgument."""
    from p2p.dnsdisc import URLError, parse_url

    try:
        parse_url(url)
    except URLError as exc:
        raise BadArgument(f"--dns {url}: {exc}") from None


def check_dns(urls: Sequence[str]) -> None:
    if len(urls) > MAX_DNS_TREES:
        raise BadArgument(f"--dns: at most {MAX_DNS_TREES} trees, got {len(urls)}")
    for url in urls:
        check_dns_url(url)


def default_dns_factory(server: tuple[str, int] | None) -> tuple[Any, DnsFactory]:
    """One p2p.dnsdisc client (one rate limit and cache for every tree, asking ``server`` or
    the system's name server) and the iterator of a tree URL through it."""
    from p2p.dnsdisc import DNSClient, DNSDiscError

    try:
        client = DNSClient(server=server)
    except DNSDiscError as exc:
        raise CommandFailed(f"--dns: {exc}") from None
    return client, lambda url: client.iterator([url])


def dns_sources(urls: Sequence[str], factory: DnsFactory) -> list[NodeIterator]:
    """One node source per ``--dns`` tree, named by its URL's domain."""
    sources = []
    for url in urls:
        it = factory(url)
        if not getattr(it, "name", None):
            it = _Named(it, "dns:" + url.rpartition("@")[2])
        sources.append(it)
    return sources


class _Named:
    """A source with a name for the mix's statistics and logs."""

    def __init__(self, it: NodeIterator, name: str) -> None:
        self.it = it
        self.name = name

    def __aiter__(self) -> "_Named":
        return self

    async def __anext__(self) -> Node:
        return await self.it.__anext__()

    async def aclose(self) -> None:
        await self.it.aclose()


def run(args: argparse.Namespace) -> int:
    key = load_key(args)
    options = server_options(args, key)
    check_protocols(args.protocols)
    check_dns(args.dns)
    return run_command("node", partial(_main, args, key, options))
