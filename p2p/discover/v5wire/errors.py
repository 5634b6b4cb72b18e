"""Typed errors of the discovery v5 wire layer.

Every datagram the codec refuses raises one :class:`V5DecodeError` subclass. They derive from
the discovery layer's :class:`~p2p.discover.errors.DecodeError`, so a service that already
counts v4 drops by ``reason`` counts v5 drops the same way; each ``reason`` is the short label
for that count.
"""

from __future__ import annotations

from p2p.discover.errors import DecodeError


class V5DecodeError(DecodeError):
    """A datagram that is not a valid (or not an acceptable) discovery v5 packet."""

    reason = "v5_invalid"


class PacketTooShort(V5DecodeError):
    """Shorter than the 63 bytes of the smallest packet (WHOAREYOU), or than its own header."""

    reason = "v5_too_short"


class PacketTooBig(V5DecodeError):
    """Longer than the 1280 bytes that discv5 allows."""

    reason = "v5_too_big"


class BadProtocolID(V5DecodeError):
    """The unmasked header does not start with "discv5": not discv5, or not meant for us
    (the mask is keyed with the destination's node ID, so a packet for another node unmasks
    to noise)."""

    reason = "v5_bad_protocol_id"


class BadVersion(V5DecodeError):
    """A header version below the one this implementation speaks."""

    reason = "v5_bad_version"


class BadFlag(V5DecodeError):
    """A flag that names no packet kind (0 message, 1 WHOAREYOU, 2 handshake)."""

    reason = "v5_bad_flag"


class BadAuthData(V5DecodeError):
    """authdata whose size does not fit its packet kind or runs past the packet."""

    reason = "v5_bad_authdata"


class DecryptionFailed(V5DecodeError):
    """The AES-GCM tag does not authenticate the message under the handshake's keys."""

    reason = "v5_decrypt_failed"


class BadIDSignature(V5DecodeError):
    """The handshake's ID signature does not verify against the sender's record key."""

    reason = "v5_bad_id_signature"


class BadEphemeralKey(V5DecodeError):
    """The handshake's ephemeral public key is not a 33-byte secp256k1 point."""

    reason = "v5_bad_ephemeral_key"


class BadHandshakeRecord(V5DecodeError):
    """The handshake's record is invalid, belongs to another node ID, or is missing while
    we know no record of the sender."""

    reason = "v5_bad_handshake_record"


class UnexpectedHandshake(V5DecodeError):
    """A handshake from a node and address that we sent no (live) WHOAREYOU to."""

    reason = "v5_unexpected_handshake"


class ReplayedHandshake(UnexpectedHandshake):
    """A handshake that we already accepted, received again."""

    reason = "v5_replayed_handshake"


class UnsolicitedWhoareyou(V5DecodeError):
    """A WHOAREYOU whose nonce answers no message packet we sent to that address."""

    reason = "v5_unsolicited_whoareyou"


class BadMessage(V5DecodeError):
    """An authenticated message whose plaintext is not a well-formed discv5 message."""

    reason = "v5_bad_message"


class BadRequestID(BadMessage):
    """A request ID longer than the 8 bytes discv5 allows."""

    reason = "v5_bad_request_id"


class UnknownMessageType(BadMessage):
    """A message type byte that this implementation does not handle."""

    reason = "v5_unknown_message"


__all__ = [
    "BadAuthData",
    "BadEphemeralKey",
    "BadFlag",
    "BadHandshakeRecord",
    "BadIDSignature",
    "BadMessage",
    "BadProtocolID",
    "BadRequestID",
    "BadVersion",
    "DecryptionFailed",
    "PacketTooBig",
    "PacketTooShort",
    "ReplayedHandshake",
    "UnexpectedHandshake",
    "UnknownMessageType",
    "UnsolicitedWhoareyou",
    "V5DecodeError",
]
