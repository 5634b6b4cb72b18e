"""devp2p for Python on trio: discovery v4, RLPx, peers and pluggable sub-protocols."""

from p2p.crypto import PrivateKey, PublicKey
from p2p.disconnect import DisconnectReason
from p2p.enode import Node, NodeID
from p2p.protocol import Capability, PeerInfo, Protocol, ProtocolConnection, ProtocolError

__version__ = "0.1.0"

__all__ = [
    "Capability",
    "DisconnectReason",
    "Node",
    "NodeID",
    "PeerInfo",
    "PrivateKey",
    "Protocol",
    "ProtocolConnection",
    "ProtocolError",
    "PublicKey",
]
