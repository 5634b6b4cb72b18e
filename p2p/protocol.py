"""The public face for sub-protocol authors: ``Protocol``, handlers, and the per-peer connection.

A protocol declares a name, a version and how many message codes it uses. The core matches
capabilities by name and highest shared version, gives each shared protocol an offset after
the 16 reserved base-protocol codes (sorted by name), and routes each message to the handler
registered for its relative code. Payloads are the bytes the sender sent: the core never
decodes them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol as _TypingProtocol, runtime_checkable

from p2p.disconnect import DisconnectReason

if TYPE_CHECKING:
    from p2p.enode import NodeID


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
RunFunc = Callable[[PeerInfo, ProtocolConnection], Awaitable[None]]
InfoFunc = Callable[..., Any]


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
        self.run = run
        self.node_info = node_info
        self.peer_info = peer_info
        # Named counts the protocol keeps (drops, refusals); a server's metrics export each as
        # ``p2p_<protocol>_<name>_total``, read when scraped so the protocol needs no Prometheus.
        self.counters = counters

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

    def on_run(self, fn: RunFunc) -> RunFunc:
        """Decorator form of the ``run`` argument."""
        self.run = fn
        return fn

    def __repr__(self) -> str:
        return f"Protocol({self.name}/{self.version}, length={self.length})"
