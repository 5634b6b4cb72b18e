"""The chat protocol (``chat/1``): gossiped text messages and nick announcements."""

from p2p import NodeID
from p2p.protocol_registry import register_protocol

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
from protocols.chat.service import PROTOCOL_NAME, PROTOCOL_VERSION, ChatPeer, ChatService, Emit

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
    "make_chat",
]


def make_chat(*, node_id: NodeID, emit: Emit | None = None) -> ChatService:
    """The factory behind ``p2p node --protocols chat``: a chat service with a nick made from
    the node ID, reporting received messages through ``emit``."""
    return ChatService(node_id, f"node-{node_id.hex()[:8]}", emit=emit)


register_protocol(PROTOCOL_NAME, make_chat, replace=True)
