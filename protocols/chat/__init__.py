"""The chat protocol (``chat/1``): gossiped text messages and nick announcements."""

from protocols.chat.gossip import Gossip, Route, SeenSet
from protocols.chat.messages import (
    HOP_LIMIT,
    Announce,
    AnnounceKind,
    ChatDecodeError,
    ChatMessage,
    MessageCode,
    TextMessage,
)
from protocols.chat.service import PROTOCOL_NAME, PROTOCOL_VERSION, ChatPeer, ChatService

__all__ = [
    "HOP_LIMIT",
    "PROTOCOL_NAME",
    "PROTOCOL_VERSION",
    "Announce",
    "AnnounceKind",
    "ChatDecodeError",
    "ChatMessage",
    "ChatPeer",
    "ChatService",
    "Gossip",
    "MessageCode",
    "Route",
    "SeenSet",
    "TextMessage",
]
