"""``p2p chat --json``: three processes in a line, A - B - C; what A types, C prints."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

DEADLINE = 60.0


class ChatProcess:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buf = b""
        self.events: list[dict[str, Any]] = []

    async def next_event(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self._buf:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                raise AssertionError(f"chat process exited; events so far: {self.events}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        event: dict[str, Any] = json.loads(line)
        self.events.append(event)
        return event

    async def wait_for(self, name: str, **match: Any) -> dict[str, Any]:
        while True:
            event = await self.next_event()
            if event["event"] == name and all(event.get(k) == v for k, v in match.items()):
                return event

    async def type(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")


@asynccontextmanager
async def chat_process(stack: AsyncExitStack, nick: str, *args: str) -> AsyncIterator[ChatProcess]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "p2p", "chat", "--json", "--nick", nick, "--nodiscover",
         "--addr", "127.0.0.1:0", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        yield ChatProcess(process)
    finally:
        process.kill()
        with trio.move_on_after(5):
            await process.wait()


async def test_line_typed_in_a_appears_in_c() -> None:
    with trio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(chat_process(stack, "alice"))
            a_info = await a.wait_for("listening")
            b = await stack.enter_async_context(chat_process(stack, "bob", "--staticnodes", a_info["enode"]))
            b_info = await b.wait_for("listening")
            c = await stack.enter_async_context(chat_process(stack, "carol", "--staticnodes", b_info["enode"]))
            c_info = await c.wait_for("listening")
            await c.wait_for("peer_added", id=b_info["id"])
            await a.wait_for("peer_added", id=b_info["id"])
            # C is not connected to A: its only peer is B.
            assert all(e.get("id") != a_info["id"] for e in c.events if e["event"] == "peer_added")

            await a.type("hello from alice")
            got = await c.wait_for("chat_message")
            assert got["text"] == "hello from alice" and got["nick"] == "alice"
            assert got["from"] == a_info["id"] and len(got["id"]) == 32 and got["time"] > 1e9
            await c.type("/peers")
            peers = await c.wait_for("peers")
            assert [p["id"] for p in peers["peers"]] == [b_info["id"]]

            await c.type("/quit")
            assert c.process.stdin is not None
            with trio.fail_after(10):
                code = await c.process.wait()
            assert code == 0
            removed = await b.wait_for("peer_removed", id=c_info["id"])
            assert removed["reason"] in ("client_quitting", "requested")

            # End of input leaves as /quit does.
            assert a.process.stdin is not None
            await a.process.stdin.aclose()
            with trio.fail_after(10):
                assert await a.process.wait() == 0
