"""devp2p for Python on trio: discovery v4, RLPx, peers and pluggable sub-protocols."""

from p2p.crypto import PrivateKey, PublicKey
from p2p.disconnect import DisconnectReason
from p2p.discover import Discovery, open_discovery
from p2p.dnsdisc import open_dns_iterator
from p2p.enode import ENR, LocalNode, Node, NodeDB, NodeID, Signer
from p2p.enode.iter import FairMix, NodeIterator, StaticNodes
from p2p.flowcontrol import FlowControl, RateLimit
from p2p.messages import (
    Codec,
    FieldError,
    Hash32,
    MaxLen,
    Message,
    MessageDecodeError,
    Raw,
    Request,
    Response,
    Size,
    Struct,
    UInt,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    UInt256,
)
from p2p.protocol import Capability, PeerInfo, Protocol, ProtocolConnection, ProtocolError
from p2p.request import RequestError, RequestLimits, RequestTimeout
from p2p.session import Session
from p2p.server import DialError, PeerAdded, PeerRemoved, Server, open_server
from p2p.limits import ProcessLimits
from p2p.server_config import ServerConfig
from p2p.testing import connected_pair
from p2p import protocol_registry

__version__ = "0.1.0"

__all__ = [
    "Capability",
    "Codec",
    "FieldError",
    "FlowControl",
    "Hash32",
    "MaxLen",
    "Message",
    "MessageDecodeError",
    "RateLimit",
    "Raw",
    "Request",
    "RequestError",
    "RequestLimits",
    "RequestTimeout",
    "Response",
    "Session",
    "Size",
    "Struct",
    "UInt",
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "UInt256",
    "DialError",
    "DisconnectReason",
    "Discovery",
    "ENR",
    "FairMix",
    "LocalNode",
    "Node",
    "NodeDB",
    "NodeID",
    "NodeIterator",
    "PeerAdded",
    "PeerInfo",
    "PeerRemoved",
    "PrivateKey",
    "Protocol",
    "ProtocolConnection",
    "ProcessLimits",
    "ProtocolError",
    "PublicKey",
    "Server",
    "ServerConfig",
    "Signer",
    "StaticNodes",
    "connected_pair",
    "open_discovery",
    "open_dns_iterator",
    "open_server",
    "protocol_registry",
]
