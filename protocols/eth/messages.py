"""eth/68 messages this protocol speaks, as typed messages (``p2p.messages``).

    Status          (0x00): [version, networkid, td, blockhash, genesis, forkid [hash, next]]
    GetBlockHeaders (0x03): [request-id, [origin (hash or number), amount, skip, reverse]]
    BlockHeaders    (0x04): [request-id, [header, ...]]

The request-id wrapping is eth/66's, done by the typed layer. Status is sent once by each side
right after the devp2p handshake. Extra trailing elements are ignored (forward compatibility);
anything else that does not fit raises ``MessageDecodeError`` naming the field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, Any

from p2p.messages import Codec, Hash32, MaxLen, Message, MessageDecodeError, Request, Response, UInt32, UInt64, UInt256

from protocols.eth.chain import BlockHeader
from protocols.eth.forkid import ForkID

ETH_VERSION = 68
ETH_LENGTH = 17  # eth/68 uses codes 0x00-0x10 (@ethereumjs/devp2p and go-ethereum agree)
MAX_HEADERS_SERVE = 1024  # go-ethereum's maxHeadersServe: headers per request, at most
MAX_MESSAGE_BYTES = 2 * 1024 * 1024 + 64 * 1024  # geth's softResponseLimit plus headroom

EthDecodeError = MessageDecodeError  # the name this module's errors had before the typed layer


class EthCode(enum.IntEnum):
    STATUS = 0x00
    NEW_BLOCK_HASHES = 0x01
    TRANSACTIONS = 0x02
    GET_BLOCK_HEADERS = 0x03
    BLOCK_HEADERS = 0x04
    NEW_BLOCK = 0x07
    NEW_POOLED_TRANSACTION_HASHES = 0x08


def _origin_item(origin: bytes | int) -> bytes:
    return origin if isinstance(origin, bytes) else origin.to_bytes((origin.bit_length() + 7) // 8, "big")


def _origin(item: Any) -> bytes | int:
    """A 32-byte string is a block hash; anything else a canonical uint64 block number."""
    if not isinstance(item, bytes):
        raise ValueError("must be a byte string")
    if len(item) == 32:
        return item
    if len(item) > 8 or item[:1] == b"\x00":
        raise ValueError("neither a hash nor a canonical uint64")
    return int.from_bytes(item, "big")


Origin = Annotated["bytes | int", Codec(_origin_item, _origin)]
Header = Annotated[BlockHeader, Codec(BlockHeader.fields, BlockHeader.from_fields)]


@dataclass(frozen=True, slots=True)
class Status(Message):
    code = EthCode.STATUS
    max_size = MAX_MESSAGE_BYTES
    version: UInt32
    network_id: UInt64
    total_difficulty: UInt256
    head_hash: Hash32
    genesis_hash: Hash32
    fork_id: ForkID


@dataclass(frozen=True, slots=True)
class BlockHeaders(Response):
    code = EthCode.BLOCK_HEADERS
    max_size = MAX_MESSAGE_BYTES
    single = True
    headers: Annotated[tuple[Header, ...], MaxLen(MAX_HEADERS_SERVE)]


@dataclass(frozen=True, slots=True)
class GetBlockHeaders(Request[BlockHeaders]):
    code = EthCode.GET_BLOCK_HEADERS
    max_size = MAX_MESSAGE_BYTES
    origin: Origin
    amount: UInt64
    skip: UInt64
    reverse: bool
