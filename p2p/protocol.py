"""The public face for sub-protocol authors: ``Protocol``, handlers, and the per-peer connection.

A protocol declares a name, a version and how many message codes it uses. The core matches
capabilities by name and highest shared version, gives each shared protocol an offset after
the 16 reserved base-protocol codes (sorted by name), and routes each message to the handler
registered for its relative code. Payloads are the bytes the sender sent: the core never
decodes them.

The typed layer is optional and sits beside raw handlers: ``@proto.on(Status)`` registers a
handler that gets a decoded, validated message (``p2p.messages``), requests get their responses
matched by ID (``p2p.request``), and rate limits apply before decoding (``p2p.flowcontrol``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol as _TypingProtocol, TypeVar, runtime_checkable

import trio

from p2p.disconnect import DisconnectReason
from p2p.flowcontrol import FlowControl
from p2p.request import RequestLimits

if TYPE_CHECKING:
    from p2p.enode import NodeID
    from p2p.messages import Message
    from p2p.session import Session, TypedStats


@dataclass(frozen=True, slots=True)
class Capability:
    """A (name, version) pair as carried in Hello."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What is known of a connected peer, for handlers, events and ``server.peers()``."""

    id: "NodeID"
    client: str
    caps: tuple[Capability, ...]
    remote: tuple[str, int]
    inbound: bool
    since: float  # wall-clock time the peer was added
    enode: str


@runtime_checkable
class ProtocolConnection(_TypingProtocol):
    """One peer as one protocol sees it. Handlers get it as their first argument."""

    @property
    def peer(self) -> PeerInfo: ...

    @property
    def protocol(self) -> "Protocol": ...

    @property
    def version(self) -> int:
        """The version both sides agreed on (the highest shared one)."""
        ...

    @property
    def state(self) -> dict[str, Any]:
        """Per-peer storage for the protocol's own data (status, counters, ...)."""
        ...

    async def send(self, code: int, payload: bytes) -> None:
        """Send a message; ``code`` is relative to this protocol, ``payload`` is RLP bytes."""
        ...

    async def disconnect(self, reason: DisconnectReason = DisconnectReason.REQUESTED) -> None:
        """Send Disconnect with ``reason`` and close this peer (every protocol of it)."""
        ...


Handler = Callable[[ProtocolConnection, bytes], Awaitable[None]]
# The connection a run gets is a ProtocolConnection, or a Session once the typed layer is used.
RunFunc = Callable[[PeerInfo, Any], Awaitable[None]]
InfoFunc = Callable[..., Any]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class ProtocolError(Exception):
    """Raised by a protocol (or its handler) to disconnect the peer with a reason.

    Any other exception from a handler disconnects with ``SUBPROTOCOL_ERROR`` too; this one
    lets the protocol choose the reason (e.g. ``USELESS_PEER`` on a wrong network ID).
    """

    def __init__(self, message: str, reason: DisconnectReason = DisconnectReason.SUBPROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.reason = reason


class Protocol:
    """A sub-protocol: name, version, number of message codes, and what to do with them.

    ``run(peer, conn)``, when given, is started once per peer after the handshake. It may run
    for the peer's whole life; when it returns, or raises, the peer is disconnected (as in
    go-ethereum, a protocol's run ending means the protocol is done with that peer).
    ``counters()``, when given, returns the protocol's named counts (e.g. messages dropped by a
    limit) for the server's metrics.

    The typed layer: ``messages`` declares message classes (``p2p.messages``) up front, which
    ``on`` also does; ``flow`` holds per-peer rate limits applied before decoding;
    ``requests`` bounds requests (timeout, in flight, unsolicited answers); ``clock`` is what
    the rate limits read (trio's clock by default).
    """

    def __init__(
        self,
        name: str,
        version: int,
        length: int,
        *,
        run: RunFunc | None = None,
        node_info: Callable[[], Any] | None = None,
        peer_info: Callable[[ProtocolConnection], Any] | None = None,
        counters: Callable[[], Mapping[str, float]] | None = None,
        messages: Iterable[type["Message"]] = (),
        flow: FlowControl | None = None,
        requests: RequestLimits = RequestLimits(),
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if not name or len(name) > 8 or not name.isascii():
            raise ValueError("protocol name must be 1-8 ASCII characters, as Hello's capability names")
        if version < 0:
            raise ValueError("protocol version must not be negative")
        if length < 1:
            raise ValueError("protocol length (number of message codes) must be at least 1")
        self.name = name
        self.version = version
        self.length = length
        self.handlers: dict[int, Handler] = {}
        self._run = run
        self._typed = False
        self.messages: dict[int, type[Message]] = {}
        self.flow = flow
        self.flow_table = flow.by_code(length) if flow is not None else ()
        self.request_limits = requests
        self.clock = clock
        self._stats: TypedStats | None = None
        self.node_info = node_info
        self.peer_info = peer_info
        # Named counts the protocol keeps (drops, refusals); a server's metrics export each as
        # ``p2p_<protocol>_<name>_total``, read when scraped so the protocol needs no Prometheus.
        self.counters = counters
        for cls in messages:
            self.declare(cls)

    @property
    def capability(self) -> Capability:
        return Capability(self.name, self.version)

    def handler(self, code: int) -> Callable[[Handler], Handler]:
        """Register the handler of relative message ``code`` (0 <= code < length)."""
        if not 0 <= code < self.length:
            raise ValueError(f"code {code} is outside {self.name}'s {self.length} message codes")

        def register(fn: Handler) -> Handler:
            self.handlers[code] = fn
            return fn

        return register

    @property
    def run(self) -> RunFunc | None:
        """What the core starts per peer: the protocol's own ``run``, wrapped by the typed layer
        (which needs a task per peer to end its requests when the peer goes) once it is used."""
        return self._run_typed if self._typed else self._run

    @run.setter
    def run(self, fn: RunFunc | None) -> None:
        self._run = fn

    @property
    def stats(self) -> "TypedStats":
        """What the typed layer did (decode errors, requests, rate limits), for metrics."""
        if self._stats is None:
            from p2p.session import TypedStats

            self._stats = TypedStats()
        return self._stats

    def declare(self, cls: type["Message"]) -> type["Message"]:
        """Declare a typed message (a request declares its response too, whose code then gets
        the handler that matches responses to requests)."""
        from p2p.messages import Request, Response
        from p2p.session import response_handler

        code = getattr(cls, "code", None)
        if not isinstance(code, int) or not 0 <= code < self.length:
            raise ValueError(f"{cls.__name__}.code must be one of {self.name}'s {self.length} message codes")
        known = self.messages.get(code)
        if known is not None and known is not cls:
            raise ValueError(f"{cls.__name__} and {known.__name__} both have code {code}")
        self.messages[code] = cls
        self._typed = True
        if issubclass(cls, Request):
            self.declare(cls.response_type())
        elif issubclass(cls, Response) and code not in self.handlers:
            self.handlers[code] = response_handler(self, cls)
        return cls

    def on(self, cls: type["Message"]) -> Callable[[F], F]:
        """Register ``async def handler(conn, msg)`` for a typed message. It gets a
        :class:`p2p.session.Session` and the decoded message; a request's handler returns the
        response (or None to leave the request unanswered)."""
        from p2p.messages import Request, Response
        from p2p.session import message_handler, request_handler

        if issubclass(cls, Response):
            raise ValueError(f"{cls.__name__} is a response: it goes to the request that asked for it")
        self.declare(cls)

        def register(fn: F) -> F:
            if issubclass(cls, Request):
                self.handlers[cls.code] = request_handler(self, cls, fn)
            else:
                self.handlers[cls.code] = message_handler(self, cls, fn)
            return fn

        return register

    async def _run_typed(self, peer: PeerInfo, conn: ProtocolConnection) -> None:
        from p2p.session import session_of

        session = session_of(conn, self)
        try:
            if self._run is not None:
                await self._run(peer, session)
            else:
                await trio.sleep_forever()
        finally:
            session.close()

    def session(self, conn: ProtocolConnection) -> "Session":
        """The typed view of a core connection (for raw handlers that want to send typed)."""
        from p2p.session import session_of

        return session_of(conn, self)

    def on_run(self, fn: RunFunc) -> RunFunc:
        """Decorator form of the ``run`` argument."""
        self.run = fn
        return fn

    def __repr__(self) -> str:
        return f"Protocol({self.name}/{self.version}, length={self.length})"
