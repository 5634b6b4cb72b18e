"""ChatService and EthService over an in-memory link (no sockets): behaviour of the protocols."""

from __future__ import annotations

import time

import pytest
import rlp
import trio
import trio.testing

from p2p import DisconnectReason, NodeID, PrivateKey, Signer
from protocols.chat.messages import HOP_LIMIT, MessageCode, TextMessage, encode, sign
from protocols.chat.service import ChatService
from protocols.eth.chain import MAINNET_GENESIS, BlockHeader, Chain
from protocols.eth.forkid import MAINNET, ChainConfig, ForkID
from protocols.eth.messages import EthCode, GetBlockHeaders, Status
from protocols.eth.service import EthRequestError, EthService
from protocols_memnet import Link, connect

KEYS = [PrivateKey(bytes([i]) * 32) for i in range(1, 6)]
IDS = [NodeID.from_pubkey(k.public_key) for k in KEYS]


async def test_chat_reaches_a_node_two_hops_away() -> None:
    events: list[tuple[str, dict[str, object]]] = []
    a = ChatService(Signer(KEYS[0]), "alice")
    b = ChatService(Signer(KEYS[1]), "bob")
    c = ChatService(Signer(KEYS[2]), "carol", emit=lambda event, **f: events.append((event, f)))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await connect(nursery, IDS[0], a.protocol, IDS[1], b.protocol)
            await connect(nursery, IDS[1], b.protocol, IDS[2], c.protocol)
            with c.subscribe() as inbox:
                while len(a.peers()) < 1 or len(b.peers()) < 2:
                    await trio.sleep(0.01)
                sent = await a.send("hello carol")
                got = await inbox.receive()
            assert got.id == sent.id and got.text == "hello carol" and got.nick == "alice"
            assert got.sender == IDS[0] and got.hops == 1
            assert ("chat_message", {"id": sent.id.hex(), "from": IDS[0].hex(), "nick": "alice",
                                     "text": "hello carol", "time": sent.timestamp / 1000}) in events
            # Neighbours learn each other's nick on connect.
            assert {p.nick for p in b.peers()} == {"alice", "carol"}
            nursery.cancel_scope.cancel()


async def test_chat_triangle_delivers_once() -> None:
    services = [ChatService(Signer(KEYS[i]), f"n{i}") for i in range(3)]
    received: list[list[TextMessage]] = [[], [], []]
    for i, s in enumerate(services):
        s.on_message(received[i].append)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for i, j in ((0, 1), (1, 2), (2, 0)):
                await connect(nursery, IDS[i], services[i].protocol, IDS[j], services[j].protocol)
            while any(len(s.peers()) < 2 for s in services):
                await trio.sleep(0.01)
            await services[0].send("loop?")
            while not (received[1] and received[2]):
                await trio.sleep(0.01)
            await trio.sleep(0.1)  # let every forwarded copy arrive
            assert [len(r) for r in received] == [0, 1, 1]
            assert services[1].gossip.duplicates + services[2].gossip.duplicates >= 1
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("payload", [b"\xc1", rlp.encode([b"short"]), b"", rlp.encode(b"x")])
async def test_chat_malformed_payload_disconnects_with_subprotocol_error(payload: bytes) -> None:
    a = ChatService(Signer(KEYS[0]), "alice")
    b = ChatService(Signer(KEYS[1]), "bob")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            link = await connect(nursery, IDS[0], a.protocol, IDS[1], b.protocol)
            assert link.conns is not None
            await link.conns[1].send(MessageCode.TEXT, payload)  # b sends garbage to a
            await link.closed.wait()
    assert link.reason == DisconnectReason.SUBPROTOCOL_ERROR


async def test_chat_message_at_hop_limit_is_shown_not_forwarded() -> None:
    a, b, c = (ChatService(Signer(KEYS[i]), n) for i, n in enumerate(["a", "b", "c"]))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            link = await connect(nursery, IDS[0], a.protocol, IDS[1], b.protocol)
            await connect(nursery, IDS[1], b.protocol, IDS[2], c.protocol)
            with b.subscribe() as b_in, c.subscribe() as c_in:
                while len(b.peers()) < 2:
                    await trio.sleep(0.01)
                msg = sign(TextMessage(b"\x42" * 16, IDS[3], "far", int(time.time() * 1000), HOP_LIMIT, "edge"), KEYS[3])
                assert link.conns is not None
                await link.conns[0].send(MessageCode.TEXT, encode(msg))
                assert (await b_in.receive()).text == "edge"
                with trio.move_on_after(0.3):
                    await c_in.receive()
                    pytest.fail("a message at the hop limit was forwarded")
            nursery.cancel_scope.cancel()


def eth_pair(config_b: ChainConfig | None = None, chain_b: Chain | None = None) -> tuple[EthService, EthService]:
    chain = Chain.build(MAINNET_GENESIS, 50)
    a = EthService(chain, MAINNET)
    b = EthService(chain_b or Chain.build(MAINNET_GENESIS, 10), config_b or MAINNET)
    return a, b


async def test_eth_status_and_headers() -> None:
    a, b = eth_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await connect(nursery, IDS[0], a.protocol, IDS[1], b.protocol)
            status = await b.wait_ready(IDS[0])
            await a.wait_ready(IDS[1])
            assert status == a.local_status() and status.fork_id == ForkID(bytes.fromhex("fc64ec04"), 1150000)
            headers = await b.get_block_headers(IDS[0], 40, 5, skip=1, reverse=True)
            assert [h.number for h in headers] == [40, 38, 36, 34, 32]
            assert all(h == a.chain.by_number(h.number) for h in headers)
            by_hash = await b.get_block_headers(IDS[0], a.chain.head.hash, 3)
            assert [h.number for h in by_hash] == [50]
            assert [p.status.head_hash for p in b.peers()] == [a.chain.head.hash]
            nursery.cancel_scope.cancel()


async def test_eth_other_network_or_genesis_is_useless_peer() -> None:
    other_genesis = BlockHeader(**{**{f: getattr(MAINNET_GENESIS, f) for f in (
        "parent_hash", "uncles_hash", "coinbase", "state_root", "tx_root", "receipt_root", "bloom",
        "difficulty", "number", "gas_limit", "gas_used", "timestamp", "mix_hash", "nonce")}, "extra_data": b"other"})
    cases = [
        (ChainConfig(5, MAINNET.genesis_hash, MAINNET.fork_blocks, MAINNET.fork_times), None, "network ID"),
        (ChainConfig(1, other_genesis.hash), Chain.build(other_genesis, 3), "genesis"),
    ]
    for config, chain, why in cases:
        a, b = eth_pair(config, chain)
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                link = await connect(nursery, IDS[0], a.protocol, IDS[1], b.protocol)
                await link.closed.wait()
        assert link.reason == DisconnectReason.USELESS_PEER and why in link.why


async def test_eth_status_timeout(autojump_clock: trio.testing.MockClock) -> None:
    a, _ = eth_pair()
    silent = EthService(Chain.build(MAINNET_GENESIS, 1), MAINNET)
    silent.protocol.run = None  # a peer that never sends Status
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            link = await connect(nursery, IDS[0], a.protocol, IDS[1], silent.protocol)
            await link.closed.wait()
            took = trio.current_time() - start
    assert link.reason == DisconnectReason.TIMEOUT and took == pytest.approx(5.0)


async def test_eth_message_before_status_and_second_status() -> None:
    a, b = eth_pair()
    b.protocol.run = None
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            link = await connect(nursery, IDS[0], a.protocol, IDS[1], b.protocol)
            assert link.conns is not None
            await link.conns[1].send(EthCode.GET_BLOCK_HEADERS, GetBlockHeaders(0, 1, 0, False).encode_with_id(1))
            await link.closed.wait()
    assert link.reason == DisconnectReason.BREACH_OF_PROTOCOL
    a, b = eth_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            link = await connect(nursery, IDS[0], a.protocol, IDS[1], b.protocol)
            await a.wait_ready(IDS[1])
            assert link.conns is not None
            await link.conns[1].send(EthCode.STATUS, b.local_status().encode())
            await link.closed.wait()
    assert link.reason == DisconnectReason.SUBPROTOCOL_ERROR and "second Status" in link.why


async def test_eth_serves_at_most_1024_headers() -> None:
    chain = Chain.build(MAINNET_GENESIS, 1100)
    a = EthService(chain, MAINNET)
    b = EthService(Chain(MAINNET_GENESIS), MAINNET)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            link = await connect(nursery, IDS[0], a.protocol, IDS[1], b.protocol)
            await b.wait_ready(IDS[0])
            assert link.conns is not None
            await link.conns[1].send(EthCode.GET_BLOCK_HEADERS, GetBlockHeaders(0, 5000, 0, False).encode_with_id(77))
            while not any(code == EthCode.BLOCK_HEADERS for code, _ in link.conns[0].sent):
                await trio.sleep(0.01)
            payload = next(p for code, p in link.conns[0].sent if code == EthCode.BLOCK_HEADERS)
            request_id, headers = rlp.decode(payload)
            assert request_id == b"\x4d" and len(headers) == 1024
            with pytest.raises(ValueError):
                await b.get_block_headers(IDS[0], 0, 1025)
            with pytest.raises(EthRequestError):
                await b.get_block_headers(IDS[3], 0, 1)
            nursery.cancel_scope.cancel()


def test_status_mismatch_checks_are_unit_level() -> None:
    a, _ = eth_pair()
    good = a.local_status()
    a.check_status(good)
    for bad in (Status(67, 1, 0, good.head_hash, good.genesis_hash, good.fork_id),
                Status(68, 1, 0, good.head_hash, good.genesis_hash, ForkID(b"\xde\xad\xbe\xef", 0))):
        with pytest.raises(Exception) as info:
            a.check_status(bad)
        assert getattr(info.value, "reason") == DisconnectReason.USELESS_PEER
