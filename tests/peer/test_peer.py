"""Peer lifecycle over an in-memory transport: Hello, ping/pong, timeouts, dispatch, errors."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
import rlp
import trio
import trio.testing

from p2p.crypto import PrivateKey
from p2p.disconnect import DisconnectReason
from p2p.enode import NodeID
from p2p.hello import (
    EMPTY_LIST,
    Hello,
    HelloError,
    MessageCode,
    PeerError,
    RemoteDisconnected,
    decode_disconnect,
    encode_disconnect,
    match_capabilities,
)
from p2p.peer import QUEUE_SIZE, Peer, exchange_hello, make_hello
from p2p.protocol import Capability, PeerInfo, Protocol, ProtocolConnection, ProtocolError
from tests.peer.memtransport import MemoryTransport, transport_pair

KEYS = [PrivateKey.generate(random.Random(i)) for i in range(3)]


def info_for(key: PrivateKey, inbound: bool = False) -> PeerInfo:
    return PeerInfo(id=NodeID.from_pubkey(key.public_key), client="test", caps=(), remote=("127.0.0.1", 1),
                    inbound=inbound, since=0.0, enode="")


def make_peer(transport: MemoryTransport, remote_key: PrivateKey, protocols: list[Protocol], **kw: Any) -> Peer:
    matched = match_capabilities(protocols, [p.capability for p in protocols])
    hello = make_hello(remote_key.public_key, protocols, client_id="test", listen_port=0)
    return Peer(transport, info_for(remote_key), hello, matched, linger=0, **kw)


def disconnects(t: MemoryTransport) -> list[DisconnectReason | int]:
    return [decode_disconnect(p) for c, p in t.sent if c == MessageCode.DISCONNECT]


async def test_hello_exchange_turns_snappy_on_at_version_5() -> None:
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    protos = [Protocol("chat", 1, 2)]
    hello_a = make_hello(KEYS[0].public_key, protos, client_id="a", listen_port=1)
    hello_b = make_hello(KEYS[1].public_key, protos, client_id="b", listen_port=2)
    results: dict[str, Hello] = {}
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            async def side(name: str, t: MemoryTransport, h: Hello) -> None:
                results[name] = await exchange_hello(t, h)
            n.start_soon(side, "a", a, hello_a)
            n.start_soon(side, "b", b, hello_b)
    assert results["a"] == hello_b and results["b"] == hello_a
    assert a.snappy and b.snappy
    assert a.sent[0] == (MessageCode.HELLO, hello_a.encode())


async def test_no_snappy_when_remote_is_version_4() -> None:
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    old = Hello(4, "old", (), 0, KEYS[1].public_key.to_bytes())
    await b.send(MessageCode.HELLO, old.encode())
    with trio.fail_after(5):
        got = await exchange_hello(a, make_hello(KEYS[0].public_key, [], client_id="a", listen_port=0))
    assert got.version == 4 and not a.snappy


async def test_disconnect_instead_of_hello_is_understood() -> None:
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    await b.send(MessageCode.DISCONNECT, encode_disconnect(DisconnectReason.TOO_MANY_PEERS))
    with trio.fail_after(5), pytest.raises(RemoteDisconnected) as info:
        await exchange_hello(a, make_hello(KEYS[0].public_key, [], client_id="a", listen_port=0))
    assert info.value.reason is DisconnectReason.TOO_MANY_PEERS and info.value.remote_requested


async def test_hello_identity_must_match_rlpx_identity() -> None:
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    await b.send(MessageCode.HELLO, Hello(5, "liar", (), 0, KEYS[2].public_key.to_bytes()).encode())
    with trio.fail_after(5), pytest.raises(HelloError) as info:
        await exchange_hello(a, make_hello(KEYS[0].public_key, [], client_id="a", listen_port=0))
    assert info.value.reason is DisconnectReason.UNEXPECTED_IDENTITY


async def test_first_message_must_be_hello() -> None:
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    await b.send(MessageCode.PING, EMPTY_LIST)
    with trio.fail_after(5), pytest.raises(HelloError) as info:
        await exchange_hello(a, make_hello(KEYS[0].public_key, [], client_id="a", listen_port=0))
    assert info.value.reason is DisconnectReason.BREACH_OF_PROTOCOL


async def test_hello_timeout(autojump_clock: trio.testing.MockClock) -> None:
    a, _b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    start = trio.current_time()
    with pytest.raises(PeerError) as info:
        await exchange_hello(a, make_hello(KEYS[0].public_key, [], client_id="a", listen_port=0), timeout=5)
    assert info.value.reason is DisconnectReason.TIMEOUT
    assert trio.current_time() - start == pytest.approx(5)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_ping_pong_keeps_peers_alive(autojump_clock: trio.testing.MockClock) -> None:
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    pa = make_peer(a, KEYS[1], [])
    pb = make_peer(b, KEYS[0], [])
    async with trio.open_nursery() as n:
        n.start_soon(pa.run)
        n.start_soon(pb.run)
        await trio.sleep(100)  # > 3 read timeouts: only pings keep the peers up
        assert not pa.closed and not pb.closed
        pings = sum(1 for c, _ in a.sent if c == MessageCode.PING)
        pongs = sum(1 for c, _ in a.sent if c == MessageCode.PONG)
        assert 6 <= pings <= 7 and 6 <= pongs <= 7  # every 15 s, from both sides
        pa.disconnect(DisconnectReason.CLIENT_QUITTING)
    assert pa.error is not None and pa.error.reason is DisconnectReason.CLIENT_QUITTING
    assert not pa.error.remote_requested
    assert pb.error is not None and pb.error.reason is DisconnectReason.CLIENT_QUITTING
    assert pb.error.remote_requested
    assert disconnects(a) == [DisconnectReason.CLIENT_QUITTING] and disconnects(b) == []


async def test_read_timeout_disconnects(autojump_clock: trio.testing.MockClock) -> None:
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    pa = make_peer(a, KEYS[1], [])
    start = trio.current_time()
    error = await pa.run()  # b never answers
    assert error.reason is DisconnectReason.TIMEOUT
    assert trio.current_time() - start == pytest.approx(30)
    assert disconnects(a) == [DisconnectReason.TIMEOUT]


async def test_remote_disconnect_bare_form_is_recorded() -> None:
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    pa = make_peer(a, KEYS[1], [])
    await b.send(MessageCode.DISCONNECT, rlp.encode(int(DisconnectReason.USELESS_PEER)))
    with trio.fail_after(5):
        error = await pa.run()
    assert error.reason is DisconnectReason.USELESS_PEER and error.remote_requested
    assert disconnects(a) == []


async def test_empty_disconnect_payload() -> None:
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    pa = make_peer(a, KEYS[1], [])
    await b.send(MessageCode.DISCONNECT, b"")
    with trio.fail_after(5):
        error = await pa.run()
    assert error.reason is DisconnectReason.REQUESTED and error.remote_requested


async def test_messages_route_to_handlers_with_relative_codes() -> None:
    got: list[tuple[str, int, bytes]] = []
    alpha, beta = Protocol("alpha", 1, 3), Protocol("beta", 2, 2)
    for proto in (alpha, beta):
        for code in range(proto.length):
            async def handler(conn: ProtocolConnection, payload: bytes, code: int = code) -> None:
                got.append((conn.protocol.name, code, payload))
            proto.handler(code)(handler)
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    pa = make_peer(a, KEYS[1], [beta, alpha])
    async with trio.open_nursery() as n:
        n.start_soon(pa.run)
        # alpha (sorted first) has codes 16..18, beta 19..20
        for code in (16, 18, 19, 20, 17):
            await b.send(code, bytes([code]))
        with trio.fail_after(5):
            while len(got) < 5:
                await trio.sleep(0.001)
        pa.disconnect()
    assert sorted(got) == sorted([("alpha", 0, b"\x10"), ("alpha", 2, b"\x12"), ("beta", 0, b"\x13"),
                                  ("beta", 1, b"\x14"), ("alpha", 1, b"\x11")])


async def test_send_from_run_uses_offset_and_checks_code() -> None:
    proto = Protocol("zz", 1, 2)
    errors: list[Exception] = []

    @proto.on_run
    async def run(peer: PeerInfo, conn: ProtocolConnection) -> None:
        await conn.send(1, b"\xc0")
        try:
            await conn.send(2, b"\xc0")
        except ValueError as exc:
            errors.append(exc)
        await trio.sleep_forever()

    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    pa = make_peer(a, KEYS[1], [Protocol("aa", 1, 4), proto])
    async with trio.open_nursery() as n:
        n.start_soon(pa.run)
        with trio.fail_after(5):
            code, payload = await b.receive()
        pa.disconnect()
    assert (code, payload) == (16 + 4 + 1, b"\xc0") and len(errors) == 1


@pytest.mark.parametrize(
    "exc, reason",
    [
        (RuntimeError("boom"), DisconnectReason.SUBPROTOCOL_ERROR),
        (ProtocolError("bad network", DisconnectReason.USELESS_PEER), DisconnectReason.USELESS_PEER),
        (ProtocolError("bad message"), DisconnectReason.SUBPROTOCOL_ERROR),
        (ProtocolError("garbage", DisconnectReason.BREACH_OF_PROTOCOL), DisconnectReason.BREACH_OF_PROTOCOL),
    ],
)
async def test_handler_error_disconnects_with_reason(exc: Exception, reason: DisconnectReason,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="p2p.peer")
    proto = Protocol("chat", 1, 2)

    @proto.handler(0)
    async def on_msg(conn: ProtocolConnection, payload: bytes) -> None:
        raise exc

    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    pa = make_peer(a, KEYS[1], [proto])
    await b.send(16, b"\xc0")
    with trio.fail_after(5):
        error = await pa.run()
    assert error.reason is reason and not error.remote_requested
    assert disconnects(a) == [reason]
    assert any("chat/1" in r.getMessage() and pa.info.id.short() in r.getMessage() for r in caplog.records)


async def test_code_outside_every_protocol_is_breach() -> None:
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    pa = make_peer(a, KEYS[1], [Protocol("chat", 1, 2)])
    await b.send(18, b"\xc0")  # chat covers 16 and 17
    with trio.fail_after(5):
        error = await pa.run()
    assert error.reason is DisconnectReason.BREACH_OF_PROTOCOL
    assert disconnects(a) == [DisconnectReason.BREACH_OF_PROTOCOL]


async def test_run_returning_or_failing_disconnects() -> None:
    for body, reason in ((None, DisconnectReason.REQUESTED), (KeyError("x"), DisconnectReason.SUBPROTOCOL_ERROR)):
        proto = Protocol("chat", 1, 2)

        @proto.on_run
        async def run(peer: PeerInfo, conn: ProtocolConnection, body: Exception | None = body) -> None:
            if body is not None:
                raise body

        a, _b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
        with trio.fail_after(5):
            error = await make_peer(a, KEYS[1], [proto]).run()
        assert error.reason is reason
        assert disconnects(a) == [reason]


async def test_slow_handler_applies_backpressure_to_its_peer_only() -> None:
    release = trio.Event()
    handled: list[bytes] = []
    proto = Protocol("slow", 1, 1)

    @proto.handler(0)
    async def on_msg(conn: ProtocolConnection, payload: bytes) -> None:
        await release.wait()
        handled.append(payload)

    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key, buffer=1000)
    pa = make_peer(a, KEYS[1], [proto])
    total = QUEUE_SIZE + 50
    async with trio.open_nursery() as n:
        n.start_soon(pa.run)
        for i in range(total):
            await b.send(16, i.to_bytes(2, "big"))
        await trio.testing.wait_all_tasks_blocked()
        # the handler holds one, the queue QUEUE_SIZE, the reader one more: the rest waits in the
        # transport (the socket buffer, in real life) instead of piling up in memory
        unread = a._receive.statistics().current_buffer_used
        assert unread == total - QUEUE_SIZE - 2
        release.set()
        with trio.fail_after(5):
            while len(handled) < total:
                await trio.sleep(0.001)
        pa.disconnect()
    assert handled == [i.to_bytes(2, "big") for i in range(total)]


async def test_protocol_connection_disconnect_with_reason() -> None:
    proto = Protocol("chat", 1, 2)

    @proto.handler(1)
    async def on_msg(conn: ProtocolConnection, payload: bytes) -> None:
        await conn.disconnect(DisconnectReason.USELESS_PEER)

    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    pa = make_peer(a, KEYS[1], [proto])
    await b.send(17, b"\xc0")
    with trio.fail_after(5):
        error = await pa.run()
    assert error.reason is DisconnectReason.USELESS_PEER
    assert disconnects(a) == [DisconnectReason.USELESS_PEER]


@pytest.mark.parametrize("reason", list(DisconnectReason))
async def test_every_reason_sent_by_one_peer_is_read_by_the_other(reason: DisconnectReason) -> None:
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key)
    pa = make_peer(a, KEYS[1], [])
    pb = make_peer(b, KEYS[0], [])
    async with trio.open_nursery() as n:
        n.start_soon(pb.run)
        pa.disconnect(reason)
        with trio.fail_after(5):
            error = await pa.run()
            await pb.wait_closed()
    assert error.reason is reason and not error.remote_requested
    assert pb.error is not None and pb.error.reason is reason and pb.error.remote_requested
