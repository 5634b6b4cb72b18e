"""What one RLPx connection may make us buffer: the first frame is bounded by the Hello size,
and large frames are read only within a byte budget shared by every connection."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from p2p.rlpx import Connection, FrameBudget, MessageTooLarge
from p2p.rlpx.budget import RESERVE_ABOVE
from tests.rlpx.test_connection import pair

FIRST_LIMIT = 2049


async def test_a_first_frame_beyond_its_limit_is_refused_from_its_header() -> None:
    with trio.fail_after(10):
        async with pair(first_frame_limit=FIRST_LIMIT) as (a, b):  # type: ignore[arg-type]
            big = bytes(16 * 1024 * 1024 - 16)
            async with trio.open_nursery() as n:
                # The sender's write stalls once the stream's buffer is full: the receiver must
                # refuse on the header alone, having read a fraction of the frame.
                n.start_soon(a.send, 0x00, big)
                with pytest.raises(MessageTooLarge):
                    await b.receive()
                n.cancel_scope.cancel()


async def test_after_the_first_frame_the_ordinary_limit_applies() -> None:
    with trio.fail_after(10):
        async with pair(first_frame_limit=FIRST_LIMIT) as (a, b):  # type: ignore[arg-type]
            await a.send(0x00, b"h" * 100)
            assert await b.receive() == (0x00, b"h" * 100)
            async with trio.open_nursery() as n:
                n.start_soon(a.send, 0x10, b"x" * 100_000)
                assert await b.receive() == (0x10, b"x" * 100_000)


async def test_budget_makes_a_large_frame_wait_until_another_is_read() -> None:
    budget = FrameBudget(2 * RESERVE_ABOVE)
    size = RESERVE_ABOVE + RESERVE_ABOVE // 2
    await budget.reserve(size)
    waited = trio.Event()

    async def second() -> None:
        await budget.reserve(size)
        waited.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            n.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            assert not waited.is_set() and budget.waits == 1 and budget.used == size
            budget.release(size)
            await waited.wait()
    assert budget.used == size


async def test_a_frame_beyond_the_whole_budget_is_refused() -> None:
    budget = FrameBudget(RESERVE_ABOVE)
    with pytest.raises(MessageTooLarge):
        await budget.reserve(RESERVE_ABOVE + 1)
    assert budget.refused == 1 and budget.used == 0


async def test_connections_reading_large_frames_share_the_budget() -> None:
    budget = FrameBudget(2 * RESERVE_ABOVE)
    big = b"y" * (RESERVE_ABOVE + 1000)
    with trio.fail_after(20):
        async with pair(budget=budget) as (a1, b1), pair(budget=budget) as (a2, b2):  # type: ignore[arg-type]
            async with trio.open_nursery() as n:
                got: list[tuple[int, bytes]] = []

                async def read(conn: Connection) -> None:
                    got.append(await conn.receive())

                async with trio.open_nursery() as readers:
                    readers.start_soon(read, b1)
                    readers.start_soon(read, b2)
                    await trio.testing.wait_all_tasks_blocked()
                    n.start_soon(a1.send, 0x10, big)
                    n.start_soon(a2.send, 0x10, big)
                n.cancel_scope.cancel()
            assert got == [(0x10, big), (0x10, big)]
            assert budget.used == 0
            assert budget.waits >= 1  # both could not hold their frames at once
