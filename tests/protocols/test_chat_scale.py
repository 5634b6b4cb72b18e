"""ChatService under load: announcements never crowd out text, join radius, peer queues owned
by the task that drains them."""

from __future__ import annotations

import trio

from p2p import NodeID, PrivateKey, Signer
from protocols.chat.messages import HOP_LIMIT, Announce, AnnounceKind, MessageCode, TextMessage, encode, sign
from protocols.chat.outbox import Outbox
from protocols.chat.service import ANNOUNCE_QUEUE_SHARE, PEER_QUEUE_SIZE, ChatService
from protocols_memnet import connect

KEYS = [PrivateKey(bytes([i]) * 32) for i in range(1, 6)]
IDS = [NodeID.from_pubkey(k.public_key) for k in KEYS]


class _FakeConn:
    def __init__(self, peer_id: NodeID) -> None:
        class _Info:
            id = peer_id
        self.peer = _Info()
        self.state: dict[str, object] = {}


def test_announcements_leave_room_for_text() -> None:
    box = Outbox(PEER_QUEUE_SIZE, ANNOUNCE_QUEUE_SHARE)  # nobody drains it: a stalled peer
    dropped = [box.put(IDS[2], Announce(i.to_bytes(16, "big"), IDS[2], "c", 1, 0, AnnounceKind.JOIN))
               for i in range(PEER_QUEUE_SIZE)]
    assert len(box) == ANNOUNCE_QUEUE_SHARE
    assert sum(d is not None for d in dropped) == PEER_QUEUE_SIZE - ANNOUNCE_QUEUE_SHARE
    for i in range(PEER_QUEUE_SIZE - ANNOUNCE_QUEUE_SHARE):
        assert box.put(IDS[2], TextMessage((1000 + i).to_bytes(16, "big"), IDS[2], "c", 1, 0, "hi")) is None
    assert len(box) == PEER_QUEUE_SIZE
    last = TextMessage(b"\x99" * 16, IDS[2], "c", 1, 0, "x")
    assert box.put(IDS[2], last) is last  # a full outbox still drops, and says which


def test_a_flooding_source_fills_only_its_share_of_an_outbox() -> None:
    box = Outbox(10, 5)
    flood = [TextMessage(i.to_bytes(16, "big"), IDS[3], "f", 1, 0, "spam") for i in range(100)]
    for msg in flood:
        box.put(IDS[3], msg)
    honest = [TextMessage((500 + i).to_bytes(16, "big"), IDS[0], "a", 1, 0, f"line {i}") for i in range(4)]
    for msg in honest:
        assert box.put(IDS[1], msg) is not None and len(box) == 10  # room made from the flood
    order = [box.pop() for _ in range(10)]
    assert box.pop() is None
    # Sources take turns: the honest lines go out among the first, in their order.
    assert [m for m in order[:8] if m in honest] == honest
    assert [m for m in order if m in flood] == flood[:6]


async def test_a_message_from_a_peer_makes_no_queue() -> None:
    """A queue made on receipt could outlive its connection with nobody draining it (then
    every later message to that peer would be dropped): only the peer's run task makes one."""
    chat = ChatService(Signer(KEYS[0]), "a", wall_clock=lambda: 1.0)
    text = sign(TextMessage(b"\x01" * 16, IDS[2], "c", 1, 0, "hello"), KEYS[2])
    await chat.protocol.handlers[MessageCode.TEXT](_FakeConn(IDS[1]), encode(text))  # type: ignore[arg-type]
    assert chat.nick_of(IDS[2]) == "c"  # it was accepted
    assert IDS[1] not in chat._peers


async def test_announce_hops_bound_how_far_a_join_travels() -> None:
    events: list[list[tuple[str, str]]] = [[], [], []]

    def recorder(k: int):  # type: ignore[no-untyped-def]
        return lambda event, **f: events[k].append((event, str(f.get("nick"))))

    a = ChatService(Signer(KEYS[0]), "alice", emit=recorder(0), announce_hops=1)
    b = ChatService(Signer(KEYS[1]), "bob", emit=recorder(1))
    c = ChatService(Signer(KEYS[2]), "carol", emit=recorder(2))
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
            ChatService(Signer(KEYS[0]), "a", announce_hops=bad)
