"""A chat flood between real nodes on 127.0.0.1 (RLPx, the server's dispatch): the flooder is
cut, alice's lines reach everyone, the forged alice never shows."""

from __future__ import annotations

import random
import time
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import trio

from p2p import DisconnectReason, NodeID, PeerRemoved, PrivateKey, Signer, Protocol, open_server, ServerConfig
from protocols.chat import ChatService
from protocols.chat.messages import MessageCode, TextMessage, encode, new_message_id, sign, signing_hash

FLOOD = 5_000  # messages the flooder has ready; it is cut long before sending them all
LINES = 10  # alice's lines: within her own burst, so the test does not wait on her rate


def flood_messages(rng: random.Random, victim: NodeID) -> list[bytes]:
    own = PrivateKey.generate(rng)
    fresh = [PrivateKey.generate(rng) for _ in range(50)]
    now = int(time.time() * 1000)
    out = []
    for i in range(FLOOD):
        key = own if i % 2 else fresh[i % len(fresh)]
        out.append(encode(sign(TextMessage(new_message_id(), NodeID.from_pubkey(key.public_key), "alice", now, 0,
                                           f"{i} " + "x" * 1000), key)))
    forged = TextMessage(new_message_id(), victim, "alice", now, 0, "forged alice")
    out.append(encode(replace(forged, signature=own.sign(signing_hash(forged)))))
    return out


async def test_flooder_is_cut_and_alices_lines_reach_everyone() -> None:
    keys = [PrivateKey.generate() for _ in range(4)]
    chats = [ChatService(Signer(k), n) for k, n in zip(keys[:3], ["alice", "bob", "carol"])]
    alice_id = chats[0].node_id
    payloads = flood_messages(random.Random(3), alice_id)
    shown: list[list[TextMessage]] = [[], [], []]
    for chat, got in zip(chats, shown):
        chat.on_message(got.append)
    flooder = Protocol("chat", 2, 2)
    stats: dict[str, Any] = {}

    @flooder.on_run
    async def flood(peer: Any, conn: Any) -> None:
        start = time.perf_counter()
        stats["sent"] = 0
        try:
            for payload in payloads:
                await conn.send(MessageCode.TEXT, payload)
                stats["sent"] += 1
        finally:
            stats["seconds"] = time.perf_counter() - start
        await trio.sleep_forever()

    with trio.fail_after(20):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(open_server(private_key=keys[0], protocols=[chats[0].protocol], config=ServerConfig(
                discovery=False)))
            b = await stack.enter_async_context(open_server(private_key=keys[1], protocols=[chats[1].protocol], config=ServerConfig(
                discovery=False, static_nodes=[a.local_node])))
            await stack.enter_async_context(open_server(private_key=keys[2], protocols=[chats[2].protocol], config=ServerConfig(
                discovery=False, static_nodes=[b.local_node])))
            while len(chats[1].peers()) < 2:
                await trio.sleep(0.02)
            events = stack.enter_context(b.events())
            await stack.enter_async_context(open_server(private_key=keys[3], protocols=[flooder], config=ServerConfig(
                discovery=False, static_nodes=[b.local_node])))
            lines = [f"line {i}" for i in range(LINES)]
            for text in lines:
                await chats[0].send(text)
            flood_id = NodeID.from_pubkey(keys[3].public_key)
            async for event in events:
                if isinstance(event, PeerRemoved) and event.peer.id == flood_id:
                    assert event.reason in (DisconnectReason.SUBPROTOCOL_ERROR, DisconnectReason.BREACH_OF_PROTOCOL)
                    break
            while not all(len([m for m in got if m.sender == alice_id]) == LINES for got in shown[1:]):
                await trio.sleep(0.05)
    for got in shown[1:]:
        assert [m.text for m in got if m.sender == alice_id] == lines  # 10/10, and no forged alice
    counts = chats[1].counters()
    assert counts["disconnected_flood"] + counts["disconnected_forged"] == 1
    print(f"live flood: {stats['sent']} sent in {stats.get('seconds', 0):.2f} s before the cut; bob: {counts}")
