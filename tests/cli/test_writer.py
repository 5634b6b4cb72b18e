"""p2p.cli._writer: stdout lines through a bounded queue; a slow reader loses lines (counted and
reported in the next line), never blocks the caller; the exit flush is bounded."""

from __future__ import annotations

import argparse
import json
import os
import threading

import pytest
import trio

from p2p.cli._writer import OutputWriter, fd_sink, open_output, queue_size

WAIT = 5.0  # seconds for the writer thread to take a line: it takes microseconds


class BlockedSink:
    """A reader that takes one batch, then stalls until released."""

    def __init__(self) -> None:
        self.batches: list[str] = []
        self.release = threading.Event()

    def __call__(self, text: str) -> None:
        self.batches.append(text)
        if len(self.batches) == 1:
            self.release.wait(WAIT * 2)

    @property
    def lines(self) -> list[str]:
        return "".join(self.batches).splitlines()


async def _until(condition: object) -> None:
    with trio.fail_after(WAIT):
        while not condition():  # type: ignore[operator]
            await trio.sleep(0.001)


async def test_full_queue_drops_counts_and_reports_in_the_next_json_line() -> None:
    sink = BlockedSink()
    async with open_output(as_json=True, limit=3, sink=sink) as out:
        out.emit("first")
        await _until(lambda: sink.batches)  # the reader took it and stalls
        for i in range(8):
            out.emit("flood", n=i)
        assert (out.queued, out.dropped) == (3, 5)
        sink.release.set()
        await _until(lambda: out.queued == 0)
        out.emit("after")
    events = [json.loads(line) for line in sink.lines]
    assert [e.get("n") for e in events] == [None, 0, 1, 2, None]
    assert events[-1] == {"event": "after", "dropped": 5}
    assert all("dropped" not in e for e in events[:-1])


async def test_text_lines_say_how_many_were_dropped() -> None:
    sink = BlockedSink()
    async with open_output(as_json=False, limit=1, sink=sink) as out:
        out.line("one")
        await _until(lambda: sink.batches)
        out.line("two")
        out.line("three")
        out.emit("peer_added", id="ab")
        sink.release.set()
        await _until(lambda: out.queued == 0)
        out.line("four")
    assert sink.lines == ["one", "two", "... 2 lines dropped", "four"]


async def test_a_pipe_nobody_reads_never_blocks_the_caller() -> None:
    read_end, write_end = os.pipe()
    writer = OutputWriter(fd_sink(write_end), as_json=True, limit=100)
    try:
        writer.start()
        with trio.fail_after(WAIT):  # each emit returns at once; a blocking write would hang here
            for i in range(5000):
                writer.emit("chat_message", text="x" * 200, n=i)
        assert writer.dropped > 4000
        # A stalled reader does not hold up the exit beyond the flush timeout.
        with trio.fail_after(WAIT):
            await writer.aclose(timeout=0.2)
    finally:
        os.close(read_end)  # the writer thread, blocked in write, gets EPIPE and ends
        # ... before its descriptor is closed: a number reused by the next test's pipe would
        # otherwise receive the rest of this writer's batch
        await writer.aclose(timeout=WAIT)
        os.close(write_end)


async def test_exit_flushes_what_a_live_reader_has_not_taken_yet() -> None:
    read_end, write_end = os.pipe()
    received = bytearray()

    def read_all() -> None:
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)

    reader = threading.Thread(target=read_all, daemon=True)
    try:
        async with open_output(as_json=True, limit=10_000, sink=fd_sink(write_end)) as out:
            for i in range(2000):
                out.emit("line", n=i)
            out.emit("stopped")
            reader.start()  # the reader only starts now: all of it is still queued or in the pipe
    finally:
        os.close(write_end)
        reader.join(WAIT)
        os.close(read_end)
    events = [json.loads(line) for line in received.decode().splitlines()]
    assert len(events) == 2001 and events[-1] == {"event": "stopped"}


async def test_a_closed_reader_is_logged_once_and_no_error(caplog: pytest.LogCaptureFixture) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        async with open_output(as_json=True, sink=fd_sink(write_end)) as out:
            out.emit("one")
            await _until(lambda: out.queued == 0)
            out.emit("two")  # discarded: nobody will ever read it
            out.emit("three")
    finally:
        os.close(write_end)
    assert [r.message for r in caplog.records if "not writable" in r.message][:1] == [
        "stdout is not writable any more ([Errno 32] Broken pipe); output is discarded from now on"]
    assert len([r for r in caplog.records if "not writable" in r.message]) == 1


def test_queue_size_flag() -> None:
    assert queue_size("5") == 5
    for bad in ("0", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="line"):
            queue_size(bad)
