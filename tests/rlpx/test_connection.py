"""The trio wrapper: handshake over streams, messages both ways, deadlines, and bad input.

Each bad-input test checks that the failure is a typed error of this layer and that it ends
that connection only.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import rlp
import trio
import trio.testing

from p2p.crypto import PrivateKey
from p2p.rlpx import (
    AuthTimeout,
    Connection,
    ConnectionClosed,
    FrameError,
    HandshakeError,
    HandshakeTimeout,
    MessageTooLarge,
    RLPxTimeout,
    SnappyError,
    accept,
    connect,
    initiate,
)
from p2p.rlpx.connection import AUTH_TIMEOUT
from p2p.rlpx.handshake import Handshake

RNG = random.Random(99)
KEY_A = PrivateKey.generate(RNG)
KEY_B = PrivateKey.generate(RNG)

StreamPair = Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]


async def _pair(
    make: StreamPair = trio.testing.memory_stream_pair, **kwargs: float
) -> tuple[Connection, Connection]:
    sa, sb = make()
    result: dict[str, Connection] = {}

    async def run_b() -> None:
        result["b"] = await accept(sb, KEY_B, **kwargs)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_b)
        result["a"] = await initiate(sa, KEY_A, KEY_B.public_key, **kwargs)  # type: ignore[arg-type]
    return result["a"], result["b"]


@asynccontextmanager
async def pair(make: StreamPair = trio.testing.memory_stream_pair, **kwargs: float) -> AsyncIterator[tuple[Connection, Connection]]:
    a, b = await _pair(make, **kwargs)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


async def test_messages_both_ways_with_and_without_snappy() -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            assert a.remote_pubkey == KEY_B.public_key
            assert b.remote_pubkey == KEY_A.public_key
            await a.send(0x00, b"hello from a")
            await b.send(0x00, b"hello from b")
            assert await b.receive() == (0x00, b"hello from a")
            assert await a.receive() == (0x00, b"hello from b")
            a.snappy = b.snappy = True
            big = b"z" * 200_000
            await a.send(0x10, big)
            await b.send(0x02, rlp.encode([]))
            assert await b.receive() == (0x10, big)
            assert await a.receive() == (0x02, b"\xc0")
            await a.send_many([(0x11, b"one"), (0x12, b""), (0x13, b"three" * 1000)])
            assert [await b.receive() for _ in range(3)] == [(0x11, b"one"), (0x12, b""), (0x13, b"three" * 1000)]


async def test_snappy_on_the_wire_is_compressed() -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            a.snappy = b.snappy = True
            await a.send(0x20, bytes(100_000))
            # Take the bytes off the wire ourselves: 100 kB of zeros travel as a few kB.
            raw = await b.stream.receive_some(1_000_000)
            assert len(raw) < 10_000
            b._codec.receive_data(raw)
            assert await b.receive() == (0x20, bytes(100_000))


async def test_real_sockets_and_concurrent_writers() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, _echo_handler, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            conn = await connect("127.0.0.1", port, KEY_A, KEY_B.public_key)
            expected = {(0x10 + w, bytes([w]) * (i * 37 % 3000)) for w in range(4) for i in range(50)}

            async def writer(w: int) -> None:
                for i in range(50):
                    await conn.send(0x10 + w, bytes([w]) * (i * 37 % 3000))

            async with trio.open_nursery() as writers:
                for w in range(4):
                    writers.start_soon(writer, w)
                got = {await conn.receive() for _ in range(200)}
            assert got == expected
            await conn.aclose()
            nursery.cancel_scope.cancel()


async def _echo_handler(stream: trio.SocketStream) -> None:
    try:
        conn = await accept(stream, KEY_B)
        while True:
            await conn.send(*await conn.receive())
    except (ConnectionClosed, HandshakeError):
        pass
    finally:
        await stream.aclose()


async def test_connect_refused_and_silent_listener() -> None:
    with trio.fail_after(10):
        sock = trio.socket.socket()
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        with pytest.raises(HandshakeError, match="cannot connect"):
            await connect("127.0.0.1", port, KEY_A, KEY_B.public_key)
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        with pytest.raises(HandshakeTimeout):
            await connect("127.0.0.1", listener.getsockname()[1], KEY_A, KEY_B.public_key, handshake_timeout=0.3)
        listener.close()


# -- bad input during the handshake --------------------------------------------------------


async def test_garbage_auth_closes_without_reply() -> None:
    with trio.fail_after(10):
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(b"\xff" * 400)  # a size prefix far beyond 2048 bytes
        with pytest.raises(HandshakeError):
            await accept(server, KEY_B)
        assert await client.receive_some(1000) == b""  # closed, nothing was sent back


async def test_garbage_auth_of_plausible_size_closes_without_reply() -> None:
    with trio.fail_after(10):
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(b"\x01\x80" + random.Random(1).randbytes(0x180))
        with pytest.raises(HandshakeError):
            await accept(server, KEY_B)
        assert await client.receive_some(1000) == b""


async def test_truncated_auth_then_close() -> None:
    with trio.fail_after(10):
        client, server = trio.testing.memory_stream_pair()
        auth = Handshake(KEY_A, KEY_B.public_key).initiate()
        await client.send_all(auth[:100])
        await client.aclose()
        with pytest.raises(HandshakeError, match="closed"):
            await accept(server, KEY_B)


async def test_truncated_auth_stalls_until_auth_deadline(mock_clock: trio.testing.MockClock) -> None:
    mock_clock.autojump_threshold = 0
    client, server = trio.testing.memory_stream_pair()
    auth = Handshake(KEY_A, KEY_B.public_key).initiate()
    await client.send_all(auth[:-1])
    start = trio.current_time()
    with pytest.raises(AuthTimeout):
        await accept(server, KEY_B)
    assert trio.current_time() - start == pytest.approx(AUTH_TIMEOUT)
    assert await client.receive_some(1000) == b""


async def test_without_auth_deadline_a_truncated_auth_stalls_until_handshake_deadline(
        mock_clock: trio.testing.MockClock) -> None:
    mock_clock.autojump_threshold = 0
    client, server = trio.testing.memory_stream_pair()
    auth = Handshake(KEY_A, KEY_B.public_key).initiate()
    await client.send_all(auth[:-1])
    start = trio.current_time()
    with pytest.raises(HandshakeTimeout) as caught:
        await accept(server, KEY_B, auth_timeout=None)
    assert not isinstance(caught.value, AuthTimeout)
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_auth_deadline_does_not_cover_the_ack(mock_clock: trio.testing.MockClock) -> None:
    # A whole auth within the auth deadline: the rest of the handshake has the longer deadline.
    mock_clock.autojump_threshold = 0
    client, server = trio.testing.memory_stream_pair()
    hs = Handshake(KEY_A, KEY_B.public_key)
    await client.send_all(hs.initiate())
    conn = await accept(server, KEY_B, auth_timeout=0.5)
    assert conn.remote_pubkey == KEY_A.public_key


async def test_initiator_times_out_when_no_ack(mock_clock: trio.testing.MockClock) -> None:
    mock_clock.autojump_threshold = 0
    client, server = trio.testing.memory_stream_pair()
    with pytest.raises(HandshakeTimeout):
        await initiate(client, KEY_A, KEY_B.public_key, handshake_timeout=2.0)
    assert trio.current_time() == pytest.approx(2.0)
    del server


async def test_dialing_the_wrong_key_fails_only_that_handshake() -> None:
    with trio.fail_after(10):
        sa, sb = trio.testing.memory_stream_pair()
        wrong = PrivateKey.generate(random.Random(5)).public_key
        async with trio.open_nursery() as nursery:

            async def run_a() -> None:
                with pytest.raises(HandshakeError):
                    await initiate(sa, KEY_A, wrong)

            nursery.start_soon(run_a)
            with pytest.raises(HandshakeError):
                await accept(sb, KEY_B)


# -- bad input after the handshake --------------------------------------------------------


def _raw_frame(conn: Connection, code: int, data: bytes) -> bytes:
    return conn._codec.encode(code, data)


@pytest.mark.parametrize("where", ["header-mac", "body-mac"])
async def test_bad_mac_is_a_frame_error(where: str) -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            frame = bytearray(_raw_frame(a, 0x10, b"payload" * 10))
            frame[20 if where == "header-mac" else -3] ^= 0x40
            await a.stream.send_all(bytes(frame))
            with pytest.raises(FrameError, match="header MAC" if where == "header-mac" else "frame MAC"):
                await b.receive()
            with pytest.raises(FrameError):  # that connection stays failed
                await b.receive()
            await b.send(0x01, b"\xc1\x02")  # but may still tell the peer why it goes
            assert await a.receive() == (0x01, b"\xc1\x02")


async def test_declared_length_beyond_limit() -> None:
    with trio.fail_after(10):
        async with pair(max_message_size=1024) as (a, b):
            await a.stream.send_all(_raw_frame(a, 0x10, bytes(1500))[:32])  # the header is enough
            with pytest.raises(MessageTooLarge):
                await b.receive()
            with pytest.raises(MessageTooLarge):
                await a.send(0x10, bytes(1025))


async def test_uncompressed_payload_beyond_limit() -> None:
    with trio.fail_after(10):
        async with pair(max_message_size=1024) as (a, b):
            await a.stream.send_all(_raw_frame(a, 0x10, bytes(1030)))  # within the frame allowance
            with pytest.raises(MessageTooLarge):
                await b.receive()


async def test_snappy_bomb() -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            b.snappy = True
            bomb = bytes([0xFF, 0xFF, 0xFF, 0x7F]) + b"\x00" * 20  # declares 256 MiB
            await a.stream.send_all(_raw_frame(a, 0x10, bomb))
            with pytest.raises(MessageTooLarge) as info:
                await b.receive()
            assert info.value.size == 0x0FFFFFFF


async def test_corrupt_snappy_is_typed() -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            b.snappy = True
            await a.send(0x10, b"\x05abc")
            with pytest.raises(SnappyError):
                await b.receive()


async def test_uncompressed_disconnect_is_understood_with_snappy_on() -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            b.snappy = True
            for payload in (rlp.encode([4]), rlp.encode(4)):  # list form, and ethereumjs' bare integer
                await a.send(0x01, payload)
                assert await b.receive() == (0x01, payload)
            a.snappy = True
            await a.send(0x01, rlp.encode([8]))
            assert await b.receive() == (0x01, rlp.encode([8]))


async def test_stall_mid_frame_hits_read_deadline(mock_clock: trio.testing.MockClock) -> None:
    mock_clock.autojump_threshold = 0
    async with pair() as (a, b):
        frame = _raw_frame(a, 0x10, bytes(100))
        await a.stream.send_all(frame[:40])
        start = trio.current_time()
        with pytest.raises(RLPxTimeout, match="middle of a frame"):
            await b.receive()
        assert trio.current_time() - start == pytest.approx(30.0)


async def test_idle_read_deadline_is_per_receive(mock_clock: trio.testing.MockClock) -> None:
    mock_clock.autojump_threshold = 0
    async with pair(read_timeout=10) as (a, b):
        for _ in range(3):
            await trio.sleep(9)
            await a.send(0x02, b"\xc0")
            assert await b.receive() == (0x02, b"\xc0")  # each receive gets its own 10 s
        with pytest.raises(RLPxTimeout):
            await b.receive()
        assert trio.current_time() == pytest.approx(37.0)


async def test_connection_closed_mid_frame() -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            frame = _raw_frame(a, 0x10, bytes(100))
            await a.stream.send_all(frame[:40])
            await a.stream.aclose()
            with pytest.raises(ConnectionClosed, match="middle of a frame"):
                await b.receive()


async def test_connection_closed_between_frames() -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            await a.send(0x10, b"last")
            await a.aclose()
            assert await b.receive() == (0x10, b"last")
            with pytest.raises(ConnectionClosed, match="between frames"):
                await b.receive()
            with pytest.raises(ConnectionClosed):
                await a.send(0x10, b"after close")


async def test_write_deadline(mock_clock: trio.testing.MockClock) -> None:
    mock_clock.autojump_threshold = 0
    async with pair(trio.testing.lockstep_stream_pair) as (a, b):
        # Nobody reads b: a lockstep stream blocks the writer until the deadline.
        with pytest.raises(RLPxTimeout):
            await a.send(0x10, b"never read")
        assert trio.current_time() == pytest.approx(20.0)
        with pytest.raises(RLPxTimeout):  # the half-written stream is not used again
            await a.send(0x10, b"again")
        del b


async def test_one_bad_peer_does_not_affect_another() -> None:
    """A listener serving several connections: garbage, a bad MAC and a stall end those
    connections with typed errors while a good one keeps exchanging messages."""
    outcomes: list[str] = []

    async def handler(stream: trio.SocketStream) -> None:
        try:
            conn = await accept(stream, KEY_B, handshake_timeout=1.0, read_timeout=1.0)
            while True:
                await conn.send(*await conn.receive())
        except (HandshakeError, FrameError, RLPxTimeout, ConnectionClosed) as exc:
            outcomes.append(type(exc).__name__)
        finally:
            await stream.aclose()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            good = await connect("127.0.0.1", port, KEY_A, KEY_B.public_key)
            garbage = await trio.open_tcp_stream("127.0.0.1", port)
            await garbage.send_all(b"GET / HTTP/1.1\r\n\r\n" * 30)
            bad_mac = await connect("127.0.0.1", port, KEY_A, KEY_B.public_key)
            frame = bytearray(_raw_frame(bad_mac, 0x10, b"x"))
            frame[-1] ^= 1
            await bad_mac.stream.send_all(bytes(frame))
            staller = await connect("127.0.0.1", port, KEY_A, KEY_B.public_key)
            await staller.stream.send_all(_raw_frame(staller, 0x10, bytes(64))[:20])
            for i in range(30):
                await good.send(0x10, b"ping %d" % i)
                assert await good.receive() == (0x10, b"ping %d" % i)
                await trio.sleep(0.05)
            assert sorted(outcomes) == ["FrameError", "HandshakeError", "RLPxTimeout"]
            assert await garbage.receive_some(100) == b""
            for c in (good, bad_mac, staller):
                await c.aclose()
            await garbage.aclose()
            nursery.cancel_scope.cancel()


async def test_send_eof_delivers_what_was_sent_then_end_of_stream() -> None:
    with trio.fail_after(10):
        async with pair(trio.testing.memory_stream_pair) as (a, b):
            await a.send(0x01, rlp.encode([4]))
            await a.send_eof()
            assert await b.receive() == (0x01, rlp.encode([4]))
            with pytest.raises(ConnectionClosed):
                await b.receive()  # end of stream, after the frame
            with pytest.raises(ConnectionClosed):
                await a.send(0x02, b"")  # nothing more from the half-closed side
            await b.send(0x03, b"still open")  # the other direction still works
            assert await a.receive() == (0x03, b"still open")
            await a.send_eof()  # idempotent



class _SocketLike(trio.abc.HalfCloseableStream):
    """A memory stream with a socket's cancellation semantics: a send is cancellable only
    before its first byte goes out (trio's socket send_all never yields before sending)."""

    def __init__(self, inner: trio.abc.HalfCloseableStream) -> None:
        self._inner = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        with trio.CancelScope(shield=True):
            await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _socket_like_pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    sa, sb = trio.testing.memory_stream_pair()
    return _SocketLike(sa), sb


async def test_send_cancelled_before_it_starts_leaves_the_connection_usable() -> None:
    # A peer's tasks are cancelled together when one fails; a send caught by that cancellation
    # before any byte went out must not spoil the stream for the Disconnect that follows.
    with trio.fail_after(10):
        async with pair(_socket_like_pair) as (a, b):
            scope = trio.CancelScope()

            async def sender() -> None:
                with scope:
                    await a.send(0x10, b"never sent")

            async with trio.open_nursery() as nursery:
                await a._write_lock.acquire()
                nursery.start_soon(sender)
                await trio.testing.wait_all_tasks_blocked()  # the sender waits for the lock
                # Hand the lock over and cancel in one step: the sender holds the lock and
                # meets the cancellation at its first checkpoint inside the write.
                a._write_lock.release()
                scope.cancel()
            assert scope.cancelled_caught
            await a.send(0x01, rlp.encode([3]))
            assert await b.receive() == (0x01, rlp.encode([3]))
