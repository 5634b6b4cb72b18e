"""One connected peer: the Hello exchange, ping/pong, Disconnect, and dispatch to sub-protocols.

A :class:`Peer` runs over any transport with ``send(code, payload)``, ``receive()``,
``snappy``, ``remote_pubkey`` and ``aclose()`` (an RLPx connection in practice; an in-memory
pair in unit tests). Each shared protocol gets its own bounded queue and dispatcher task: the
reader blocks when a queue is full, so a slow handler slows its own peer and nothing else.
The reader takes every frame one read completed at once (``receive_many_raw`` when the
transport has it). Whatever the peer's protocols send goes into one bounded send queue, which
one writer task empties with one write per batch (``send_many`` when the transport has it).

Whatever ends a peer (its handler raising, a code outside every shared protocol, a ``run`` that
returns, a read timeout, the remote's Disconnect) is recorded once as a :class:`PeerError`
carrying the disconnect reason; the peer then sends Disconnect (unless the remote asked),
closes its transport and returns that error from :meth:`Peer.run`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol as _TypingProtocol

import trio

from p2p.crypto import PublicKey
from p2p.disconnect import DisconnectReason
from p2p.hello import (
    BASE_PROTOCOL_LENGTH,
    EMPTY_LIST,
    MAX_HELLO_SIZE,
    P2P_VERSION,
    SNAPPY_VERSION,
    Hello,
    HelloError,
    MatchedProtocol,
    MessageCode,
    PeerError,
    RemoteDisconnected,
    decode_disconnect,
    decode_hello,
    encode_disconnect,
    local_capabilities,
)
from p2p.protocol import PeerInfo, Protocol, ProtocolError
from p2p.rlpx.errors import MessageTooLarge, RLPxError, RLPxTimeout

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 5.0  # go-ethereum's handshakeTimeout for the Hello exchange
PING_INTERVAL = 15.0  # go-ethereum's pingInterval
READ_TIMEOUT = 30.0  # go-ethereum's frameReadTimeout: two missed pings and the peer is gone
DISCONNECT_TIMEOUT = 1.0  # bound on writing our Disconnect to a peer that may not read
# After Disconnect we half-close and read until the remote closes too (it normally does at
# once), so that nothing unread is left when we close: closing with unread data sends a
# reset, and a reset can discard our Disconnect before the remote has read it.
LINGER_TIME = 2.0
LINGER_FRAMES = 64  # frames read while lingering: what was in flight, not a whole stream
# Bytes read (and discarded undecrypted) while lingering on an RLPx connection: what an honest
# peer has in flight when our Disconnect reaches it, not what a flooding peer can keep sending.
LINGER_BYTES = 1024 * 1024
DEADLINE_SLACK = 1.0  # seconds of read-timeout precision traded for not moving the deadline per message
QUEUE_SIZE = 8  # messages buffered per peer per protocol before the reader waits for the handler
# Bytes of decompressed messages buffered per peer per protocol: eight 16 MiB messages would be
# 128 MiB for one peer; this keeps it to one large message waiting beside the one being handled.
QUEUE_BYTES = 16 * 1024 * 1024
# Messages that no handler takes (a code without a handler, base codes 4-15) are dropped
# undecompressed. A peer may send a few (a newer protocol version's announcements), but one that
# keeps sending them only makes us decrypt: each costs a token per UNHANDLED_TOKEN_BYTES begun,
# and past a burst of UNHANDLED_BURST tokens, more than UNHANDLED_RATE a second disconnects it.
# Small announcements cost one token each; a 770 KiB snappy bomb costs 49, so two end the peer.
UNHANDLED_BURST = 64
UNHANDLED_RATE = 4.0
UNHANDLED_TOKEN_BYTES = 16 * 1024
# Bytes of messages queued per peer for its writer (the one being written included) before
# senders wait: twice what one write carries at full speed (a write takes what was queued while
# the previous one ran), and what the remote reads per system call (RLPx's READ_CHUNK). One
# message is always taken into an empty queue, whatever its size.
SEND_QUEUE_BYTES = 512 * 1024
# What each queued message counts for beyond its payload: bounds a queue of empty messages
# (64 bytes is about what a queued entry and its frame's header and MACs cost).
SEND_MESSAGE_COST = 64

# Errors a transport raises when the connection itself is unusable.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    RLPxError,
    OSError,
    EOFError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


class Transport(_TypingProtocol):
    """What a peer needs from its connection (``p2p.rlpx`` connections have it). Used when
    present: ``send_many(messages)`` (one write for a batch), ``receive_many_raw()`` (every
    frame one read completed) and ``max_message_size``."""

    snappy: bool

    @property
    def remote_pubkey(self) -> PublicKey: ...

    async def send(self, code: int, payload: bytes) -> None: ...

    async def receive(self) -> tuple[int, bytes]: ...

    async def receive_raw(self) -> tuple[int, bytes]:
        """The next message with its payload as sent (maybe still compressed)."""
        ...

    def decompress(self, code: int, data: bytes) -> bytes:
        """The payload of a message from :meth:`receive_raw`."""
        ...

    async def aclose(self) -> None: ...


class MessageMeter(_TypingProtocol):
    """Receives per-message counts (the server's Prometheus metrics implement it)."""

    def ingress(self, protocol: str, code: int, size: int) -> None: ...

    def egress(self, protocol: str, code: int, size: int) -> None: ...

    def unhandled(self, protocol: str, code: int, size: int) -> None: ...


def _describe(reason: DisconnectReason | int) -> str:
    return reason.describe() if isinstance(reason, DisconnectReason) else f"reason {reason}"


async def exchange_hello(transport: Transport, local: Hello, *, timeout: float = HANDSHAKE_TIMEOUT) -> Hello:
    """Send our Hello, read theirs, check it and turn snappy on when both are at version 5+.

    Raises :class:`RemoteDisconnected` when a Disconnect arrives instead, :class:`HelloError`
    for a bad Hello (or one whose node ID is not the RLPx identity), and :class:`PeerError`
    with TIMEOUT / TCP_ERROR when the remote is too slow or the connection breaks.
    """
    try:
        with trio.fail_after(timeout):
            await transport.send(MessageCode.HELLO, local.encode())
            code, payload = await transport.receive()
    except trio.TooSlowError:
        raise PeerError("no Hello within the handshake timeout", DisconnectReason.TIMEOUT) from None
    except TRANSPORT_ERRORS as exc:
        raise PeerError(f"connection failed during Hello: {exc!r}", DisconnectReason.TCP_ERROR) from exc
    if code == MessageCode.DISCONNECT:
        raise RemoteDisconnected(decode_disconnect(payload))
    if code != MessageCode.HELLO:
        raise HelloError(f"first message has code {code:#x}, not Hello", DisconnectReason.BREACH_OF_PROTOCOL)
    if len(payload) > MAX_HELLO_SIZE:
        raise HelloError(f"Hello is {len(payload)} bytes", DisconnectReason.BREACH_OF_PROTOCOL)
    remote = decode_hello(payload)
    if remote.node_id != transport.remote_pubkey.to_bytes():
        raise HelloError("Hello node ID is not the RLPx identity", DisconnectReason.UNEXPECTED_IDENTITY)
    if local.version >= SNAPPY_VERSION and remote.version >= SNAPPY_VERSION:
        transport.snappy = True
    return remote


async def close_transport(
    transport: Transport,
    reason: DisconnectReason | int | None,
    *,
    linger: float = LINGER_TIME,
    meter: MessageMeter | None = None,
) -> None:
    """Send Disconnect (when ``reason`` is given), read for a moment what the remote still had in
    flight, then close. Shielded and bounded in time: safe in ``finally`` and after cancellation."""
    with trio.CancelScope(shield=True):
        if reason is not None:
            payload = encode_disconnect(reason)
            with trio.move_on_after(DISCONNECT_TIMEOUT):
                try:
                    await transport.send(MessageCode.DISCONNECT, payload)
                    if meter is not None:
                        meter.egress("p2p", MessageCode.DISCONNECT, len(payload))
                    send_eof = getattr(transport, "send_eof", None)  # RLPx connections have it
                    if send_eof is not None:
                        await send_eof()
                except TRANSPORT_ERRORS:
                    linger = 0
            drain = getattr(transport, "drain", None)  # RLPx connections have it
            if linger > 0 and drain is not None:
                with trio.move_on_after(linger):
                    await drain(LINGER_BYTES)
            elif linger > 0:
                with trio.move_on_after(linger):
                    for _ in range(LINGER_FRAMES):
                        try:
                            await transport.receive()
                        except TRANSPORT_ERRORS:
                            break  # the remote closed: nothing unread is left
        with trio.move_on_after(DISCONNECT_TIMEOUT):
            try:
                await transport.aclose()
            except TRANSPORT_ERRORS:
                pass


Frames = list[tuple[int, bytes]]  # (absolute code, data as sent) from one read


class _Inbox:
    """A bounded queue of one protocol's messages from one peer, between the reader and the
    protocol's dispatcher. Lighter than a memory channel. Bounded in count and in bytes: a few
    large messages fill it as many small ones do (one message is always taken, whatever its
    size).

    When it is full the reader hands over the rest of its batch instead of waiting for room
    message by message: it parks with the frame it could not queue (already decompressed)
    and the frames after it, and the dispatcher, once it has emptied the queue, handles that
    frame and the following ones of its own protocol directly, in order, one at a time, then
    wakes the reader at the first frame it left (another protocol's, or a base message). The
    reader reads nothing meanwhile (backpressure on this peer only, as with a full queue) and
    no more than one message beyond the queue is decompressed; but a busy peer costs two task
    switches per read rather than two per queue's worth of messages."""

    __slots__ = ("_items", "_size", "_max_bytes", "_bytes", "_not_empty", "_held", "_resume", "_taken")

    def __init__(self, size: int, max_bytes: int = QUEUE_BYTES) -> None:
        self._items: deque[tuple[int, bytes]] = deque()
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0
        self._not_empty = trio.lowlevel.ParkingLot()
        # The reader's hand-over: its batch, the index of the frame it could not queue, and
        # that frame's relative code and payload.
        self._held: tuple[Frames, int, int, bytes] | None = None
        self._resume = 0  # where the reader goes on in its batch once the hand-over is taken
        self._taken = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, code: int, payload: bytes) -> bool:
        items = self._items
        if items and (len(items) >= self._size or self._bytes >= self._max_bytes):
            return False
        items.append((code, payload))
        self._bytes += len(payload)
        if self._not_empty:
            self._not_empty.unpark()
        return True

    async def hand_over(self, frames: Frames, index: int, code: int, payload: bytes) -> int:
        """Called by the reader when :meth:`put_nowait` refused ``frames[index]`` (relative
        ``code``, decompressed ``payload``): wait until the dispatcher has handled it and maybe
        more; return the index of the first frame left to the reader."""
        self._held = (frames, index, code, payload)
        try:
            while self._held is not None:
                await self._taken.park()
        finally:
            self._held = None  # cancelled: nothing is left for the dispatcher to take
        return self._resume

    def take_held(self) -> tuple[Frames, int, int, bytes] | None:
        """The reader's hand-over, once the queue is empty (else None)."""
        return self._held if not self._items else None

    def release(self, resume: int) -> None:
        """The dispatcher is done with the hand-over: the reader goes on at ``frames[resume]``."""
        self._resume = resume
        self._held = None
        self._taken.unpark_all()

    def get_nowait(self) -> tuple[int, bytes] | None:
        """The next message, or None. The dispatcher takes what is queued without yielding
        between messages: at most the queue's size, then it waits (and yields) for more."""
        items = self._items
        if not items:
            return None
        item = items.popleft()
        self._bytes -= len(item[1])
        return item

    async def get(self) -> tuple[int, bytes]:
        while not self._items:
            await self._not_empty.park()
        item = self.get_nowait()
        assert item is not None
        return item


class _Outbox:
    """The messages a peer's senders queued, in order, for its one writer task, which writes
    all of them in one system call (the frames queued while a write is in progress go out
    together in the next). Bounded in bytes: a sender waits for room (backpressure), and a
    cancelled wait queues nothing; a message is taken off only once written, so the bound
    covers the write in progress too. Closing wakes every waiter with ClosedResourceError."""

    __slots__ = ("_items", "_bytes", "_max_bytes", "_closed", "_not_empty", "_not_full", "_on_wait", "waits")

    def __init__(self, max_bytes: int = SEND_QUEUE_BYTES, on_wait: Callable[[], None] | None = None) -> None:
        self._items: list[tuple[int, bytes, str, int]] = []  # taken in batches: a list is smaller
        self._bytes = 0
        self._max_bytes = max_bytes
        self._closed = False
        self._not_empty = trio.lowlevel.ParkingLot()
        self._not_full = trio.lowlevel.ParkingLot()
        self._on_wait = on_wait  # called when a put finds the queue full (a metric)
        self.waits = 0  # puts that found the queue full and waited for the writer

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        self._closed = True
        self._not_full.unpark_all()
        self._not_empty.unpark_all()

    def append(self, code: int, payload: bytes) -> None:
        """Queue a base-protocol message of our own (a Ping) without waiting for room."""
        self._items.append((code, payload, "p2p", code))
        self._bytes += len(payload) + SEND_MESSAGE_COST

    def put_nowait(self, item: tuple[int, bytes, str, int]) -> bool:
        """Queue ``item`` (code, payload, protocol, relative code) if there is room now. Senders
        yield only when the queue is full: a sender's burst fills it before the writer runs."""
        cost = len(item[1]) + SEND_MESSAGE_COST
        items = self._items
        if self._closed or (items and self._bytes + cost > self._max_bytes):
            return False
        items.append(item)
        self._bytes += cost
        if self._not_empty:
            self._not_empty.unpark()
        return True

    async def put(self, item: tuple[int, bytes, str, int]) -> None:
        """Queue ``item``, waiting for room; ClosedResourceError once closed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while not self.put_nowait(item):
            if self._closed:
                raise trio.ClosedResourceError("peer connection is closed")
            if not waited:
                waited = True
                self.waits += 1
                if self._on_wait is not None:
                    self._on_wait()
            await self._not_full.park()

    async def wait_items(self) -> bool:
        """Wait until something is queued; False once closed (the peer decides what becomes of
        what is left: written before a requested Disconnect, dropped after a failure)."""
        while not self._items:
            if self._closed:
                return False
            await self._not_empty.park()
        return not self._closed

    def peek(self) -> list[tuple[int, bytes, str, int]]:
        return list(self._items)

    def written(self, count: int) -> None:
        """The first ``count`` items are on the wire: free their room."""
        items = self._items
        self._bytes -= sum(len(item[1]) for item in items[:count]) + count * SEND_MESSAGE_COST
        del items[:count]
        if self._not_full:
            self._not_full.unpark_all()


class ProtocolConn:
    """One peer as one sub-protocol sees it (implements :class:`p2p.protocol.ProtocolConnection`)."""

    __slots__ = ("_peer", "_matched", "_state", "_inbox", "_offset", "_length", "_name")

    def __init__(self, peer: "Peer", matched: MatchedProtocol) -> None:
        self._peer = peer
        self._matched = matched
        # Read on every send: kept here rather than looked up through the matched protocol.
        self._offset, self._length, self._name = matched.offset, matched.length, matched.name
        self._state: dict[str, Any] | None = None
        self._inbox = _Inbox(QUEUE_SIZE)

    @property
    def peer(self) -> PeerInfo:
        return self._peer.info

    @property
    def protocol(self) -> Protocol:
        return self._matched.protocol

    @property
    def version(self) -> int:
        return self._matched.version

    @property
    def offset(self) -> int:
        """The absolute message code of this protocol's code 0 on this connection."""
        return self._matched.offset

    @property
    def state(self) -> dict[str, Any]:
        if self._state is None:  # most protocols never use it: allocate on first use
            self._state = {}
        return self._state

    async def send(self, code: int, payload: bytes) -> None:
        if not 0 <= code < self._length:
            raise ValueError(f"code {code} is outside {self._name}'s {self._length} codes")
        await trio.lowlevel.checkpoint_if_cancelled()  # before queueing: a cancelled send queues nothing
        if not self._peer._queue_nowait(self._offset + code, payload, self._name, code):
            await self._peer.send_message(self._offset + code, payload, self._name, code)

    async def disconnect(self, reason: DisconnectReason = DisconnectReason.REQUESTED) -> None:
        self._peer.disconnect(reason)
        await self._peer.wait_closed()

    def __repr__(self) -> str:
        return f"<{self._matched.name}/{self._matched.version} {self._peer.info.id.short()}>"


class Peer:
    """A peer after a successful Hello exchange. :meth:`run` serves it until it ends."""

    def __init__(
        self,
        transport: Transport,
        info: PeerInfo,
        remote_hello: Hello,
        matched: Sequence[MatchedProtocol],
        *,
        ping_interval: float = PING_INTERVAL,
        read_timeout: float = READ_TIMEOUT,
        linger: float = LINGER_TIME,
        meter: MessageMeter | None = None,
        unhandled_burst: int = UNHANDLED_BURST,
        unhandled_rate: float = UNHANDLED_RATE,
        send_queue_bytes: int = SEND_QUEUE_BYTES,
    ) -> None:
        self.transport = transport
        self.info = info
        self.remote_hello = remote_hello
        self.conns: tuple[ProtocolConn, ...] = tuple(ProtocolConn(self, m) for m in matched)
        self._ping_interval = ping_interval
        self._read_timeout = read_timeout
        self._linger = linger
        self._meter = meter
        self._outbox = _Outbox(send_queue_bytes, getattr(meter, "send_queue_full", None))
        # Whole batches in one write when the transport can (RLPx connections do).
        self._send_many: Callable[[list[tuple[int, bytes]]], Awaitable[None]] | None = getattr(
            transport, "send_many", None)
        self._max_message_size: int | None = getattr(transport, "max_message_size", None)
        self._cancel_scope: trio.CancelScope | None = None
        self._stop_requested = False
        self._broken = False  # the transport failed: no Disconnect can be sent
        self._flush_queued = False  # stopped by disconnect(): write what is queued before Disconnect
        self._closed = trio.Event()
        self.error: PeerError | None = None
        self.unhandled = 0  # messages dropped undecompressed because no handler takes them
        self._unhandled_burst = float(unhandled_burst)
        self._unhandled_rate = unhandled_rate
        self._unhandled_tokens = float(unhandled_burst)
        self._unhandled_at = trio.current_time()

    # -- public -------------------------------------------------------------------------

    def connection(self, name: str) -> ProtocolConn | None:
        for conn in self.conns:
            if conn.protocol.name == name:
                return conn
        return None

    def disconnect(self, reason: DisconnectReason | int = DisconnectReason.REQUESTED) -> None:
        """Ask the peer to send Disconnect(``reason``) and close. Returns at once. What was
        queued before goes out first; when the peer fails instead (a handler's error, a
        breach, a timeout), queued messages are dropped and the Disconnect goes alone."""
        if self.error is None:
            self._flush_queued = True
        self._fail(PeerError(f"disconnect requested locally: {_describe(reason)}", reason))

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def send_waits(self) -> int:
        """Sends that found the send queue full and waited for the writer."""
        return self._outbox.waits

    async def send_message(self, code: int, payload: bytes, protocol: str = "p2p", rel_code: int | None = None) -> None:
        """Queue one message with an absolute ``code`` for the peer's writer, waiting while the
        send queue is full. Returns once queued: messages leave in the order they were queued,
        and a send cancelled while it waits queues nothing. A write that fails ends the peer
        (and later sends raise ClosedResourceError)."""
        if self._stop_requested:
            raise trio.ClosedResourceError("peer is disconnecting")
        rel = code if rel_code is None else rel_code
        await trio.lowlevel.checkpoint_if_cancelled()  # before queueing: a cancelled send queues nothing
        if not self._queue_nowait(code, payload, protocol, rel):
            await self._outbox.put((code, payload, protocol, rel))

    def _queue_nowait(self, code: int, payload: bytes, protocol: str, rel: int) -> bool:
        """Queue a message if there is room now (the common case: no coroutine, no wait)."""
        if self._stop_requested:
            raise trio.ClosedResourceError("peer is disconnecting")
        limit = self._max_message_size
        if limit is not None and len(payload) > limit:
            raise MessageTooLarge(len(payload), limit)
        return self._outbox.put_nowait((code, payload, protocol, rel))

    async def run(self) -> PeerError:
        """Serve the peer until something ends it; return why (reason, and who asked)."""
        try:
            with trio.CancelScope() as scope:
                self._cancel_scope = scope
                if self._stop_requested:
                    scope.cancel()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guard, self._write_loop, "write loop")
                    nursery.start_soon(self._guard, self._read_loop, "read loop")
                    for conn in self.conns:
                        if conn.protocol.handlers:
                            nursery.start_soon(self._dispatch, conn)
                        if conn.protocol.run is not None:
                            nursery.start_soon(self._run_protocol, conn)
            if self.error is None:
                # Cancelled from outside without a reason: the node is going away.
                self.error = PeerError("node stopping", DisconnectReason.CLIENT_QUITTING)
        finally:
            error = self.error or PeerError("node stopping", DisconnectReason.CLIENT_QUITTING)
            self.error = error
            send_reason = None if (error.remote_requested or self._broken) else error.reason
            self._outbox.close()
            if send_reason is not None and self._flush_queued and self._outbox:
                await self._flush()
            await close_transport(self.transport, send_reason, linger=self._linger, meter=self._meter)
            self._closed.set()
        return error

    # -- internals ----------------------------------------------------------------------

    def _fail(self, error: PeerError) -> None:
        if self.error is None:
            self.error = error
        self._stop_requested = True
        self._outbox.close()  # senders waiting for room (maybe outside this peer's tasks) give up
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    async def _guard(self, fn: Callable[[], Awaitable[None]], what: str) -> None:
        try:
            await fn()
        except PeerError as exc:
            self._fail(exc)
        except RLPxTimeout as exc:
            self._fail(PeerError(f"{what}: {exc}", DisconnectReason.TIMEOUT))
        except TRANSPORT_ERRORS as exc:
            if self._stop_requested and isinstance(exc, trio.ClosedResourceError):
                return  # a send refused because the peer is stopping: the transport is fine
            self._broken = True
            self._fail(PeerError(f"{what}: connection failed: {exc!r}", DisconnectReason.TCP_ERROR))

    async def _write_loop(self) -> None:
        # The writer also sends our Pings (one task per peer fewer): a Ping is queued when it
        # is due, whatever the queue holds (one small message beyond its bound at most).
        outbox = self._outbox
        interval = self._ping_interval
        now = trio.current_time
        next_ping = now() + interval
        while True:
            with trio.move_on_at(next_ping):
                if not await outbox.wait_items():
                    return
            # Let the tasks that are ready run first: more senders queue into this write, and a
            # handler that is about to fail the peer does so before anything more goes out.
            await trio.lowlevel.checkpoint()
            if now() >= next_ping:
                outbox.append(MessageCode.PING, EMPTY_LIST)
                next_ping = now() + interval
            await self._write_queued()

    async def _write_queued(self) -> None:
        """Write what is queued now (in one write when the transport can), then free its room."""
        outbox = self._outbox
        batch = outbox.peek()
        if self._send_many is not None:
            await self._send_many([(code, payload) for code, payload, _, _ in batch])
            outbox.written(len(batch))
        else:
            for code, payload, _, _ in batch:
                await self.transport.send(code, payload)
                outbox.written(1)
        meter = self._meter
        if meter is not None:
            for _, payload, protocol, rel in batch:
                meter.egress(protocol, rel, len(payload))

    async def _flush(self) -> None:
        """On the way out after :meth:`disconnect`, write what senders queued before (a
        protocol's last message before its ``disconnect``), so that it arrives before our
        Disconnect. After a failure nothing more is said but the Disconnect. A write
        cancelled before it began left the stream whole; one cancelled part-way broke it, and
        this fails at once."""
        with trio.CancelScope(shield=True), trio.move_on_after(DISCONNECT_TIMEOUT):
            try:
                await self._write_queued()
            except TRANSPORT_ERRORS:
                pass

    async def _read_loop(self) -> None:
        # One cancel scope for the whole loop, its deadline moved forward as messages arrive
        # (at most once a second): a new scope per message would cost more than the message.
        timeout = self._read_timeout
        with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
            await self._read_messages(scope, timeout)
        if scope.cancelled_caught:
            raise PeerError(f"nothing read for {timeout:g} s", DisconnectReason.TIMEOUT)

    async def _read_messages(self, scope: trio.CancelScope, timeout: float) -> None:
        transport = self.transport
        meter = self._meter
        conns = self.conns
        now = trio.current_time
        receive_many: Callable[[], Awaitable[list[tuple[int, bytes]]]] | None = getattr(
            transport, "receive_many_raw", None)
        while True:
            # Every frame one read completed, handled in one pass: no task switch between them
            # unless a protocol's queue is full.
            frames = await receive_many() if receive_many is not None else [await transport.receive_raw()]
            deadline = now() + timeout
            if deadline - scope.deadline > DEADLINE_SLACK:
                scope.deadline = deadline
            index, count = 0, len(frames)
            while index < count:
                code, data = frames[index]
                index += 1
                if code < BASE_PROTOCOL_LENGTH:
                    if meter is not None:
                        meter.ingress("p2p", code, len(data))
                    if code == MessageCode.PING:
                        await self.send_message(MessageCode.PONG, EMPTY_LIST)
                    elif code == MessageCode.DISCONNECT:
                        raise RemoteDisconnected(decode_disconnect(transport.decompress(code, data)))
                    elif code != MessageCode.PONG:  # Pong only proves liveness, as the read did
                        self._drop_unhandled("p2p", code, data)
                    continue
                for conn in conns:
                    rel = code - conn._offset
                    if 0 <= rel < conn._length:
                        break
                else:
                    raise PeerError(f"message code {code:#x} is outside every shared protocol",
                                    DisconnectReason.BREACH_OF_PROTOCOL)
                if rel not in conn.protocol.handlers:
                    self._drop_unhandled(conn._name, rel, data)
                    continue
                payload = transport.decompress(code, data)
                if meter is not None:
                    meter.ingress(conn._name, rel, len(payload))
                inbox = conn._inbox
                if not inbox.put_nowait(rel, payload):
                    # The handler is behind: hand it the rest of the batch (backpressure on this
                    # peer only), and do not count the wait against the remote. The deadline
                    # comes back once the batch is routed: one change per batch, not per wait.
                    scope.deadline = math.inf
                    index = await inbox.hand_over(frames, index - 1, rel, payload)
            if scope.deadline == math.inf:
                scope.deadline = now() + timeout

    def _drop_unhandled(self, protocol: str, code: int, data: bytes) -> None:
        """Drop a message no handler takes, without decompressing it; disconnect a peer that
        keeps sending them (a token bucket of ``unhandled_burst``, refilled at ``unhandled_rate``)."""
        self.unhandled += 1
        if self._meter is not None:
            self._meter.unhandled(protocol, code, len(data))
        now = trio.current_time()
        tokens = min(self._unhandled_burst, self._unhandled_tokens + (now - self._unhandled_at) * self._unhandled_rate)
        self._unhandled_at = now
        cost = 1 + len(data) // UNHANDLED_TOKEN_BYTES
        if tokens < cost:
            raise PeerError(f"too many messages no handler takes ({self.unhandled}, last {protocol} code {code}, "
                            f"{len(data)} bytes)", DisconnectReason.BREACH_OF_PROTOCOL)
        self._unhandled_tokens = tokens - cost
        log.debug("peer %s: no %s handler for code %d, message dropped", self.info.id.short(), protocol, code)

    async def _dispatch(self, conn: ProtocolConn) -> None:
        handlers = conn.protocol.handlers
        inbox = conn._inbox
        get_nowait = inbox.get_nowait
        while True:
            item = get_nowait()
            if item is None:
                held = inbox.take_held()
                if held is not None:
                    resume = await self._dispatch_held(conn, held)
                    if resume is None:
                        return
                    inbox.release(resume)
                    continue
                item = await inbox.get()
            rel, payload = item
            handler = handlers.get(rel)
            if handler is None:  # unregistered after the reader queued it
                continue
            try:
                await handler(conn, payload)
            except Exception as exc:
                self._handler_failed(conn, rel, exc)
                return

    async def _dispatch_held(self, conn: ProtocolConn, held: tuple[Frames, int, int, bytes]) -> int | None:
        """Handle the frame the reader could not queue and the ones after it that are this
        protocol's and have a handler, in order; return the index of the first one left to the
        reader (which drops, counts and rejects what needs to be, as for any frame), or None
        when a handler failed (the peer is ending)."""
        frames, index, rel, payload = held
        handlers = conn.protocol.handlers
        offset, length, name = conn._offset, conn._length, conn._name
        decompress = self.transport.decompress
        meter = self._meter
        count = len(frames)
        while True:
            handler = handlers.get(rel)
            if handler is not None:
                try:
                    await handler(conn, payload)
                except Exception as exc:
                    self._handler_failed(conn, rel, exc)
                    return None
            index += 1
            if index >= count:
                return index
            code, data = frames[index]
            rel = code - offset
            if not 0 <= rel < length or rel not in handlers:
                return index
            try:
                payload = decompress(code, data)
            except TRANSPORT_ERRORS:
                return index  # the reader decompresses it again, and ends the peer
            if meter is not None:
                meter.ingress(name, rel, len(payload))

    def _handler_failed(self, conn: ProtocolConn, rel: int, exc: Exception) -> None:
        if isinstance(exc, trio.ClosedResourceError):
            if not self._stop_requested:
                self._protocol_failed(conn, f"handler of code {rel}", None)
            return  # otherwise the handler's send raced with our own close
        # ProtocolError carries its reason; others are subprotocol errors
        self._protocol_failed(conn, f"handler of code {rel}", exc)

    async def _run_protocol(self, conn: ProtocolConn) -> None:
        run = conn.protocol.run
        assert run is not None
        try:
            await run(self.info, conn)
        except trio.ClosedResourceError:
            if not self._stop_requested:
                self._protocol_failed(conn, "run", None)
            return
        except Exception as exc:
            self._protocol_failed(conn, "run", exc)
            return
        # A protocol whose run returns is done with this peer (go-ethereum disconnects too).
        self._fail(PeerError(f"{conn.protocol.name} run returned", DisconnectReason.REQUESTED))

    def _protocol_failed(self, conn: ProtocolConn, where: str, exc: BaseException | None) -> None:
        if isinstance(exc, ProtocolError):
            reason: DisconnectReason | int = exc.reason
            log.info("peer %s (%s): %s/%d %s: %s; disconnecting (%s)", self.info.id.short(),
                     self.info.client, conn.protocol.name, conn.version, where, exc, _describe(reason))
        else:
            reason = DisconnectReason.SUBPROTOCOL_ERROR
            log.warning("peer %s (%s): %s/%d %s failed; disconnecting (%s)", self.info.id.short(),
                        self.info.client, conn.protocol.name, conn.version, where, _describe(reason),
                        exc_info=exc)
        self._fail(PeerError(f"{conn.protocol.name} {where}: {exc!r}", reason))

    def __repr__(self) -> str:
        return f"<Peer {self.info.id.short()} {self.info.client!r} {'in' if self.info.inbound else 'out'}>"


def make_hello(
    pubkey: PublicKey, protocols: Sequence[Protocol], *, client_id: str, listen_port: int,
    version: int = P2P_VERSION,
) -> Hello:
    return Hello(version, client_id, local_capabilities(protocols), listen_port, pubkey.to_bytes())


__all__ = [
    "HANDSHAKE_TIMEOUT",
    "PING_INTERVAL",
    "QUEUE_SIZE",
    "READ_TIMEOUT",
    "SEND_QUEUE_BYTES",
    "Peer",
    "PeerError",
    "ProtocolConn",
    "Transport",
    "close_transport",
    "exchange_hello",
    "make_hello",
]
