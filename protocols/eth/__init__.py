"""An eth-like protocol (``eth/68``): Status handshake with fork IDs, block headers on request."""

from protocols.eth.chain import MAINNET_GENESIS, BlockHeader, Chain, ChainError, HeaderError
from protocols.eth.forkid import (
    MAINNET,
    MAINNET_GENESIS_HASH,
    MAINNET_NETWORK_ID,
    ChainConfig,
    ForkID,
    ForkIDMismatch,
    validate_fork_id,
)
from protocols.eth.messages import BlockHeaders, EthCode, EthDecodeError, GetBlockHeaders, Status
from protocols.eth.service import EthPeer, EthRequestError, EthService

__all__ = [
    "MAINNET",
    "MAINNET_GENESIS",
    "MAINNET_GENESIS_HASH",
    "MAINNET_NETWORK_ID",
    "BlockHeader",
    "BlockHeaders",
    "Chain",
    "ChainConfig",
    "ChainError",
    "EthCode",
    "EthDecodeError",
    "EthPeer",
    "EthRequestError",
    "EthService",
    "ForkID",
    "ForkIDMismatch",
    "GetBlockHeaders",
    "HeaderError",
    "Status",
    "validate_fork_id",
]
