"""Peers for benchmarks of the path a sub-protocol author uses: :class:`p2p.protocol.Protocol`
handlers and ``ProtocolConn.send``, over RLPx between two processes.

The ``bench`` protocol (version 1, three codes, as its two-code ethereumjs namesake plus a
report): 0 carries data, 1 asks for the receiver's counts and 2 answers with
``json {"count", "bytes", "cpu_ns"}`` (messages and payload bytes since the last question, and
the receiver process's CPU nanoseconds since then), after which counting starts anew. Both
sides run the whole peer layer (Hello, capability offsets, dispatch, ping), as a node does.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from p2p.crypto import PrivateKey, PublicKey
from p2p.enode import NodeID
from p2p.hello import match_capabilities
from p2p.peer import Peer, ProtocolConn, exchange_hello, make_hello
from p2p.protocol import PeerInfo, Protocol, ProtocolConnection
from p2p.rlpx import Connection, accept, connect

NAME, VERSION = "bench", 1
DATA, ASK, ANSWER = 0, 1, 2  # relative codes: absolute 0x10, 0x11, 0x12 (the first protocol)
HOST = "127.0.0.1"
_cpu_mark = [time.process_time_ns()]  # this process's CPU time at the last answer


def receiver_protocol() -> Protocol:
    """Counts data messages; answers each question with the counts and the CPU spent."""
    proto = Protocol(NAME, VERSION, 3)

    @proto.handler(DATA)
    async def on_data(conn: ProtocolConnection, payload: bytes) -> None:
        state = conn.state
        state["count"] = state.get("count", 0) + 1
        state["bytes"] = state.get("bytes", 0) + len(payload)

    @proto.handler(ASK)
    async def on_ask(conn: ProtocolConnection, payload: bytes) -> None:
        now = time.process_time_ns()
        state = conn.state
        answer = {"count": state.get("count", 0), "bytes": state.get("bytes", 0), "cpu_ns": now - _cpu_mark[0]}
        _cpu_mark[0] = now
        state["count"] = state["bytes"] = 0
        await conn.send(ANSWER, json.dumps(answer).encode())

    return proto


async def _peer(conn: Connection, key: PrivateKey, proto: Protocol, *, inbound: bool) -> Peer:
    hello = await exchange_hello(conn, make_hello(key.public_key, [proto], client_id="p2p-bench", listen_port=0))
    matched = match_capabilities([proto], hello.caps)
    if not matched:
        raise RuntimeError(f"bench peer does not run {NAME}/{VERSION}: {hello.caps}")
    node_id = NodeID.from_pubkey(conn.remote_pubkey)
    info = PeerInfo(id=node_id, client=hello.client_id, caps=hello.caps, remote=(HOST, 0), inbound=inbound,
                    since=time.time(), enode="")
    return Peer(conn, info, hello, matched)


async def serve(key: PrivateKey, stream: trio.SocketStream) -> None:
    """Run one receiving peer on an accepted stream until either side ends it."""
    try:
        conn = await accept(stream, key)
    except Exception:
        await trio.aclose_forcefully(stream)
        raise
    peer = await _peer(conn, key, receiver_protocol(), inbound=True)
    await peer.run()


class Sender:
    """The dialing side: ``conn`` is its ``ProtocolConn``; :meth:`ask` returns the receiver's
    counts since the previous question (every message sent before it has been handled)."""

    def __init__(self, conn: ProtocolConn, rlpx: Connection,
                 answers: trio.MemoryReceiveChannel[dict[str, int]]) -> None:
        self.conn = conn
        self.rlpx = rlpx  # the connection under the peer (to tune its socket)
        self._answers = answers

    async def ask(self) -> dict[str, int]:
        await self.conn.send(ASK, b"")
        return await self._answers.receive()


@asynccontextmanager
async def open_sender(port: int, remote: PublicKey, *, host: str = HOST) -> AsyncIterator[Sender]:
    key = PrivateKey.generate()
    send_answer, answers = trio.open_memory_channel[dict[str, int]](1)
    proto = Protocol(NAME, VERSION, 3)

    @proto.handler(ANSWER)
    async def on_answer(conn: ProtocolConnection, payload: bytes) -> None:
        await send_answer.send(json.loads(payload))

    conn = await connect(host, port, key, remote)
    peer = await _peer(conn, key, proto, inbound=False)
    pconn = peer.connection(NAME)
    assert pconn is not None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.run)
        try:
            yield Sender(pconn, conn, answers)
        finally:
            peer.disconnect()
            await peer.wait_closed()


__all__ = ["ANSWER", "ASK", "DATA", "Sender", "open_sender", "receiver_protocol", "serve"]
