"""Discovery v4: the wire format and Kademlia table (sans-IO) and the trio UDP service."""

from p2p.discover.errors import (
    BadFields,
    BadHash,
    BadPacketSignature,
    BadRLP,
    DecodeError,
    DiscoveryError,
    Expired,
    LookupTargetError,
    PacketTooLarge,
    PacketTooSmall,
    RequestTimeout,
    UnknownPacketType,
)
from p2p.discover.lookup import LookupResult
from p2p.discover.service import Discovery, DiscoveryConfig, DiscoveryStats, Subscription, open_discovery
from p2p.discover.table import NodeAdded, NodeRemoved, Table, TableConfig, TableEvent

__all__ = [
    "BadFields",
    "BadHash",
    "BadPacketSignature",
    "BadRLP",
    "DecodeError",
    "Discovery",
    "DiscoveryConfig",
    "DiscoveryError",
    "DiscoveryStats",
    "Expired",
    "LookupResult",
    "LookupTargetError",
    "NodeAdded",
    "NodeRemoved",
    "PacketTooLarge",
    "PacketTooSmall",
    "RequestTimeout",
    "Subscription",
    "Table",
    "TableConfig",
    "TableEvent",
    "UnknownPacketType",
    "open_discovery",
]
