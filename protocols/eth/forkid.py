"""Fork identifiers (EIP-2124): which chain and which rule set a node follows.

``FORK_HASH`` is CRC32 over the genesis hash followed by every fork activation that has
passed, each as an 8-byte big-endian number; ``FORK_NEXT`` is the next activation not yet
passed (0 when none is known). Since Shanghai forks activate by timestamp instead of block
number; those values follow the block forks in the same checksum (as go-ethereum and
@ethereumjs/common compute it).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from p2p.messages import Size, Struct, UInt64

MAINNET_NETWORK_ID = 1
MAINNET_GENESIS_HASH = bytes.fromhex("d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3")

# Mainnet's fork activations (go-ethereum params/config.go, @ethereumjs/common chains.js).
# Forks sharing an activation (Constantinople/Petersburg) count once; Paris (the merge) is
# not a block fork at all.
MAINNET_FORK_BLOCKS: tuple[int, ...] = (
    1_150_000,  # Homestead
    1_920_000,  # DAO
    2_463_000,  # Tangerine Whistle
    2_675_000,  # Spurious Dragon
    4_370_000,  # Byzantium
    7_280_000,  # Constantinople + Petersburg
    9_069_000,  # Istanbul
    9_200_000,  # Muir Glacier
    12_244_000,  # Berlin
    12_965_000,  # London
    13_773_000,  # Arrow Glacier
    15_050_000,  # Gray Glacier
)
MAINNET_FORK_TIMES: tuple[int, ...] = (
    1_681_338_455,  # Shanghai
    1_710_338_135,  # Cancun
    1_746_612_311,  # Prague
    1_764_798_551,  # Osaka
    1_765_290_071,  # BPO1
    1_767_747_671,  # BPO2
)


@dataclass(frozen=True, slots=True)
class ForkID(Struct):
    """On the wire (in Status): ``[hash, next]``."""

    hash: Annotated[bytes, Size(4)]
    next: UInt64

    def __post_init__(self) -> None:
        if len(self.hash) != 4:
            raise ValueError("fork hash must be 4 bytes")
        if self.next < 0 or self.next >= 1 << 64:
            raise ValueError("fork next must be a uint64")

    def __str__(self) -> str:
        return f"{self.hash.hex()}/{self.next}"


def _clean(values: Sequence[int]) -> list[int]:
    """Sorted, without duplicates and without 0 (a fork at genesis changes nothing)."""
    return sorted({v for v in values if v != 0})


@dataclass(frozen=True, slots=True)
class ChainConfig:
    """What a node needs to compute and check fork IDs: the genesis and the fork schedule."""

    network_id: int
    genesis_hash: bytes
    fork_blocks: tuple[int, ...] = ()
    fork_times: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.genesis_hash) != 32:
            raise ValueError("genesis hash must be 32 bytes")
        object.__setattr__(self, "fork_blocks", tuple(_clean(self.fork_blocks)))
        # A timestamp fork at or before genesis time would be active from the start; none is.
        object.__setattr__(self, "fork_times", tuple(_clean(self.fork_times)))

    def fork_id(self, head_number: int, head_time: int = 0) -> ForkID:
        """The fork ID of a node whose head block has ``head_number`` and ``head_time``."""
        checksum = zlib.crc32(self.genesis_hash)
        for block in self.fork_blocks:
            if block > head_number:
                return ForkID(checksum.to_bytes(4, "big"), block)
            checksum = zlib.crc32(block.to_bytes(8, "big"), checksum)
        for time in self.fork_times:
            if time > head_time:
                return ForkID(checksum.to_bytes(4, "big"), time)
            checksum = zlib.crc32(time.to_bytes(8, "big"), checksum)
        return ForkID(checksum.to_bytes(4, "big"), 0)

    def fork_hashes(self) -> list[tuple[bytes, int]]:
        """Each fork hash with the activation that ends it (0 for the last): the past IDs."""
        forks = list(self.fork_blocks) + list(self.fork_times)
        out = []
        checksum = zlib.crc32(self.genesis_hash)
        for value in forks:
            out.append((checksum.to_bytes(4, "big"), value))
            checksum = zlib.crc32(value.to_bytes(8, "big"), checksum)
        out.append((checksum.to_bytes(4, "big"), 0))
        return out


MAINNET = ChainConfig(MAINNET_NETWORK_ID, MAINNET_GENESIS_HASH, MAINNET_FORK_BLOCKS, MAINNET_FORK_TIMES)


class ForkIDMismatch(Exception):
    """The remote fork ID is incompatible with the local chain (EIP-2124 rule 4 or 1a)."""


def validate_fork_id(config: ChainConfig, head_number: int, head_time: int, remote: ForkID) -> None:
    """EIP-2124's validation rules; raises ``ForkIDMismatch`` when the remote is incompatible.

    1. Same hash: fine, unless the remote announces a next fork that has already passed
       locally (they are on a fork we did not take).
    2. The remote hash is one of our past hashes: the remote is syncing; fine if its next
       fork is the one that followed that hash for us.
    3. The remote hash is a future hash of ours (a checksum over more of our forks): we are
       the one syncing; fine.
    4. Anything else: another chain, or a node missing an update.
    """
    forks = list(config.fork_blocks) + list(config.fork_times)
    n_blocks = len(config.fork_blocks)
    hashes = config.fork_hashes()  # hashes[i] is valid before forks[i] activates
    # Index of the local current hash: how many forks have passed at the head.
    passed = 0
    for i, value in enumerate(forks):
        head = head_number if i < n_blocks else head_time
        if value <= head:
            passed = i + 1
        else:
            break
    local_hash = hashes[passed][0]

    if remote.hash == local_hash:
        if remote.next == 0:
            return
        is_time = remote.next >= _TIME_THRESHOLD
        head = head_time if is_time else head_number
        if remote.next <= head:
            raise ForkIDMismatch(f"remote announces fork {remote.next}, which already passed locally")
        return
    for i in range(passed):
        if hashes[i][0] == remote.hash:
            if forks[i] != remote.next:
                raise ForkIDMismatch("remote is stale: it misses a fork that passed locally")
            return
    for i in range(passed + 1, len(hashes)):
        if hashes[i][0] == remote.hash:
            return
    raise ForkIDMismatch(f"remote fork hash {remote.hash.hex()} is not on our chain")


# go-ethereum tells block numbers and timestamps apart by size: a "next" this large cannot be
# a block number for a long time yet (geth's forkid uses the same 1438269973, Frontier's time).
_TIME_THRESHOLD = 1_438_269_973
