"""The typed layer per peer: a :class:`Session` is one peer as one typed protocol sees it.

The core still hands raw payloads to raw handlers; ``Protocol.on(Message)`` registers a raw
handler made here that, in order: applies the protocol's flow control (a message over its rate
is dropped before it is decoded), decodes and validates the payload (a payload that does not
decode disconnects the peer with ``SUBPROTOCOL_ERROR``, the log line naming message and field),
and calls the typed handler with the session and the message. A request's handler answers with
``return response``; a response goes to the request waiting for its ID.

A session lives in the core connection's ``state`` (under ``SESSION_KEY``): it is made on first
use and goes with the connection. The protocol's ``run`` task (which the typed layer always has)
closes it when the peer ends, so that requests still waiting give up at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from p2p.disconnect import DisconnectReason
from p2p.flowcontrol import PeerFlow, Verdict
from p2p.messages import Message, MessageDecodeError, Request, Response
from p2p.protocol import PeerInfo, ProtocolConnection, ProtocolError
from p2p.request import Requests, RequestStats, TooManyUnsolicited

if TYPE_CHECKING:
    from p2p.protocol import Protocol

log = logging.getLogger(__name__)

SESSION_KEY = "p2p.session"  # the core connection's ``state`` entry that holds the session

M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Response)
T = TypeVar("T")


class TypedStats:
    """What one protocol's typed layer did, for ``p2p/metrics.py`` (plain ints, read when scraped)."""

    __slots__ = ("requests", "decode_errors", "rate_limited", "flood_disconnects")

    def __init__(self) -> None:
        self.requests = RequestStats()
        self.decode_errors: dict[str, int] = {}  # message name -> payloads that did not decode
        self.rate_limited: dict[str, int] = {}  # rate limit name -> messages dropped
        self.flood_disconnects = 0  # peers disconnected for exceeding a rate limit persistently


class Session:
    """One peer as one typed protocol sees it (implements :class:`ProtocolConnection`).

    ``send`` takes a message (or, as the core's connection, a code and RLP bytes); ``request``
    sends a :class:`Request` and returns its :class:`Response`."""

    __slots__ = ("raw", "_proto", "flow", "_requests")

    def __init__(self, raw: ProtocolConnection, proto: "Protocol") -> None:
        self.raw = raw
        self._proto = proto
        control = proto.flow
        self.flow = PeerFlow(control, proto.flow_table, proto.clock()) if control and control.limits else None
        self._requests: Requests | None = None

    @property
    def peer(self) -> PeerInfo:
        return self.raw.peer

    @property
    def protocol(self) -> "Protocol":
        return self._proto

    @property
    def version(self) -> int:
        return self.raw.version

    @property
    def state(self) -> dict[str, Any]:
        return self.raw.state

    @property
    def requests(self) -> Requests:
        if self._requests is None:
            proto = self._proto
            self._requests = Requests(proto.request_limits, proto.stats.requests, proto.clock)
        return self._requests

    @overload
    async def send(self, msg: Message) -> None: ...

    @overload
    async def send(self, msg: int, payload: bytes) -> None: ...

    async def send(self, msg: Message | int, payload: bytes | None = None) -> None:
        if isinstance(msg, int):
            assert payload is not None, "send(code, payload) needs the payload"
            await self.raw.send(msg, payload)
        elif isinstance(msg, (Request, Response)):
            raise TypeError(f"{type(msg).__name__} carries a request ID: use request() or return it from a handler")
        else:
            await self.raw.send(msg.code, msg.encode())

    async def request(self, msg: Request[R], *, timeout: float | None = None) -> R:
        """Send ``msg`` and return its response. Waits for a slot when ``max_in_flight``
        requests are out; raises :class:`p2p.request.RequestTimeout` after ``timeout`` (the
        protocol's ``RequestLimits.timeout`` by default) and ``RequestError`` if the peer goes."""
        expect = type(msg).response_type()
        code = msg.code

        async def send(request_id: int) -> None:
            await self.raw.send(code, msg.encode_with_id(request_id))

        response: R = await self.requests.request(send, expect, timeout)
        return response

    async def disconnect(self, reason: DisconnectReason = DisconnectReason.REQUESTED) -> None:
        await self.raw.disconnect(reason)

    def close(self) -> None:
        if self._requests is not None:
            self._requests.close()

    def __repr__(self) -> str:
        return f"<Session {self.raw!r}>"


def session_of(conn: ProtocolConnection, proto: "Protocol") -> Session:
    """The session of a core connection (made on first use)."""
    if isinstance(conn, Session):
        return conn
    state = conn.state
    session = state.get(SESSION_KEY)
    if session is None:
        session = state[SESSION_KEY] = Session(conn, proto)
    assert isinstance(session, Session)
    return session


RawHandler = Callable[[ProtocolConnection, bytes], Awaitable[None]]


def _admit(session: Session, proto: "Protocol", code: int) -> bool:
    """Flow control before decoding: False drops the message; a persistent flooder is ended."""
    flow = session.flow
    if flow is None:
        return True
    verdict, limit = flow.admit(code, proto.clock())
    if verdict is Verdict.ADMIT:
        return True
    assert limit is not None
    stats = proto.stats
    stats.rate_limited[limit.name] = stats.rate_limited.get(limit.name, 0) + 1
    if verdict is Verdict.DISCONNECT:
        stats.flood_disconnects += 1
        control = proto.flow
        assert control is not None
        raise ProtocolError(f"{proto.name}: over the {limit.name} rate limit ({limit.rate:g}/s) persistently: "
                            f"{control.max_drops} drops within {control.drop_window:g} s", control.reason)
    return False


def _bad_payload(proto: "Protocol", exc: MessageDecodeError) -> ProtocolError:
    stats = proto.stats
    stats.decode_errors[exc.message] = stats.decode_errors.get(exc.message, 0) + 1
    return ProtocolError(f"{proto.name}: {exc}", DisconnectReason.SUBPROTOCOL_ERROR)


def _receive(conn: ProtocolConnection, proto: "Protocol", code: int, decode: Callable[[bytes], T],
             payload: bytes) -> tuple[Session, T] | None:
    """The session and the decoded payload of a message flow control admits; None when it drops it."""
    session = session_of(conn, proto)
    if session.flow is not None and not _admit(session, proto, code):
        return None
    try:
        return session, decode(payload)
    except MessageDecodeError as exc:
        raise _bad_payload(proto, exc) from None


def message_handler(proto: "Protocol", cls: type[M], fn: Callable[[Session, M], Awaitable[Any]]) -> RawHandler:
    """The raw handler behind ``@proto.on(cls)`` for a plain message."""
    code = cls.code
    decode = cls.decode

    async def handle(conn: ProtocolConnection, payload: bytes) -> None:
        got = _receive(conn, proto, code, decode, payload)
        if got is not None:
            await fn(*got)

    return handle


def request_handler(proto: "Protocol", cls: type[Request[Any]],
                    fn: Callable[[Session, Any], Awaitable[Response | None]]) -> RawHandler:
    """The raw handler behind ``@proto.on(cls)`` for a request: the handler's return value is
    sent back with the request's ID (``None``: no answer)."""
    code = cls.code
    expect = cls.response_type()

    async def handle(conn: ProtocolConnection, payload: bytes) -> None:
        got = _receive(conn, proto, code, cls.decode_with_id, payload)
        if got is None:
            return
        session, (request_id, msg) = got
        answer = await fn(session, msg)
        if answer is None:
            return
        if type(answer) is not expect:
            raise TypeError(f"handler of {cls.__name__} returned {type(answer).__name__}, not {expect.__name__}")
        await conn.send(answer.code, answer.encode_with_id(request_id))

    return handle


def response_handler(proto: "Protocol", cls: type[Response]) -> RawHandler:
    """The raw handler of a response code: hand the response to the request waiting for it."""
    code = cls.code

    async def handle(conn: ProtocolConnection, payload: bytes) -> None:
        got = _receive(conn, proto, code, cls.decode_with_id, payload)
        if got is None:
            return
        session, (request_id, msg) = got
        try:
            taken = session.requests.deliver(request_id, msg)
        except TooManyUnsolicited as exc:
            raise ProtocolError(f"{proto.name}: {exc}", exc.reason) from None
        if not taken:
            log.debug("%s: dropped %s with request ID %d from %s: no request waits for it",
                      proto.name, cls.__name__, request_id, conn.peer.id.short())

    return handle


__all__ = ["SESSION_KEY", "Session", "TypedStats", "session_of"]
