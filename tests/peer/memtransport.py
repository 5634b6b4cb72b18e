"""An in-memory stand-in for an RLPx connection, for peer tests without sockets."""

from __future__ import annotations

import trio

from p2p.crypto import PublicKey
from p2p.rlpx.errors import ConnectionClosed


class MemoryTransport:
    def __init__(self, remote_pubkey: PublicKey, send: trio.MemorySendChannel[tuple[int, bytes]],
                 receive: trio.MemoryReceiveChannel[tuple[int, bytes]]) -> None:
        self._remote = remote_pubkey
        self._send = send
        self._receive = receive
        self.snappy = False
        self.sent: list[tuple[int, bytes]] = []
        self.closed = False

    @property
    def remote_pubkey(self) -> PublicKey:
        return self._remote

    async def send(self, code: int, payload: bytes) -> None:
        if self.closed:
            raise ConnectionClosed("closed locally")
        self.sent.append((code, payload))
        try:
            await self._send.send((code, payload))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionClosed("remote closed") from exc

    async def receive(self) -> tuple[int, bytes]:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError) as exc:
            raise ConnectionClosed("remote closed") from exc

    async def receive_raw(self) -> tuple[int, bytes]:
        return await self.receive()

    def decompress(self, code: int, data: bytes) -> bytes:
        return data

    async def aclose(self) -> None:
        self.closed = True
        await self._send.aclose()
        await self._receive.aclose()


def transport_pair(pub_a: PublicKey, pub_b: PublicKey, buffer: int = 64) -> tuple[MemoryTransport, MemoryTransport]:
    """(a, b): what a sends, b receives; a's remote is b's key and vice versa."""
    a_to_b_send, a_to_b_recv = trio.open_memory_channel[tuple[int, bytes]](buffer)
    b_to_a_send, b_to_a_recv = trio.open_memory_channel[tuple[int, bytes]](buffer)
    return (MemoryTransport(pub_b, a_to_b_send, b_to_a_recv), MemoryTransport(pub_a, b_to_a_send, a_to_b_recv))
