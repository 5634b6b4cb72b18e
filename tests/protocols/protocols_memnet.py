"""An in-memory stand-in for the peer layer, to test protocol services without sockets.

Each link runs both sides' ``run`` and a dispatcher per side that feeds received messages to
the handlers in order, as the peer layer does. A handler or run raising closes the link and
records the reason, as a disconnect would.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from p2p import Capability, DisconnectReason, NodeID, PeerInfo, Protocol, ProtocolError


class FakeConn:
    def __init__(self, link: "Link", protocol: Protocol, peer: PeerInfo, outbox: trio.MemorySendChannel[tuple[int, bytes]]) -> None:
        self._link = link
        self._protocol = protocol
        self._peer = peer
        self._outbox = outbox
        self._state: dict[str, Any] = {}
        self.sent: list[tuple[int, bytes]] = []

    @property
    def peer(self) -> PeerInfo:
        return self._peer

    @property
    def protocol(self) -> Protocol:
        return self._protocol

    @property
    def version(self) -> int:
        return self._protocol.version

    @property
    def state(self) -> dict[str, Any]:
        return self._state

    async def send(self, code: int, payload: bytes) -> None:
        assert 0 <= code < self._protocol.length
        self.sent.append((code, payload))
        await self._outbox.send((code, payload))

    async def disconnect(self, reason: DisconnectReason = DisconnectReason.REQUESTED) -> None:
        self._link.close(reason, "disconnect called")


def info(node_id: NodeID, port: int) -> PeerInfo:
    return PeerInfo(id=node_id, client="memnet", caps=(Capability("x", 1),), remote=("127.0.0.1", port),
                    inbound=False, since=time.time(), enode=f"enode://{node_id.hex()}@127.0.0.1:{port}")


class Link:
    def __init__(self) -> None:
        self.cancel_scope = trio.CancelScope()
        self.reason: DisconnectReason | None = None
        self.why = ""
        self.closed = trio.Event()
        self.conns: tuple[FakeConn, FakeConn] | None = None

    def close(self, reason: DisconnectReason, why: str) -> None:
        if self.reason is None:
            self.reason, self.why = reason, why
        self.cancel_scope.cancel()

    async def serve(self, a_id: NodeID, a: Protocol, b_id: NodeID, b: Protocol, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        a_out, b_in = trio.open_memory_channel[tuple[int, bytes]](64)
        b_out, a_in = trio.open_memory_channel[tuple[int, bytes]](64)
        conn_a = FakeConn(self, a, info(b_id, 2), a_out)  # a's view of b
        conn_b = FakeConn(self, b, info(a_id, 1), b_out)
        self.conns = (conn_a, conn_b)
        try:
            with self.cancel_scope:
                async with trio.open_nursery() as nursery:
                    for proto, conn, inbox in ((a, conn_a, a_in), (b, conn_b, b_in)):
                        nursery.start_soon(self._dispatch, proto, conn, inbox)
                        if proto.run is not None:
                            nursery.start_soon(self._run, proto, conn)
                    task_status.started(self)
        finally:
            if self.reason is None:
                self.reason = DisconnectReason.REQUESTED
            self.closed.set()

    async def _run(self, proto: Protocol, conn: FakeConn) -> None:
        assert proto.run is not None
        try:
            await proto.run(conn.peer, conn)
        except ProtocolError as exc:
            self.close(exc.reason, str(exc))
            return
        self.close(DisconnectReason.REQUESTED, "run returned")

    async def _dispatch(self, proto: Protocol, conn: FakeConn, inbox: trio.MemoryReceiveChannel[tuple[int, bytes]]) -> None:
        async for code, payload in inbox:
            handler = proto.handlers.get(code)
            if handler is None:
                continue
            try:
                await handler(conn, payload)
            except ProtocolError as exc:
                self.close(exc.reason, str(exc))
                return


async def connect(nursery: trio.Nursery, a_id: NodeID, a: Protocol, b_id: NodeID, b: Protocol) -> Link:
    link = Link()
    await nursery.start(link.serve, a_id, a, b_id, b)
    return link
