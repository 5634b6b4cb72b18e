"""``p2p chat`` at a terminal (a real pty): incoming lines land above the prompt and leave what is
being typed intact; commands stay local; nicks are shown and confirmed; Ctrl-D leaves."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from p2p import PrivateKey, Signer, open_server, ServerConfig
from protocols.chat.messages import TextMessage
from protocols.chat.service import ChatService

DEADLINE = 30.0
WAIT = 10.0  # seconds for one expected piece of screen output: a start-up takes about 1 s
ROWS, COLS = 40, 160
# Terminal control sequences (CSI ..., ESC x) and carriage returns: what is left is the text shown.
_CONTROL = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|\r")


class Terminal:
    """A child process on a pty: type into it, wait for text on its screen."""

    def __init__(self, process: trio.Process, master: trio.lowlevel.FdStream) -> None:
        self.process = process
        self._master = master
        self._raw = b""
        self._seen = 0  # expect() looks for text after the end of its previous match

    @property
    def text(self) -> str:
        return _CONTROL.sub(b"", self._raw).decode(errors="replace")

    async def expect(self, wanted: str) -> str:
        """The screen output from the previous match to the end of ``wanted``."""
        with trio.fail_after(WAIT):
            while wanted not in self.text[self._seen:]:
                try:
                    chunk = await self._master.receive_some(4096)
                except trio.BrokenResourceError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{wanted!r} never shown; the screen: {self.text!r}")
                self._raw += chunk
        end = self.text.index(wanted, self._seen) + len(wanted)
        shown, self._seen = self.text[self._seen:end], end
        return shown

    async def type(self, keys: str) -> None:
        await self._master.send_all(keys.encode())

    def cooked(self) -> bool:
        """Whether the terminal is in line mode (as a shell wants it), not the prompt's raw mode."""
        return bool(termios.tcgetattr(self._master.fileno())[3] & termios.ICANON)


@asynccontextmanager
async def chat_terminal(nick: str, *args: str) -> AsyncIterator[Terminal]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    # No cursor-position requests: nothing on this pty would answer them.
    env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    argv = [sys.executable, "-m", "p2p", "chat", "--nick", nick, "--nodiscover", "--addr", "127.0.0.1:0", *args]
    try:
        process = await trio.lowlevel.open_process(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                                   start_new_session=True)
    finally:
        os.close(slave)
    stream = trio.lowlevel.FdStream(master)  # owns master from now on
    try:
        yield Terminal(process, stream)
    finally:
        process.kill()
        with trio.move_on_after(5) as scope:
            scope.shield = True
            await process.wait()
        await stream.aclose()


def _chat(nick: str) -> tuple[PrivateKey, ChatService]:
    key = PrivateKey.generate()
    return key, ChatService(Signer(key), nick)


async def _leave_with_ctrl_d(term: Terminal) -> None:
    await term.type("\x04")
    with trio.fail_after(WAIT):
        assert await term.process.wait() == 0


async def test_incoming_line_lands_above_what_is_being_typed() -> None:
    key, bob = _chat("bob")
    with trio.fail_after(DEADLINE):
        async with open_server(key, ("127.0.0.1", 0), [bob.protocol], config=ServerConfig(discovery=False)) as server:
            with bob.subscribe() as received:
                async with chat_terminal("alice", "--staticnodes", server.enode) as alice:
                    # The newcomer sees who is there, with the ID its enode URL shows.
                    await alice.expect(f"connected to bob (id {server.enode[8:24]}")
                    await alice.expect("alice>")
                    await alice.type("hel")
                    await alice.expect("hel")
                    await bob.send("incoming!")
                    await alice.expect("<bob> incoming!")
                    # The prompt and the half-typed line are drawn again below the incoming one.
                    redrawn = await alice.expect("alice> hel")
                    assert "incoming!" not in redrawn
                    await alice.type("lo\r")
                    with trio.fail_after(WAIT):
                        msg: TextMessage = await received.receive()
                    assert (msg.text, msg.nick) == ("hello", "alice")
                    await alice.expect("alice> hello")  # the line as sent, then the next prompt:
                    await alice.expect("alice>")  # Ctrl-D must reach that prompt, not the tty driver
                    await _leave_with_ctrl_d(alice)


async def test_commands_stay_local_and_nicks_are_confirmed() -> None:
    with trio.fail_after(DEADLINE):
        async with chat_terminal("alice") as alice:
            enode = (await alice.expect("@127.0.0.1:")).split(" on ")[-1] + (await alice.expect("\n")).strip()
            await alice.expect("alice>")
            async with chat_terminal("bob", "--staticnodes", enode) as bob:
                await bob.expect(f"connected to alice (id {enode[8:24]}")
                await alice.expect("bob joined the chat")
                await alice.expect("alice>")

                await alice.type("/help\r")
                assert "/nick" in await alice.expect("/quit")
                await alice.type("/frobnicate now\r")
                await alice.expect("unknown command /frobnicate (not sent)")
                await alice.type("/nick\r")
                await alice.expect("you are alice")
                await alice.type("/nick robert\r")
                await alice.expect("you are now known as robert (was alice)")
                await alice.expect("robert>")
                await alice.type("after\r")

                await bob.expect("alice is now known as robert")
                await bob.expect("<robert> after")
                # Gossip keeps a link's order: had /frobnicate been sent, it would have come first.
                assert "frobnicate" not in bob.text
                await bob.expect("bob>")
                await _leave_with_ctrl_d(bob)
                await alice.expect("bob left")


async def test_sigterm_leaves_and_hands_the_terminal_back() -> None:
    with trio.fail_after(DEADLINE):
        async with chat_terminal("alice") as alice:
            await alice.expect("alice>")
            assert not alice.cooked()
            alice.process.terminate()
            with trio.fail_after(WAIT):
                assert await alice.process.wait() == 0
            assert alice.cooked()


def test_without_a_terminal_prompt_toolkit_is_not_loaded() -> None:
    code = ("import sys, p2p.cli; p2p.cli.build_parser(); import p2p.cli.chat, p2p.cli.node; "
            "sys.exit('prompt_toolkit' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=WAIT * 3).returncode == 0
