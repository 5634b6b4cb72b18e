"""The devp2p base protocol, sans-IO: Hello, Disconnect, Ping/Pong payloads and capability matching.

Nothing here touches a socket. :mod:`p2p.peer` drives these over an RLPx connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import rlp

from p2p.disconnect import DisconnectReason
from p2p.protocol import Capability, Protocol

P2P_VERSION = 5  # devp2p base protocol version; 5 turns on snappy (rlpx.md)
SNAPPY_VERSION = 5  # both sides at this version or later compress payloads with snappy
BASE_PROTOCOL_LENGTH = 16  # message codes reserved for the base protocol before any capability
MAX_HELLO_SIZE = 2 * 1024  # go-ethereum's baseProtocolMaxMsgSize: a Hello is small
NODE_ID_SIZE = 64  # Hello carries the uncompressed secp256k1 public key without the 0x04 prefix
MAX_CAPABILITIES = 64  # far more than any client announces; bounds the work a Hello can cause
MAX_CLIENT_ID = 256  # longer client names are cut when logged and reported


class MessageCode:
    """Base protocol message codes (rlpx.md, "p2p Capability")."""

    HELLO = 0x00
    DISCONNECT = 0x01
    PING = 0x02
    PONG = 0x03


EMPTY_LIST = b"\xc0"  # Ping and Pong carry an empty RLP list


class PeerError(Exception):
    """Why a peer is (to be) disconnected: the reason to send or that was received.

    ``remote_requested`` is true when the remote sent the Disconnect.
    """

    def __init__(
        self, message: str, reason: DisconnectReason | int, *, remote_requested: bool = False
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.remote_requested = remote_requested


class HelloError(PeerError):
    """A Hello that cannot be accepted (malformed, too large, wrong identity)."""


class RemoteDisconnected(PeerError):
    """The remote sent Disconnect (instead of Hello, or later)."""

    def __init__(self, reason: DisconnectReason | int) -> None:
        name = reason.describe() if isinstance(reason, DisconnectReason) else f"unknown reason {reason}"
        super().__init__(f"remote disconnected: {name}", reason, remote_requested=True)


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    client_id: str
    caps: tuple[Capability, ...]
    listen_port: int
    node_id: bytes  # 64-byte public key

    def encode(self) -> bytes:
        return rlp.encode(
            [
                self.version,
                self.client_id.encode("utf-8"),
                [[c.name.encode("ascii"), c.version] for c in self.caps],
                self.listen_port,
                self.node_id,
            ]
        )


def _uint(item: object, what: str) -> int:
    # Lenient as EIP-8 asks: a leading zero byte is not a reason to drop a peer.
    if not isinstance(item, bytes):
        raise HelloError(f"Hello {what} is a list, expected an integer", DisconnectReason.BREACH_OF_PROTOCOL)
    if len(item) > 8:
        raise HelloError(f"Hello {what} is {len(item)} bytes long", DisconnectReason.BREACH_OF_PROTOCOL)
    return int.from_bytes(item, "big")


def decode_hello(payload: bytes) -> Hello:
    """Decode a Hello payload (RLP list, never compressed). Extra list elements are ignored."""
    if len(payload) > MAX_HELLO_SIZE:
        raise HelloError(f"Hello is {len(payload)} bytes, more than {MAX_HELLO_SIZE}", DisconnectReason.BREACH_OF_PROTOCOL)
    try:
        items = rlp.decode(payload, strict=False)
    except rlp.DecodingError as exc:
        raise HelloError(f"Hello is not RLP: {exc}", DisconnectReason.BREACH_OF_PROTOCOL) from exc
    if not isinstance(items, list) or len(items) < 5:
        raise HelloError("Hello is not a list of at least 5 elements", DisconnectReason.BREACH_OF_PROTOCOL)
    version = _uint(items[0], "version")
    raw_client = items[1]
    if not isinstance(raw_client, bytes):
        raise HelloError("Hello client ID is a list", DisconnectReason.BREACH_OF_PROTOCOL)
    client_id = raw_client[:MAX_CLIENT_ID].decode("utf-8", errors="replace")
    raw_caps = items[2]
    if not isinstance(raw_caps, list):
        raise HelloError("Hello capabilities are not a list", DisconnectReason.BREACH_OF_PROTOCOL)
    if len(raw_caps) > MAX_CAPABILITIES:
        raise HelloError(f"Hello has {len(raw_caps)} capabilities", DisconnectReason.BREACH_OF_PROTOCOL)
    caps: list[Capability] = []
    for cap in raw_caps:
        if not isinstance(cap, list) or len(cap) < 2 or not isinstance(cap[0], bytes):
            raise HelloError("Hello capability is not a [name, version] list", DisconnectReason.BREACH_OF_PROTOCOL)
        try:
            name = cap[0].decode("ascii")
        except UnicodeDecodeError as exc:
            raise HelloError("Hello capability name is not ASCII", DisconnectReason.BREACH_OF_PROTOCOL) from exc
        caps.append(Capability(name, _uint(cap[1], "capability version")))
    listen_port = _uint(items[3], "listen port")
    node_id = items[4]
    if not isinstance(node_id, bytes) or len(node_id) != NODE_ID_SIZE:
        size = len(node_id) if isinstance(node_id, bytes) else "a list"
        raise HelloError(f"Hello node ID is {size} bytes, expected {NODE_ID_SIZE}", DisconnectReason.INVALID_IDENTITY)
    return Hello(version, client_id, tuple(caps), listen_port, node_id)


def encode_disconnect(reason: DisconnectReason | int) -> bytes:
    return rlp.encode([int(reason)])


def decode_disconnect(payload: bytes) -> DisconnectReason | int:
    """The reason of a Disconnect payload: ``[reason]``, the bare ``reason`` some clients send,
    or nothing at all (read as REQUESTED). Anything undecodable is also read as REQUESTED: the
    remote is leaving either way."""
    if not payload:
        return DisconnectReason.REQUESTED
    try:
        item = rlp.decode(payload, strict=False)
    except rlp.DecodingError:
        return DisconnectReason.REQUESTED
    if isinstance(item, list):
        if not item:
            return DisconnectReason.REQUESTED
        item = item[0]
    if not isinstance(item, bytes) or len(item) > 8:
        return DisconnectReason.REQUESTED
    return DisconnectReason.parse(int.from_bytes(item, "big"))


@dataclass(frozen=True, slots=True)
class MatchedProtocol:
    """A protocol both sides run, at the version chosen, with its message-code offset."""

    protocol: Protocol
    offset: int

    @property
    def name(self) -> str:
        return self.protocol.name

    @property
    def version(self) -> int:
        return self.protocol.version

    @property
    def length(self) -> int:
        return self.protocol.length


def match_capabilities(local: Sequence[Protocol], remote: Iterable[Capability]) -> list[MatchedProtocol]:
    """Protocols shared by name and version, the highest shared version per name, with offsets
    assigned after the base protocol's reserved codes in sorted name order (as devp2p)."""
    remote_set = {(c.name, c.version) for c in remote}
    best: dict[str, Protocol] = {}
    for proto in local:
        if (proto.name, proto.version) in remote_set:
            cur = best.get(proto.name)
            if cur is None or proto.version > cur.version:
                best[proto.name] = proto
    matched: list[MatchedProtocol] = []
    offset = BASE_PROTOCOL_LENGTH
    for name in sorted(best):
        proto = best[name]
        matched.append(MatchedProtocol(proto, offset))
        offset += proto.length
    return matched


def local_capabilities(protocols: Iterable[Protocol]) -> tuple[Capability, ...]:
    """What our Hello announces: every (name, version) we run, sorted, without repeats."""
    return tuple(sorted({p.capability for p in protocols}, key=lambda c: (c.name, c.version)))


__all__ = [
    "BASE_PROTOCOL_LENGTH",
    "EMPTY_LIST",
    "Hello",
    "HelloError",
    "MAX_HELLO_SIZE",
    "MatchedProtocol",
    "MessageCode",
    "P2P_VERSION",
    "PeerError",
    "RemoteDisconnected",
    "SNAPPY_VERSION",
    "decode_disconnect",
    "decode_hello",
    "encode_disconnect",
    "local_capabilities",
    "match_capabilities",
]
