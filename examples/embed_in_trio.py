"""A devp2p node inside an existing trio program.

The program already has its own work (here a ticker that counts seconds). The node is one
more ``async with`` in its nursery: it starts with the block, runs beside the other tasks,
and stops, with every task it started, when the block ends. A second node started alongside
shows the peer events arriving.
"""

from __future__ import annotations

import sys

import trio

from p2p import PrivateKey, Signer, open_server, ServerConfig
from protocols.chat import ChatService


async def ticker(ticks: list[int], interval: float) -> None:
    """The program's own work, unaware of the node."""
    n = 0
    while True:
        await trio.sleep(interval)
        n += 1
        ticks.append(n)


async def main(duration: float = 1.0) -> dict[str, object]:
    key = PrivateKey.generate()
    chat = ChatService(Signer(key), "embedded")
    ticks: list[int] = []
    events: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker, ticks, duration / 10)
        async with open_server(private_key=key, protocols=[chat.protocol], config=ServerConfig(discovery=False)) as node:
            print(f"node running inside the program: {node.enode}")

            async def watch() -> None:
                async for event in node.events():
                    events.append(type(event).__name__)
                    print(f"node event: {type(event).__name__} {event.peer.id.short()}")

            nursery.start_soon(watch)
            other_key = PrivateKey.generate()
            other = ChatService(Signer(other_key), "other")
            async with open_server(private_key=other_key, protocols=[other.protocol], config=ServerConfig(
                discovery=False, static_nodes=[node.local_node])):
                await trio.sleep(duration)
                peers = len(node.peers())
            await trio.sleep(0.2)  # the other node has left; let its removal arrive
        nursery.cancel_scope.cancel()
    print(f"program ticked {len(ticks)} times while the node ran; node saw {peers} peer(s), events {events}")
    return {"ticks": len(ticks), "peers": peers, "events": events}


if __name__ == "__main__":
    try:
        trio.run(main, float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
    except* KeyboardInterrupt:  # Ctrl-C: leaving the blocks above has stopped the nodes and tasks
        pass
