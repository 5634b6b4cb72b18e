"""Node identity: IDs, nodes, ``enode://`` URLs, ENR records and the node database."""

from p2p.enode.node import (
    EnodeURLError,
    IPAddress,
    Node,
    NodeID,
    log_distance,
    parse_enode_url,
    xor_distance,
)

__all__ = [
    "EnodeURLError",
    "IPAddress",
    "Node",
    "NodeID",
    "log_distance",
    "parse_enode_url",
    "xor_distance",
]
