"""Helpers for testing sub-protocols on real nodes over loopback.

    async with connected_pair([my_proto_a], [my_proto_b]) as (a, b):
        conn = a.connection(b.id, "mine")      # a's side of the link, to send from the test
        await conn.send(0, rlp.encode([b"hi"]))

Both nodes listen on 127.0.0.1 with discovery off; ``a`` dials ``b`` once (not as a static
node, so a peer your protocol disconnects stays disconnected).

To drive ``p2p node --json`` (or any program that prints one JSON object a line) from a test:

    async with open_json_process([sys.executable, "-m", "p2p", "node", "--json"]) as node:
        listening = await node.wait_for("listening")
        await node.wait_for("peer_added", id=other_id)

:class:`JsonLinesProcess` reads the events (``next_event()``, ``wait_for(name, **fields)``,
``.events``) and writes lines to stdin (``send_line``); the context manager always kills and
reaps the process.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import trio

from p2p.crypto import PrivateKey
from p2p.enode import NodeID
from p2p.protocol import Protocol
from p2p.server import PeerAdded, PeerRemoved, Server, ServerConfig, ServerEvent, open_server
from p2p.testing.process import JsonLinesProcess, open_json_process

CONNECT_TIMEOUT = 10.0  # seconds for both sides to see the peer: loopback needs far less
LOOPBACK = ("127.0.0.1", 0)  # both servers listen here, on ports the system picks


@asynccontextmanager
async def connected_pair(
    protocols_a: Sequence[Protocol],
    protocols_b: Sequence[Protocol],
    *,
    key_a: PrivateKey | None = None,
    key_b: PrivateKey | None = None,
    timeout: float = CONNECT_TIMEOUT,
    config: ServerConfig | None = None,
) -> AsyncIterator[tuple[Server, Server]]:
    """Two servers on loopback, connected to each other; yields ``(a, b)`` once both have
    added the other as a peer. ``config`` goes to both :func:`p2p.open_server` calls (None:
    the defaults without discovery, so that the pair talks to no one else)."""
    config = config if config is not None else ServerConfig(discovery=False)
    async with open_server(key_a, LOOPBACK, protocols_a, config) as a, \
            open_server(key_b, LOOPBACK, protocols_b, config) as b:
        with b.events() as b_events, trio.fail_after(timeout):
            await a.connect(b.local_node)
            # b adds the peer once it has a's Hello: usually before a returns, not always.
            if not any(p.id == a.id for p in b.peers()):
                await wait_for_event(b_events, lambda e: isinstance(e, PeerAdded) and e.peer.id == a.id)
        yield a, b


async def wait_for_event(events: AsyncIterator[ServerEvent], predicate: Callable[[ServerEvent], bool],
                         timeout: float = math.inf) -> ServerEvent:
    """The first event from ``events`` (a ``server.events()`` subscription) that satisfies
    ``predicate``; raises ``trio.TooSlowError`` after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        async for event in events:
            if predicate(event):
                return event
    raise trio.EndOfChannel("the server stopped")


async def wait_for_peers(server: Server, count: int, timeout: float = CONNECT_TIMEOUT) -> None:
    """Until ``server`` has at least ``count`` peers."""
    with trio.fail_after(timeout):
        while server.peer_count() < count:
            await trio.sleep(0.01)


async def wait_removed(server: Server, node_id: NodeID, timeout: float = CONNECT_TIMEOUT) -> None:
    """Until ``node_id`` is no longer a peer of ``server``."""
    with trio.fail_after(timeout):
        while any(p.id == node_id for p in server.peers()):
            await trio.sleep(0.01)


__all__ = ["JsonLinesProcess", "PeerAdded", "PeerRemoved", "connected_pair", "open_json_process", "wait_for_event",
           "wait_for_peers", "wait_removed"]
