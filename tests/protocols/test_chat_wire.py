"""Chat messages and gossip routing, with no network."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import NodeID, PrivateKey
from p2p.crypto import keccak256
from protocols.chat.gossip import Gossip, SeenSet
from protocols.chat.messages import (
    HOP_LIMIT,
    MAX_TEXT_BYTES,
    SIGNATURE_DOMAIN,
    Announce,
    AnnounceKind,
    ChatDecodeError,
    ForgedMessage,
    MessageCode,
    TextMessage,
    check_author,
    decode,
    encode,
    sign,
    signing_hash,
)

KEYS = [PrivateKey(bytes([i]) * 32) for i in range(1, 5)]
A, B, C, D = (NodeID.from_pubkey(k.public_key) for k in KEYS)


def text(msg_id: bytes = b"\x01" * 16, sender: NodeID = A, hops: int = 0, body: str = "hi") -> TextMessage:
    msg = TextMessage(msg_id, sender, "alice", 1_700_000_000_123, hops, body)
    authors = [A, B, C, D]
    return sign(msg, KEYS[authors.index(sender)]) if sender in authors else msg  # routing needs no signature


def test_text_round_trip_and_layout() -> None:
    msg = text(body="héllo ✓")
    payload = encode(msg)
    assert decode(MessageCode.TEXT, payload) == msg
    items = rlp.decode(payload)
    assert items[0] == b"\x01" * 16 and items[1] == bytes(A)
    assert items[2] == b"alice" and int.from_bytes(items[3], "big") == 1_700_000_000_123
    assert items[4] == b"" and items[5] == "héllo ✓".encode()
    assert items[6] == msg.signature and len(msg.signature) == 65


def test_announce_round_trip() -> None:
    for kind in AnnounceKind:
        msg = sign(Announce(b"\x02" * 16, B, "bob", 5, 3, kind), KEYS[1])
        assert decode(MessageCode.ANNOUNCE, encode(msg)) == msg
        check_author(msg, signing_hash(msg))


def test_signature_covers_the_content_and_the_domain() -> None:
    msg = text()
    expected = keccak256(rlp.encode([SIGNATURE_DOMAIN, b"", msg.id, bytes(A), b"alice",
                                     (1_700_000_000_123).to_bytes(6, "big"), b"hi"]))
    assert signing_hash(msg) == expected
    check_author(msg, signing_hash(msg))
    check_author(msg.forwarded(), signing_hash(msg.forwarded()))  # hops are not signed
    for changed in (replace(msg, text="ho"), replace(msg, nick="mallory"), replace(msg, timestamp=1),
                    replace(msg, id=b"\x02" * 16), replace(msg, sender=B)):
        with pytest.raises(ForgedMessage):
            check_author(changed, signing_hash(changed))
    # The same fields as an announcement (code 1) are a different statement.
    assert signing_hash(msg) != signing_hash(Announce(msg.id, A, "alice", msg.timestamp, 0, AnnounceKind.JOIN))


def test_a_forger_cannot_speak_as_another_author() -> None:
    claimed = TextMessage(b"\x07" * 16, A, "alice", 1, 0, "I am alice")
    with pytest.raises(ValueError):
        sign(claimed, KEYS[2])  # our own key refuses to sign for someone else
    forged = replace(claimed, signature=KEYS[2].sign(signing_hash(claimed)))  # mallory's key
    with pytest.raises(ForgedMessage, match="claimed author"):
        check_author(forged, signing_hash(forged))
    for garbage in (b"\x00" * 65, b"\xff" * 64 + b"\x07"):
        with pytest.raises(ForgedMessage, match="recover"):
            check_author(replace(claimed, signature=garbage), signing_hash(claimed))


def test_extra_trailing_elements_are_ignored() -> None:
    items = rlp.decode(encode(text()))
    assert decode(MessageCode.TEXT, rlp.encode(items + [b"future", [b"x"]])) == text()


def good_items() -> list[object]:
    return list(rlp.decode(encode(text())))


@pytest.mark.parametrize("mutate, why", [
    (lambda it: it[:6], "7 elements"),
    (lambda it: it[:6] + [it[6][:64]], "signature"),
    (lambda it: [it[0][:15]] + it[1:], "message ID"),
    (lambda it: [it[0], it[1][:31]] + it[2:], "32-byte"),
    (lambda it: it[:2] + [b"x" * 33] + it[3:], "nick"),
    (lambda it: it[:2] + [b"\xff\xfe"] + it[3:], "UTF-8"),
    (lambda it: it[:3] + [b"\x00\x01"] + it[4:], "leading zero"),
    (lambda it: it[:3] + [b"\x01" * 9] + it[4:], "timestamp"),
    (lambda it: it[:4] + [bytes([HOP_LIMIT + 1])] + it[5:], "hops"),
    (lambda it: it[:5] + [[b"nested"]] + it[6:], "byte strings"),
])
def test_malformed_text_is_rejected(mutate, why) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ChatDecodeError, match=why):
        decode(MessageCode.TEXT, rlp.encode(mutate(good_items())))


def test_malformed_payloads() -> None:
    with pytest.raises(ChatDecodeError, match="invalid RLP"):
        decode(MessageCode.TEXT, b"\xc5\x01")
    with pytest.raises(ChatDecodeError, match="list"):
        decode(MessageCode.TEXT, rlp.encode(b"just bytes"))
    with pytest.raises(ChatDecodeError, match="exceeds"):
        decode(MessageCode.TEXT, rlp.encode([b"x" * (MAX_TEXT_BYTES + 1000)]))
    with pytest.raises(ChatDecodeError, match="unknown message code"):
        decode(7, encode(text()))
    bad_kind = list(rlp.decode(encode(sign(Announce(b"\x02" * 16, B, "bob", 5, 0, AnnounceKind.JOIN), KEYS[1]))))
    bad_kind[5] = b"\x09"
    with pytest.raises(ChatDecodeError, match="announce kind"):
        decode(MessageCode.ANNOUNCE, rlp.encode(bad_kind))


def test_encode_refuses_oversized_fields() -> None:
    with pytest.raises(ValueError):
        encode(text(body="x" * (MAX_TEXT_BYTES + 1)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([0, 1]))
def test_garbage_never_escapes_as_another_error(data: bytes, code: int) -> None:
    try:
        decode(code, data)
    except ChatDecodeError:
        pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_seen_set_expires_ids() -> None:
    clock = FakeClock()
    seen = SeenSet(clock, capacity=10, ttl=60.0)
    assert seen.add(b"a") and not seen.add(b"a")
    clock.now = 59.0
    assert b"a" in seen
    clock.now = 60.0
    assert b"a" not in seen and len(seen) == 0
    assert seen.add(b"a")


def test_seen_set_is_bounded() -> None:
    seen = SeenSet(FakeClock(), capacity=100, ttl=1e9)
    for i in range(1000):
        seen.add(i.to_bytes(4, "big"))
    assert len(seen) == 100 and seen.evicted == 900
    assert (999).to_bytes(4, "big") in seen and (0).to_bytes(4, "big") not in seen


def test_seen_set_outlives_the_time_window() -> None:
    from protocols.chat.gossip import SEEN_TTL
    from protocols.chat.limits import TIME_WINDOW

    assert SEEN_TTL >= 2 * TIME_WINDOW  # first seen at the window's start, valid till its end


def test_gossip_keys_messages_by_content_not_id() -> None:
    """Mallory copying alice's message ID onto her own signed text must not make nodes drop
    alice's message as a duplicate."""
    g = Gossip(D, FakeClock())
    mallory = sign(TextMessage(b"\x01" * 16, C, "mallory", 1_700_000_000_123, 0, "first!"), KEYS[2])
    assert g.receive(mallory, from_peer=C, peers=[C]).deliver
    assert not g.is_duplicate(text(), signing_hash(text()))
    assert g.receive(text(), from_peer=B, peers=[B]).deliver
    assert g.is_duplicate(text(hops=3), signing_hash(text(hops=3)))  # hops raised: still a copy


def test_gossip_forwards_unseen_to_other_peers_once() -> None:
    g = Gossip(B, FakeClock())
    route = g.receive(text(sender=A), from_peer=A, peers=[A, C, D])
    assert route.deliver and route.to == (C, D)
    assert route.forward is not None and route.forward.hops == 1
    again = g.receive(text(sender=A), from_peer=C, peers=[A, C, D])
    assert not again.deliver and again.to == () and g.duplicates == 1


def test_gossip_does_not_send_back_to_the_author() -> None:
    g = Gossip(C, FakeClock())
    route = g.receive(text(sender=A, hops=1), from_peer=B, peers=[A, B, D])
    assert route.to == (D,)


def test_gossip_hop_limit_stops_forwarding_but_delivers() -> None:
    g = Gossip(B, FakeClock(), hop_limit=3)
    route = g.receive(text(hops=3), from_peer=A, peers=[A, C])
    assert route.deliver and route.forward is None and route.to == ()
    route = g.receive(text(msg_id=b"\x05" * 16, hops=2), from_peer=A, peers=[A, C])
    assert route.forward is not None and route.forward.hops == 3


def test_own_messages_echoed_back_are_dropped() -> None:
    g = Gossip(A, FakeClock())
    msg = text(sender=A)
    out = g.originate(msg, [B, C])
    assert out.to == (B, C) and out.forward == msg
    assert not g.receive(msg.forwarded(), from_peer=B, peers=[B, C]).deliver
    # Even after the seen-set forgot it, our own ID as author stops it.
    g2 = Gossip(A, FakeClock(), seen=SeenSet(FakeClock(), capacity=1))
    g2.seen.add(b"other")
    assert not g2.receive(text(sender=A, msg_id=b"\x09" * 16), from_peer=B, peers=[B]).deliver


def test_flooding_a_random_graph_reaches_everyone_and_terminates() -> None:
    rng = random.Random(7)
    ids = [NodeID(bytes([i]) * 32) for i in range(1, 31)]
    links: dict[NodeID, set[NodeID]] = {n: set() for n in ids}
    for i in range(1, len(ids)):  # a random tree keeps it connected, extra edges make loops
        j = rng.randrange(i)
        links[ids[i]].add(ids[j]); links[ids[j]].add(ids[i])
    for _ in range(40):
        a, b = rng.sample(ids, 2)
        links[a].add(b); links[b].add(a)
    nodes = {n: Gossip(n, FakeClock()) for n in ids}
    origin = ids[0]
    first = nodes[origin].originate(text(sender=origin), links[origin])
    queue = [(origin, peer, first.forward) for peer in first.to]
    delivered = {origin}
    sends = 0
    # First in, first out: links of equal latency, so a message reaches each node first along
    # a shortest path, and the hop limit (above this graph's diameter) never cuts it short.
    while queue:
        sends += 1
        assert sends < 10_000
        src, dst, msg = queue.pop(0)
        assert msg is not None
        route = nodes[dst].receive(msg, src, links[dst])
        if route.deliver:
            assert dst not in delivered
            delivered.add(dst)
        queue.extend((dst, p, route.forward) for p in route.to)
    assert delivered == set(ids)
    # Each node forwards once: sends are bounded by the number of directed edges.
    assert sends <= sum(len(v) for v in links.values())
