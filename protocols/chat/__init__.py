"""The chat protocol (``chat/2``): gossiped text messages and nick announcements, each signed by
its author's node key."""

from p2p import Signer
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
    MessageSigner,
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
    "MessageSigner",
    "Route",
    "SeenSet",
    "TextMessage",
    "make_chat",
    "sign",
]


def make_chat(*, signer: Signer, emit: Emit | None = None) -> ChatService:
    """The factory behind ``p2p node --protocols chat``: a chat service signing with the node's
    signer, with a nick made from the node ID, reporting received messages through ``emit``."""
    return ChatService(signer, f"node-{signer.node_id.hex()[:8]}", emit=emit)


register_protocol(PROTOCOL_NAME, make_chat, replace=True)
