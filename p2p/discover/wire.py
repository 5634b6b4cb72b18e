"""Discovery v4 packets, sans-IO: bytes in, frozen values out, and back.

Layout on the wire (discv4.md): ``hash(32) || signature(65) || type(1) || RLP data`` where
``hash = keccak256(signature || type || data)`` and the signature is a recoverable secp256k1
signature over ``keccak256(type || data)``; the sender's public key is recovered from it.

Decoding follows EIP-8 forward compatibility: extra list elements, unknown Ping versions and
bytes after the RLP list are accepted. EIP-868 put the ENR sequence number at the end of Ping
and Pong; a value at that place which is not an integer is ignored, because two of EIP-8's own
vectors (older than EIP-868) carry lists there.

The checks are ordered cheapest first so that a flood of garbage costs little: size, hash,
type, RLP, expiration, and only then the (about 45 µs) public key recovery.

The RLP here is a small hand-written codec for the packet shapes: pyrlp's generic encoder
costs about 23 µs per Ping, several times the rest of the packet path except the signature.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Callable, Union

from p2p.crypto import BadSignature, PrivateKey, PublicKey, recover
from p2p.crypto.keccak import keccak256
from p2p.discover.errors import (
    BadFields,
    BadHash,
    BadPacketSignature,
    BadRLP,
    Expired,
    PacketTooLarge,
    PacketTooSmall,
    UnknownPacketType,
)
from p2p.enode import IPAddress

MAX_PACKET_SIZE = 1280  # discv4.md: packets larger than this are never sent nor accepted
HASH_SIZE = 32  # keccak256 of the rest of the packet
SIGNATURE_SIZE = 65  # r || s || recovery id
HEAD_SIZE = HASH_SIZE + SIGNATURE_SIZE
MIN_PACKET_SIZE = HEAD_SIZE + 1  # go-ethereum's errPacketTooSmall bound: header plus type byte
PING_VERSION = 4  # the discv4 protocol version carried in Ping
EXPIRATION = 20.0  # seconds a sent packet stays valid, as go-ethereum's v4 transport
MAX_NEIGHBORS = 12  # go-ethereum's maxNeighbors: 12 IPv6 entries still fit in 1280 bytes
PUBKEY_SIZE = 64  # x || y of a secp256k1 point, the v4 node identity on the wire
MAX_RLP_DEPTH = 16  # packets nest 3 deep; deeper lists in extra elements are refused early
_INT64_SIGN = 1 << 63
_UINT64 = 1 << 64


class PacketType(enum.IntEnum):
    PING = 1
    PONG = 2
    FIND_NODE = 3
    NEIGHBORS = 4
    ENR_REQUEST = 5
    ENR_RESPONSE = 6


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An IP and two ports as carried in Ping and Pong. ``ip`` is None when the bytes on the
    wire are neither 4 nor 16 long (accepted, since a Ping's source address is taken from
    the datagram, never from this field)."""

    ip: IPAddress | None
    udp_port: int
    tcp_port: int


@dataclass(frozen=True, slots=True)
class Ping:
    from_endpoint: Endpoint
    to_endpoint: Endpoint
    expiration: int
    enr_seq: int | None = None
    version: int = PING_VERSION


@dataclass(frozen=True, slots=True)
class Pong:
    to_endpoint: Endpoint
    ping_hash: bytes
    expiration: int
    enr_seq: int | None = None


@dataclass(frozen=True, slots=True)
class FindNode:
    target: bytes  # 64-byte public key; the distance is measured to its keccak256
    expiration: int


@dataclass(frozen=True, slots=True)
class NeighborEntry:
    ip: IPAddress | None
    udp_port: int
    tcp_port: int
    pubkey: bytes  # 64 bytes, not yet checked to be a curve point


@dataclass(frozen=True, slots=True)
class Neighbors:
    nodes: tuple[NeighborEntry, ...]
    expiration: int


@dataclass(frozen=True, slots=True)
class ENRRequest:
    expiration: int


@dataclass(frozen=True, slots=True)
class ENRResponse:
    request_hash: bytes
    record: bytes  # the ENR's RLP as received; the service verifies it with ENR.from_rlp


Packet = Union[Ping, Pong, FindNode, Neighbors, ENRRequest, ENRResponse]

PACKET_TYPES: dict[type, PacketType] = {
    Ping: PacketType.PING,
    Pong: PacketType.PONG,
    FindNode: PacketType.FIND_NODE,
    Neighbors: PacketType.NEIGHBORS,
    ENRRequest: PacketType.ENR_REQUEST,
    ENRResponse: PacketType.ENR_RESPONSE,
}


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded, authenticated packet: the value, its hash (the reply token) and signer."""

    packet: Packet
    hash: bytes
    sender: PublicKey

    @property
    def type(self) -> PacketType:
        return PACKET_TYPES[type(self.packet)]


def expiration_at(now: float) -> int:
    """The expiration stamp for a packet sent at wall-clock time ``now``."""
    return int(now + EXPIRATION)


# ---------------------------------------------------------------------------------------
# RLP: just what the packets need.

RLPItem = Union[bytes, list["RLPItem"]]


def _decode_item(data: bytes, pos: int, end: int, depth: int) -> tuple[RLPItem, int]:
    if pos >= end:
        raise BadRLP("input ends inside an item")
    b0 = data[pos]
    if b0 < 0x80:
        return data[pos:pos + 1], pos + 1
    if b0 < 0xB8:
        start = pos + 1
        length = b0 - 0x80
        stop = start + length
        if stop > end:
            raise BadRLP("string runs past the end of its list")
        if length == 1 and data[start] < 0x80:
            raise BadRLP("non-canonical single byte string")
        return data[start:stop], stop
    if b0 < 0xC0:
        start, length = _long_length(data, pos, end, b0 - 0xB7)
        stop = start + length
        if stop > end:
            raise BadRLP("string runs past the end of its list")
        return data[start:stop], stop
    if b0 < 0xF8:
        start = pos + 1
        stop = start + b0 - 0xC0
    else:
        start, length = _long_length(data, pos, end, b0 - 0xF7)
        stop = start + length
    if stop > end:
        raise BadRLP("list runs past the end of its parent")
    if depth >= MAX_RLP_DEPTH:
        raise BadRLP("lists nested too deeply")
    items: list[RLPItem] = []
    p = start
    while p < stop:
        item, p = _decode_item(data, p, stop, depth + 1)
        items.append(item)
    return items, stop


def _long_length(data: bytes, pos: int, end: int, size_len: int) -> tuple[int, int]:
    start = pos + 1 + size_len
    if start > end:
        raise BadRLP("input ends inside a length prefix")
    if data[pos + 1] == 0:
        raise BadRLP("length prefix with leading zero")
    length = int.from_bytes(data[pos + 1:start], "big")
    if length < 56:
        raise BadRLP("long form used for a short length")
    return start, length


def decode_rlp_list(data: bytes) -> list[RLPItem]:
    """Decode the RLP list at the start of ``data``; bytes after it are ignored (EIP-8)."""
    if not data:
        raise BadRLP("no packet data")
    if data[0] < 0xC0:
        raise BadRLP("packet data is not an RLP list")
    item, _ = _decode_item(data, 0, len(data), 0)
    assert isinstance(item, list)
    return item


def _list_spans(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the top-level elements of the RLP list at the start of ``data``."""
    if not data or data[0] < 0xC0:
        raise BadRLP("packet data is not an RLP list")
    b0 = data[0]
    if b0 < 0xF8:
        start, stop = 1, 1 + b0 - 0xC0
    else:
        start, length = _long_length(data, 0, len(data), b0 - 0xF7)
        stop = start + length
    if stop > len(data):
        raise BadRLP("list runs past the end of the packet")
    spans = []
    p = start
    while p < stop:
        _, q = _decode_item(data, p, stop, 1)
        spans.append((p, q))
        p = q
    return spans


def _enc_bytes(b: bytes) -> bytes:
    n = len(b)
    if n == 1 and b[0] < 0x80:
        return b
    if n < 56:
        return bytes((0x80 + n,)) + b
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0xB7 + len(size),)) + size + b


def _enc_int(v: int) -> bytes:
    if v == 0:
        return b"\x80"
    if v < 0x80:
        return bytes((v,))
    raw = v.to_bytes((v.bit_length() + 7) // 8, "big")
    return bytes((0x80 + len(raw),)) + raw


def _enc_list(encoded_items: Iterable[bytes]) -> bytes:
    body = b"".join(encoded_items)
    n = len(body)
    if n < 56:
        return bytes((0xC0 + n,)) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0xF7 + len(size),)) + size + body


def encode_rlp(item: object) -> bytes:
    """Encode bytes, non-negative integers and (nested) lists or tuples of them."""
    if isinstance(item, int):
        if item < 0:
            raise ValueError("RLP has no negative integers")
        return _enc_int(item)
    if isinstance(item, (bytes, bytearray)):
        return _enc_bytes(bytes(item))
    if isinstance(item, (list, tuple)):
        return _enc_list(encode_rlp(x) for x in item)
    raise TypeError(f"cannot RLP-encode {type(item).__name__}")


# ---------------------------------------------------------------------------------------
# Field readers: each raises BadFields for a value of the wrong shape.

def _as_bytes(item: RLPItem, what: str) -> bytes:
    if not isinstance(item, bytes):
        raise BadFields(f"{what} must be a byte string, got a list")
    return item


def _as_list(item: RLPItem, what: str) -> list[RLPItem]:
    if not isinstance(item, list):
        raise BadFields(f"{what} must be a list")
    return item


def _as_uint(item: RLPItem, what: str, max_bytes: int) -> int:
    raw = _as_bytes(item, what)
    if len(raw) > max_bytes:
        raise BadFields(f"{what} is longer than {max_bytes} bytes")
    return int.from_bytes(raw, "big")


def _as_expiration(item: RLPItem) -> int:
    # A uint64 on the wire, compared as int64 (as go-ethereum casts it): stamps with the
    # top bit set are far in the past, not far in the future.
    value = _as_uint(item, "expiration", 8)
    return value - _UINT64 if value >= _INT64_SIGN else value


def _as_ip(item: RLPItem, what: str) -> IPAddress | None:
    raw = _as_bytes(item, what)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw)
    if len(raw) == 16:
        return ipaddress.IPv6Address(raw)
    return None


def _as_endpoint(item: RLPItem, what: str) -> Endpoint:
    fields = _as_list(item, what)
    if len(fields) < 3:
        raise BadFields(f"{what} has {len(fields)} elements, wants 3")
    return Endpoint(_as_ip(fields[0], what + " ip"), _as_uint(fields[1], what + " udp port", 2),
                    _as_uint(fields[2], what + " tcp port", 2))


def _as_enr_seq(fields: list[RLPItem], index: int) -> int | None:
    # Lenient by design (see the module docstring): lists or over-long values are ignored.
    if len(fields) <= index:
        return None
    item = fields[index]
    if not isinstance(item, bytes) or len(item) > 8:
        return None
    return int.from_bytes(item, "big")


def _need(fields: list[RLPItem], n: int, what: str) -> None:
    if len(fields) < n:
        raise BadFields(f"{what} has {len(fields)} elements, wants at least {n}")


def _decode_body(ptype: int, body: bytes) -> Packet:
    if ptype == PacketType.ENR_RESPONSE:
        spans = _list_spans(body)
        if len(spans) < 2:
            raise BadFields(f"ENRResponse has {len(spans)} elements, wants at least 2")
        token, _ = _decode_item(body, spans[0][0], spans[0][1], 1)
        token = _as_bytes(token, "request hash")
        if len(token) != HASH_SIZE:
            raise BadFields("ENRResponse request hash must be 32 bytes")
        start, stop = spans[1]
        if body[start] < 0xC0:
            raise BadFields("ENRResponse record must be a list")
        return ENRResponse(token, body[start:stop])
    fields = decode_rlp_list(body)
    if ptype == PacketType.PING:
        _need(fields, 4, "Ping")
        return Ping(
            version=_as_uint(fields[0], "version", 8),
            from_endpoint=_as_endpoint(fields[1], "from"),
            to_endpoint=_as_endpoint(fields[2], "to"),
            expiration=_as_expiration(fields[3]),
            enr_seq=_as_enr_seq(fields, 4),
        )
    if ptype == PacketType.PONG:
        _need(fields, 3, "Pong")
        token = _as_bytes(fields[1], "ping hash")
        if len(token) != HASH_SIZE:
            raise BadFields("Pong ping hash must be 32 bytes")
        return Pong(
            to_endpoint=_as_endpoint(fields[0], "to"),
            ping_hash=token,
            expiration=_as_expiration(fields[2]),
            enr_seq=_as_enr_seq(fields, 3),
        )
    if ptype == PacketType.FIND_NODE:
        _need(fields, 2, "FindNode")
        target = _as_bytes(fields[0], "target")
        if len(target) != PUBKEY_SIZE:
            raise BadFields("FindNode target must be 64 bytes")
        return FindNode(target, _as_expiration(fields[1]))
    if ptype == PacketType.NEIGHBORS:
        _need(fields, 2, "Neighbors")
        entries = []
        for raw_entry in _as_list(fields[0], "nodes"):
            entry = _as_list(raw_entry, "node")
            _need(entry, 4, "node")
            pubkey = _as_bytes(entry[3], "node key")
            if len(pubkey) != PUBKEY_SIZE:
                raise BadFields("node key must be 64 bytes")
            entries.append(NeighborEntry(_as_ip(entry[0], "node ip"), _as_uint(entry[1], "udp port", 2),
                                         _as_uint(entry[2], "tcp port", 2), pubkey))
        return Neighbors(tuple(entries), _as_expiration(fields[1]))
    if ptype == PacketType.ENR_REQUEST:
        _need(fields, 1, "ENRRequest")
        return ENRRequest(_as_expiration(fields[0]))
    raise UnknownPacketType(f"packet type {ptype}")


def decode_packet(data: bytes, *, now: float | None = None,
                  recover: Callable[[bytes, bytes], PublicKey] = recover) -> Received:
    """Check and decode one datagram. ``now`` (wall-clock seconds) enables the expiration
    check; leave it None to decode old packets such as the spec vectors. ``recover`` finds the
    signer (the identity scheme's; secp256k1 recovery unless a simulation says otherwise)."""
    if len(data) < MIN_PACKET_SIZE:
        raise PacketTooSmall(f"{len(data)} bytes, the header alone is {MIN_PACKET_SIZE}")
    if len(data) > MAX_PACKET_SIZE:
        raise PacketTooLarge(f"{len(data)} bytes, at most {MAX_PACKET_SIZE} allowed")
    data = bytes(data)
    digest = data[:HASH_SIZE]
    if keccak256(data[HASH_SIZE:]) != digest:
        raise BadHash("packet hash does not match its content")
    ptype = data[HEAD_SIZE]
    if not PacketType.PING <= ptype <= PacketType.ENR_RESPONSE:
        raise UnknownPacketType(f"packet type {ptype}")
    packet = _decode_body(ptype, data[HEAD_SIZE + 1:])
    if now is not None and not isinstance(packet, ENRResponse) and packet.expiration < now:
        raise Expired(f"{PacketType(ptype).name} expired {now - packet.expiration:.0f} s ago")
    try:
        sender = recover(keccak256(data[HEAD_SIZE:]), data[HASH_SIZE:HEAD_SIZE])
    except BadSignature as exc:
        raise BadPacketSignature(str(exc)) from exc
    return Received(packet, digest, sender)


# ---------------------------------------------------------------------------------------
# Encoding

def _enc_ip(ip: IPAddress | None) -> bytes:
    return _enc_bytes(ip.packed if ip is not None else b"")


def _enc_endpoint(ep: Endpoint) -> bytes:
    return _enc_list((_enc_ip(ep.ip), _enc_int(ep.udp_port), _enc_int(ep.tcp_port)))


def _enc_neighbor(entry: NeighborEntry) -> bytes:
    return _enc_list((_enc_ip(entry.ip), _enc_int(entry.udp_port), _enc_int(entry.tcp_port),
                      _enc_bytes(entry.pubkey)))


def encode_body(packet: Packet) -> bytes:
    """The RLP data of a packet (without header and type byte)."""
    if isinstance(packet, Ping):
        items = [_enc_int(packet.version), _enc_endpoint(packet.from_endpoint),
                 _enc_endpoint(packet.to_endpoint), _enc_int(packet.expiration)]
        if packet.enr_seq is not None:
            items.append(_enc_int(packet.enr_seq))
        return _enc_list(items)
    if isinstance(packet, Pong):
        items = [_enc_endpoint(packet.to_endpoint), _enc_bytes(packet.ping_hash), _enc_int(packet.expiration)]
        if packet.enr_seq is not None:
            items.append(_enc_int(packet.enr_seq))
        return _enc_list(items)
    if isinstance(packet, FindNode):
        return _enc_list((_enc_bytes(packet.target), _enc_int(packet.expiration)))
    if isinstance(packet, Neighbors):
        return _enc_list((_enc_list(_enc_neighbor(e) for e in packet.nodes), _enc_int(packet.expiration)))
    if isinstance(packet, ENRRequest):
        return _enc_list((_enc_int(packet.expiration),))
    if isinstance(packet, ENRResponse):
        return _enc_list((_enc_bytes(packet.request_hash), packet.record))
    raise TypeError(f"not a discovery packet: {packet!r}")


def seal(key: PrivateKey, ptype: int, body: bytes) -> tuple[bytes, bytes]:
    """Sign and hash ``type || body``; returns the datagram and its hash (the reply token)."""
    signed = bytes((ptype,)) + body
    signature = key.sign(keccak256(signed))
    rest = signature + signed
    digest = keccak256(rest)
    return digest + rest, digest


def encode_packet(key: PrivateKey, packet: Packet) -> tuple[bytes, bytes]:
    """The datagram for ``packet`` signed by ``key``, and its hash. Raises ValueError for a
    packet that would exceed 1280 bytes (split Neighbors with :func:`encode_neighbors`)."""
    datagram, digest = seal(key, PACKET_TYPES[type(packet)], encode_body(packet))
    if len(datagram) > MAX_PACKET_SIZE:
        raise ValueError(f"{type(packet).__name__} packet of {len(datagram)} bytes exceeds {MAX_PACKET_SIZE}")
    return datagram, digest


def encode_neighbors(key: PrivateKey, entries: Sequence[NeighborEntry], expiration: int) -> list[bytes]:
    """Neighbors datagrams carrying ``entries``: at most 12 per packet, each packet within
    1280 bytes. An empty ``entries`` still gives one (empty) packet: FindNode is always
    answered."""
    exp = _enc_int(expiration)
    # Room for the header, type byte, the two list headers (3 bytes each at most) and expiration.
    budget = MAX_PACKET_SIZE - HEAD_SIZE - 1 - 6 - len(exp)
    packets: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for entry in entries:
        enc = _enc_neighbor(entry)
        if chunk and (len(chunk) == MAX_NEIGHBORS or size + len(enc) > budget):
            packets.append(seal(key, PacketType.NEIGHBORS, _enc_list((_enc_list(chunk), exp)))[0])
            chunk, size = [], 0
        chunk.append(enc)
        size += len(enc)
    if chunk or not packets:
        packets.append(seal(key, PacketType.NEIGHBORS, _enc_list((_enc_list(chunk), exp)))[0])
    return packets


__all__ = [
    "ENRRequest",
    "ENRResponse",
    "EXPIRATION",
    "Endpoint",
    "FindNode",
    "MAX_NEIGHBORS",
    "MAX_PACKET_SIZE",
    "NeighborEntry",
    "Neighbors",
    "Packet",
    "PacketType",
    "Ping",
    "Pong",
    "Received",
    "decode_packet",
    "decode_rlp_list",
    "encode_body",
    "encode_neighbors",
    "encode_packet",
    "encode_rlp",
    "expiration_at",
    "seal",
]
