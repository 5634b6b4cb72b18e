"""Node identity: IDs, nodes, ``enode://`` URLs, ENR records, our own record (``LocalNode``)
and the node database."""

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
from p2p.enode.localnode import LocalNode, Signer
from p2p.enode.nodedb import NodeDB, NodeDBError

__all__ = [
    "ENR",
    "ENRError",
    "MAX_ENR_SIZE",
    "RawRLP",
    "EnodeURLError",
    "IPAddress",
    "LocalNode",
    "Node",
    "NodeDB",
    "NodeDBError",
    "NodeID",
    "Signer",
    "log_distance",
    "parse_enode_url",
    "xor_distance",
]
