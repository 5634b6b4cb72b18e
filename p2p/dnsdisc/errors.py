"""Typed errors of DNS discovery (EIP-1459). Each carries what a log line needs: the DNS name
or tree, and a short ``reason`` that is also the label of the metric that counts it."""

from __future__ import annotations


class DNSDiscError(Exception):
    """Base of every error raised by :mod:`p2p.dnsdisc`."""

    reason = "error"


class EntryError(DNSDiscError, ValueError):
    """A TXT record that is not a well-formed tree entry (root, branch, ENR or link)."""

    reason = "bad_entry"

    def __init__(self, kind: str, message: str, name: str = "") -> None:
        self.kind = kind
        self.name = name
        where = f" at {name}" if name else ""
        super().__init__(f"invalid {kind} entry{where}: {message}")


class URLError(EntryError):
    """An ``enrtree://`` URL (or link entry) that cannot be parsed."""

    def __init__(self, message: str) -> None:
        super().__init__("link", message)


class BadRootSignature(DNSDiscError, ValueError):
    """A root entry whose signature does not verify against the tree's public key."""

    reason = "bad_signature"

    def __init__(self, domain: str) -> None:
        self.domain = domain
        super().__init__(f"root of {domain}: signature does not verify against the URL's public key")


class HashMismatch(DNSDiscError, ValueError):
    """An entry whose keccak256 does not start with the hash that named it."""

    reason = "hash_mismatch"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"{name}: content does not match the hash in its name")


class WrongEntryType(DNSDiscError, ValueError):
    """An ENR in the link subtree, or a link in the ENR subtree."""

    reason = "wrong_type"

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"{name}: {message}")


class TreeLimitExceeded(DNSDiscError):
    """A tree deeper, wider or bigger than the configured bounds: that subtree is dropped."""

    reason = "limit"

    def __init__(self, limit: str, message: str) -> None:
        self.limit = limit
        self.reason = f"limit_{limit}"
        super().__init__(message)


class DNSLookupError(DNSDiscError):
    """A DNS query that got no usable answer."""

    reason = "lookup"

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"{name}: {message}")


class NameNotFound(DNSLookupError):
    """NXDOMAIN, or a name with no TXT record."""

    reason = "nxdomain"


class QueryTimeout(DNSLookupError):
    """No answer within the per-query timeout."""

    reason = "timeout"


class NoRoot(DNSLookupError):
    """The tree's domain answered, but none of its TXT records is an ``enrtree-root:v1``."""

    reason = "no_root"



__all__ = [
    "BadRootSignature",
    "DNSDiscError",
    "DNSLookupError",
    "EntryError",
    "HashMismatch",
    "NameNotFound",
    "NoRoot",
    "QueryTimeout",
    "TreeLimitExceeded",
    "URLError",
    "WrongEntryType",
]
