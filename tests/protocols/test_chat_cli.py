"""``p2p chat --json``: three processes in a line, A - B - C; what A types, C prints."""

from __future__ import annotations

import sys
from contextlib import AbstractAsyncContextManager, AsyncExitStack

import trio

from p2p.testing import JsonLinesProcess, open_json_process

DEADLINE = 60.0


def chat_process(nick: str, *args: str) -> AbstractAsyncContextManager[JsonLinesProcess]:
    argv = [sys.executable, "-m", "p2p", "chat", "--json", "--nick", nick, "--nodiscover", "--addr", "127.0.0.1:0", *args]
    return open_json_process(argv, name=f"chat process {nick}")


async def test_line_typed_in_a_appears_in_c() -> None:
    with trio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(chat_process("alice"))
            a_info = await a.wait_for("listening")
            b = await stack.enter_async_context(chat_process("bob", "--staticnodes", a_info["enode"]))
            b_info = await b.wait_for("listening")
            c = await stack.enter_async_context(chat_process("carol", "--staticnodes", b_info["enode"]))
            c_info = await c.wait_for("listening")
            await c.wait_for("peer_added", id=b_info["id"])
            await a.wait_for("peer_added", id=b_info["id"])
            # C is not connected to A: its only peer is B.
            assert all(e.get("id") != a_info["id"] for e in c.events if e["event"] == "peer_added")

            await a.send_line("hello from alice")
            got = await c.wait_for("chat_message")
            assert got["text"] == "hello from alice" and got["nick"] == "alice"
            assert got["from"] == a_info["id"] and len(got["id"]) == 32 and got["time"] > 1e9
            await c.send_line("/peers")
            peers = await c.wait_for("peers")
            assert [p["id"] for p in peers["peers"]] == [b_info["id"]]

            await c.send_line("/quit")
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


async def test_commands_answer_locally_in_json() -> None:
    with trio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(chat_process("alice"))
            a_info = await a.wait_for("listening")
            b = await stack.enter_async_context(chat_process("bob", "--staticnodes", a_info["enode"]))
            b_info = await b.wait_for("listening")
            await a.wait_for("peer_added", id=b_info["id"])

            await a.send_line("/help")
            assert "/nick" in (await a.wait_for("help"))["commands"]
            await a.send_line("/frobnicate now")
            error = await a.wait_for("error")
            assert error["message"].startswith("unknown command /frobnicate")
            await a.send_line("/nick")
            assert await a.wait_for("nick") == {"event": "nick", "nick": "alice"}
            await a.send_line("/nick robert")
            assert await a.wait_for("nick") == {"event": "nick", "nick": "robert", "old": "alice"}
            await a.send_line("/nick " + "x" * 40)
            assert "nick" in (await a.wait_for("error"))["message"]
            await a.send_line("//slash")
            sent = await a.wait_for("chat_sent")
            assert sent["text"] == "/slash"
            assert not any(e["event"] == "chat_sent" for e in a.events[:-1])  # the commands sent nothing

            announce = await b.wait_for("chat_announce", kind="nick")
            assert (announce["nick"], announce["from"]) == ("robert", a_info["id"])
            # A link keeps its order: /frobnicate, had it been sent, would be the first message.
            first = await b.wait_for("chat_message")
            assert (first["text"], first["nick"]) == ("/slash", "robert")
