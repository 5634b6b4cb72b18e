"""The chat protocol (``chat/2``): gossiped text messages and nick announcements, each signed by
its author's node key."""

from p2p import NodeID, PrivateKey
from p2p.protocol_registry import register_protocol

from protocols.chat.gossip import Gossip, Route, SeenSet
from protocols.chat.limits import ChatLimits
from protocols.chat.messages import (
    HOP_LIMIT,
    Announce,
    AnnounceKind,
    ChatDecodeError,
    ChatMessage,
    ForgedMessage,
    MessageCode,
    TextMessage,
    sign,
)
from protocols.chat.service import COUNTERS, PROTOCOL_NAME, PROTOCOL_VERSION, ChatPeer, ChatService, Emit

__all__ = [
    "COUNTERS",
    "HOP_LIMIT",
    "PROTOCOL_NAME",
    "PROTOCOL_VERSION",
    "Announce",
    "AnnounceKind",
    "ChatDecodeError",
    "ChatLimits",
    "ChatMessage",
    "ChatPeer",
    "ChatService",
    "ForgedMessage",
    "Gossip",
    "MessageCode",
    "Route",
    "SeenSet",
    "TextMessage",
    "make_chat",
    "sign",
]


def make_chat(*, private_key: PrivateKey, emit: Emit | None = None) -> ChatService:
    """The factory behind ``p2p node --protocols chat``: a chat service signing with the node's
    key, with a nick made from the node ID, reporting received messages through ``emit``."""
    node_id = NodeID.from_pubkey(private_key.public_key)
    return ChatService(private_key, f"node-{node_id.hex()[:8]}", emit=emit)


register_protocol(PROTOCOL_NAME, make_chat, replace=True)
