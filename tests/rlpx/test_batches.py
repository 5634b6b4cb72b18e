"""``Connection.receive_many_raw``: every frame one read completed, in one call, and no whole
frame lost to an error in a later one."""

from __future__ import annotations

import pytest
import trio

from p2p.rlpx import FrameError
from tests.rlpx.test_connection import pair


async def test_frames_that_arrive_together_come_back_together_in_order() -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            messages = [(0x10 + i % 3, bytes([i]) * (i * 37)) for i in range(40)]
            await a.send_many(messages)
            got: list[tuple[int, bytes]] = []
            calls = 0
            while len(got) < len(messages):
                got += await b.receive_many_raw()
                calls += 1
            assert got == messages
            assert calls < len(messages) / 4  # frames of one read, not one call per frame
            await a.send(0x11, b"alone")
            assert await b.receive_many_raw() == [(0x11, b"alone")]


async def test_an_error_after_whole_frames_comes_with_the_next_call() -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            good = a._codec.encode_many([(0x10, b"one"), (0x11, b"two")])
            bad = bytearray(a._codec.encode(0x12, b"three"))
            bad[-3] ^= 0x40  # the frame MAC
            await a.stream.send_all(good + bytes(bad))
            got: list[tuple[int, bytes]] = []
            while len(got) < 2:
                got += await b.receive_many_raw()
            assert got == [(0x10, b"one"), (0x11, b"two")]
            with pytest.raises(FrameError, match="frame MAC"):
                await b.receive_many_raw()
            with pytest.raises(FrameError):  # and the connection stays failed
                await b.receive_raw()
