"""What ``p2p node`` and ``p2p chat`` write to stdout, without ever blocking the event loop.

The program that reads our stdout may pause (a pipe nobody reads, a terminal scrolled back,
``less``): a blocking write would then freeze the whole node, discovery and peers included.
So lines go into a bounded queue that a writer thread drains; when the queue is full a line
is dropped and counted, and the next line that does get in says how many were lost
(``"dropped": N`` in JSON, a ``... N lines dropped`` line in text).

A thread, not non-blocking writes on the descriptor: ``O_NONBLOCK`` belongs to the open file
description, which stdout shares with the shell's terminal and, after ``2>&1``, with stderr,
where logging would then fail with ``BlockingIOError``. A thread blocked in ``os.write``
harms no one, and the process exits past it (daemon thread, raw descriptor, no buffer lock).

    async with open_output(as_json=True) as out:
        out.emit("listening", enode=...)      # never blocks, never raises
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

log = logging.getLogger(__name__)

# Lines held for a reader that does not keep up: a few seconds of a busy node's events, and at
# most a few MiB (a line is one event, bounded by the protocols' message sizes).
OUTPUT_QUEUE = 1024
# At exit, time given to a live reader to take the last lines (the ``stopped`` event); a reader
# that stalled must not hold up the exit longer than this.
FLUSH_TIMEOUT = 2.0

Sink = Callable[[str], None]  # writes one batch of whole lines; may block (it runs in the writer thread)


def queue_size(text: str) -> int:
    """``--output-queue LINES``: a whole number of lines, at least one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of lines, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("the output queue holds at least one line")
    return value


def fd_sink(fd: int) -> Sink:
    """Write to a file descriptor with ``os.write``, whole batches, retrying short writes."""
    def write(text: str) -> None:
        data = memoryview(text.encode("utf-8", errors="replace"))
        while data:
            data = data[os.write(fd, data):]
    return write


class OutputWriter:
    """A bounded queue of lines and the thread that writes them to a :data:`Sink`.

    ``emit`` and ``line`` are for the trio thread; they never block. ``dropped`` counts lines
    lost to a full queue, ``queued`` is the lines waiting now, ``limit`` the queue size.
    """

    def __init__(self, sink: Sink, *, as_json: bool, limit: int = OUTPUT_QUEUE) -> None:
        if limit < 1:
            raise ValueError("the output queue holds at least one line")
        self.as_json = as_json
        self.limit = limit
        self.dropped = 0
        self._sink = sink
        self._unreported = 0  # dropped since the last line that got into the queue
        self._lines: deque[str] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._broken = False
        self._thread = threading.Thread(target=self._drain, name="p2p-output", daemon=True)

    @property
    def queued(self) -> int:
        return len(self._lines)

    def emit(self, event: str, **fields: Any) -> None:
        """One JSON object ``{"event": event, **fields}`` (in text mode: ``event k=v ...``)."""
        if not self.as_json:
            self.line(" ".join([event, *(f"{k}={v}" for k, v in fields.items())]))
            return
        record = {"event": event, **fields}
        if self._unreported:
            record["dropped"] = self._unreported
        self._put(json.dumps(record, default=str) + "\n")

    def line(self, text: str) -> None:
        """One line of text (a newline is added)."""
        if self._unreported:
            text = f"... {self._unreported} lines dropped\n{text}"
        self._put(text + "\n")

    def _put(self, text: str) -> None:
        with self._cond:
            if self._broken:
                return
            if len(self._lines) >= self.limit or self._closing:
                self.dropped += 1
                self._unreported += 1
                return
            self._lines.append(text)
            self._unreported = 0
            self._cond.notify()

    def _drain(self) -> None:
        while True:
            with self._cond:
                while not self._lines and not self._closing:
                    self._cond.wait()
                if not self._lines:
                    return
                batch = "".join(self._lines)  # one write for what piled up: fewer syscalls under load
                self._lines.clear()
            try:
                self._sink(batch)
            except OSError as exc:  # the reader went away (EPIPE) or the descriptor is gone
                log.warning("stdout is not writable any more (%s); output is discarded from now on", exc)
                with self._cond:
                    self._broken = True
                    self._lines.clear()
                return

    def start(self) -> None:
        self._thread.start()

    async def aclose(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Stop taking lines and give the thread ``timeout`` seconds to write what is queued;
        runs even in a cancelled scope, so the last event is not lost to a Ctrl-C."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if not self._thread.is_alive():
            return
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._thread.join, timeout, abandon_on_cancel=True)


@asynccontextmanager
async def open_output(*, as_json: bool, limit: int = OUTPUT_QUEUE, sink: Sink | None = None,
                      flush_timeout: float = FLUSH_TIMEOUT) -> AsyncIterator[OutputWriter]:
    """An :class:`OutputWriter` on stdout (or ``sink``), flushed for at most ``flush_timeout``
    seconds on the way out."""
    writer = OutputWriter(sink if sink is not None else fd_sink(1), as_json=as_json, limit=limit)
    writer.start()
    try:
        yield writer
    finally:
        await writer.aclose(flush_timeout)


__all__ = ["FLUSH_TIMEOUT", "OUTPUT_QUEUE", "OutputWriter", "Sink", "fd_sink", "open_output", "queue_size"]
