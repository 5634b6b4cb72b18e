"""Typed errors of the RLPx layer: each one ends the connection it happened on, and only that one."""

from __future__ import annotations


class RLPxError(Exception):
    """Base of every error raised by :mod:`p2p.rlpx`."""


class HandshakeError(RLPxError):
    """The auth/ack exchange failed: undecryptable, malformed, oversized, truncated or too slow."""


class HandshakeTimeout(HandshakeError):
    """The handshake did not complete within its deadline."""


class AuthTimeout(HandshakeTimeout):
    """The recipient got no whole auth message within its (short) auth deadline."""


class FrameError(RLPxError):
    """A frame that cannot be accepted: bad header or body MAC, malformed header or message code."""


class MessageTooLarge(RLPxError):
    """A frame or a (declared) decompressed message beyond the configured limit."""

    def __init__(self, size: int, limit: int, what: str = "message") -> None:
        super().__init__(f"{what} of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class SnappyError(RLPxError):
    """A snappy block that does not decompress (corrupt, or not the length it declares)."""


class ConnectionClosed(RLPxError):
    """The remote side closed the stream (possibly in the middle of a frame) or it broke."""


class RLPxTimeout(RLPxError):
    """A frame read or write did not finish within its deadline."""


__all__ = [
    "RLPxError",
    "HandshakeError",
    "HandshakeTimeout",
    "AuthTimeout",
    "FrameError",
    "MessageTooLarge",
    "SnappyError",
    "ConnectionClosed",
    "RLPxTimeout",
]
