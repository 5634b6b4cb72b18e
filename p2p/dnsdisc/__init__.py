"""DNS discovery (EIP-1459): node lists published as signed trees of TXT records.

Sans-IO: :mod:`~p2p.dnsdisc.records` (entries, hashes, the signed root, URLs),
:mod:`~p2p.dnsdisc.tree` (building and signing a tree), :mod:`~p2p.dnsdisc.sync` (walking
trees). I/O: :mod:`~p2p.dnsdisc.client` (lookups through dnspython, the node iterator).
"""

from p2p.dnsdisc.client import (
    DNSClient,
    DNSDiscStats,
    DNSNodeIterator,
    DNSResolver,
    Resolver,
    SyncResult,
    open_dns_iterator,
)
from p2p.dnsdisc.errors import (
    BadRootSignature,
    DNSDiscError,
    DNSLookupError,
    EntryError,
    HashMismatch,
    NameNotFound,
    NoRoot,
    QueryTimeout,
    TreeLimitExceeded,
    URLError,
    WrongEntryType,
)
from p2p.dnsdisc.records import LinkEntry, RootEntry, entry_hash, parse_url
from p2p.dnsdisc.sync import Limits
from p2p.dnsdisc.tree import Tree, make_tree

__all__ = [
    "BadRootSignature",
    "DNSClient",
    "DNSDiscError",
    "DNSDiscStats",
    "DNSLookupError",
    "DNSNodeIterator",
    "DNSResolver",
    "EntryError",
    "HashMismatch",
    "Limits",
    "LinkEntry",
    "NameNotFound",
    "NoRoot",
    "QueryTimeout",
    "Resolver",
    "RootEntry",
    "SyncResult",
    "Tree",
    "TreeLimitExceeded",
    "URLError",
    "WrongEntryType",
    "entry_hash",
    "make_tree",
    "open_dns_iterator",
    "parse_url",
]
