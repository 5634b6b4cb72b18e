"""ChatService under load: announcements never crowd out text, join radius, peer queues owned
by the task that drains them."""

from __future__ import annotations

import trio

from p2p import NodeID
from protocols.chat.messages import HOP_LIMIT, Announce, AnnounceKind, MessageCode, TextMessage, encode
from protocols.chat.service import ANNOUNCE_QUEUE_SHARE, PEER_QUEUE_SIZE, ChatService, _PeerEntry
from protocols.chat.gossip import Route
from protocols_memnet import connect

IDS = [NodeID(bytes([i]) * 32) for i in range(1, 6)]


class _FakeConn:
    def __init__(self, peer_id: NodeID) -> None:
        class _Info:
            id = peer_id
        self.peer = _Info()


def test_announcements_leave_room_for_text() -> None:
    chat = ChatService(IDS[0], "a")
    entry = _PeerEntry(_FakeConn(IDS[1]))  # type: ignore[arg-type]
    chat._peers[IDS[1]] = entry  # nobody drains it: a peer whose connection is stalled
    for i in range(PEER_QUEUE_SIZE):
        ann = Announce(i.to_bytes(16, "big"), IDS[2], "c", 1, 0, AnnounceKind.JOIN)
        chat._route(Route(deliver=False, forward=ann, to=(IDS[1],)))
    assert entry.receive.statistics().current_buffer_used == ANNOUNCE_QUEUE_SHARE
    assert chat.dropped == PEER_QUEUE_SIZE - ANNOUNCE_QUEUE_SHARE and chat.dropped_text == 0
    for i in range(PEER_QUEUE_SIZE - ANNOUNCE_QUEUE_SHARE):
        text = TextMessage((1000 + i).to_bytes(16, "big"), IDS[2], "c", 1, 0, "hi")
        chat._route(Route(deliver=False, forward=text, to=(IDS[1],)))
    assert entry.receive.statistics().current_buffer_used == PEER_QUEUE_SIZE
    assert chat.dropped_text == 0
    chat._route(Route(deliver=False, forward=TextMessage(b"\x99" * 16, IDS[2], "c", 1, 0, "x"), to=(IDS[1],)))
    assert chat.dropped_text == 1  # a full queue still drops, and says so


async def test_a_message_from_a_peer_makes_no_queue() -> None:
    """A queue made on receipt could outlive its connection with nobody draining it (then
    every later message to that peer would be dropped): only the peer's run task makes one."""
    chat = ChatService(IDS[0], "a")
    text = TextMessage(b"\x01" * 16, IDS[2], "c", 1, 0, "hello")
    chat._receive(_FakeConn(IDS[1]), MessageCode.TEXT, encode(text))  # type: ignore[arg-type]
    assert IDS[1] not in chat._peers


async def test_announce_hops_bound_how_far_a_join_travels() -> None:
    events: list[list[tuple[str, str]]] = [[], [], []]

    def recorder(k: int):  # type: ignore[no-untyped-def]
        return lambda event, **f: events[k].append((event, str(f.get("nick"))))

    a = ChatService(IDS[0], "alice", emit=recorder(0), announce_hops=1)
    b = ChatService(IDS[1], "bob", emit=recorder(1))
    c = ChatService(IDS[2], "carol", emit=recorder(2))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await connect(nursery, IDS[1], b.protocol, IDS[2], c.protocol)
            while len(b.peers()) < 1 or len(c.peers()) < 1:
                await trio.sleep(0.01)
            await connect(nursery, IDS[0], a.protocol, IDS[1], b.protocol)  # a joins at the edge
            while len(b.peers()) < 2:
                await trio.sleep(0.01)
            await trio.sleep(0.2)  # let any forwarded copy arrive
            nursery.cancel_scope.cancel()
    assert ("chat_announce", "alice") in events[1]  # one hop: the neighbour hears it
    assert ("chat_announce", "alice") not in events[2]  # two hops: not
    assert ("chat_announce", "bob") in events[2]  # bob's join (unbounded) travels as before


def test_announce_hops_is_checked() -> None:
    import pytest

    for bad in (0, HOP_LIMIT + 1):
        with pytest.raises(ValueError):
            ChatService(IDS[0], "a", announce_hops=bad)
