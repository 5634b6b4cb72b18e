"""Discovery v5 messages (discv5-wire.md, "Protocol Messages"): frozen values and their
plaintext form ``message-type || rlp(message-data)``.

Only what the service needs for a node table is here (PING to TALKRESP); the topic
messages (REGTOPIC and later) decode as :class:`UnknownMessageType`.

Decoding accepts extra list elements after the known ones, for forward compatibility as in
go-ethereum (its ``rlp:"tail"`` fields), but no bytes after the list: the plaintext is
authenticated, so such bytes can only come from a broken encoder.

NODES keeps each record as its RLP bytes: one record that fails verification should cost
the service that record, not the whole response, and the service has to check each record
against the requested distances anyway.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Final, Union

from p2p.discover.errors import BadRLP
from p2p.discover.v5wire.errors import BadMessage, BadRequestID, UnknownMessageType
from p2p.discover.wire import RLPItem, decode_rlp_list, encode_rlp
from p2p.enode import IPAddress

MAX_REQUEST_ID_SIZE: Final = 8  # discv5-wire.md: request-id is at most 8 bytes
MAX_UINT64_SIZE: Final = 8  # enr-seq and total are 64-bit unsigned integers
MAX_DISTANCE: Final = 256  # log2 distance between 256-bit node IDs
MAX_PORT: Final = 65535


class MessageType(enum.IntEnum):
    PING = 0x01
    PONG = 0x02
    FINDNODE = 0x03
    NODES = 0x04
    TALKREQ = 0x05
    TALKRESP = 0x06


@dataclass(frozen=True, slots=True)
class Ping:
    req_id: bytes
    enr_seq: int


@dataclass(frozen=True, slots=True)
class Pong:
    req_id: bytes
    enr_seq: int
    recipient_ip: IPAddress  # the address the responder saw the PING come from
    recipient_port: int


@dataclass(frozen=True, slots=True)
class FindNode:
    req_id: bytes
    distances: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Nodes:
    req_id: bytes
    total: int  # how many NODES messages answer the request
    records: tuple[bytes, ...]  # each an ENR's RLP, not yet verified (ENR.from_rlp does that)


@dataclass(frozen=True, slots=True)
class TalkReq:
    req_id: bytes
    protocol: bytes
    request: bytes


@dataclass(frozen=True, slots=True)
class TalkResp:
    req_id: bytes
    response: bytes


Message = Union[Ping, Pong, FindNode, Nodes, TalkReq, TalkResp]

MESSAGE_TYPES: Final[dict[type, MessageType]] = {
    Ping: MessageType.PING,
    Pong: MessageType.PONG,
    FindNode: MessageType.FINDNODE,
    Nodes: MessageType.NODES,
    TalkReq: MessageType.TALKREQ,
    TalkResp: MessageType.TALKRESP,
}


def encode_message(message: Message) -> bytes:
    """The plaintext of ``message``. Raises ``ValueError`` for a request ID over 8 bytes,
    which no peer would accept."""
    if len(message.req_id) > MAX_REQUEST_ID_SIZE:
        raise ValueError(f"request ID is {len(message.req_id)} bytes, at most {MAX_REQUEST_ID_SIZE} allowed")
    fields: list[object]
    if type(message) is Pong:  # the most sent message: no field list to walk
        body = (encode_rlp(message.req_id) + encode_rlp(message.enr_seq) + encode_rlp(message.recipient_ip.packed)
                + encode_rlp(message.recipient_port))
        return _PONG_TYPE + _list_prefix(len(body)) + body
    if isinstance(message, Ping):
        fields = [message.req_id, message.enr_seq]
    elif isinstance(message, Pong):
        fields = [message.req_id, message.enr_seq, message.recipient_ip.packed, message.recipient_port]
    elif isinstance(message, FindNode):
        fields = [message.req_id, list(message.distances)]
    elif isinstance(message, Nodes):
        # records are already RLP: splice them into the (then empty) list instead of
        # decoding and re-encoding them
        return bytes((MessageType.NODES,)) + _nodes_rlp(message.req_id, message.total, message.records)
    elif isinstance(message, TalkReq):
        fields = [message.req_id, message.protocol, message.request]
    elif isinstance(message, TalkResp):
        fields = [message.req_id, message.response]
    else:
        raise TypeError(f"not a discv5 message: {type(message).__name__}")
    return bytes((MESSAGE_TYPES[type(message)],)) + encode_rlp(fields)


_PONG_TYPE: Final = bytes((MessageType.PONG,))


def _list_prefix(n: int) -> bytes:
    if n < 56:
        return bytes((0xC0 + n,))
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0xF7 + len(size),)) + size


def _nodes_rlp(req_id: bytes, total: int, records: tuple[bytes, ...]) -> bytes:
    inner = b"".join(records)
    body = encode_rlp(req_id) + encode_rlp(total) + _list_prefix(len(inner)) + inner
    return _list_prefix(len(body)) + body


def nodes_message_size(req_id: bytes, records: tuple[bytes, ...] | list[bytes]) -> int:
    """The plaintext size of a NODES message with these records (total taken as 1 byte),
    so that a responder can pack records into messages that fit a packet."""
    return 1 + len(_nodes_rlp(req_id, 1, tuple(records)))


# ---------------------------------------------------------------------------------------
# Decoding


def _list_end(data: bytes) -> int:
    """Where the RLP list at the start of ``data`` ends (its header says so)."""
    b0 = data[0]
    if b0 < 0xF8:
        return 1 + b0 - 0xC0
    size_len = b0 - 0xF7
    if len(data) < 1 + size_len:
        raise BadMessage("message ends inside a list header")
    return 1 + size_len + int.from_bytes(data[1 : 1 + size_len], "big")


def _bytes(item: RLPItem, what: str) -> bytes:
    if not isinstance(item, bytes):
        raise BadMessage(f"{what} must be a byte string, got a list")
    return item


def _uint(item: RLPItem, what: str, max_size: int) -> int:
    raw = _bytes(item, what)
    if len(raw) > max_size:
        raise BadMessage(f"{what} is {len(raw)} bytes, at most {max_size} allowed")
    if raw[:1] == b"\x00":
        raise BadMessage(f"{what} has a leading zero byte (non-canonical integer)")
    return int.from_bytes(raw, "big")


def _req_id(item: RLPItem) -> bytes:
    raw = _bytes(item, "request ID")
    if len(raw) > MAX_REQUEST_ID_SIZE:
        raise BadRequestID(f"request ID is {len(raw)} bytes, at most {MAX_REQUEST_ID_SIZE} allowed")
    return raw


def _need(fields: list[RLPItem], n: int, what: str) -> None:
    if len(fields) < n:
        raise BadMessage(f"{what} has {len(fields)} fields, needs {n}")


def _ip(item: RLPItem) -> IPAddress:
    raw = _bytes(item, "recipient-ip")
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw)
    if len(raw) == 16:
        return ipaddress.IPv6Address(raw)
    raise BadMessage(f"recipient-ip is {len(raw)} bytes, want 4 or 16")


def _list(item: RLPItem, what: str) -> list[RLPItem]:
    if not isinstance(item, list):
        raise BadMessage(f"{what} must be a list")
    return item


def decode_message(plaintext: bytes) -> Message:
    """The message in a decrypted packet. Raises :class:`BadMessage` (or its subclasses
    :class:`BadRequestID`, :class:`UnknownMessageType`) and nothing else."""
    if not plaintext:
        raise BadMessage("empty message")
    mtype, data = plaintext[0], plaintext[1:]
    if mtype not in MessageType._value2member_map_:
        raise UnknownMessageType(f"message type {mtype:#04x}")
    if not data or data[0] < 0xC0:
        raise BadMessage("message data is not an RLP list")
    if _list_end(data) != len(data):
        raise BadMessage(f"{len(data) - _list_end(data)} bytes after the message's list")
    try:
        fields = decode_rlp_list(data)
    except BadRLP as exc:
        raise BadMessage(f"bad RLP: {exc}") from exc
    kind = MessageType(mtype)
    _need(fields, 1, kind.name)
    req_id = _req_id(fields[0])
    if kind is MessageType.PING:
        _need(fields, 2, "PING")
        return Ping(req_id, _uint(fields[1], "enr-seq", MAX_UINT64_SIZE))
    if kind is MessageType.PONG:
        _need(fields, 4, "PONG")
        port = _uint(fields[3], "recipient-port", 2)
        return Pong(req_id, _uint(fields[1], "enr-seq", MAX_UINT64_SIZE), _ip(fields[2]), port)
    if kind is MessageType.FINDNODE:
        _need(fields, 2, "FINDNODE")
        distances = tuple(_uint(d, "distance", 2) for d in _list(fields[1], "distances"))
        if any(d > MAX_DISTANCE for d in distances):
            raise BadMessage(f"a distance above {MAX_DISTANCE}: {max(distances)}")
        return FindNode(req_id, distances)
    if kind is MessageType.NODES:
        _need(fields, 3, "NODES")
        total = _uint(fields[1], "total", MAX_UINT64_SIZE)
        records = _list(fields[2], "records")
        for r in records:
            _list(r, "a record")
        # the decoder refuses non-canonical RLP, so re-encoding gives back the bytes received
        return Nodes(req_id, total, tuple(encode_rlp(r) for r in records))
    if kind is MessageType.TALKREQ:
        _need(fields, 3, "TALKREQ")
        return TalkReq(req_id, _bytes(fields[1], "protocol"), _bytes(fields[2], "request"))
    _need(fields, 2, "TALKRESP")
    return TalkResp(req_id, _bytes(fields[1], "response"))


__all__ = [
    "FindNode",
    "MAX_REQUEST_ID_SIZE",
    "Message",
    "MessageType",
    "Nodes",
    "Ping",
    "Pong",
    "TalkReq",
    "TalkResp",
    "decode_message",
    "encode_message",
    "nodes_message_size",
]
