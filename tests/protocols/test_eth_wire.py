"""eth: fork IDs, headers, the in-memory chain and message codecs, with no network."""

from __future__ import annotations

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.eth.chain import MAINNET_GENESIS, BlockHeader, Chain, ChainError, HeaderError
from protocols.eth.forkid import (
    MAINNET,
    MAINNET_GENESIS_HASH,
    ChainConfig,
    ForkID,
    ForkIDMismatch,
    validate_fork_id,
)
from protocols.eth.messages import (
    MAX_HEADERS_SERVE,
    BlockHeaders,
    EthDecodeError,
    GetBlockHeaders,
    Status,
)

# The fork list EIP-2124 was written against (up to Petersburg) and its published IDs.
EIP2124_MAINNET = ChainConfig(1, MAINNET_GENESIS_HASH,
                              (1150000, 1920000, 2463000, 2675000, 4370000, 7280000, 7280000))
EIP2124_VECTORS = [
    (0, 0xfc64ec04, 1150000), (1149999, 0xfc64ec04, 1150000),
    (1150000, 0x97c2c34c, 1920000), (1919999, 0x97c2c34c, 1920000),
    (1920000, 0x91d1f948, 2463000), (2462999, 0x91d1f948, 2463000),
    (2463000, 0x7a64da13, 2675000), (2674999, 0x7a64da13, 2675000),
    (2675000, 0x3edd5b10, 4370000), (4369999, 0x3edd5b10, 4370000),
    (4370000, 0xa00bc324, 7280000), (7279999, 0xa00bc324, 7280000),
    (7280000, 0x668db0af, 0), (7987396, 0x668db0af, 0),
]


@pytest.mark.parametrize("head, fork_hash, next_fork", EIP2124_VECTORS)
def test_fork_id_matches_eip2124(head: int, fork_hash: int, next_fork: int) -> None:
    assert EIP2124_MAINNET.fork_id(head) == ForkID(fork_hash.to_bytes(4, "big"), next_fork)


# Hashes @ethereumjs/common 10.1.3 stores for mainnet (chains.js), with the fork activations.
ETHEREUMJS_MAINNET = [
    ((9069000, 0), "879d6e30", 9200000), ((12965000, 0), "b715077d", 13773000),
    ((15050000, 0), "f0afd0e3", 1681338455), ((17034870, 1681338455), "dce96c2d", 1710338135),
    ((19426587, 1710338135), "9f3d2254", 1746612311), ((22431084, 1746612311), "c376cf8b", 1764798551),
    ((23935694, 1764798551), "5167e2a6", 1765290071), ((23975796, 1765290071), "cba2a1c0", 1767747671),
    ((24200000, 1767747671), "07c9462e", 0),
]


@pytest.mark.parametrize("head, fork_hash, next_fork", ETHEREUMJS_MAINNET)
def test_fork_id_matches_ethereumjs_mainnet(head: tuple[int, int], fork_hash: str, next_fork: int) -> None:
    assert MAINNET.fork_id(*head) == ForkID(bytes.fromhex(fork_hash), next_fork)


def fid(h: int, n: int) -> ForkID:
    return ForkID(h.to_bytes(4, "big"), n)


@pytest.mark.parametrize("head, remote, ok", [
    (7987396, fid(0x668db0af, 0), True),  # same fork, nothing next
    (7987396, fid(0x668db0af, 2**64 - 1), True),  # same fork, far future next
    (7279999, fid(0xa00bc324, 0), True),  # both Byzantium, remote unaware of Petersburg
    (7279999, fid(0xa00bc324, 7280000), True),
    (7987396, fid(0xa00bc324, 7280000), True),  # remote syncing, knows the next fork
    (7987396, fid(0x3edd5b10, 4370000), True),
    (7279999, fid(0x668db0af, 0), True),  # we are the ones syncing
    (7987396, fid(0x5cddc0e1, 0), False),  # a hash not on our chain
    (7987396, fid(0x3edd5b10, 4370001), False),  # stale remote with a different next fork
    (7279999, fid(0xa00bc324, 7279000), False),  # remote next fork already passed here
])
def test_validate_fork_id_eip2124_rules(head: int, remote: ForkID, ok: bool) -> None:
    if ok:
        validate_fork_id(EIP2124_MAINNET, head, 0, remote)
    else:
        with pytest.raises(ForkIDMismatch):
            validate_fork_id(EIP2124_MAINNET, head, 0, remote)


def test_genesis_header_hash_is_mainnet() -> None:
    assert MAINNET_GENESIS.hash == MAINNET_GENESIS_HASH
    assert BlockHeader.decode(MAINNET_GENESIS.encode()) == MAINNET_GENESIS


def test_chain_links_by_parent_hash() -> None:
    chain = Chain.build(MAINNET_GENESIS, 20)
    assert len(chain) == 21 and chain.head.number == 20
    headers = list(chain)
    for parent, child in zip(headers, headers[1:]):
        assert child.parent_hash == parent.hash and child.number == parent.number + 1
    assert chain.by_hash(chain.head.hash) == chain.head
    with pytest.raises(ChainError):
        chain.append(headers[5].child())


def test_header_query() -> None:
    chain = Chain.build(MAINNET_GENESIS, 20)
    nums = lambda hs: [h.number for h in hs]  # noqa: E731
    assert nums(chain.headers(0, 5, 0, False)) == [0, 1, 2, 3, 4]
    assert nums(chain.headers(chain.by_number(10).hash, 4, 2, False)) == [10, 13, 16, 19]  # type: ignore[union-attr]
    assert nums(chain.headers(10, 5, 1, True)) == [10, 8, 6, 4, 2]
    assert nums(chain.headers(3, 10, 0, True)) == [3, 2, 1, 0]
    assert nums(chain.headers(18, 10, 0, False)) == [18, 19, 20]
    assert chain.headers(99, 5, 0, False) == [] and chain.headers(b"\x00" * 32, 5, 0, False) == []


def test_header_decode_rejects_garbage() -> None:
    fields = MAINNET_GENESIS.fields()
    with pytest.raises(HeaderError):
        BlockHeader.decode(rlp.encode(fields[:14]))
    with pytest.raises(HeaderError):
        BlockHeader.decode(rlp.encode(fields[:2] + [b"\x01" * 19] + fields[3:]))
    with pytest.raises(HeaderError):
        BlockHeader.decode(rlp.encode(fields[:7] + [b"\x00\x01"] + fields[8:]))
    with pytest.raises(HeaderError):
        BlockHeader.decode(b"\xff")
    later = BlockHeader.decode(rlp.encode(fields + [b"\x07"]))  # a London header's base fee
    assert later.later_fields == (b"\x07",) and later.hash != MAINNET_GENESIS.hash


def test_status_round_trip_and_layout() -> None:
    status = Status(68, 1, 17179869184, b"\x11" * 32, MAINNET_GENESIS_HASH, fid(0xfc64ec04, 1150000))
    payload = status.encode()
    assert Status.decode(payload) == status
    items = rlp.decode(payload)
    assert items[0] == b"\x44" and items[1] == b"\x01" and items[5] == [bytes.fromhex("fc64ec04"), (1150000).to_bytes(3, "big")]


@pytest.mark.parametrize("items, why", [
    ([b"\x44", b"\x01", b"", b"\x11" * 32, b"\x22" * 32], "fork_id: missing"),
    ([b"\x44", b"\x01", b"", b"\x11" * 31, b"\x22" * 32, [b"abcd", b""]], "head_hash"),
    ([b"\x44", b"\x01", b"", b"\x11" * 32, b"\x22" * 32, [b"abc", b""]], "fork_id.hash"),
    ([b"\x44", b"\x01", b"", b"\x11" * 32, b"\x22" * 32, b"abcd"], "fork_id: expected a list"),
    ([b"\x44", b"\x00\x01", b"", b"\x11" * 32, b"\x22" * 32, [b"abcd", b""]], "leading zero"),
    ([[b"\x44"], b"\x01", b"", b"\x11" * 32, b"\x22" * 32, [b"abcd", b""]], "version"),
])
def test_status_rejects_malformed(items: list[object], why: str) -> None:
    with pytest.raises(EthDecodeError, match=why):
        Status.decode(rlp.encode(items))


def test_get_block_headers_round_trip() -> None:
    by_number = GetBlockHeaders(1000, 10, 2, True)
    assert GetBlockHeaders.decode_with_id(by_number.encode_with_id(7)) == (7, by_number)
    by_hash = GetBlockHeaders(b"\x33" * 32, 1, 0, False)
    assert GetBlockHeaders.decode_with_id(by_hash.encode_with_id(2**63)) == (2**63, by_hash)
    assert rlp.decode(by_number.encode_with_id(7)) == [b"\x07", [b"\x03\xe8", b"\x0a", b"\x02", b"\x01"]]
    with pytest.raises(EthDecodeError, match="reverse"):
        GetBlockHeaders.decode_with_id(rlp.encode([b"\x01", [b"\x01", b"\x01", b"", b"\x02"]]))
    with pytest.raises(EthDecodeError, match="request-id"):
        GetBlockHeaders.decode_with_id(rlp.encode([b"\x01"]))
    with pytest.raises(EthDecodeError, match="origin"):
        GetBlockHeaders.decode_with_id(rlp.encode([b"\x01", [b"\x00\x01", b"\x01", b"", b""]]))


def test_block_headers_round_trip_and_limit() -> None:
    chain = Chain.build(MAINNET_GENESIS, 3)
    msg = BlockHeaders(tuple(chain))
    request_id, decoded = BlockHeaders.decode_with_id(msg.encode_with_id(9))
    assert request_id == 9 and decoded == msg and [h.hash for h in decoded.headers] == [h.hash for h in chain]
    assert rlp.decode(msg.encode_with_id(9)) == [b"\x09", [h.fields() for h in chain]]  # eth/66's layout
    too_many = rlp.encode([b"\x01", [MAINNET_GENESIS.fields()] * (MAX_HEADERS_SERVE + 1)])
    with pytest.raises(EthDecodeError, match="at most 1024"):
        BlockHeaders.decode_with_id(too_many)
    with pytest.raises(EthDecodeError, match=r"headers\[0\]"):
        BlockHeaders.decode_with_id(rlp.encode([b"\x01", [[b"x"]]]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_gives_only_decode_errors(data: bytes) -> None:
    for decoder in (Status.decode, GetBlockHeaders.decode_with_id, BlockHeaders.decode_with_id):
        try:
            decoder(data)
        except EthDecodeError:
            pass
