"""Messages no handler takes are dropped without being decompressed, and a peer that keeps
sending them is disconnected."""

from __future__ import annotations

import trio
import trio.testing

from p2p.disconnect import DisconnectReason
from p2p.hello import EMPTY_LIST, MessageCode
from p2p.peer import UNHANDLED_BURST, UNHANDLED_TOKEN_BYTES
from p2p.protocol import Protocol, ProtocolConnection
from tests.peer.memtransport import MemoryTransport, transport_pair
from tests.peer.test_peer import KEYS, disconnects, make_peer


class CountingTransport(MemoryTransport):
    """Records which messages the peer asked to decompress."""

    decompressed: list[int]

    def decompress(self, code: int, data: bytes) -> bytes:
        self.decompressed.append(code)
        return data


def _proto(got: list[bytes]) -> Protocol:
    proto = Protocol("bomb", 1, 3)  # codes 16, 17, 18; only code 0 (16) has a handler

    @proto.handler(0)
    async def on_zero(conn: ProtocolConnection, payload: bytes) -> None:
        got.append(payload)

    return proto


def _pair() -> tuple[CountingTransport, MemoryTransport]:
    a, b = transport_pair(KEYS[0].public_key, KEYS[1].public_key, buffer=256)
    a.__class__ = CountingTransport
    assert isinstance(a, CountingTransport)
    a.decompressed = []
    return a, b


async def test_unhandled_codes_are_dropped_undecompressed_and_handled_ones_still_arrive() -> None:
    got: list[bytes] = []
    a, b = _pair()
    pa = make_peer(a, KEYS[1], [_proto(got)])
    async with trio.open_nursery() as n:
        n.start_soon(pa.run)
        for i in range(UNHANDLED_BURST // 2):
            await b.send(17, b"bomb")  # no handler
            await b.send(MessageCode.PING + 5, b"bomb")  # an unused base-protocol code
        await b.send(16, b"wanted")
        with trio.fail_after(5):
            while not got:
                await trio.sleep(0.001)
        assert not pa.closed
        pa.disconnect()
    assert got == [b"wanted"]
    assert a.decompressed.count(16) == 1 and 17 not in a.decompressed and 7 not in a.decompressed
    assert pa.unhandled == UNHANDLED_BURST // 2 * 2


async def test_a_peer_that_keeps_sending_unhandled_codes_is_disconnected() -> None:
    a, b = _pair()
    pa = make_peer(a, KEYS[1], [_proto([])])
    for _ in range(UNHANDLED_BURST + 1):
        await b.send(18, b"bomb")
    with trio.fail_after(5):
        error = await pa.run()
    assert error.reason is DisconnectReason.BREACH_OF_PROTOCOL
    assert disconnects(a) == [DisconnectReason.BREACH_OF_PROTOCOL]
    assert a.decompressed == []


async def test_ping_and_pong_are_not_counted_as_unhandled() -> None:
    a, b = _pair()
    pa = make_peer(a, KEYS[1], [_proto([])])
    async with trio.open_nursery() as n:
        n.start_soon(pa.run)
        for _ in range(UNHANDLED_BURST * 2):
            await b.send(MessageCode.PONG, EMPTY_LIST)
            await b.send(MessageCode.PING, EMPTY_LIST)
        with trio.fail_after(5):
            while sum(1 for c, _ in a.sent if c == MessageCode.PONG) < UNHANDLED_BURST * 2:
                await trio.sleep(0.001)
        assert not pa.closed and pa.unhandled == 0
        pa.disconnect()


async def test_large_unhandled_messages_use_up_the_allowance_sooner() -> None:
    a, b = _pair()
    pa = make_peer(a, KEYS[1], [_proto([])])
    bomb = bytes(UNHANDLED_BURST * UNHANDLED_TOKEN_BYTES // 2)  # half the burst's worth of bytes
    for _ in range(3):
        await b.send(17, bomb)
    with trio.fail_after(5):
        error = await pa.run()
    assert error.reason is DisconnectReason.BREACH_OF_PROTOCOL
    assert pa.unhandled == 2  # the second one (33 tokens, 31 left) ended the peer


class _Meter:
    def __init__(self) -> None:
        self.read = 0

    def ingress(self, protocol: str, code: int, size: int) -> None:
        self.read += 1

    def egress(self, protocol: str, code: int, size: int) -> None:
        pass

    def unhandled(self, protocol: str, code: int, size: int) -> None:
        pass


async def test_large_messages_fill_the_queue_by_bytes_and_stop_the_reader() -> None:
    # Eight 9 MiB messages queued for a slow handler would be 72 MiB for one peer: the queue's
    # byte bound stops the reader after two are queued (plus one in the handler, one in hand).
    release = trio.Event()
    handled: list[int] = []
    proto = Protocol("big", 1, 1)

    @proto.handler(0)
    async def slow(conn: ProtocolConnection, payload: bytes) -> None:
        await release.wait()
        handled.append(len(payload))

    a, b = _pair()
    meter = _Meter()
    pa = make_peer(a, KEYS[1], [proto], meter=meter)
    big = bytes(9 * 1024 * 1024)
    async with trio.open_nursery() as n:
        n.start_soon(pa.run)
        for _ in range(6):
            await b.send(16, big)
        await trio.testing.wait_all_tasks_blocked()
        assert meter.read == 4
        release.set()
        with trio.fail_after(5):
            while len(handled) < 6:
                await trio.sleep(0.001)
        pa.disconnect()
    assert meter.read == 6
