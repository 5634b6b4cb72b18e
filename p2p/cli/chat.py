"""``p2p chat``: an interactive terminal chat over the chat protocol.

Lines typed are sent to the whole network; received lines show the sender's nick and time.
``/peers`` lists the peers, ``/nick NAME`` changes the nick, ``/quit`` (or end of input)
leaves cleanly. With ``--json``, stdin lines are sent as they are and stdout carries the same
events as ``p2p node --json`` plus ``chat_message`` (id, from, nick, text, time).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

import trio

from p2p import PeerAdded, PeerRemoved, PrivateKey, Server, open_server
from p2p.cli import _output
from p2p.cli._args import BadArgument, add_key_arguments, load_key, parse_enode_list, parse_hostport
from protocols.chat.messages import MAX_TEXT_BYTES
from protocols.chat.service import ChatService

MAX_LINE_BYTES = MAX_TEXT_BYTES  # a longer stdin line is cut, never buffered whole
READ_CHUNK = 4096  # bytes per read of stdin


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("chat", help="interactive chat over the chat protocol",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nick", required=True, help="the name others see (1-32 bytes)")
    add_node_arguments(parser)
    parser.set_defaults(func=run)


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """The node flags ``p2p chat`` shares with ``p2p node``."""
    add_key_arguments(parser, hex_help="node key as hex",
                      file_help="node key file (hex); without a key option a new key is made")
    parser.add_argument("--addr", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="TCP and UDP listen address (default %(default)s: loopback, any free port)")
    parser.add_argument("--bootnodes", default="", metavar="ENODES", help="comma-separated enode URLs for discovery")
    parser.add_argument("--staticnodes", default="", metavar="ENODES",
                        help="comma-separated enode URLs to stay connected to")
    parser.add_argument("--maxpeers", type=int, default=50, help="peer limit (default %(default)s)")
    parser.add_argument("--nodiscover", action="store_true", help="no discovery: only static nodes and inbound peers")
    parser.add_argument("--nodedb", metavar="PATH", help="node database directory (default: in memory)")
    parser.add_argument("--json", action="store_true", help="JSON events on stdout, one per line")


def server_options(args: argparse.Namespace, key: PrivateKey) -> dict[str, Any]:
    return {"private_key": key, "listen": parse_hostport(args.addr),
            "bootnodes": parse_enode_list(args.bootnodes, "bootnode"),
            "static_nodes": parse_enode_list(args.staticnodes, "static node"),
            "max_peers": args.maxpeers, "discovery": not args.nodiscover, "node_db_path": args.nodedb}


async def _report_events(server: Server, printer: "_Printer", chat: ChatService) -> None:
    with server.events() as events:
        async for event in events:
            peer = event.peer
            if isinstance(event, PeerAdded):
                if printer.json:
                    _output.emit("peer_added", id=peer.id.hex(), client=peer.client,
                                 caps=[str(c) for c in peer.caps], inbound=peer.inbound,
                                 remote=f"{peer.remote[0]}:{peer.remote[1]}")
                else:
                    printer.line(f"* peer {peer.id.short()} joined ({peer.client}, {peer.remote[0]}:{peer.remote[1]})")
            elif isinstance(event, PeerRemoved):
                reason = event.reason.name.lower() if hasattr(event.reason, "name") else str(event.reason)
                if printer.json:
                    _output.emit("peer_removed", id=peer.id.hex(), reason=reason,
                                 remote_requested=event.remote_requested)
                else:
                    nick = chat.nick_of(peer.id) or peer.id.short()
                    printer.line(f"* {nick} left ({reason.replace('_', ' ')})")


def run(args: argparse.Namespace) -> int:
    try:
        key = load_key(args)
        options = server_options(args, key)
    except BadArgument as exc:
        print(f"p2p chat: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(_main, args, key, options)
    except KeyboardInterrupt:
        return 130
    return 0


class _Printer:
    """Human-readable output, or JSON events with ``--json``."""

    def __init__(self, json_mode: bool, chat: "ChatService | None" = None) -> None:
        self.json = json_mode
        self.chat = chat

    def event(self, event: str, **fields: Any) -> None:
        if self.json:
            _output.emit(event, **fields)
            return
        if event == "chat_message":
            stamp = time.strftime("%H:%M:%S", time.localtime(float(fields["time"])))
            self.line(f"[{stamp}] <{fields['nick']}> {fields['text']}")
        elif event == "chat_announce":
            verb = {"join": "joined", "leave": "left", "nick": "is now known as"}.get(str(fields["kind"]), "")
            if fields["kind"] == "nick":
                self.line(f"* {fields['from'][:16]} is now known as {fields['nick']}")
            else:
                self.line(f"* {fields['nick']} {verb} the chat")

    def line(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


async def _read_lines(send: trio.MemorySendChannel[str]) -> None:
    """stdin lines into ``send``. A thread does the blocking read, on the raw descriptor: a
    thread left blocked in ``sys.stdin`` would hold its buffer's lock at interpreter exit."""
    fd = sys.stdin.fileno()
    pending = b""
    async with send:
        while True:
            chunk = await trio.to_thread.run_sync(os.read, fd, READ_CHUNK, abandon_on_cancel=True)
            if not chunk:
                if pending:
                    await send.send(pending.decode("utf-8", errors="replace"))
                await send.send("/quit")  # end of input leaves, as /quit does
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                await send.send(raw.decode("utf-8", errors="replace").rstrip("\r"))
            pending = pending[-MAX_LINE_BYTES:]  # an endless line is cut, never buffered whole


async def _main(args: argparse.Namespace, key: PrivateKey, options: dict[str, Any]) -> None:
    printer = _Printer(args.json)
    chat = ChatService(key, args.nick, emit=printer.event)
    printer.chat = chat
    async with open_server(**options, protocols=[chat.protocol]) as server:
        if args.json:
            # The same fields as ``p2p node --json``, plus the nick.
            _output.emit("listening", enode=server.enode, enr=server.enr.to_text(), id=server.id.hex(),
                         tcp=server.tcp_port,
                         udp=server.discovery.udp_port if server.discovery is not None else None,
                         nick=chat.nick)
        if not args.json:
            printer.line(f"chatting as {chat.nick} on {server.enode}")
            printer.line("type a line to send it; /peers lists peers, /quit leaves")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_report_events, server, printer, chat)
            send, lines = trio.open_memory_channel[str](16)
            nursery.start_soon(_read_lines, send)
            nursery.start_soon(_quit_on_signal, send.clone())
            async with lines:
                async for line in lines:
                    if not await _command(line, chat, printer):
                        break
            await chat.leave()
            nursery.cancel_scope.cancel()


async def _quit_on_signal(send: trio.MemorySendChannel[str]) -> None:
    """SIGTERM leaves as /quit does: the network hears that we go."""
    async with send:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                await send.send("/quit")
                return


async def _command(line: str, chat: ChatService, printer: _Printer) -> bool:
    """Handle one input line; False when the user leaves."""
    if not line.strip():
        return True
    if line.strip() == "/quit":
        return False
    if line.strip() == "/peers":
        peers = chat.peers()
        if printer.json:
            _output.emit("peers", peers=[{"id": p.info.id.hex(), "nick": p.nick, "enode": p.info.enode}
                                         for p in peers])
        else:
            printer.line(f"{len(peers)} peer(s)")
            for p in peers:
                printer.line(f"  {p.nick or '?':<16} {p.info.id.short()} {p.info.remote[0]}:{p.info.remote[1]}")
        return True
    if line.startswith("/nick "):
        try:
            await chat.set_nick(line[6:].strip())
        except ValueError as exc:
            printer.line(f"! {exc}")
        return True
    text = line.encode()[:MAX_TEXT_BYTES].decode("utf-8", errors="ignore")
    msg = await chat.send(text)
    if printer.json:
        _output.emit("chat_sent", id=msg.id.hex(), text=msg.text, time=msg.timestamp / 1000)
    return True
