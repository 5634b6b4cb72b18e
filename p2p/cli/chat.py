"""``p2p chat``: an interactive terminal chat over the chat protocol.

Lines typed are sent to the whole network; received lines show the sender's nick and time.
At a terminal, typing happens at a prompt with line editing and history, and incoming lines
appear above it. ``/help`` lists the commands: ``/peers`` lists the peers, ``/nick`` shows the
nick and ``/nick NAME`` changes it, ``/quit`` (or end of input, Ctrl-D) leaves cleanly; any
other ``/command`` is refused here, never sent (``//`` sends a line starting with ``/``). With
``--json``, stdin lines are handled the same way and stdout carries the same events as
``p2p node --json`` plus ``chat_message``, ``chat_announce``, ``chat_sent``, ``peers``,
``nick``, ``help`` and ``error`` (see docs/cli.md).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import OrderedDict
from functools import partial
from typing import Any

import trio

from p2p import PeerAdded, PeerInfo, PeerRemoved, PrivateKey, Server, Signer, open_server
from p2p.cli._args import ServerOptions, add_node_arguments, load_key, server_options, subcommand
from p2p.cli._chatui import ChatPrompt
from p2p.cli._run import Stop, run_command
from p2p.cli._writer import OUTPUT_QUEUE, OutputWriter, open_output, queue_size
from protocols.chat.messages import MAX_NICK_BYTES, MAX_TEXT_BYTES
from protocols.chat.service import MAX_KNOWN_NICKS, ChatService

MAX_LINE_BYTES = MAX_TEXT_BYTES  # a longer stdin line is cut, never buffered whole
READ_CHUNK = 4096  # bytes per read of stdin
NICK_WAIT = 2.0  # seconds a new peer's nick may take to arrive (its first message, on loopback ~1 ms)
NICK_POLL = 0.05  # seconds between looks for it
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1 control characters


def register(subparsers: Any) -> None:
    parser = subcommand(subparsers, "chat", help="interactive chat over the chat protocol", doc=__doc__)
    parser.add_argument("--nick", required=True, type=nick, metavar="NAME",
                        help=f"the name others see (1-{MAX_NICK_BYTES} bytes of UTF-8)")
    add_node_arguments(parser, default_addr="127.0.0.1:0")
    parser.add_argument("--output-queue", type=queue_size, default=OUTPUT_QUEUE, metavar="LINES",
                        help=f"lines of stdout held for a slow reader before they are dropped (default {OUTPUT_QUEUE})")
    parser.set_defaults(func=run)


def nick(text: str) -> str:
    size = len(text.encode())
    if not text.strip() or size > MAX_NICK_BYTES:
        raise argparse.ArgumentTypeError(f"a nick is 1 to {MAX_NICK_BYTES} bytes, got {size}: {text!r}")
    return text


async def _report_events(server: Server, printer: "_Printer", chat: ChatService, nursery: trio.Nursery) -> None:
    with server.events(replay=True) as events:  # static peers may be connected already
        async for event in events:
            peer = event.peer
            if isinstance(event, PeerAdded):
                if printer.json:
                    printer.emit("peer_added", id=peer.id.hex(), client=peer.client,
                                 caps=[str(c) for c in peer.caps], inbound=peer.inbound,
                                 remote=f"{peer.remote[0]}:{peer.remote[1]}")
                else:
                    nursery.start_soon(_show_connected, peer, printer, chat)
            elif isinstance(event, PeerRemoved):
                reason = event.reason.name.lower() if hasattr(event.reason, "name") else str(event.reason)
                if printer.json:
                    printer.emit("peer_removed", id=peer.id.hex(), reason=reason,
                                 remote_requested=event.remote_requested)
                else:
                    nick = chat.nick_of(peer.id) or short_id(peer.enode)
                    printer.line(f"* {nick} left ({reason.replace('_', ' ')})")


async def _show_connected(peer: PeerInfo, printer: "_Printer", chat: ChatService) -> None:
    """``* connected to NICK (...)`` once the peer's first announcement (sent on connect)
    has told its nick: a newcomer learns who is already there."""
    with trio.move_on_after(NICK_WAIT):
        while chat.nick_of(peer.id) is None:
            await trio.sleep(NICK_POLL)
    nick = chat.nick_of(peer.id)
    if nick is not None:
        printer.remember(peer.id.hex(), nick)
    printer.line(f"* connected to {nick or '?'} (id {short_id(peer.enode)}, {peer.client}, "
                 f"{peer.remote[0]}:{peer.remote[1]})")


def run(args: argparse.Namespace) -> int:
    key = load_key(args)
    options = server_options(args, key)
    return run_command("chat", partial(_main, args, key, options))


class _Printer:
    """Human-readable output, or JSON events with ``--json``, through the bounded output queue.

    It remembers the nicks it has shown, so that a nick change can say what the old one was
    (the chat service only knows the new one by then)."""

    output: OutputWriter  # set once the output is open

    def __init__(self, json_mode: bool, chat: "ChatService | None" = None) -> None:
        self.json = json_mode
        self.chat = chat
        self._nicks: OrderedDict[str, str] = OrderedDict()  # node ID hex -> last nick shown

    def remember(self, node_id: str, nick: str) -> str | None:
        """Note ``nick`` for ``node_id``; the nick it had before, if known."""
        old = self._nicks.pop(node_id, None)
        self._nicks[node_id] = nick
        while len(self._nicks) > MAX_KNOWN_NICKS:
            self._nicks.popitem(last=False)
        return old

    def event(self, event: str, **fields: Any) -> None:
        old = self.remember(str(fields["from"]), str(fields["nick"])) if "from" in fields else None
        if self.json:
            self.output.emit(event, **fields)
            return
        if event == "chat_message":
            stamp = time.strftime("%H:%M:%S", time.localtime(float(fields["time"])))
            self.line(f"[{stamp}] <{fields['nick']}> {fields['text']}")
        elif event == "chat_announce":
            kind = str(fields["kind"])
            if kind == "nick":
                if old != fields["nick"]:
                    self.line(f"* {old or 'a peer'} is now known as {fields['nick']}")
            else:
                verb = {"join": "joined", "leave": "left"}.get(kind, kind)
                self.line(f"* {fields['nick']} {verb} the chat")

    def emit(self, event: str, **fields: Any) -> None:
        self.output.emit(event, **fields)

    def line(self, text: str) -> None:
        # A peer's nick or text must not drive our terminal: control characters are shown as such.
        self.output.line(_CONTROL.sub("\ufffd", text))

    def error(self, message: str) -> None:
        if self.json:
            self.output.emit("error", message=message)
        else:
            self.line(f"! {message}")


def short_id(enode: str) -> str:
    """The start of the node's public key as its enode URL spells it, so that the IDs shown
    can be matched with enode URLs (the node ID proper is a hash of that key)."""
    return enode.removeprefix("enode://").split("@", 1)[0][:16]


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


async def _main(args: argparse.Namespace, key: PrivateKey, options: ServerOptions, stop: Stop) -> None:
    printer = _Printer(args.json)
    chat = ChatService(Signer(key), args.nick, emit=printer.event)
    printer.chat = chat
    # A prompt only for a person at a terminal; a pipe (scripts, --json) reads lines as they come.
    prompt = None
    if not args.json and sys.stdin.isatty() and sys.stdout.isatty():
        prompt = ChatPrompt(lambda: f"{chat.nick}> ")
    async with open_output(as_json=args.json, limit=args.output_queue,
                           sink=prompt.print_above if prompt is not None else None) as printer.output:
        await _serve(args, options, printer, chat, prompt, stop)


async def _serve(args: argparse.Namespace, options: ServerOptions, printer: _Printer, chat: ChatService,
                 prompt: ChatPrompt | None, stop: Stop) -> None:
    async with open_server(options.private_key, options.listen, [chat.protocol], options.config) as server:
        server.metrics.watch_output(printer.output)
        if args.json:
            # The same fields as ``p2p node --json``, plus the nick.
            printer.emit("listening", enode=server.enode, enr=server.enr.to_text(), id=server.id.hex(),
                         tcp=server.tcp_port,
                         udp=server.discovery.udp_port if server.discovery is not None else None,
                         nick=chat.nick)
        if not args.json:
            printer.line(f"chatting as {chat.nick} (id {short_id(server.enode)}) on {server.enode}")
            printer.line("type a line to send it; /help lists the commands")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_report_events, server, printer, chat, nursery)
            send, lines = trio.open_memory_channel[str](16)
            if prompt is not None:
                nursery.start_soon(prompt.run, send)
            else:
                nursery.start_soon(_read_lines, send)
            async with lines:  # open until the end: the reader may still send after a signal
                with stop.until_stopped():  # a signal leaves as /quit does: the network hears that we go
                    async for line in lines:
                        if not await _command(line, chat, printer):
                            break
                await chat.leave()
                nursery.cancel_scope.cancel()


COMMANDS = {
    "/help": "this list",
    "/peers": "the connected peers, their nicks and IDs",
    "/nick": "show your nick; /nick NAME changes it",
    "/quit": "leave the chat (so do Ctrl-D and end of input)",
    "//TEXT": "send TEXT starting with a single /",
}


async def _command(line: str, chat: ChatService, printer: _Printer) -> bool:
    """Handle one input line; False when the user leaves. A line starting with ``/`` is a
    command, shown or refused here and never sent to the network (``//`` sends a ``/``)."""
    if not line.strip():
        return True
    command, _, rest = line.strip().partition(" ")
    if line.startswith("//"):
        line = line[1:]
    elif command == "/quit":
        return False
    elif command == "/help":
        if printer.json:
            printer.emit("help", commands=COMMANDS)
        else:
            for name, what in COMMANDS.items():
                printer.line(f"  {name:<8} {what}")
        return True
    elif command == "/peers":
        peers = chat.peers()
        if printer.json:
            printer.emit("peers", peers=[{"id": p.info.id.hex(), "nick": p.nick, "enode": p.info.enode}
                                        for p in peers])
        else:
            printer.line(f"{len(peers)} peer(s)")
            for p in peers:
                printer.line(f"  {p.nick or '?':<16} {short_id(p.info.enode)} {p.info.remote[0]}:{p.info.remote[1]}")
        return True
    elif command == "/nick":
        await _nick(rest.strip(), chat, printer)
        return True
    elif command.startswith("/"):
        printer.error(f"unknown command {command} (not sent); /help lists the commands")
        return True
    text = line.encode()[:MAX_TEXT_BYTES].decode("utf-8", errors="ignore")
    msg = await chat.send(text)
    if printer.json:
        printer.emit("chat_sent", id=msg.id.hex(), text=msg.text, time=msg.timestamp / 1000)
    return True


async def _nick(new: str, chat: ChatService, printer: _Printer) -> None:
    old = chat.nick
    if not new:
        if printer.json:
            printer.emit("nick", nick=old)
        else:
            printer.line(f"* you are {old}")
        return
    try:
        await chat.set_nick(new)
    except ValueError as exc:
        printer.error(str(exc))
        return
    if printer.json:
        printer.emit("nick", nick=chat.nick, old=old)
    else:
        printer.line(f"* you are now known as {chat.nick} (was {old})")
