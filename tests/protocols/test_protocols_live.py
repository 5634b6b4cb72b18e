"""Chat and eth between real nodes on 127.0.0.1 (RLPx, Hello, the server's dispatch)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from p2p import DisconnectReason, NodeID, PeerRemoved, PrivateKey, Signer, Protocol, Server, open_server, ServerConfig
from protocols.chat import ChatService
from protocols.eth import MAINNET, MAINNET_GENESIS, BlockHeader, Chain, ChainConfig, EthService


@asynccontextmanager
async def line_of_nodes(protocol_sets: Sequence[Sequence[Protocol]], keys: Sequence[PrivateKey]) -> AsyncIterator[list[Server]]:
    """Nodes 0 - 1 - 2 - ...: each dials the one before it, nothing else (no discovery)."""
    async with AsyncExitStack() as stack:
        servers: list[Server] = []
        for i, (protocols, key) in enumerate(zip(protocol_sets, keys)):
            static = [servers[-1].local_node] if servers else []
            servers.append(await stack.enter_async_context(
                open_server(private_key=key, protocols=protocols, config=ServerConfig(
                    discovery=False, static_nodes=static))))
        yield servers


async def wait_for(predicate: Any, interval: float = 0.02) -> None:
    while not predicate():
        await trio.sleep(interval)


async def test_chat_line_of_three_nodes() -> None:
    keys = [PrivateKey.generate() for _ in range(3)]
    chats = [ChatService(Signer(k), nick) for k, nick in zip(keys, ["a", "b", "c"])]
    with trio.fail_after(20):
        async with line_of_nodes([[c.protocol] for c in chats], keys) as servers:
            await wait_for(lambda: len(servers[1].peers()) == 2 and len(chats[1].peers()) == 2)
            with chats[2].subscribe() as inbox_c, chats[0].subscribe() as inbox_a:
                sent = await chats[0].send("from a to c")
                got = await inbox_c.receive()
                assert (got.id, got.text, got.nick, got.sender, got.hops) == (sent.id, "from a to c", "a", chats[0].node_id, 1)
                reply = await chats[2].send("c answers")
                assert (await inbox_a.receive()).id == reply.id
            assert {p.nick for p in chats[1].peers()} == {"a", "c"}
            assert all(len(s.peers()) <= 2 for s in servers)


async def test_chat_garbage_disconnects_only_that_peer() -> None:
    keys = [PrivateKey.generate() for _ in range(2)]
    honest = ChatService(Signer(keys[0]), "honest")
    rude = Protocol("chat", 2, 2)

    @rude.on_run
    async def send_garbage(peer: Any, conn: Any) -> None:
        await conn.send(0, b"\xc3\x01\x02")  # a list of 2 items: not a chat message
        await trio.sleep_forever()

    with trio.fail_after(20):
        async with open_server(private_key=keys[0], protocols=[honest.protocol], config=ServerConfig(
            discovery=False)) as node:
            with node.events() as events:
                async with open_server(private_key=keys[1], protocols=[rude], config=ServerConfig(
                    discovery=False, static_nodes=[node.local_node])):
                    async for event in events:
                        if isinstance(event, PeerRemoved):
                            assert event.reason == DisconnectReason.SUBPROTOCOL_ERROR
                            assert not event.remote_requested
                            break


async def test_eth_status_and_headers_between_nodes() -> None:
    keys = [PrivateKey.generate() for _ in range(2)]
    full = EthService(Chain.build(MAINNET_GENESIS, 300), MAINNET)
    light = EthService(Chain(MAINNET_GENESIS), MAINNET)
    with trio.fail_after(20):
        async with line_of_nodes([[full.protocol], [light.protocol]], keys):
            full_id = NodeID.from_pubkey(keys[0].public_key)
            status = await light.wait_ready(full_id)
            assert status.head_hash == full.chain.head.hash and status.total_difficulty == full.chain.total_difficulty
            headers = await light.get_block_headers(full_id, 0, 300)
            assert [h.number for h in headers] == list(range(300))
            for parent, child in zip(headers, headers[1:]):
                assert child.parent_hash == parent.hash
            for h in headers[1:]:
                light.chain.append(h)
            assert light.chain.head.hash == full.chain.by_number(299).hash  # type: ignore[union-attr]


async def test_eth_other_genesis_is_a_useless_peer() -> None:
    keys = [PrivateKey.generate() for _ in range(2)]
    fields = {name: getattr(MAINNET_GENESIS, name) for name in (
        "parent_hash", "uncles_hash", "coinbase", "state_root", "tx_root", "receipt_root", "bloom",
        "difficulty", "number", "gas_limit", "gas_used", "timestamp", "mix_hash", "nonce")}
    other = BlockHeader(**fields, extra_data=b"another chain")
    ours = EthService(Chain.build(MAINNET_GENESIS, 5), MAINNET)
    theirs = EthService(Chain.build(other, 5), ChainConfig(1, other.hash))
    with trio.fail_after(20):
        async with open_server(private_key=keys[0], protocols=[ours.protocol], config=ServerConfig(
            discovery=False)) as node:
            with node.events() as events:
                async with open_server(private_key=keys[1], protocols=[theirs.protocol], config=ServerConfig(
                    discovery=False, static_nodes=[node.local_node])):
                    async for event in events:
                        if isinstance(event, PeerRemoved):
                            assert event.reason == DisconnectReason.USELESS_PEER
                            break
    assert ours.peers() == []


def test_registry_knows_chat_and_eth() -> None:
    from p2p import protocol_registry

    events: list[str] = []
    key = PrivateKey.generate()
    node_id = NodeID.from_pubkey(key.public_key)
    chat, chat_protocols = protocol_registry.create("chat", node_id=node_id, signer=Signer(key),
                                                    emit=lambda e, **f: events.append(e))
    assert isinstance(chat, ChatService) and chat.node_id == node_id
    assert [p.capability for p in chat_protocols] == [chat.protocol.capability]
    eth, eth_protocols = protocol_registry.create("eth", node_id=node_id, emit=None)
    assert isinstance(eth, EthService) and eth.chain.genesis.hash == MAINNET_GENESIS.hash
    assert [(p.name, p.version, p.length) for p in eth_protocols] == [("eth", 68, 17)]
