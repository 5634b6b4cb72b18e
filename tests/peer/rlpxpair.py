"""Two peers over real RLPx connections (in-memory or loopback TCP streams), for tests of the
send queue and the read path as they run in a node."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import trio
import trio.testing

from p2p.crypto import PrivateKey
from p2p.hello import match_capabilities
from p2p.peer import Peer, exchange_hello, make_hello
from p2p.protocol import Protocol
from p2p.rlpx import Connection, accept, initiate
from tests.peer.test_peer import KEYS, info_for


class StallableStream(trio.abc.HalfCloseableStream):
    """Wraps a stream: counts writes, and holds them while stalled (a remote that stops reading)."""

    def __init__(self, inner: trio.abc.HalfCloseableStream) -> None:
        self._inner = inner
        self._open = trio.Event()
        self._open.set()
        self.writes = 0

    def stall(self) -> None:
        if self._open.is_set():
            self._open = trio.Event()

    def resume(self) -> None:
        self._open.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._open.wait()
        self.writes += 1
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def tcp_stream_pair(buffer: int | None = None) -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connected pair over 127.0.0.1; ``buffer`` shrinks the kernel buffers (fills sooner)."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        accepted: list[trio.SocketStream] = []

        async def take() -> None:
            accepted.append(await listener.accept())

        nursery.start_soon(take)
        dialed = await trio.open_tcp_stream("127.0.0.1", port)
    await listener.aclose()
    if buffer is not None:
        for stream in (dialed, accepted[0]):
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                stream.socket.setsockopt(socket.SOL_SOCKET, option, buffer)
    return dialed, accepted[0]


async def rlpx_pair(sa: trio.abc.Stream, sb: trio.abc.Stream, key_a: PrivateKey = KEYS[0],
                    key_b: PrivateKey = KEYS[1]) -> tuple[Connection, Connection]:
    result: dict[str, Connection] = {}

    async def run_b() -> None:
        result["b"] = await accept(sb, key_b)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_b)
        result["a"] = await initiate(sa, key_a, key_b.public_key)
    return result["a"], result["b"]


async def peer_pair(conn_a: Connection, conn_b: Connection, protos_a: Sequence[Protocol],
                    protos_b: Sequence[Protocol], key_a: PrivateKey = KEYS[0], key_b: PrivateKey = KEYS[1],
                    **peer_kw: Any) -> tuple[Peer, Peer]:
    """Hello both ways (v5: snappy on), then a :class:`Peer` on each side (not yet running)."""
    hellos: dict[str, Any] = {}

    async def hello(name: str, conn: Connection, key: PrivateKey, protos: Sequence[Protocol]) -> None:
        hellos[name] = await exchange_hello(conn, make_hello(key.public_key, protos, client_id="test", listen_port=0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hello, "a", conn_a, key_a, protos_a)
        nursery.start_soon(hello, "b", conn_b, key_b, protos_b)
    peer_a = Peer(conn_a, info_for(key_b), hellos["a"], match_capabilities(protos_a, hellos["a"].caps),
                  linger=0, **peer_kw)
    peer_b = Peer(conn_b, info_for(key_a, inbound=True), hellos["b"], match_capabilities(protos_b, hellos["b"].caps),
                  linger=0)
    return peer_a, peer_b


async def memory_peers(protos_a: Sequence[Protocol], protos_b: Sequence[Protocol],
                       **peer_kw: Any) -> tuple[Peer, Peer, StallableStream]:
    """Peers over an in-memory stream; the returned stream carries what ``a`` writes."""
    sa, sb = trio.testing.memory_stream_pair()
    stream = StallableStream(sa)
    conn_a, conn_b = await rlpx_pair(stream, sb)
    peer_a, peer_b = await peer_pair(conn_a, conn_b, protos_a, protos_b, **peer_kw)
    return peer_a, peer_b, stream
