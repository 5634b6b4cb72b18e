"""An eth-like protocol (``eth/68``): Status handshake with fork IDs, block headers on request."""

from p2p.protocol_registry import register_protocol

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
from protocols.eth.service import Emit, EthPeer, EthRequestError, EthService

DEMO_CHAIN_LENGTH = 64  # empty blocks on mainnet's genesis that `p2p node --protocols eth` serves

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
    "make_eth",
    "validate_fork_id",
]


def make_eth(*, emit: Emit | None = None) -> EthService:
    """The factory behind ``p2p node --protocols eth``: mainnet's network ID, genesis and fork
    schedule, serving a short chain of empty blocks on top of the real genesis."""
    return EthService(Chain.build(MAINNET_GENESIS, DEMO_CHAIN_LENGTH), MAINNET, emit=emit)


register_protocol("eth", make_eth, replace=True)
