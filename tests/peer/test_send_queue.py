"""The peer's send queue and its one writer, over real RLPx connections: what concurrent senders
queue goes out coalesced but in each sender's order; a full queue makes senders wait and bounds
its bytes; a cancelled sender leaves the stream whole; a slow handler slows only its own peer."""

from __future__ import annotations

import random
from collections import defaultdict

import trio
import trio.testing

from p2p.disconnect import DisconnectReason
from p2p.metrics import ServerMetrics
from p2p.peer import SEND_MESSAGE_COST
from p2p.protocol import Protocol, ProtocolConnection
from tests.peer.rlpxpair import memory_peers, peer_pair, rlpx_pair, tcp_stream_pair
from tests.peer.test_peer import KEYS


def _recording(name: str, got: dict[tuple[str, int], list[int]]) -> Protocol:
    proto = Protocol(name, 1, 2)

    @proto.handler(0)
    async def on_msg(conn: ProtocolConnection, payload: bytes) -> None:
        got[(name, payload[0])].append(int.from_bytes(payload[1:5], "big"))

    return proto


def _message(sender: int, seq: int, filler: int) -> bytes:
    return bytes([sender]) + seq.to_bytes(4, "big") + bytes([seq & 0xFF]) * filler


async def test_concurrent_senders_on_several_protocols_arrive_in_each_senders_order() -> None:
    names = ("aaa", "bbb", "ccc")
    got: dict[tuple[str, int], list[int]] = defaultdict(list)
    senders, per_sender = 4, 150
    total = len(names) * senders * per_sender
    a, b, stream = await memory_peers([Protocol(n, 1, 2) for n in names], [_recording(n, got) for n in names])
    rng = random.Random(5)

    async def sender(name: str, sender_id: int) -> None:
        conn = a.connection(name)
        assert conn is not None
        for seq in range(per_sender):
            await conn.send(0, _message(sender_id, seq, rng.randrange(0, 3000)))
            if rng.random() < 0.2:
                await trio.sleep(0)  # let the others in, so that batches mix senders and protocols

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            async with trio.open_nursery() as sending:
                for name in names:
                    for sender_id in range(senders):
                        sending.start_soon(sender, name, sender_id)
            while sum(len(v) for v in got.values()) < total:
                await trio.sleep(0.01)
            assert not a.closed and not b.closed
            a.disconnect()
    assert {key: seqs for key, seqs in got.items()} == {
        (name, s): list(range(per_sender)) for name in names for s in range(senders)}
    assert stream.writes < total / 4, "queued frames were not coalesced into fewer writes"


async def test_cancelled_senders_leave_the_stream_whole() -> None:
    got: list[bytes] = []
    proto = Protocol("q", 1, 1)

    @proto.handler(0)
    async def on_msg(conn: ProtocolConnection, payload: bytes) -> None:
        got.append(payload)

    a, b, stream = await memory_peers([Protocol("q", 1, 1)], [proto], send_queue_bytes=8 * 1024)
    conn = a.connection("q")
    assert conn is not None
    queued = [bytes([i]) * 1024 for i in range(5)]  # 5 x 1088 bytes of the 8 KiB queue
    waiting = [bytes([100 + i]) * 4096 for i in range(3)]  # none of these fits beside them
    done: list[bytes] = []
    scopes: list[trio.CancelScope] = []

    async def send_then_linger(payload: bytes) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            await conn.send(0, payload)
            done.append(payload)
            await trio.sleep_forever()  # cancelled with its frame still in the queue

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            stream.stall()  # the remote reads nothing: the writer holds its first batch
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            for payload in queued:
                nursery.start_soon(send_then_linger, payload)
            await trio.testing.wait_all_tasks_blocked()
            for payload in waiting:
                nursery.start_soon(send_then_linger, payload)
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(done) == sorted(queued)  # the waiting ones are still waiting for room
            assert a.send_waits == len(waiting)
            for scope in scopes:  # every sender at once: queued frames and waiting ones
                scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            stream.resume()
            await conn.send(0, b"after")
            while b"after" not in got:
                await trio.sleep(0.01)
            assert not a.closed and not b.closed  # no MAC error, no half frame
            a.disconnect()
    # What was queued arrives whole (in queue order); what waited for room was never sent.
    assert sorted(got[:-1]) == sorted(queued) and got[-1] == b"after"
    assert b.error is not None and b.error.remote_requested


async def test_a_full_send_queue_makes_senders_wait_and_bounds_its_bytes() -> None:
    got: dict[tuple[str, int], list[int]] = defaultdict(list)
    bound = 16 * 1024
    metrics = ServerMetrics()
    a, b, stream = await memory_peers([Protocol("q", 1, 2)], [_recording("q", got)], send_queue_bytes=bound,
                                      meter=metrics)
    conn = a.connection("q")
    assert conn is not None
    senders, per_sender, size = 4, 50, 1024
    sent = [0] * senders

    async def sender(sender_id: int) -> None:
        for seq in range(per_sender):
            await conn.send(0, _message(sender_id, seq, size - 5))
            sent[sender_id] += 1

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            stream.stall()
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            for sender_id in range(senders):
                nursery.start_soon(sender, sender_id)
            await trio.testing.wait_all_tasks_blocked()
            # Queued (the batch the stalled writer holds included) within the bound, the rest wait.
            assert 0 < sum(sent) <= bound // (size + SEND_MESSAGE_COST)
            assert a.send_waits >= senders
            assert metrics.value("p2p_limit_hits_total", limit="send_queue") == a.send_waits
            stream.resume()
            while sum(len(v) for v in got.values()) < senders * per_sender:
                await trio.sleep(0.01)
            a.disconnect()
    assert dict(got) == {("q", s): list(range(per_sender)) for s in range(senders)}
    assert metrics.messages("out", "q", 0) == (senders * per_sender, senders * per_sender * size)


async def test_a_slow_handler_slows_only_its_own_peer() -> None:
    # One node (c) with two peers, as in a server: the handler holds every message from a. a's
    # messages back up into the kernel's buffers and then a's send queue, whose senders wait;
    # b's messages go through the same protocol on c all the while.
    release = trio.Event()
    handled: dict[int, list[int]] = defaultdict(list)
    proto = Protocol("slow", 1, 1)
    slow_id = None

    @proto.handler(0)
    async def on_msg(conn: ProtocolConnection, payload: bytes) -> None:
        if conn.peer.id == slow_id:
            await release.wait()
        handled[payload[0]].append(int.from_bytes(payload[1:5], "big"))

    key_a, key_b, key_c = KEYS
    sa, sc1 = await tcp_stream_pair(buffer=16 * 1024)
    sb, sc2 = await tcp_stream_pair(buffer=16 * 1024)
    conn_a, conn_c1 = await rlpx_pair(sa, sc1, key_a, key_c)
    conn_b, conn_c2 = await rlpx_pair(sb, sc2, key_b, key_c)
    a, c1 = await peer_pair(conn_a, conn_c1, [Protocol("slow", 1, 1)], [proto], key_a, key_c,
                            send_queue_bytes=64 * 1024)
    b, c2 = await peer_pair(conn_b, conn_c2, [Protocol("slow", 1, 1)], [proto], key_b, key_c)
    slow_id = c1.info.id
    stuck = -1
    a_sent = [0]
    flooded = trio.Event()

    async def flood() -> None:
        pconn = a.connection("slow")
        assert pconn is not None
        for seq in range(100_000):  # until released, then 100 more
            if release.is_set() and a_sent[0] >= stuck + 100:
                break
            await pconn.send(0, _message(1, seq, 1019))
            a_sent[0] += 1
        flooded.set()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for peer in (a, c1, b, c2):
                nursery.start_soon(peer.run)
            nursery.start_soon(flood)
            while a_sent[0] != stuck:  # until a's sender waits for good: every buffer is full
                stuck = a_sent[0]
                await trio.sleep(0.2)
            assert a.send_waits > 0
            pconn_b = b.connection("slow")
            assert pconn_b is not None
            for seq in range(200):
                await pconn_b.send(0, _message(2, seq, 1019))
            while len(handled[2]) < 200:
                await trio.sleep(0.01)
            assert handled[1] == [] and a_sent[0] == stuck  # a is still held back
            assert not any(p.closed for p in (a, b, c1, c2))
            release.set()
            await flooded.wait()
            while len(handled[1]) < a_sent[0]:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert handled[2] == list(range(200))
    assert handled[1] == list(range(len(handled[1])))


async def test_a_message_sent_just_before_disconnect_arrives_before_the_disconnect() -> None:
    got: list[bytes] = []
    receiver = Protocol("bye", 1, 1)

    @receiver.handler(0)
    async def on_msg(conn: ProtocolConnection, payload: bytes) -> None:
        got.append(payload)

    async def run(peer: object, conn: ProtocolConnection) -> None:
        for i in range(20):
            await conn.send(0, b"last words %d" % i)
        await conn.disconnect(DisconnectReason.USELESS_PEER)

    a, b, _ = await memory_peers([Protocol("bye", 1, 1, run=run)], [receiver])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            error = await b.run()
            nursery.cancel_scope.cancel()
    assert error.remote_requested and error.reason is DisconnectReason.USELESS_PEER
    assert got == [b"last words %d" % i for i in range(20)]
