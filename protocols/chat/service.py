"""The chat protocol on a node: ``ChatService`` wires the gossip core to peers.

    chat = ChatService(node_id, nick="alice")
    async with open_server(private_key=key, protocols=[chat.protocol], ...) as server:
        await chat.send("hello")
        with chat.subscribe() as messages:
            async for msg in messages: ...

Each peer gets a bounded outbound queue drained by the protocol's per-peer ``run`` task, so a
slow peer only loses its own forwarded messages (counted in ``dropped``) and never stalls the
handler that received a message or the other peers.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from p2p import NodeID, PeerInfo, Protocol, ProtocolConnection, ProtocolError
from p2p.protocol import Handler

from protocols.chat.gossip import Gossip, Route
from protocols.chat.messages import (
    HOP_LIMIT,
    MAX_NICK_BYTES,
    Announce,
    AnnounceKind,
    ChatDecodeError,
    ChatMessage,
    MessageCode,
    TextMessage,
    decode,
    encode,
    new_message_id,
)

logger = logging.getLogger(__name__)

PROTOCOL_NAME = "chat"
PROTOCOL_VERSION = 1
PEER_QUEUE_SIZE = 128  # messages waiting for one peer's connection before we drop
# Announcements only take the first half of a peer's queue: a burst of joins (a whole network
# starting) must not leave text messages without room.
ANNOUNCE_QUEUE_SHARE = PEER_QUEUE_SIZE // 2
SUBSCRIBER_QUEUE_SIZE = 256  # received messages an application has not read yet
MAX_KNOWN_NICKS = 1024  # node ID -> nick entries kept for display

Emit = Callable[..., None]


@dataclass(frozen=True, slots=True)
class ChatPeer:
    info: PeerInfo
    nick: str | None  # None until the peer has told us


class _PeerEntry:
    __slots__ = ("conn", "send", "receive", "unsent")

    def __init__(self, conn: ProtocolConnection) -> None:
        self.conn = conn
        self.send, self.receive = trio.open_memory_channel[ChatMessage](PEER_QUEUE_SIZE)
        # Queued and not yet written: a queue handed straight to its waiting sender looks
        # empty while the message is still on its way.
        self.unsent = 0


class ChatService:
    """A node's chat: send lines, receive everyone's, know the peers and their nicks.

    ``node_id`` is the local node's ID (``NodeID.from_pubkey(key.public_key)``): it is the
    author of the messages this node writes. ``emit(event, **fields)`` is called for each
    received message (``chat_message``) and announcement (``chat_announce``), for a CLI.
    """

    def __init__(self, node_id: NodeID, nick: str, *, emit: Emit | None = None,
                 clock: Callable[[], float] = trio.current_time,
                 wall_clock: Callable[[], float] = time.time,
                 hop_limit: int = HOP_LIMIT, announce_hops: int | None = None) -> None:
        """``announce_hops`` bounds how far this node's join, nick and leave announcements
        travel (None: the whole network, as text does). Every node's join flooding the whole
        network costs nodes x links messages, which many nodes simulated in one process
        cannot afford; a real node pays only its own share of it."""
        _check_nick(nick)
        if announce_hops is not None and not 1 <= announce_hops <= hop_limit:
            raise ValueError(f"announce_hops must be 1..{hop_limit}")
        self._announce_start = 0 if announce_hops is None else hop_limit - announce_hops
        self.node_id = node_id
        self._nick = nick
        self._emit = emit
        self._wall_clock = wall_clock
        self.gossip = Gossip(node_id, clock, hop_limit=hop_limit)
        self._peers: dict[NodeID, _PeerEntry] = {}
        self._nicks: OrderedDict[NodeID, str] = OrderedDict()
        self._subscribers: list[trio.MemorySendChannel[TextMessage]] = []
        self._callbacks: list[Callable[[TextMessage], None]] = []
        self._joined = False
        self.dropped = 0  # outbound messages dropped because a peer's queue was full
        self.dropped_text = 0  # of which text messages
        self.protocol = Protocol(PROTOCOL_NAME, PROTOCOL_VERSION, len(MessageCode), run=self._run,
                                 node_info=lambda: {"nick": self._nick},
                                 peer_info=lambda conn: {"nick": self._nicks.get(conn.peer.id)})
        for code in MessageCode:
            self.protocol.handler(code)(self._handler(code))

    # --- what applications use ---

    @property
    def nick(self) -> str:
        return self._nick

    def peers(self) -> list[ChatPeer]:
        return [ChatPeer(entry.conn.peer, self._nicks.get(peer_id)) for peer_id, entry in self._peers.items()]

    def nick_of(self, node_id: NodeID) -> str | None:
        return self._nicks.get(node_id)

    async def send(self, text: str) -> TextMessage:
        """Write a line to the whole network; returns the message as sent."""
        msg = TextMessage(new_message_id(), self.node_id, self._nick, self._now_ms(), 0, text)
        encode(msg)  # raises ValueError on an oversized line before anything is queued
        self._route(self.gossip.originate(msg, self._peers))
        return msg

    async def set_nick(self, nick: str) -> None:
        _check_nick(nick)
        self._nick = nick
        self._announce(AnnounceKind.NICK)

    async def leave(self) -> None:
        """Tell the network this node is leaving, and give the queues a moment to drain."""
        self._announce(AnnounceKind.LEAVE)
        with trio.move_on_after(1.0):
            while any(entry.unsent for entry in self._peers.values()):
                await trio.sleep(0.01)

    @contextmanager
    def subscribe(self, size: int = SUBSCRIBER_QUEUE_SIZE) -> Iterator[trio.MemoryReceiveChannel[TextMessage]]:
        """Received text messages (not our own) while the ``with`` block lasts."""
        send, receive = trio.open_memory_channel[TextMessage](size)
        self._subscribers.append(send)
        try:
            yield receive
        finally:
            self._subscribers.remove(send)
            send.close()

    def on_message(self, callback: Callable[[TextMessage], None]) -> Callable[[TextMessage], None]:
        """Call ``callback(msg)`` for each received text message (usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    # --- the protocol ---

    async def _run(self, peer: PeerInfo, conn: ProtocolConnection) -> None:
        # Only the task that drains a queue makes it: a queue made on receipt (before this task
        # runs, or for an old connection still delivering while a new one replaced it) could
        # be left with nobody draining it, and every later message to that peer would be
        # dropped. A newer connection to the same node replaces the older one's queue.
        entry = self._peers[peer.id] = _PeerEntry(conn)
        # The new neighbour learns our nick at once; hops at the limit keep it one hop only.
        hello = Announce(new_message_id(), self.node_id, self._nick, self._now_ms(),
                         self.gossip.hop_limit, AnnounceKind.NICK)
        try:
            await conn.send(MessageCode.ANNOUNCE, encode(hello))
            if not self._joined:
                self._joined = True
                self._announce(AnnounceKind.JOIN)
            async for msg in entry.receive:
                try:
                    await conn.send(msg.code, encode(msg))
                finally:
                    entry.unsent -= 1
        finally:
            if self._peers.get(peer.id) is entry:
                del self._peers[peer.id]

    def _handler(self, code: MessageCode) -> Handler:
        async def handle(conn: ProtocolConnection, payload: bytes) -> None:
            self._receive(conn, code, payload)
        return handle

    def _announce(self, kind: AnnounceKind) -> None:
        msg = Announce(new_message_id(), self.node_id, self._nick, self._now_ms(), self._announce_start, kind)
        self._route(self.gossip.originate(msg, self._peers))

    def _route(self, route: Route) -> None:
        if route.forward is None:
            return
        text = isinstance(route.forward, TextMessage)
        for peer_id in route.to:
            entry = self._peers.get(peer_id)
            if entry is None:
                continue
            try:
                if not text and entry.send.statistics().current_buffer_used >= ANNOUNCE_QUEUE_SHARE:
                    raise trio.WouldBlock
                entry.send.send_nowait(route.forward)
                entry.unsent += 1
            except trio.WouldBlock:
                self.dropped += 1
                self.dropped_text += text
                logger.debug("chat: queue of peer %s full, dropped a message", peer_id.short())
            except trio.BrokenResourceError:
                pass

    def _receive(self, conn: ProtocolConnection, code: int, payload: bytes) -> None:
        try:
            msg = decode(code, payload)
        except ChatDecodeError as exc:
            raise ProtocolError(str(exc)) from None
        self._remember_nick(msg.sender, msg.nick)
        route = self.gossip.receive(msg, conn.peer.id, list(self._peers))
        self._route(route)
        if not route.deliver:
            return
        if isinstance(msg, TextMessage):
            self._deliver(msg)
        elif self._emit is not None and msg.hops < self.gossip.hop_limit:
            self._emit("chat_announce", id=msg.id.hex(), **{"from": msg.sender.hex()}, nick=msg.nick,
                       kind=msg.kind.name.lower(), time=msg.timestamp / 1000)

    def _deliver(self, msg: TextMessage) -> None:
        if self._emit is not None:
            self._emit("chat_message", id=msg.id.hex(), **{"from": msg.sender.hex()}, nick=msg.nick,
                       text=msg.text, time=msg.timestamp / 1000)
        for callback in self._callbacks:
            callback(msg)
        for channel in self._subscribers:
            try:
                channel.send_nowait(msg)
            except (trio.WouldBlock, trio.BrokenResourceError):
                self.dropped += 1

    def _remember_nick(self, node_id: NodeID, nick: str) -> None:
        self._nicks[node_id] = nick
        self._nicks.move_to_end(node_id)
        while len(self._nicks) > MAX_KNOWN_NICKS:
            self._nicks.popitem(last=False)

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def __repr__(self) -> str:
        return f"ChatService({self._nick!r}, peers={len(self._peers)})"


def _check_nick(nick: str) -> None:
    if not nick or len(nick.encode()) > MAX_NICK_BYTES:
        raise ValueError(f"a nick is 1-{MAX_NICK_BYTES} bytes of UTF-8")

