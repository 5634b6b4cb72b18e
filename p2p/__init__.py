"""devp2p for Python on trio: discovery v4, RLPx, peers and pluggable sub-protocols."""

from p2p.crypto import PrivateKey, PublicKey
from p2p.disconnect import DisconnectReason
from p2p.discover import Discovery, open_discovery
from p2p.enode import ENR, Node, NodeDB, NodeID
from p2p.protocol import Capability, PeerInfo, Protocol, ProtocolConnection, ProtocolError
from p2p.server import DialError, PeerAdded, PeerRemoved, Server, open_server
from p2p.testing import connected_pair
from p2p import protocol_registry

__version__ = "0.1.0"

__all__ = [
    "Capability",
    "DialError",
    "DisconnectReason",
    "Discovery",
    "ENR",
    "Node",
    "NodeDB",
    "NodeID",
    "PeerAdded",
    "PeerInfo",
    "PeerRemoved",
    "PrivateKey",
    "Protocol",
    "ProtocolConnection",
    "ProtocolError",
    "PublicKey",
    "Server",
    "connected_pair",
    "open_discovery",
    "open_server",
    "protocol_registry",
]
