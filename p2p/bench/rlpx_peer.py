"""The far end of ``p2p bench rlpx``: an RLPx listener run in a child process.

Per connection: it sends its Hello (code 0) as soon as the handshake is done, as go-ethereum
and ethereumjs do, reads the dialer's Hello (whose last element is the snappy flag), counts
data messages (code 0x10), and on a report request (0x11) answers 0x12 with
``rlp([messages, payload bytes, CPU nanoseconds this process used since the last report])``
and starts counting anew. On a second port it runs each connection as a whole peer with the
``bench`` protocol of :mod:`p2p.bench.protocol_peer` (the protocol API path). The parent
learns both ports through the pipe and stops the child by closing its end of the pipe.
"""

from __future__ import annotations

import functools
import socket
import time
from multiprocessing.connection import Connection as Pipe

import rlp
import trio

from p2p.bench import protocol_peer
from p2p.crypto import PrivateKey
from p2p.hello import PeerError
from p2p.rlpx import RLPxError, accept

HELLO, DATA, REPORT_REQUEST, REPORT = 0x00, 0x10, 0x11, 0x12
SOCKET_BUFFER = 4 * 1024 * 1024  # bytes: room for many 64 KiB frames in flight
HELLO_PAYLOAD = rlp.encode([5, b"p2p-bench-peer", [[b"bench", 1]], 0, bytes(64)])
_cpu_mark = [0]  # process CPU time (ns) at the last report


def tune(sock: trio.socket.SocketType) -> None:
    """Large kernel buffers so the bench measures RLPx, not the default window."""
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


async def _handle(key: PrivateKey, stream: trio.SocketStream) -> None:
    tune(stream.socket)
    try:
        conn = await accept(stream, key)
    except RLPxError:
        return
    try:
        await conn.send(HELLO, HELLO_PAYLOAD)
        code, hello = await conn.receive()
        conn.snappy = rlp.decode(hello)[-1] == b"\x01"  # the last Hello element: snappy on or off
        count = nbytes = 0
        receive = conn.receive
        while True:
            code, data = await receive()
            if code == DATA:
                count += 1
                nbytes += len(data)
            elif code == REPORT_REQUEST:
                now = time.process_time_ns()
                await conn.send(REPORT, rlp.encode([count, nbytes, now - _cpu_mark[0]]))
                _cpu_mark[0] = now
                count = nbytes = 0
    except RLPxError:
        pass
    finally:
        await conn.aclose()


async def _handle_peer(key: PrivateKey, stream: trio.SocketStream) -> None:
    tune(stream.socket)
    try:
        await protocol_peer.serve(key, stream)
    except (RLPxError, PeerError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _serve(pipe: Pipe, key: PrivateKey) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    peer_listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    for listener in listeners + peer_listeners:
        tune(listener.socket)
    pipe.send((listeners[0].socket.getsockname()[1], peer_listeners[0].socket.getsockname()[1]))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(trio.serve_listeners, functools.partial(_handle, key), listeners))
        nursery.start_soon(functools.partial(trio.serve_listeners, functools.partial(_handle_peer, key),
                                             peer_listeners))
        # The parent closes the pipe (or dies): either way recv returns or raises EOFError.
        try:
            await trio.to_thread.run_sync(pipe.recv, abandon_on_cancel=True)
        except EOFError:
            pass
        nursery.cancel_scope.cancel()


def main(pipe: Pipe, secret: bytes) -> None:
    """multiprocessing target: serve until the parent closes the pipe."""
    trio.run(_serve, pipe, PrivateKey(secret))
