"""A chat bot: a node that answers chat messages.

It joins a chat network (the nodes given as arguments, or, with no arguments, a second node
it starts itself to talk to), and answers every line that starts with ``!``:

    !ping        -> pong
    !time        -> the bot's clock
    !peers       -> how many peers the bot has
    !echo TEXT   -> TEXT

Run it next to ``p2p chat``:  .venv/bin/python examples/chat_bot.py enode://...@127.0.0.1:30303
"""

from __future__ import annotations

import signal
import sys
import time

import trio

from p2p import Node, PrivateKey, Signer, open_server, ServerConfig
from protocols.chat import ChatService, TextMessage


def answer(msg: TextMessage, bot: ChatService) -> str | None:
    """The bot's reply to a message, or None when it is not a command."""
    command, _, rest = msg.text.strip().partition(" ")
    if command == "!ping":
        return f"pong, {msg.nick}"
    if command == "!time":
        return time.strftime("%Y-%m-%d %H:%M:%S %Z")
    if command == "!peers":
        return f"I have {len(bot.peers())} peer(s)"
    if command == "!echo":
        return rest
    return None


async def serve_bot(bot: ChatService, limit: int | None = None,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> int:
    """Answer messages until cancelled (or ``limit`` answers); returns how many it answered."""
    answered = 0
    with bot.subscribe() as inbox:
        task_status.started()  # subscribed: nothing said from now on is missed
        async for msg in inbox:
            reply = answer(msg, bot)
            if reply is None:
                continue
            await bot.send(reply)
            answered += 1
            print(f"bot: {msg.nick} said {msg.text!r}, answered {reply!r}")
            if limit is not None and answered >= limit:
                break
    return answered


async def demo() -> list[str]:
    """Start the bot and a user node connected to it; the user asks three things."""
    bot_key, user_key = PrivateKey.generate(), PrivateKey.generate()
    bot = ChatService(Signer(bot_key), "bot")
    user = ChatService(Signer(user_key), "user")
    replies: list[str] = []
    async with open_server(private_key=bot_key, protocols=[bot.protocol], config=ServerConfig(discovery=False)) as bot_node, \
            open_server(private_key=user_key, protocols=[user.protocol], config=ServerConfig(
                discovery=False, static_nodes=[bot_node.local_node])):
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_bot, bot, 3)
                with user.subscribe() as inbox:
                    while not user.peers():
                        await trio.sleep(0.05)
                    for line in ("!ping", "hello everyone", "!echo hi there", "!peers"):
                        await user.send(line)
                    while len(replies) < 3:
                        replies.append((await inbox.receive()).text)
    print(f"user got {len(replies)} answers: {replies}")
    return replies


async def main(enodes: list[str]) -> None:
    key = PrivateKey.generate()
    bot = ChatService(Signer(key), "bot")
    nodes = [Node.from_url(url) for url in enodes]
    async with open_server(private_key=key, protocols=[bot.protocol], config=ServerConfig(
        static_nodes=nodes, discovery=False)) as server:
        print(f"bot listening on {server.enode}", flush=True)
        # Ctrl-C or SIGTERM ends the answering only: the bot then says goodbye to the chat, and
        # leaving the ``async with`` sends every peer a Disconnect.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_bot, bot)
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()
        await bot.leave()
    print("bot left", flush=True)


if __name__ == "__main__":
    try:
        if len(sys.argv) > 1:
            trio.run(main, sys.argv[1:])
        else:
            trio.run(demo)
    except* KeyboardInterrupt:  # a Ctrl-C that came before the handler above was in place
        pass
