"""Chat under attack: forged authors, replays, floods. Only the author can speak for itself,
and nobody can flood (in memory, on a mock clock; the live version is in test_chat_flood_live)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import trio
import trio.testing

from p2p import DisconnectReason, NodeID, PrivateKey, Signer, Protocol, Server, ServerConfig
from protocols.chat import COUNTERS, ChatLimits, ChatService
from protocols.chat.gossip import SEEN_TTL
from protocols.chat.limits import AUTHOR_BURST, PEER_BURST, PEER_MAX_DROPS, TIME_WINDOW, Strikes, TokenBucket
from protocols.chat.messages import MessageCode, TextMessage, encode, new_message_id, sign, signing_hash
from protocols_memnet import Link, connect

KEYS = [PrivateKey(bytes([i]) * 32) for i in range(1, 8)]
IDS = [NodeID.from_pubkey(k.public_key) for k in KEYS]
T0 = 1_700_000_000.0  # the wall clock when the mock clock reads 0


def wall() -> float:
    return T0 + trio.current_time()


def service(i: int, nick: str, **kwargs: object) -> ChatService:
    return ChatService(Signer(KEYS[i]), nick, wall_clock=wall, **kwargs)  # type: ignore[arg-type]


def line(key: PrivateKey, text: str, nick: str | None = None, sender: NodeID | None = None,
         at: float | None = None) -> TextMessage:
    """A text message signed by ``key``; ``sender`` other than the key's own makes a forgery."""
    own = NodeID.from_pubkey(key.public_key)
    msg = TextMessage(new_message_id(), own, nick or "x", int((wall() if at is None else at) * 1000), 0, text)
    if sender is None or sender == own:
        return sign(msg, key)
    msg = replace(msg, sender=sender)
    return replace(msg, signature=key.sign(signing_hash(msg)))


def raw_peer() -> Protocol:
    """A peer that speaks chat/2 but only sends what the test makes it send."""
    return Protocol("chat", 2, 2)


def test_token_bucket_and_strikes() -> None:
    bucket = TokenBucket(5.0, 20, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(100)) == 20
    assert bucket.delay(0.0) == pytest.approx(0.2)
    assert sum(bucket.take(2.0) for _ in range(100)) == 10  # 2 s at 5/s
    strikes = Strikes(3, 10.0)
    assert not strikes.add(0.0) and not strikes.add(1.0)
    assert not strikes.add(20.0)  # three drops, but not within 10 s
    assert not strikes.add(21.0) and strikes.add(22.0)
    with pytest.raises(ValueError):
        ChatLimits(author_rate=0)


async def test_forged_author_is_dropped_never_shown_and_its_sender_disconnected(
        autojump_clock: trio.testing.MockClock) -> None:
    shown: list[tuple[str, str]] = []
    b = service(1, "bob", emit=lambda event, **f: shown.append((event, str(f.get("from")))))
    c = service(2, "carol", emit=lambda event, **f: shown.append((event, str(f.get("from")))))
    mallory = KEYS[3]
    async with trio.open_nursery() as nursery:
        await connect(nursery, IDS[1], b.protocol, IDS[2], c.protocol)
        link = await connect(nursery, IDS[3], raw_peer(), IDS[1], b.protocol)
        assert link.conns is not None
        await trio.sleep(1)
        # Alice's ID and nick, signed by mallory; then alice's ID with no valid signature.
        await link.conns[0].send(MessageCode.TEXT, encode(line(mallory, "send me money", "alice", sender=IDS[0])))
        await link.closed.wait()
        assert link.reason == DisconnectReason.BREACH_OF_PROTOCOL and "forged" in link.why
        link = await connect(nursery, IDS[3], raw_peer(), IDS[1], b.protocol)
        assert link.conns is not None
        unsigned = replace(line(mallory, "unsigned"), sender=IDS[0], signature=os.urandom(65))
        await link.conns[0].send(MessageCode.TEXT, encode(unsigned))
        await link.closed.wait()
        assert link.reason == DisconnectReason.BREACH_OF_PROTOCOL
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert not [s for s in shown if s[1] == IDS[0].hex()]
    assert b.counters()["dropped_forged"] == 2 and b.counters()["disconnected_forged"] == 2
    assert c.counters()["dropped_forged"] == 0  # nothing forged got past bob


async def test_replays_are_dropped_within_and_after_the_time_window(autojump_clock: trio.testing.MockClock) -> None:
    b = service(1, "bob")
    alice = KEYS[0]
    with b.subscribe() as inbox:
        async with trio.open_nursery() as nursery:
            link = await connect(nursery, IDS[0], raw_peer(), IDS[1], b.protocol)
            assert link.conns is not None
            msg = line(alice, "once", "alice")
            await link.conns[0].send(MessageCode.TEXT, encode(msg))
            assert (await inbox.receive()).id == msg.id
            await trio.sleep(TIME_WINDOW / 2)  # within the window: the seen-set remembers it
            await link.conns[0].send(MessageCode.TEXT, encode(msg.forwarded()))
            await trio.sleep(1)
            assert b.counters()["dropped_duplicate"] == 1
            await trio.sleep(SEEN_TTL)  # the seen-set forgot it: the time check drops it
            await link.conns[0].send(MessageCode.TEXT, encode(msg))
            # A message from the future (a clock far ahead, or one made to outlive the window).
            await link.conns[0].send(MessageCode.TEXT, encode(line(alice, "later", at=wall() + TIME_WINDOW + 5)))
            await trio.sleep(1)
            assert b.counters()["dropped_time_window"] == 2
            assert inbox.statistics().current_buffer_used == 0
            assert link.reason is None  # a late message is no reason to disconnect
            nursery.cancel_scope.cancel()


async def test_an_author_over_its_rate_is_dropped_and_a_peer_over_its_rate_disconnected(
        autojump_clock: trio.testing.MockClock) -> None:
    b = service(1, "bob")
    received: list[TextMessage] = []
    b.on_message(received.append)
    async with trio.open_nursery() as nursery:
        link = await connect(nursery, IDS[0], raw_peer(), IDS[1], b.protocol)
        assert link.conns is not None
        for i in range(100):  # one author, all at once: its burst passes, the rest is dropped
            await link.conns[0].send(MessageCode.TEXT, encode(line(KEYS[0], f"bot {i}")))
        await trio.sleep(1)
        assert len(received) == AUTHOR_BURST and b.counters()["dropped_author_rate"] == 100 - AUTHOR_BURST
        await trio.sleep(60)  # the peer's bucket fills up again
        # Many authors (fresh keys) at once: the peer's own bucket bounds them, then it is cut.
        flood = [encode(line(PrivateKey.generate(random.Random(i)), "spam")) for i in range(PEER_BURST + PEER_MAX_DROPS)]
        sent = 0
        with trio.move_on_after(10):
            for payload in flood:
                await link.conns[0].send(MessageCode.TEXT, payload)
                sent += 1
        await link.closed.wait()
        nursery.cancel_scope.cancel()
    counts = b.counters()
    assert link.reason == DisconnectReason.SUBPROTOCOL_ERROR and counts["disconnected_flood"] == 1
    assert counts["dropped_peer_rate"] == PEER_MAX_DROPS
    assert counts["signatures_verified"] <= 100 + PEER_BURST + 5  # tokens bound the CPU spent


class Flooder:
    """One peer sending ``total`` unique 4 KB messages to ``target`` as fast as the link takes
    them: most validly signed (its own key, or fresh keys to dodge the author limit), some
    claiming alice as their author, some with garbage signatures. Disconnected, it reconnects
    at once and goes on (no inbound throttle in memory: the worst case)."""

    def __init__(self, victim: NodeID, total: int, rate: float, rng: random.Random) -> None:
        self.key = PrivateKey.generate(rng)
        self.id = NodeID.from_pubkey(self.key.public_key)
        self.victim = victim
        self.total = total
        self.rate = rate
        self.rng = rng
        self.fresh = [PrivateKey.generate(rng) for _ in range(200)]
        self.sent = 0
        self.connections = 0
        self.reasons: list[DisconnectReason | None] = []

    def messages(self) -> Iterator[bytes]:
        body = "x" * 4000
        for i in range(self.total):
            roll = self.rng.random()
            text = f"{i} {body}"
            if roll < 0.02:
                msg = line(self.key, text, "alice", sender=self.victim)  # speaks for alice
            elif roll < 0.03:
                msg = replace(line(self.key, text), signature=self.rng.randbytes(65))
            elif roll < 0.5:
                msg = line(self.key, text, "flood")
            else:
                msg = line(self.rng.choice(self.fresh), text, "alice")  # a nick is not an identity
            yield encode(msg)

    async def run(self, nursery: trio.Nursery, target: Protocol, target_id: NodeID) -> None:
        stream = self.messages()
        payload: bytes | None = next(stream)
        while payload is not None:
            link: Link = await connect(nursery, self.id, raw_peer(), target_id, target)
            self.connections += 1
            assert link.conns is not None
            async with trio.open_nursery() as sending:
                async def stop_when_cut() -> None:
                    await link.closed.wait()
                    sending.cancel_scope.cancel()

                sending.start_soon(stop_when_cut)
                while payload is not None:
                    await link.conns[0].send(MessageCode.TEXT, payload)
                    self.sent += 1
                    payload = next(stream, None)
                    if self.sent % 8 == 0:
                        await trio.sleep(8 / self.rate)
                link.close(DisconnectReason.REQUESTED, "flood over")
            await link.closed.wait()
            self.reasons.append(link.reason)


async def test_an_honest_authors_lines_reach_everyone_during_a_flood_of_20000(
        autojump_clock: trio.testing.MockClock) -> None:
    """The issue's outcome: one peer floods 20,000 unique 4 KB messages (with forgeries) at
    1,250/s (of virtual time; in real time as fast as the CPU goes) while alice types 45 lines; every line reaches every node, the forged alice never
    shows anywhere. a - b - c - d - b (a loop), the flooder on b."""
    names = ["alice", "bob", "carol", "dave"]
    shown: dict[str, list[tuple[str, str]]] = {n: [] for n in names}

    def recorder(name: str) -> Callable[..., None]:
        return lambda event, **f: shown[name].append((str(f["from"]), f["text"])) if event == "chat_message" else None

    nodes = [service(i, n, emit=recorder(n)) for i, n in enumerate(names)]
    a, b, c, d = nodes
    flooder = Flooder(IDS[0], 20_000, 1_250.0, random.Random(5))
    lines = [f"line {i} from alice" for i in range(45)]
    async with trio.open_nursery() as nursery:
        for x, y in ((0, 1), (1, 2), (2, 3), (3, 1)):
            await connect(nursery, IDS[x], nodes[x].protocol, IDS[y], nodes[y].protocol)
        while len(b.peers()) < 3:
            await trio.sleep(0.01)
        start = trio.current_time()
        flood_done = trio.Event()

        async def flood() -> None:
            await flooder.run(nursery, b.protocol, IDS[1])
            flood_done.set()

        nursery.start_soon(flood)
        for text in lines:
            await a.send(text)  # paced by alice's own author rate
            await trio.sleep(0.05)
        typed = trio.current_time() - start
        await flood_done.wait()
        await trio.sleep(5)  # the paced outboxes drain
        nursery.cancel_scope.cancel()
    assert flooder.sent == 20_000 and typed < flooder.sent / flooder.rate  # she typed during the flood
    for name in ("bob", "carol", "dave"):
        got = [text for sender, text in shown[name] if sender == IDS[0].hex()]
        assert got == lines or sorted(got) == sorted(lines), f"{name} got {len(got)}/45"
    forged = [ev for name in names for ev in shown[name] if ev[0] == IDS[0].hex() and ev[1] not in lines]
    assert forged == []
    counts = b.counters()
    cut = [r for r in flooder.reasons[:-1]]  # every connection but the last was cut by bob
    assert set(cut) <= {DisconnectReason.BREACH_OF_PROTOCOL, DisconnectReason.SUBPROTOCOL_ERROR}
    assert counts["disconnected_forged"] + counts["disconnected_flood"] >= len(cut) > 0
    assert counts["dropped_forged"] >= 1 and counts["dropped_author_rate"] > 0
    print(f"flood: {flooder.sent} messages over {flooder.connections} connections; bob: {counts}")
    # Honest neighbours pace what they forward below each other's limits: never cut, never dropped.
    for honest in (a, c, d):
        assert honest.counters()["dropped_peer_rate"] == 0
        assert honest.counters()["disconnected_flood"] + honest.counters()["disconnected_forged"] == 0
    assert set(b.counters()) == set(COUNTERS)


async def test_chat_counters_appear_in_the_servers_metrics(autojump_clock: trio.testing.MockClock) -> None:
    chat = service(1, "bob")
    server = Server(private_key=KEYS[1], protocols=[chat.protocol], config=ServerConfig(discovery=False))
    text = server.metrics.render().decode()
    for name in COUNTERS:
        assert f"p2p_chat_{name}_total 0.0" in text
    async with trio.open_nursery() as nursery:
        link = await connect(nursery, IDS[3], raw_peer(), IDS[1], chat.protocol)
        assert link.conns is not None
        await link.conns[0].send(MessageCode.TEXT, encode(line(KEYS[3], "hi", sender=IDS[0])))
        await link.closed.wait()
    text = server.metrics.render().decode()
    assert "p2p_chat_dropped_forged_total 1.0" in text and "p2p_chat_disconnected_forged_total 1.0" in text
