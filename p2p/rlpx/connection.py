"""RLPx over a trio stream: the thin loop around the sans-IO handshake and frame codec.

``connect`` dials and runs the initiator side, ``accept`` runs the recipient side on a stream
that a listener accepted. Both return a :class:`Connection` whose ``send``/``receive`` carry
``(code, payload)`` messages. Writes are serialized by a lock (frames must leave in MAC
order); there is one reader at a time. Every step has a deadline; every failure is one of the
typed errors of :mod:`p2p.rlpx.errors`, and only ends this connection.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from p2p.crypto.keys import PrivateKey, PublicKey
from p2p.rlpx import snappy as _snappy
from p2p.rlpx.budget import RESERVE_ABOVE, FrameBudget
from p2p.rlpx.errors import (
    AuthTimeout,
    ConnectionClosed,
    FrameError,
    HandshakeError,
    HandshakeTimeout,
    MessageTooLarge,
    RLPxError,
    RLPxTimeout,
    SnappyError,
)
from p2p.rlpx.frame import MAX_FRAME_SIZE, FrameCodec, encode_code
from p2p.rlpx.handshake import MAX_HANDSHAKE_SIZE, Completed, Handshake

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 5.0  # seconds for TCP connect + auth/ack, as go-ethereum's handshakeTimeout
# The auth message is one packet, sent right after connect: a recipient waits this long for it
# (far less than the whole handshake's time), so a connection that sends nothing is gone soon.
AUTH_TIMEOUT = 1.0
READ_TIMEOUT = 30.0  # seconds per received frame, as go-ethereum's frameReadTimeout
WRITE_TIMEOUT = 20.0  # seconds per write, as go-ethereum's frameWriteTimeout
MAX_MESSAGE_SIZE = 16 * 1024 * 1024  # decompressed payload limit, go-ethereum's 16 MiB
READ_CHUNK = 256 * 1024  # bytes per receive_some: several 64 KiB frames per system call
DISCONNECT_CODE = 0x01  # base protocol Disconnect: understood even when sent uncompressed


class Connection:
    """An authenticated RLPx connection. Set :attr:`snappy` once both Hellos say v5+."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        codec: FrameCodec,
        remote_pubkey: PublicKey,
        *,
        read_timeout: float = READ_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        max_message_size: int = MAX_MESSAGE_SIZE,
        initial_data: bytes = b"",
        first_frame_limit: int | None = None,
        budget: FrameBudget | None = None,
    ) -> None:
        self.stream = stream
        self.remote_pubkey = remote_pubkey
        self.snappy = False
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.max_message_size = max_message_size
        self._codec = codec
        self._write_lock = trio.Lock()
        self._reading = False
        self._read_error: RLPxError | None = None
        self._write_error: RLPxError | None = None
        self._closed = False
        self._budget = budget
        # The remote's first frame is its Hello (or a Disconnect): small. Until it has arrived,
        # a header announcing more is refused before its body is buffered.
        self._frame_limit = codec.max_frame_size
        if first_frame_limit is not None:
            codec.max_frame_size = min(first_frame_limit, codec.max_frame_size)
        if initial_data:
            codec.receive_data(initial_data)

    # -- sending -----------------------------------------------------------------------------

    def _prepare(self, code: int, payload: bytes) -> tuple[int, bytes]:
        if len(payload) > self.max_message_size:
            raise MessageTooLarge(len(payload), self.max_message_size)
        if self.snappy:
            payload = _snappy.compress(payload)
        if len(encode_code(code)) + len(payload) > MAX_FRAME_SIZE:
            raise MessageTooLarge(len(payload), MAX_FRAME_SIZE, "frame")
        return code, payload

    async def send(self, code: int, payload: bytes) -> None:
        """Send one message (compressed when :attr:`snappy` is on)."""
        item = self._prepare(code, payload)
        async with self._write_lock:
            await self._check_writable()
            await self._write(self._codec.encode(*item))

    async def send_many(self, messages: Iterable[tuple[int, bytes]]) -> None:
        """Send several messages with one write: for bulk senders, same wire bytes as ``send``."""
        items = [self._prepare(code, payload) for code, payload in messages]
        async with self._write_lock:
            await self._check_writable()
            await self._write(self._codec.encode_many(items))

    async def _check_writable(self) -> None:
        # A cancellation is taken here, before the codec's MAC and cipher states move on and
        # before any byte goes out, so that it leaves the stream usable (for the Disconnect
        # that usually follows). After this nothing yields until the kernel has taken bytes,
        # so a cancellation inside the write really may split a frame.
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._write_error is not None:
            raise self._write_error
        if self._closed:
            raise ConnectionClosed("connection is closed")

    async def _write(self, data: bytes) -> None:
        done = False
        try:
            with trio.fail_after(self.write_timeout):
                await self.stream.send_all(data)
            done = True
        except trio.TooSlowError:
            self._write_error = RLPxTimeout(f"write not finished within {self.write_timeout} s")
            raise self._write_error from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._write_error = ConnectionClosed(f"stream broke while writing: {exc!r}")
            raise self._write_error from exc
        finally:
            if not done and self._write_error is None:
                # Cancelled part-way: a partial frame may be on the wire, the stream is unusable.
                self._write_error = ConnectionClosed("a write was cancelled part-way")

    # -- receiving ---------------------------------------------------------------------------

    async def receive(self) -> tuple[int, bytes]:
        """The next ``(code, payload)``; raises a typed :class:`RLPxError` on any failure."""
        code, data = await self.receive_raw()
        return code, self.decompress(code, data)

    async def receive_raw(self) -> tuple[int, bytes]:
        """The next frame's ``(code, data)`` with ``data`` as sent: still compressed when
        :attr:`snappy` is on. A reader that will drop the message need not pay for
        :meth:`decompress` (a small frame may declare megabytes)."""
        if self._read_error is not None:
            raise self._read_error
        if self._reading:
            raise trio.BusyResourceError("another task is already receiving on this connection")
        self._reading = True
        try:
            frame = self._codec.next_frame()
            if frame is None:
                frame = await self._read_frame()
            else:
                # A frame was already buffered: no need to yield, but honour cancellation.
                await trio.lowlevel.checkpoint_if_cancelled()
            self._codec.max_frame_size = self._frame_limit
            return frame
        except (FrameError, MessageTooLarge, ConnectionClosed, RLPxTimeout) as exc:
            self._read_error = exc
            raise
        finally:
            self._reading = False

    async def receive_many_raw(self) -> list[tuple[int, bytes]]:
        """Like :meth:`receive_raw`, but every frame that is whole now: the next one (read
        when none is buffered) and all that the same read completed, in order. One call per
        read instead of per frame; the frames come from what one read added to the buffer, so a
        batch holds at most about :data:`READ_CHUNK` bytes beyond its first frame. An error
        after the first frame is raised by the next call, so that no whole frame is lost."""
        frames = [await self.receive_raw()]
        codec = self._codec
        try:
            while (frame := codec.next_frame()) is not None:
                frames.append(frame)
        except (FrameError, MessageTooLarge) as exc:
            self._read_error = exc
        return frames

    def decompress(self, code: int, data: bytes) -> bytes:
        """The payload of a frame from :meth:`receive_raw`, checked against the size limit."""
        try:
            if self.snappy:
                try:
                    return _snappy.decompress(data, self.max_message_size)
                except (SnappyError, MessageTooLarge):
                    if code != DISCONNECT_CODE:
                        raise
                    # Some peers (ethereumjs) send Disconnect uncompressed even after v5 Hello.
                    return data
            if len(data) > self.max_message_size:
                raise MessageTooLarge(len(data), self.max_message_size)
            return data
        except (MessageTooLarge, SnappyError) as exc:
            self._read_error = exc
            raise

    async def _read_frame(self) -> tuple[int, bytes]:
        codec = self._codec
        budget = self._budget
        reserved = 0
        try:
            with trio.fail_after(self.read_timeout):
                while True:
                    if budget is not None and not reserved:
                        size = codec.announced_size
                        if size is not None and size > RESERVE_ABOVE:
                            await budget.reserve(size)
                            reserved = size
                    data = await self.stream.receive_some(READ_CHUNK)
                    if not data:
                        where = "in the middle of a frame" if codec.mid_frame else "between frames"
                        raise ConnectionClosed(f"remote closed the connection {where}")
                    codec.receive_data(data)
                    frame = codec.next_frame()
                    if frame is not None:
                        return frame
        except trio.TooSlowError:
            where = "in the middle of a frame" if codec.mid_frame else "waiting for a frame"
            raise RLPxTimeout(f"no frame within {self.read_timeout} s ({where})") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionClosed(f"stream broke while reading: {exc!r}") from exc
        finally:
            if reserved:
                budget.release(reserved)  # type: ignore[union-attr]  # reserved only with a budget

    # -- closing -----------------------------------------------------------------------------

    async def send_eof(self) -> None:
        """Half-close: no more frames from us. The remote reads what we sent, then end of
        stream, and can close its side, so that neither side resets the connection with
        unread data (a reset can discard a Disconnect frame before the remote reads it)."""
        async with self._write_lock:
            if self._closed or self._write_error is not None:
                return
            self._write_error = ConnectionClosed("this side has half-closed the connection")
            if isinstance(self.stream, trio.abc.HalfCloseableStream):
                try:
                    await self.stream.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    async def drain(self, max_bytes: int) -> None:
        """Read and discard what the remote still sends, undecrypted, until it closes or
        ``max_bytes`` have come: after our Disconnect, so that closing leaves nothing unread
        (which would reset the connection) without paying to decrypt what a peer sends."""
        if self._closed:
            return
        left = max_bytes
        try:
            while left > 0:
                data = await self.stream.receive_some(min(READ_CHUNK, left))
                if not data:
                    return
                left -= len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError):
            return

    async def aclose(self) -> None:
        """Close the stream (idempotent). Send a Disconnect first if the peer should know why."""
        self._closed = True
        await self.stream.aclose()

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Connection(remote={self.remote_pubkey!r}, snappy={self.snappy})"


def _codec_for(event: Completed, max_message_size: int) -> FrameCodec:
    limit = min(MAX_FRAME_SIZE, _snappy.max_compressed_length(max_message_size) + 9)
    return FrameCodec(event.secrets, max_frame_size=limit)


async def _receive_message(stream: trio.abc.Stream, hs: Handshake) -> Completed:
    while True:
        event = hs.next_event()
        if isinstance(event, Completed):
            return event
        data = await stream.receive_some(MAX_HANDSHAKE_SIZE)
        if not data:
            raise HandshakeError("remote closed the connection during the handshake")
        hs.receive_data(data)


async def _handshake(stream: trio.abc.Stream, hs: Handshake, auth_timeout: float | None) -> Completed:
    if hs.initiator:
        await stream.send_all(hs.initiate())
        return await _receive_message(stream, hs)
    try:
        with trio.fail_after(math.inf if auth_timeout is None else auth_timeout):
            event = await _receive_message(stream, hs)
    except trio.TooSlowError:
        raise AuthTimeout(f"no auth message within {auth_timeout} s") from None
    if event.reply:
        await stream.send_all(event.reply)
    return event


async def _run_handshake(
    stream: trio.abc.Stream, hs: Handshake, timeout: float, *, auth_timeout: float | None = None,
    close_on_error: bool = True,
) -> Completed:
    try:
        with trio.fail_after(timeout):
            return await _handshake(stream, hs, auth_timeout)
    except BaseException as exc:
        if close_on_error:
            await trio.aclose_forcefully(stream)
        if isinstance(exc, trio.TooSlowError):
            raise HandshakeTimeout(f"handshake not finished within {timeout} s") from None
        if isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError)):
            raise HandshakeError(f"stream broke during the handshake: {exc!r}") from exc
        raise


@dataclass(frozen=True, slots=True)
class Limits:
    """What a connection may cost us: deadlines and sizes (see the module constants)."""

    handshake_timeout: float = HANDSHAKE_TIMEOUT
    auth_timeout: float | None = AUTH_TIMEOUT  # recipient only; None: the handshake's deadline alone
    read_timeout: float = READ_TIMEOUT
    write_timeout: float = WRITE_TIMEOUT
    max_message_size: int = MAX_MESSAGE_SIZE
    first_frame_limit: int | None = None  # frame-size bound until the remote's first frame
    budget: FrameBudget | None = None  # shared by the connections of one server


async def _authenticate(stream: trio.abc.Stream, hs: Handshake, limits: Limits) -> Connection:
    """Either side's handshake on ``stream``, then the connection over the secrets it agreed."""
    event = await _run_handshake(stream, hs, limits.handshake_timeout, auth_timeout=limits.auth_timeout)
    return Connection(
        stream,
        _codec_for(event, limits.max_message_size),
        event.remote_pubkey,
        read_timeout=limits.read_timeout,
        write_timeout=limits.write_timeout,
        max_message_size=limits.max_message_size,
        initial_data=event.trailing,
        first_frame_limit=limits.first_frame_limit,
        budget=limits.budget,
    )


async def accept(
    stream: trio.abc.Stream,
    private_key: PrivateKey,
    *,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    auth_timeout: float | None = AUTH_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    write_timeout: float = WRITE_TIMEOUT,
    max_message_size: int = MAX_MESSAGE_SIZE,
    first_frame_limit: int | None = None,
    budget: FrameBudget | None = None,
    rng: random.Random | None = None,
) -> Connection:
    """Run the recipient side on an accepted stream. On failure the stream is closed (with no
    reply) and :class:`HandshakeError` is raised (:class:`AuthTimeout` when no whole auth
    message arrived within ``auth_timeout``)."""
    hs = Handshake(private_key, rng=rng)
    return await _authenticate(stream, hs, Limits(handshake_timeout, auth_timeout, read_timeout, write_timeout,
                                                  max_message_size, first_frame_limit, budget))


async def initiate(
    stream: trio.abc.Stream,
    private_key: PrivateKey,
    remote_pubkey: PublicKey,
    *,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    write_timeout: float = WRITE_TIMEOUT,
    max_message_size: int = MAX_MESSAGE_SIZE,
    first_frame_limit: int | None = None,
    budget: FrameBudget | None = None,
    rng: random.Random | None = None,
) -> Connection:
    """Run the initiator side on an already open stream (``connect`` without the dial)."""
    hs = Handshake(private_key, remote_pubkey, rng=rng)
    return await _authenticate(stream, hs, Limits(handshake_timeout, None, read_timeout, write_timeout,
                                                  max_message_size, first_frame_limit, budget))


async def connect(
    host: str,
    port: int,
    private_key: PrivateKey,
    remote_pubkey: PublicKey,
    *,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    write_timeout: float = WRITE_TIMEOUT,
    max_message_size: int = MAX_MESSAGE_SIZE,
    first_frame_limit: int | None = None,
    budget: FrameBudget | None = None,
    local_address: str | None = None,
    rng: random.Random | None = None,
) -> Connection:
    """Dial ``host:port`` (from ``local_address`` when given) and authenticate as the
    initiator; the whole of it (TCP connect included) runs under ``handshake_timeout``. The
    node reached proves it holds ``remote_pubkey`` by its first frame: only it could read our
    auth."""
    deadline = trio.current_time() + handshake_timeout
    try:
        with trio.fail_at(deadline):
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port, local_address=local_address)
    except trio.TooSlowError:
        raise HandshakeTimeout(f"TCP connect to {host}:{port} not finished within {handshake_timeout} s") from None
    except OSError as exc:
        raise HandshakeError(f"cannot connect to {host}:{port}: {exc}") from exc
    return await initiate(
        stream,
        private_key,
        remote_pubkey,
        handshake_timeout=max(0.0, deadline - trio.current_time()),
        read_timeout=read_timeout,
        write_timeout=write_timeout,
        max_message_size=max_message_size,
        first_frame_limit=first_frame_limit,
        budget=budget,
        rng=rng,
    )


__all__ = ["Connection", "connect", "accept", "initiate"]
