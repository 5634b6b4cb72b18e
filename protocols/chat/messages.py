"""Chat wire messages (sans-IO): encoding, decoding and validation.

Every message is an RLP list. Extra trailing list elements are ignored so that a later
version can add fields (the same forward-compatibility rule devp2p's Hello follows);
anything else that does not fit raises ``ChatDecodeError``.

    Text     (code 0): [id, sender, nick, timestamp_ms, hops, text, signature]
    Announce (code 1): [id, sender, nick, timestamp_ms, hops, kind, signature]

``sender`` is the author's node ID (keccak256 of its 64-byte public key) and ``signature`` the
author's 65-byte recoverable secp256k1 signature (``r || s || v``) over

    keccak256(rlp([SIGNATURE_DOMAIN, code, id, sender, nick, timestamp_ms, text or kind]))

Everything but ``hops`` (which each forwarder raises) is signed, so only the holder of the
author's node key can speak as that author; the domain keeps a chat signature from ever being
valid for another use of the same key. ``signing_hash`` is also the message's identity in the
seen-set: two messages with the same ``id`` but different content are different messages.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar, Union

import rlp
from rlp.exceptions import DecodingError

from p2p import Message, MessageDecodeError, NodeID, PublicKey
from p2p.crypto import BadSignature, keccak256, recover

MESSAGE_ID_SIZE = 16  # random, like a UUID: collisions are negligible for a chat
MAX_NICK_BYTES = 32  # a nick is a label, not a message
MAX_TEXT_BYTES = 4096  # one line of chat, well under one RLPx frame
MAX_PAYLOAD_BYTES = MAX_TEXT_BYTES + 512  # text plus the fixed fields, signature and RLP overhead
MAX_TIMESTAMP_BYTES = 8  # uint64 milliseconds
HOP_LIMIT = 16  # forwards a message may take; larger than any chat network's diameter
SIGNATURE_SIZE = 65  # r || s || recovery id, as discv4 signs its packets
SIGNATURE_DOMAIN = b"trio-devp2p chat/2 message"  # a chat signature means nothing elsewhere


class MessageCode(enum.IntEnum):
    TEXT = 0
    ANNOUNCE = 1


class AnnounceKind(enum.IntEnum):
    JOIN = 0
    LEAVE = 1
    NICK = 2


class ChatDecodeError(MessageDecodeError):
    """A chat payload that does not decode; ``code`` is the message code it arrived with."""

    def __init__(self, code: int, reason: str, field: str = "(message)") -> None:
        name = {0: "TextMessage", 1: "Announce"}.get(code, f"chat message {code}")
        super().__init__(name, field, reason)
        self.code = code


# Typed messages (``p2p.messages``) with a codec of their own: the chat/2 wire format predates the
# typed layer's schemas, and signing needs the exact bytes below.
@dataclass(frozen=True, slots=True)
class TextMessage(Message):
    id: bytes
    sender: NodeID
    nick: str
    timestamp: int  # milliseconds since the Unix epoch, as the author's clock said
    hops: int
    text: str
    signature: bytes = b""  # empty until signed (see ``sign``)

    code = MessageCode.TEXT

    def forwarded(self) -> "TextMessage":
        return replace(self, hops=self.hops + 1)

    def encode(self) -> bytes:
        return encode(self)

    @classmethod
    def decode(cls, payload: bytes) -> "TextMessage":
        msg = decode(MessageCode.TEXT, payload)
        assert isinstance(msg, cls)
        return msg


@dataclass(frozen=True, slots=True)
class Announce(Message):
    id: bytes
    sender: NodeID
    nick: str
    timestamp: int
    hops: int
    kind: AnnounceKind
    signature: bytes = b""  # empty until signed (see ``sign``)

    code = MessageCode.ANNOUNCE

    def forwarded(self) -> "Announce":
        return replace(self, hops=self.hops + 1)

    def encode(self) -> bytes:
        return encode(self)

    @classmethod
    def decode(cls, payload: bytes) -> "Announce":
        msg = decode(MessageCode.ANNOUNCE, payload)
        assert isinstance(msg, cls)
        return msg


ChatMessage = Union[TextMessage, Announce]


def new_message_id(rand: bytes | None = None) -> bytes:
    """A fresh message ID (``rand`` lets tests pass their own bytes)."""
    data = os.urandom(MESSAGE_ID_SIZE) if rand is None else rand
    if len(data) != MESSAGE_ID_SIZE:
        raise ValueError(f"message ID must be {MESSAGE_ID_SIZE} bytes")
    return data


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


def encode(msg: ChatMessage) -> bytes:
    _check_text_field("nick", msg.nick, MAX_NICK_BYTES)
    last: bytes
    if isinstance(msg, TextMessage):
        _check_text_field("text", msg.text, MAX_TEXT_BYTES)
        last = msg.text.encode()
    else:
        last = _uint(int(msg.kind))
    return rlp.encode([msg.id, bytes(msg.sender), msg.nick.encode(), _uint(msg.timestamp),
                       _uint(msg.hops), last, msg.signature])


def signing_hash(msg: ChatMessage) -> bytes:
    """The 32-byte digest the author signs: every field but ``hops`` and the signature."""
    last = msg.text.encode() if isinstance(msg, TextMessage) else _uint(int(msg.kind))
    return keccak256(rlp.encode([SIGNATURE_DOMAIN, _uint(int(msg.code)), msg.id, bytes(msg.sender),
                                 msg.nick.encode(), _uint(msg.timestamp), last]))


M = TypeVar("M", TextMessage, Announce)


class MessageSigner(Protocol):
    """What signs for an author: the node's :class:`p2p.Signer` (or, in tests and tools that
    forge messages, a private key)."""

    @property
    def public_key(self) -> PublicKey: ...

    def sign(self, digest: bytes, /) -> bytes: ...


def sign(msg: M, signer: MessageSigner) -> M:
    """``msg`` signed by ``signer``, which must sign for its author (``msg.sender``)."""
    if NodeID.from_pubkey(signer.public_key) != msg.sender:
        raise ValueError("a message is signed by its author's key only")
    return replace(msg, signature=signer.sign(signing_hash(msg)))


class ForgedMessage(Exception):
    """A message whose signature was not made by the author it names."""


def check_author(msg: ChatMessage, digest: bytes) -> None:
    """Raise ``ForgedMessage`` unless ``msg.signature`` over ``digest`` (its ``signing_hash``)
    recovers to the public key of ``msg.sender``."""
    try:
        author = NodeID.from_pubkey(recover(digest, msg.signature))
    except BadSignature as exc:
        raise ForgedMessage(f"signature does not recover: {exc}") from None
    if author != msg.sender:
        raise ForgedMessage(f"signed by {author.hex()[:16]}, not by the claimed author {msg.sender.hex()[:16]}")


def _check_text_field(name: str, value: str, limit: int) -> None:
    if len(value.encode()) > limit:
        raise ValueError(f"{name} is longer than {limit} bytes")


def decode(code: int, payload: bytes) -> ChatMessage:
    """Decode a payload that arrived with ``code``; raises ``ChatDecodeError``."""
    if code not in (MessageCode.TEXT, MessageCode.ANNOUNCE):
        raise ChatDecodeError(code, "unknown message code")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ChatDecodeError(code, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}", "(payload)")
    try:
        items = rlp.decode(payload, strict=True)
    except DecodingError as exc:
        raise ChatDecodeError(code, f"invalid RLP: {exc}", "(payload)") from None
    if not isinstance(items, list) or len(items) < 7:
        raise ChatDecodeError(code, "expected a list of at least 7 elements")
    for i, item in enumerate(items[:7]):
        if not isinstance(item, bytes):
            field = ("id", "sender", "nick", "timestamp", "hops", "text" if code == MessageCode.TEXT else "kind",
                     "signature")[i]
            raise ChatDecodeError(code, "the first 7 elements must be byte strings", field)
    msg_id, sender, nick_raw, ts_raw, hops_raw, last, signature = items[:7]
    if len(signature) != SIGNATURE_SIZE:
        raise ChatDecodeError(code, f"signature must be {SIGNATURE_SIZE} bytes", "signature")
    if len(msg_id) != MESSAGE_ID_SIZE:
        raise ChatDecodeError(code, f"message ID must be {MESSAGE_ID_SIZE} bytes", "id")
    if len(sender) != 32:
        raise ChatDecodeError(code, "sender must be a 32-byte node ID", "sender")
    nick = _text(code, "nick", nick_raw, MAX_NICK_BYTES)
    timestamp = _int(code, "timestamp", ts_raw, MAX_TIMESTAMP_BYTES)
    hops = _int(code, "hops", hops_raw, 1)
    if hops > HOP_LIMIT:
        raise ChatDecodeError(code, f"hops {hops} beyond the limit {HOP_LIMIT}", "hops")
    if code == MessageCode.TEXT:
        text = _text(code, "text", last, MAX_TEXT_BYTES)
        return TextMessage(msg_id, NodeID(sender), nick, timestamp, hops, text, signature)
    kind_value = _int(code, "kind", last, 1)
    try:
        kind = AnnounceKind(kind_value)
    except ValueError:
        raise ChatDecodeError(code, f"unknown announce kind {kind_value}", "kind") from None
    return Announce(msg_id, NodeID(sender), nick, timestamp, hops, kind, signature)


def _text(code: int, name: str, raw: bytes, limit: int) -> str:
    if len(raw) > limit:
        raise ChatDecodeError(code, f"{name} is longer than {limit} bytes", name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ChatDecodeError(code, f"{name} is not valid UTF-8", name) from None


def _int(code: int, name: str, raw: bytes, max_bytes: int) -> int:
    if len(raw) > max_bytes:
        raise ChatDecodeError(code, f"{name} is longer than {max_bytes} bytes", name)
    if raw[:1] == b"\x00":
        raise ChatDecodeError(code, f"{name} has a leading zero byte (not canonical RLP)", name)
    return int.from_bytes(raw, "big")
