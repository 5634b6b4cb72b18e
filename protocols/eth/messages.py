"""eth/68 messages this protocol speaks (sans-IO): Status, GetBlockHeaders, BlockHeaders.

    Status          (0x00): [version, networkid, td, blockhash, genesis, forkid [hash, next]]
    GetBlockHeaders (0x03): [request-id, [origin (hash or number), amount, skip, reverse]]
    BlockHeaders    (0x04): [request-id, [header, ...]]

The request-id wrapping is eth/66's. Status is sent once by each side right after the
devp2p handshake. Extra trailing elements are ignored (forward compatibility); anything else
that does not fit raises ``EthDecodeError``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import rlp
from rlp.exceptions import DecodingError

from protocols.eth.chain import BlockHeader, HeaderError
from protocols.eth.forkid import ForkID

ETH_VERSION = 68
ETH_LENGTH = 17  # eth/68 uses codes 0x00-0x10 (@ethereumjs/devp2p and go-ethereum agree)
MAX_HEADERS_SERVE = 1024  # go-ethereum's maxHeadersServe: headers per request, at most
MAX_MESSAGE_BYTES = 2 * 1024 * 1024 + 64 * 1024  # geth's softResponseLimit plus headroom


class EthCode(enum.IntEnum):
    STATUS = 0x00
    NEW_BLOCK_HASHES = 0x01
    TRANSACTIONS = 0x02
    GET_BLOCK_HEADERS = 0x03
    BLOCK_HEADERS = 0x04
    NEW_BLOCK = 0x07
    NEW_POOLED_TRANSACTION_HASHES = 0x08


class EthDecodeError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"eth message {code:#04x}: {reason}")
        self.code = code
        self.reason = reason


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


def _int(code: int, raw: object, name: str, max_bytes: int = 8) -> int:
    if not isinstance(raw, bytes):
        raise EthDecodeError(code, f"{name} must be a byte string")
    if len(raw) > max_bytes:
        raise EthDecodeError(code, f"{name} is longer than {max_bytes} bytes")
    if raw[:1] == b"\x00":
        raise EthDecodeError(code, f"{name} has a leading zero byte")
    return int.from_bytes(raw, "big")


def _hash(code: int, raw: object, name: str) -> bytes:
    if not isinstance(raw, bytes) or len(raw) != 32:
        raise EthDecodeError(code, f"{name} must be 32 bytes")
    return raw


def _list(code: int, payload: bytes) -> list[object]:
    if len(payload) > MAX_MESSAGE_BYTES:
        raise EthDecodeError(code, "message too large")
    try:
        items = rlp.decode(payload, strict=True)
    except DecodingError as exc:
        raise EthDecodeError(code, f"invalid RLP: {exc}") from None
    if not isinstance(items, list):
        raise EthDecodeError(code, "expected a list")
    return items


@dataclass(frozen=True, slots=True)
class Status:
    version: int
    network_id: int
    total_difficulty: int
    head_hash: bytes
    genesis_hash: bytes
    fork_id: ForkID

    def encode(self) -> bytes:
        return rlp.encode([_uint(self.version), _uint(self.network_id), _uint(self.total_difficulty),
                           self.head_hash, self.genesis_hash,
                           [self.fork_id.hash, _uint(self.fork_id.next)]])

    @classmethod
    def decode(cls, payload: bytes) -> "Status":
        code = EthCode.STATUS
        items = _list(code, payload)
        if len(items) < 6:
            raise EthDecodeError(code, "Status has fewer than 6 elements")
        fork = items[5]
        if not isinstance(fork, list) or len(fork) < 2:
            raise EthDecodeError(code, "fork ID must be a list [hash, next]")
        if not isinstance(fork[0], bytes) or len(fork[0]) != 4:
            raise EthDecodeError(code, "fork hash must be 4 bytes")
        return cls(version=_int(code, items[0], "version", 4),
                   network_id=_int(code, items[1], "network ID"),
                   total_difficulty=_int(code, items[2], "total difficulty", 32),
                   head_hash=_hash(code, items[3], "head hash"),
                   genesis_hash=_hash(code, items[4], "genesis hash"),
                   fork_id=ForkID(fork[0], _int(code, fork[1], "fork next")))


@dataclass(frozen=True, slots=True)
class GetBlockHeaders:
    request_id: int
    origin: bytes | int  # a 32-byte hash or a block number
    amount: int
    skip: int
    reverse: bool

    def encode(self) -> bytes:
        origin = self.origin if isinstance(self.origin, bytes) else _uint(self.origin)
        return rlp.encode([_uint(self.request_id),
                           [origin, _uint(self.amount), _uint(self.skip), _uint(int(self.reverse))]])

    @classmethod
    def decode(cls, payload: bytes) -> "GetBlockHeaders":
        code = EthCode.GET_BLOCK_HEADERS
        items = _list(code, payload)
        if len(items) < 2 or not isinstance(items[1], list) or len(items[1]) < 4:
            raise EthDecodeError(code, "expected [request-id, [origin, amount, skip, reverse]]")
        query = items[1]
        raw_origin = query[0]
        if not isinstance(raw_origin, bytes):
            raise EthDecodeError(code, "origin must be a byte string")
        origin: bytes | int = raw_origin if len(raw_origin) == 32 else _int(code, raw_origin, "origin")
        reverse = _int(code, query[3], "reverse", 1)
        if reverse > 1:
            raise EthDecodeError(code, "reverse must be 0 or 1")
        return cls(request_id=_int(code, items[0], "request ID"), origin=origin,
                   amount=_int(code, query[1], "amount"), skip=_int(code, query[2], "skip"),
                   reverse=bool(reverse))


@dataclass(frozen=True, slots=True)
class BlockHeaders:
    request_id: int
    headers: tuple[BlockHeader, ...]

    def encode(self) -> bytes:
        return rlp.encode([_uint(self.request_id), [h.fields() for h in self.headers]])

    @classmethod
    def decode(cls, payload: bytes) -> "BlockHeaders":
        code = EthCode.BLOCK_HEADERS
        items = _list(code, payload)
        if len(items) < 2 or not isinstance(items[1], list):
            raise EthDecodeError(code, "expected [request-id, [header, ...]]")
        if len(items[1]) > MAX_HEADERS_SERVE:
            raise EthDecodeError(code, f"more than {MAX_HEADERS_SERVE} headers")
        try:
            headers = tuple(BlockHeader.from_fields(h) for h in items[1])
        except HeaderError as exc:
            raise EthDecodeError(code, f"bad header: {exc}") from None
        return cls(request_id=_int(code, items[0], "request ID"), headers=headers)
