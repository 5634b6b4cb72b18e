"""The chat protocol on a node: ``ChatService`` wires the gossip core to peers.

    chat = ChatService(Signer(key), nick="alice")
    async with open_server(key, protocols=[chat.protocol]) as server:
        await chat.send("hello")
        with chat.subscribe() as messages:
            async for msg in messages: ...

Each peer gets a bounded outbox drained by the protocol's per-peer ``run`` task, so a slow
peer only loses its own forwarded messages (counted) and never stalls the handler that
received a message or the other peers. What a neighbour sends us passes, cheapest first: its
rate, the message's time, the seen-set, the author's signature, the author's rate; what fails
is dropped and counted, and a neighbour that floods or forwards a forgery is disconnected.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from p2p import DisconnectReason, NodeID, PeerInfo, Protocol, ProtocolError, Session, Signer

from protocols.chat.gossip import Gossip, Route
from protocols.chat.limits import OWN_RATE_SHARE, ChatLimits, KeyedBuckets, TokenBucket
from protocols.chat.messages import (
    HOP_LIMIT,
    MAX_NICK_BYTES,
    Announce,
    AnnounceKind,
    ChatMessage,
    ForgedMessage,
    MessageCode,
    TextMessage,
    check_author,
    encode,
    new_message_id,
    sign,
    signing_hash,
)
from protocols.chat.outbox import Outbox, Source

logger = logging.getLogger(__name__)

PROTOCOL_NAME = "chat"
# 2: messages carry their author's signature and are only valid near the receiver's clock.
PROTOCOL_VERSION = 2
PEER_QUEUE_SIZE = 128  # messages waiting for one peer's connection before we drop
# Announcements only take the first half of a peer's queue: a burst of joins (a whole network
# starting) must not leave text messages without room.
ANNOUNCE_QUEUE_SHARE = PEER_QUEUE_SIZE // 2
SUBSCRIBER_QUEUE_SIZE = 256  # received messages an application has not read yet
MAX_KNOWN_NICKS = 1024  # node ID -> nick entries kept for display

# What ``counters()`` reports (and ``p2p node --metrics`` exports as ``p2p_chat_<name>_total``).
COUNTERS = (
    "dropped_peer_rate",  # a neighbour sent faster than ChatLimits.peer_rate
    "dropped_author_rate",  # an author wrote faster than ChatLimits.author_rate
    "dropped_time_window",  # a message's time was outside ChatLimits.time_window of our clock
    "dropped_forged",  # a signature not made by the claimed author
    "dropped_duplicate",  # seen before (a loop or a replay within the time window)
    "dropped_queue",  # a neighbour's outbox was full (its share of it, see outbox.py)
    "dropped_subscriber",  # an application did not read its subscription in time
    "disconnected_flood",  # neighbours disconnected for exceeding their rate persistently
    "disconnected_forged",  # neighbours disconnected for passing on a forged message
    "seen_evicted",  # seen-set entries pushed out before their time (it was full)
    "signatures_verified",  # signature checks made (the CPU a neighbour can make us spend)
)

Emit = Callable[..., None]


@dataclass(frozen=True, slots=True)
class ChatPeer:
    info: PeerInfo
    nick: str | None  # None until the peer has told us


class _PeerEntry:
    """One neighbour's outbound side: its outbox and the pacing of what we send it."""

    __slots__ = ("conn", "outbox", "pace", "wakeup", "sending")

    def __init__(self, conn: Session, limits: ChatLimits, now: float) -> None:
        self.conn = conn
        self.outbox = Outbox(PEER_QUEUE_SIZE, ANNOUNCE_QUEUE_SHARE)
        self.pace = TokenBucket(limits.forward_rate, limits.forward_burst, now)
        self.wakeup = trio.Event()
        # Taken from the outbox and not yet written: leave() waits for it too, or the leave
        # announcement could be cut off while it is on its way.
        self.sending = False


class ChatService:
    """A node's chat: send lines, receive everyone's, know the peers and their nicks.

    ``signer`` signs for the local node (``server.signer`` or ``LocalNode.signer``): its node
    ID is the author of the messages this node writes. The service never holds the key. ``emit(event, **fields)`` is called for each received message
    (``chat_message``) and announcement (``chat_announce``), for a CLI. ``limits`` bounds what
    neighbours and authors can make this node spend (see ``protocols.chat.limits``).
    """

    def __init__(self, signer: Signer, nick: str, *, emit: Emit | None = None,
                 clock: Callable[[], float] = trio.current_time,
                 wall_clock: Callable[[], float] = time.time,
                 hop_limit: int = HOP_LIMIT, announce_hops: int | None = None,
                 limits: ChatLimits = ChatLimits()) -> None:
        """``announce_hops`` bounds how far this node's join, nick and leave announcements
        travel (None: the whole network, as text does). Every node's join flooding the whole
        network costs nodes x links messages, which many nodes simulated in one process
        cannot afford; a real node pays only its own share of it."""
        _check_nick(nick)
        if announce_hops is not None and not 1 <= announce_hops <= hop_limit:
            raise ValueError(f"announce_hops must be 1..{hop_limit}")
        self._announce_start = 0 if announce_hops is None else hop_limit - announce_hops
        self._signer = signer
        self.node_id = signer.node_id
        self.limits = limits
        self._nick = nick
        self._emit = emit
        self._clock = clock
        self._wall_clock = wall_clock
        self.gossip = Gossip(self.node_id, clock, hop_limit=hop_limit)
        self._authors: KeyedBuckets[NodeID] = KeyedBuckets(limits.author_rate, limits.author_burst,
                                                           limits.max_authors, clock)
        # Our own messages stay within the author rate the neighbours apply to us: send() waits
        # for a token, announcements (never delayed) spend one.
        self._own: TokenBucket | None = None
        self._peers: dict[NodeID, _PeerEntry] = {}
        self._nicks: OrderedDict[NodeID, str] = OrderedDict()
        self._subscribers: list[trio.MemorySendChannel[TextMessage]] = []
        self._callbacks: list[Callable[[TextMessage], None]] = []
        self._joined = False
        self._counts = dict.fromkeys(COUNTERS, 0)
        self.dropped_text = 0  # of the outbox drops, text messages
        # The per-neighbour rate is flow control: checked before a message is even decoded.
        self.protocol = Protocol(PROTOCOL_NAME, PROTOCOL_VERSION, len(MessageCode), run=self._run,
                                 node_info=lambda: {"nick": self._nick},
                                 peer_info=lambda conn: {"nick": self._nicks.get(conn.peer.id)},
                                 counters=self.counters, flow=limits.flow_control(), clock=clock)
        self.protocol.on(TextMessage)(self._receive)
        self.protocol.on(Announce)(self._receive)

    # --- what applications use ---

    @property
    def nick(self) -> str:
        return self._nick

    @property
    def dropped(self) -> int:
        """Messages dropped on the way out: a neighbour's outbox or a subscription was full."""
        return self._counts["dropped_queue"] + self._counts["dropped_subscriber"]

    def counters(self) -> dict[str, int]:
        """What the limits did so far (see ``COUNTERS``)."""
        counts = dict(self._counts)
        counts["dropped_duplicate"] = self.gossip.duplicates
        counts["seen_evicted"] = self.gossip.seen.evicted
        counts["dropped_peer_rate"] = self.protocol.stats.rate_limited.get("peer", 0)
        counts["disconnected_flood"] = self.protocol.stats.flood_disconnects
        return counts

    def peers(self) -> list[ChatPeer]:
        return [ChatPeer(entry.conn.peer, self._nicks.get(peer_id)) for peer_id, entry in self._peers.items()]

    def nick_of(self, node_id: NodeID) -> str | None:
        return self._nicks.get(node_id)

    async def send(self, text: str) -> TextMessage:
        """Write a line to the whole network; returns the message as sent. Waits when lines
        come faster than the author rate, which the neighbours would otherwise drop."""
        # Raises ValueError on an oversized line before it waits for anything.
        encode(TextMessage(new_message_id(), self.node_id, self._nick, 0, 0, text))
        while not self._own_bucket().take(self._clock()):
            await trio.sleep(self._own_bucket().delay(self._clock()))
        msg = sign(TextMessage(new_message_id(), self.node_id, self._nick, self._now_ms(), 0, text), self._signer)
        self._route(self.gossip.originate(msg, self._peers), None)
        return msg

    async def set_nick(self, nick: str) -> None:
        _check_nick(nick)
        self._nick = nick
        self._announce(AnnounceKind.NICK)

    async def leave(self) -> None:
        """Tell the network this node is leaving, and give the queues a moment to drain."""
        self._announce(AnnounceKind.LEAVE)
        with trio.move_on_after(1.0):
            while any(len(entry.outbox) or entry.sending for entry in self._peers.values()):
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

    async def _run(self, peer: PeerInfo, conn: Session) -> None:
        # Only the task that drains a queue makes it: a queue made on receipt (before this task
        # runs, or for an old connection still delivering while a new one replaced it) could
        # be left with nobody draining it, and every later message to that peer would be
        # dropped. A newer connection to the same node replaces the older one's queue.
        entry = self._peers[peer.id] = _PeerEntry(conn, self.limits, self._clock())
        # The new neighbour learns our nick at once; hops at the limit keep it one hop only.
        hello = sign(Announce(new_message_id(), self.node_id, self._nick, self._now_ms(),
                              self.gossip.hop_limit, AnnounceKind.NICK), self._signer)
        self._own_bucket().spend(self._clock())
        try:
            await conn.send(hello)
            if not self._joined:
                self._joined = True
                self._announce(AnnounceKind.JOIN)
            while True:
                msg = entry.outbox.pop()
                if msg is None:
                    entry.wakeup = trio.Event()
                    await entry.wakeup.wait()
                    continue
                entry.sending = True
                try:
                    while not entry.pace.take(self._clock()):
                        await trio.sleep(entry.pace.delay(self._clock()))
                    await conn.send(msg)
                finally:
                    entry.sending = False
        finally:
            if self._peers.get(peer.id) is entry:
                del self._peers[peer.id]

    def _own_bucket(self) -> TokenBucket:
        # Made on first use: the clock (trio's) may only be read inside trio.run.
        if self._own is None:
            self._own = TokenBucket(self.limits.author_rate * OWN_RATE_SHARE,
                                    max(1, int(self.limits.author_burst * OWN_RATE_SHARE)), self._clock())
        return self._own

    def _announce(self, kind: AnnounceKind) -> None:
        self._own_bucket().spend(self._clock())
        msg = sign(Announce(new_message_id(), self.node_id, self._nick, self._now_ms(),
                            self._announce_start, kind), self._signer)
        self._route(self.gossip.originate(msg, self._peers), None)

    def _route(self, route: Route, source: Source) -> None:
        if route.forward is None:
            return
        for peer_id in route.to:
            entry = self._peers.get(peer_id)
            if entry is None:
                continue
            dropped = entry.outbox.put(source, route.forward)
            entry.wakeup.set()
            if dropped is not None:
                self._counts["dropped_queue"] += 1
                self.dropped_text += isinstance(dropped, TextMessage)
                logger.debug("chat: outbox of peer %s full, dropped a message", peer_id.short())

    async def _receive(self, conn: Session, msg: ChatMessage) -> None:
        # Cheapest checks first (the neighbour's rate came before decoding, in flow control):
        # the clock and the seen-set before the signature, which costs the most.
        if abs(msg.timestamp / 1000 - self._wall_clock()) > self.limits.time_window:
            self._counts["dropped_time_window"] += 1
            return
        key = signing_hash(msg)
        if self.gossip.is_duplicate(msg, key):
            return
        self._counts["signatures_verified"] += 1
        try:
            check_author(msg, key)
        except ForgedMessage as exc:
            # The neighbour should have checked before forwarding: it forged it or passes on
            # whatever it gets, and either way it is no longer a peer of ours.
            self._counts["dropped_forged"] += 1
            self._counts["disconnected_forged"] += 1
            raise ProtocolError(f"chat: forged message: {exc}", DisconnectReason.BREACH_OF_PROTOCOL) from None
        if not self._authors.take(msg.sender):
            self._counts["dropped_author_rate"] += 1
            return
        self._remember_nick(msg.sender, msg.nick)
        route = self.gossip.receive(msg, conn.peer.id, list(self._peers), key=key)
        self._route(route, conn.peer.id)
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
                self._counts["dropped_subscriber"] += 1

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
