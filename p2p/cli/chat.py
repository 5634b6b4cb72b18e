"""``p2p chat``: an interactive terminal chat over the chat protocol.

Lines typed are sent to the whole network; received lines show the sender's nick and time.
``/peers`` lists the peers, ``/nick NAME`` changes the nick, ``/quit`` (or end of input)
leaves cleanly. With ``--json``, stdin lines are sent as they are and stdout carries the same
events as ``p2p node --json`` plus ``chat_message`` (id, from, nick, text, time).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from typing import Any

import trio

from p2p import NodeID, PeerAdded, PeerRemoved, PrivateKey, Server, open_server
from p2p.cli import _output
from p2p.cli._args import add_node_arguments, load_key, server_options, subcommand
from p2p.cli._run import Stop, run_command
from protocols.chat.messages import MAX_NICK_BYTES, MAX_TEXT_BYTES
from protocols.chat.service import ChatService

MAX_LINE_BYTES = MAX_TEXT_BYTES  # a longer stdin line is cut, never buffered whole
READ_CHUNK = 4096  # bytes per read of stdin


def register(subparsers: Any) -> None:
    parser = subcommand(subparsers, "chat", help="interactive chat over the chat protocol", doc=__doc__)
    parser.add_argument("--nick", required=True, type=nick, metavar="NAME",
                        help=f"the name others see (1-{MAX_NICK_BYTES} bytes of UTF-8)")
    add_node_arguments(parser, default_addr="127.0.0.1:0")
    parser.set_defaults(func=run)


def nick(text: str) -> str:
    size = len(text.encode())
    if not text.strip() or size > MAX_NICK_BYTES:
        raise argparse.ArgumentTypeError(f"a nick is 1 to {MAX_NICK_BYTES} bytes, got {size}: {text!r}")
    return text


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
    key = load_key(args)
    options = server_options(args, key)
    return run_command("chat", partial(_main, args, key, options))


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


async def _main(args: argparse.Namespace, key: PrivateKey, options: dict[str, Any], stop: Stop) -> None:
    printer = _Printer(args.json)
    chat = ChatService(NodeID.from_pubkey(key.public_key), args.nick, emit=printer.event)
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
            async with lines:  # open until the end: the reader may still send after a signal
                with stop.until_stopped():  # a signal leaves as /quit does: the network hears that we go
                    async for line in lines:
                        if not await _command(line, chat, printer):
                            break
                await chat.leave()
                nursery.cancel_scope.cancel()


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
