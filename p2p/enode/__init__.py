"""Node identity: IDs, nodes, ``enode://`` URLs, ENR records and the node database."""

from p2p.enode.enr import ENR, MAX_ENR_SIZE, ENRError, RawRLP
from p2p.enode.node import (
    EnodeURLError,
    IPAddress,
    Node,
    NodeID,
    log_distance,
    parse_enode_url,
    xor_distance,
)
from p2p.enode.nodedb import NodeDB, NodeDBError

__all__ = [
    "ENR",
    "ENRError",
    "MAX_ENR_SIZE",
    "RawRLP",
    "EnodeURLError",
    "IPAddress",
    "Node",
    "NodeDB",
    "NodeDBError",
    "NodeID",
    "log_distance",
    "parse_enode_url",
    "xor_distance",
]
