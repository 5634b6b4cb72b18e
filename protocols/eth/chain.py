"""Block headers and an in-memory chain of them (sans-IO).

A header is the RLP list the Yellow Paper defines; its hash is keccak256 of that RLP. Fields
added by later forks (base fee since London, withdrawals root since Shanghai, ...) are kept
as raw trailing elements so that the hash of any real header comes out right.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import rlp
from rlp.exceptions import DecodingError

from p2p.crypto import keccak256

EMPTY_UNCLES_HASH = keccak256(rlp.encode([]))  # keccak256(rlp([])): a block with no ommers
EMPTY_TRIE_ROOT = keccak256(rlp.encode(b""))  # root of an empty Merkle-Patricia trie
LEGACY_FIELDS = 15  # fields of a header before London
MAX_HEADER_FIELDS = 21  # Prague's header has 21 fields; anything longer is not a header
MAX_HEADER_BYTES = 1024  # real headers are ~500-700 bytes

_HASH_FIELDS = {"parent_hash": 32, "uncles_hash": 32, "state_root": 32, "tx_root": 32,
                "receipt_root": 32, "mix_hash": 32}


class HeaderError(ValueError):
    """Bytes that are not a block header."""


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


def _int(raw: object, name: str) -> int:
    if not isinstance(raw, bytes) or len(raw) > 32 or raw[:1] == b"\x00":
        raise HeaderError(f"{name} is not a canonical integer")
    return int.from_bytes(raw, "big")


@dataclass(frozen=True, slots=True)
class BlockHeader:
    parent_hash: bytes
    uncles_hash: bytes
    coinbase: bytes
    state_root: bytes
    tx_root: bytes
    receipt_root: bytes
    bloom: bytes
    difficulty: int
    number: int
    gas_limit: int
    gas_used: int
    timestamp: int
    extra_data: bytes
    mix_hash: bytes
    nonce: bytes
    later_fields: tuple[bytes, ...] = ()  # base fee and what came after, as raw RLP items
    hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, size in _HASH_FIELDS.items():
            if len(getattr(self, name)) != size:
                raise HeaderError(f"{name} must be {size} bytes")
        if len(self.coinbase) != 20 or len(self.bloom) != 256 or len(self.nonce) != 8:
            raise HeaderError("coinbase, bloom or nonce has the wrong size")
        if len(self.extra_data) > 32:
            raise HeaderError("extra data is longer than 32 bytes")
        object.__setattr__(self, "hash", keccak256(self.encode()))

    def fields(self) -> list[bytes]:
        return [self.parent_hash, self.uncles_hash, self.coinbase, self.state_root, self.tx_root,
                self.receipt_root, self.bloom, _uint(self.difficulty), _uint(self.number),
                _uint(self.gas_limit), _uint(self.gas_used), _uint(self.timestamp),
                self.extra_data, self.mix_hash, self.nonce, *self.later_fields]

    def encode(self) -> bytes:
        return rlp.encode(self.fields())

    @classmethod
    def from_fields(cls, items: object) -> "BlockHeader":
        if not isinstance(items, list) or not LEGACY_FIELDS <= len(items) <= MAX_HEADER_FIELDS:
            raise HeaderError(f"a header is a list of {LEGACY_FIELDS}-{MAX_HEADER_FIELDS} items")
        if not all(isinstance(item, bytes) for item in items):
            raise HeaderError("header fields must be byte strings")
        return cls(items[0], items[1], items[2], items[3], items[4], items[5], items[6],
                   _int(items[7], "difficulty"), _int(items[8], "number"),
                   _int(items[9], "gas limit"), _int(items[10], "gas used"),
                   _int(items[11], "timestamp"), items[12], items[13], items[14],
                   tuple(items[15:]))

    @classmethod
    def decode(cls, data: bytes) -> "BlockHeader":
        if len(data) > MAX_HEADER_BYTES:
            raise HeaderError("header too large")
        try:
            items = rlp.decode(data, strict=True)
        except DecodingError as exc:
            raise HeaderError(f"invalid RLP: {exc}") from None
        return cls.from_fields(items)

    def child(self, *, timestamp: int | None = None, extra_data: bytes = b"",
              difficulty: int | None = None) -> "BlockHeader":
        """An empty block on top of this one (no transactions, same state)."""
        return BlockHeader(
            parent_hash=self.hash, uncles_hash=EMPTY_UNCLES_HASH, coinbase=bytes(20),
            state_root=self.state_root, tx_root=EMPTY_TRIE_ROOT, receipt_root=EMPTY_TRIE_ROOT,
            bloom=bytes(256), difficulty=self.difficulty if difficulty is None else difficulty,
            number=self.number + 1, gas_limit=self.gas_limit, gas_used=0,
            timestamp=self.timestamp + 12 if timestamp is None else timestamp,
            extra_data=extra_data, mix_hash=bytes(32), nonce=bytes(8))


# Mainnet's genesis header (block 0); its hash is the well-known d4e56740...cb8fa3.
MAINNET_GENESIS = BlockHeader(
    parent_hash=bytes(32),
    uncles_hash=EMPTY_UNCLES_HASH,
    coinbase=bytes(20),
    state_root=bytes.fromhex("d7f8974fb5ac78d9ac099b9ad5018bedc2ce0a72dad1827a1709da30580f0544"),
    tx_root=EMPTY_TRIE_ROOT,
    receipt_root=EMPTY_TRIE_ROOT,
    bloom=bytes(256),
    difficulty=0x400000000,
    number=0,
    gas_limit=5000,
    gas_used=0,
    timestamp=0,
    extra_data=bytes.fromhex("11bbe8db4e347b4e8c937c1c8370e4b5ed33adb3db69cbdb7a38e1e50b1b82fa"),
    mix_hash=bytes(32),
    nonce=bytes.fromhex("0000000000000042"),
)


class ChainError(ValueError):
    """A header that does not extend the chain."""


class Chain:
    """Headers from genesis to head, linked by parent hash, indexed by number and hash."""

    def __init__(self, genesis: BlockHeader) -> None:
        if genesis.number != 0:
            raise ChainError("genesis must be block 0")
        self._by_number: list[BlockHeader] = [genesis]
        self._by_hash: dict[bytes, BlockHeader] = {genesis.hash: genesis}

    @classmethod
    def build(cls, genesis: BlockHeader, length: int) -> "Chain":
        """Genesis plus ``length`` empty blocks on top of it."""
        chain = cls(genesis)
        for _ in range(length):
            chain.append(chain.head.child())
        return chain

    @property
    def genesis(self) -> BlockHeader:
        return self._by_number[0]

    @property
    def head(self) -> BlockHeader:
        return self._by_number[-1]

    @property
    def total_difficulty(self) -> int:
        return sum(h.difficulty for h in self._by_number)

    def __len__(self) -> int:
        return len(self._by_number)

    def __iter__(self) -> Iterator[BlockHeader]:
        return iter(self._by_number)

    def append(self, header: BlockHeader) -> None:
        if header.parent_hash != self.head.hash or header.number != self.head.number + 1:
            raise ChainError(f"block {header.number} does not extend head {self.head.number}")
        self._by_number.append(header)
        self._by_hash[header.hash] = header

    def by_number(self, number: int) -> BlockHeader | None:
        return self._by_number[number] if 0 <= number < len(self._by_number) else None

    def by_hash(self, block_hash: bytes) -> BlockHeader | None:
        return self._by_hash.get(block_hash)

    def headers(self, origin: bytes | int, amount: int, skip: int, reverse: bool) -> list[BlockHeader]:
        """The answer to GetBlockHeaders: up to ``amount`` headers from ``origin``, every
        ``skip + 1``-th, towards genesis when ``reverse``. Unknown origin gives none."""
        start = self.by_hash(origin) if isinstance(origin, bytes) else self.by_number(origin)
        if start is None or amount <= 0:
            return []
        step = -(skip + 1) if reverse else skip + 1
        out = []
        number = start.number
        for _ in range(amount):
            header = self.by_number(number)
            if header is None:
                break
            out.append(header)
            number += step
        return out
