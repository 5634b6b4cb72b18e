"""One connected peer: the Hello exchange, ping/pong, Disconnect, and dispatch to sub-protocols.

A :class:`Peer` runs over any transport with ``send(code, payload)``, ``receive()``,
``snappy``, ``remote_pubkey`` and ``aclose()`` (an RLPx connection in practice; an in-memory
pair in unit tests). Each shared protocol gets its own bounded queue and dispatcher task: the
reader blocks when a queue is full, so a slow handler slows its own peer and nothing else.

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
from p2p.rlpx.errors import RLPxError, RLPxTimeout

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

# Errors a transport raises when the connection itself is unusable.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    RLPxError,
    OSError,
    EOFError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


class Transport(_TypingProtocol):
    """What a peer needs from its connection (``p2p.rlpx`` connections have it)."""

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


class _Inbox:
    """A bounded queue of one protocol's messages from one peer, between the reader and the
    protocol's dispatcher. Lighter than a memory channel, and with hysteresis: a full queue
    wakes its reader only once half drained, so a busy peer costs one task switch per batch
    of messages rather than per message. Bounded in count and in bytes: a few large messages
    fill it as many small ones do (one message is always taken, whatever its size)."""

    __slots__ = ("_items", "_size", "_max_bytes", "_bytes", "_not_empty", "_not_full")

    def __init__(self, size: int, max_bytes: int = QUEUE_BYTES) -> None:
        self._items: deque[tuple[int, bytes]] = deque()
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0
        self._not_empty = trio.lowlevel.ParkingLot()
        self._not_full = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._items)

    def _full(self) -> bool:
        return len(self._items) >= self._size or (self._bytes >= self._max_bytes and bool(self._items))

    def _append(self, code: int, payload: bytes) -> None:
        self._items.append((code, payload))
        self._bytes += len(payload)
        if self._not_empty:
            self._not_empty.unpark()

    def put_nowait(self, code: int, payload: bytes) -> bool:
        if self._full():
            return False
        self._append(code, payload)
        return True

    async def put(self, code: int, payload: bytes) -> None:
        while self._full():
            await self._not_full.park()
        self._append(code, payload)

    async def get(self) -> tuple[int, bytes]:
        if not self._items:
            while not self._items:
                await self._not_empty.park()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        item = self._items.popleft()
        self._bytes -= len(item[1])
        if self._not_full and len(self._items) <= self._size // 2 and self._bytes <= self._max_bytes // 2:
            self._not_full.unpark_all()
        return item


class ProtocolConn:
    """One peer as one sub-protocol sees it (implements :class:`p2p.protocol.ProtocolConnection`)."""

    __slots__ = ("_peer", "_matched", "_state", "_inbox")

    def __init__(self, peer: "Peer", matched: MatchedProtocol) -> None:
        self._peer = peer
        self._matched = matched
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
        if not 0 <= code < self._matched.length:
            raise ValueError(f"code {code} is outside {self._matched.name}'s {self._matched.length} codes")
        await self._peer.send_message(self._matched.offset + code, payload, self._matched.name, code)

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
    ) -> None:
        self.transport = transport
        self.info = info
        self.remote_hello = remote_hello
        self.conns: tuple[ProtocolConn, ...] = tuple(ProtocolConn(self, m) for m in matched)
        self._ping_interval = ping_interval
        self._read_timeout = read_timeout
        self._linger = linger
        self._meter = meter
        self._send_lock = trio.Lock()
        self._cancel_scope: trio.CancelScope | None = None
        self._stop_requested = False
        self._broken = False  # the transport failed: no Disconnect can be sent
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
        """Ask the peer to send Disconnect(``reason``) and close. Returns at once."""
        self._fail(PeerError(f"disconnect requested locally: {_describe(reason)}", reason))

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def send_message(self, code: int, payload: bytes, protocol: str = "p2p", rel_code: int | None = None) -> None:
        """Send one message with an absolute ``code``; a broken connection ends the peer."""
        if self._stop_requested:
            raise trio.ClosedResourceError("peer is disconnecting")
        try:
            async with self._send_lock:
                await self.transport.send(code, payload)
        except TRANSPORT_ERRORS as exc:
            self._broken = True
            self._fail(PeerError(f"write failed: {exc!r}", DisconnectReason.TCP_ERROR))
            raise trio.ClosedResourceError("peer connection is broken") from exc
        if self._meter is not None:
            self._meter.egress(protocol, code if rel_code is None else rel_code, len(payload))

    async def run(self) -> PeerError:
        """Serve the peer until something ends it; return why (reason, and who asked)."""
        try:
            with trio.CancelScope() as scope:
                self._cancel_scope = scope
                if self._stop_requested:
                    scope.cancel()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guard, self._read_loop, "read loop")
                    nursery.start_soon(self._guard, self._ping_loop, "ping loop")
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
            await close_transport(self.transport, send_reason, linger=self._linger, meter=self._meter)
            self._closed.set()
        return error

    # -- internals ----------------------------------------------------------------------

    def _fail(self, error: PeerError) -> None:
        if self.error is None:
            self.error = error
        self._stop_requested = True
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
            self._broken = True
            self._fail(PeerError(f"{what}: connection failed: {exc!r}", DisconnectReason.TCP_ERROR))

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
        while True:
            code, data = await transport.receive_raw()
            deadline = now() + timeout
            if deadline - scope.deadline > DEADLINE_SLACK:
                scope.deadline = deadline
            if code < BASE_PROTOCOL_LENGTH:
                if meter is not None:
                    meter.ingress("p2p", code, len(data))
                if code == MessageCode.PING:
                    await self.send_message(MessageCode.PONG, EMPTY_LIST)
                elif code == MessageCode.DISCONNECT:
                    raise RemoteDisconnected(decode_disconnect(transport.decompress(code, data)))
                elif code != MessageCode.PONG:  # Pong only proves liveness, as the read above did
                    self._drop_unhandled("p2p", code, data)
                continue
            for conn in conns:
                rel = code - conn.offset
                if 0 <= rel < conn._matched.length:
                    break
            else:
                raise PeerError(f"message code {code:#x} is outside every shared protocol",
                                DisconnectReason.BREACH_OF_PROTOCOL)
            handlers = conn.protocol.handlers
            if rel not in handlers:
                self._drop_unhandled(conn.protocol.name, rel, data)
                continue
            payload = transport.decompress(code, data)
            if meter is not None:
                meter.ingress(conn.protocol.name, rel, len(payload))
            inbox = conn._inbox
            if not inbox.put_nowait(rel, payload):
                # The handler is behind: wait for it (backpressure on this peer only), and
                # do not count the wait against the remote.
                scope.deadline = math.inf
                await inbox.put(rel, payload)
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

    async def _ping_loop(self) -> None:
        while True:
            await trio.sleep(self._ping_interval)
            await self.send_message(MessageCode.PING, EMPTY_LIST)

    async def _dispatch(self, conn: ProtocolConn) -> None:
        handlers = conn.protocol.handlers
        inbox = conn._inbox
        while True:
            rel, payload = await inbox.get()
            handler = handlers.get(rel)
            if handler is None:  # unregistered after the reader queued it
                continue
            try:
                await handler(conn, payload)
            except trio.ClosedResourceError:
                if not self._stop_requested:
                    self._protocol_failed(conn, f"handler of code {rel}", None)
                return  # otherwise the handler's send raced with our own close
            except Exception as exc:  # ProtocolError carries its reason; others are subprotocol errors
                self._protocol_failed(conn, f"handler of code {rel}", exc)
                return

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
    "Peer",
    "PeerError",
    "ProtocolConn",
    "Transport",
    "close_transport",
    "exchange_hello",
    "make_hello",
]
