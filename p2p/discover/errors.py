"""Typed errors of the discovery layer.

Every packet the service rejects raises one :class:`DecodeError` subclass; its ``reason``
is the short label under which the service counts the drop (``disc.stats.drops``).
"""

from __future__ import annotations


class DiscoveryError(Exception):
    """Base of every error raised by :mod:`p2p.discover`."""


class DecodeError(DiscoveryError, ValueError):
    """A datagram that is not a valid discovery v4 packet."""

    reason = "invalid"


class PacketTooSmall(DecodeError):
    """Shorter than hash, signature, type byte and at least one byte of RLP."""

    reason = "too_small"


class PacketTooLarge(DecodeError):
    """Longer than the 1280 bytes discovery v4 allows."""

    reason = "too_large"


class BadHash(DecodeError):
    """The leading keccak256 does not cover the rest of the packet."""

    reason = "bad_hash"


class BadPacketSignature(DecodeError):
    """No public key recovers from the signature."""

    reason = "bad_signature"


class Expired(DecodeError):
    """The expiration time stamp is in the past (read as a signed 64-bit number)."""

    reason = "expired"


class UnknownPacketType(DecodeError):
    """A type byte that discovery v4 does not define."""

    reason = "unknown_type"


class BadRLP(DecodeError):
    """The packet data is not well-formed RLP."""

    reason = "bad_rlp"


class BadFields(BadRLP):
    """Well-formed RLP whose elements have the wrong shape (a list where bytes belong, a
    port above 65535, a target that is not 64 bytes, ...)."""

    reason = "bad_fields"


class RequestTimeout(DiscoveryError, TimeoutError):
    """No (complete) reply to a request within the reply timeout."""


class LookupTargetError(DiscoveryError, ValueError):
    """A lookup target whose public key is unknown: discovery v4 queries by public key."""


__all__ = [
    "BadFields",
    "BadHash",
    "BadPacketSignature",
    "BadRLP",
    "DecodeError",
    "DiscoveryError",
    "Expired",
    "LookupTargetError",
    "PacketTooLarge",
    "PacketTooSmall",
    "RequestTimeout",
    "UnknownPacketType",
]
