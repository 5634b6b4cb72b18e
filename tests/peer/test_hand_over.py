"""A read that brings more messages than a protocol's queue holds: the reader hands the rest of
its batch to the protocol's dispatcher. Each protocol still sees its messages once and in
order, whatever else the batch holds, and a bad frame in the handed-over part still ends the
peer after the messages before it and before any after it."""

from __future__ import annotations

import random

import trio
import trio.testing

from p2p.peer import QUEUE_SIZE
from p2p.protocol import Protocol, ProtocolConnection
from p2p.rlpx import snappy
from tests.peer.rlpxpair import peer_pair, rlpx_pair

AA_DATA, AA_UNHANDLED, BB_DATA = 0x10, 0x11, 0x12  # "aa" (2 codes) then "bb" (1), after the 16 base codes
PING = 0x02


def _protocols(got: dict[str, list[int]]) -> list[Protocol]:
    aa, bb = Protocol("aa", 1, 2), Protocol("bb", 1, 1)

    @aa.handler(0)
    async def on_aa(conn: ProtocolConnection, payload: bytes) -> None:
        seq = int.from_bytes(payload[:4], "big")
        if seq % 7 == 0:
            await trio.sleep(0)  # a handler that sometimes yields, in the queue or in a hand-over
        got["aa"].append(seq)

    @bb.handler(0)
    async def on_bb(conn: ProtocolConnection, payload: bytes) -> None:
        got["bb"].append(int.from_bytes(payload[:4], "big"))

    return [aa, bb]


async def test_a_batch_larger_than_the_queue_reaches_each_protocol_in_order() -> None:
    got: dict[str, list[int]] = {"aa": [], "bb": []}
    rng = random.Random(5)
    batch: list[tuple[int, bytes]] = []
    expected: dict[str, list[int]] = {"aa": [], "bb": []}
    unhandled = 0
    for seq in range(40 * QUEUE_SIZE):
        pick = rng.random()
        payload = seq.to_bytes(4, "big") + bytes(rng.randrange(200))
        if pick < 0.7:
            batch.append((AA_DATA, payload))
            expected["aa"].append(seq)
        elif pick < 0.9:
            batch.append((BB_DATA, payload))
            expected["bb"].append(seq)
        elif pick < 0.97:
            batch.append((AA_UNHANDLED, payload))
            unhandled += 1
        else:
            batch.append((PING, b"\xc0"))
    with trio.fail_after(10):
        sa, sb = trio.testing.memory_stream_pair()
        conn_a, conn_b = await rlpx_pair(sa, sb)
        protocols = _protocols(got)
        _, peer_b = await peer_pair(conn_a, conn_b, protocols, protocols)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer_b.run)
            await conn_a.send_many(batch)  # one write: the receiver reads it in few reads
            while len(got["aa"]) + len(got["bb"]) < len(expected["aa"]) + len(expected["bb"]):
                await trio.sleep(0.001)
            assert not peer_b.closed
            peer_b.disconnect()
    assert got == expected
    assert peer_b.unhandled == unhandled


async def test_a_bad_frame_in_a_handed_over_batch_ends_the_peer_after_the_ones_before_it() -> None:
    got: dict[str, list[int]] = {"aa": [], "bb": []}
    good = 3 * QUEUE_SIZE
    with trio.fail_after(10):
        sa, sb = trio.testing.memory_stream_pair()
        conn_a, conn_b = await rlpx_pair(sa, sb)
        protocols = _protocols(got)
        _, peer_b = await peer_pair(conn_a, conn_b, protocols, protocols)
        frames = [(AA_DATA, snappy.compress(seq.to_bytes(4, "big"))) for seq in range(good)]
        frames.append((AA_DATA, b"\xff\xff\xff\xff\x0f not snappy"))  # declares 4 GiB: refused
        frames += [(AA_DATA, snappy.compress(seq.to_bytes(4, "big"))) for seq in range(good, good + 5)]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer_b.run)
            await sa.send_all(conn_a._codec.encode_many(frames))  # frames as sent, bad one included
            await peer_b.wait_closed()
    assert got["aa"] == list(range(good))
    assert peer_b.error is not None and not peer_b.error.remote_requested
