"""Drive a subprocess that reports JSON lines on stdout (``p2p node --json``, ``p2p chat --json``,
a JavaScript peer) from a trio test.

    async with open_json_process([sys.executable, "-m", "p2p", "node", "--json"]) as node:
        listening = await node.wait_for("listening")
        await node.wait_for("peer_added", id=other_id)

Every line of the child's stdout must be one JSON object with an ``"event"`` key. The context
manager always kills and reaps the child, whatever the test does; put a ``trio.fail_after``
around the whole so that a child that says nothing cannot hang the test.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

READ_CHUNK = 65536  # bytes per read of the child's stdout
MAX_WAIT_EVENTS = 100_000  # events wait_for reads before it gives up: a bound on the loop, not a timeout
REAP_TIMEOUT = 5.0  # seconds to wait for a killed child to be reaped; a SIGKILLed one takes far less


class JsonLinesProcess:
    """A running child: JSON events from its stdout, lines to its stdin.

    ``events`` holds every event read so far, in order, for assertions and failure messages.
    ``fail_on`` names the events in which the child reports a failure: ``wait_for`` raises on them.
    """

    def __init__(self, process: trio.Process, name: str = "process", *, fail_on: Collection[str] = ()) -> None:
        self.process = process
        self.name = name
        self.fail_on = frozenset(fail_on)
        self.events: list[dict[str, Any]] = []
        self._buf = b""

    async def next_event(self) -> dict[str, Any]:
        """The next line of stdout as a JSON object; AssertionError when the child closes it."""
        if self.process.stdout is None:
            raise AssertionError(f"{self.name} was started without a stdout pipe")
        while b"\n" not in self._buf:
            chunk = await self.process.stdout.receive_some(READ_CHUNK)
            if not chunk:
                raise AssertionError(f"{self.name} exited (code {self.process.poll()}); events so far: {self.events}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise AssertionError(f"{self.name} wrote a line that is not JSON: {line!r}") from exc
        if not isinstance(event, dict):
            raise AssertionError(f"{self.name} wrote a JSON value that is not an object: {line!r}")
        self.events.append(event)
        return event

    async def wait_for(self, name: str, *, fail_on: Collection[str] | None = None, **match: Any) -> dict[str, Any]:
        """The next event called ``name`` whose fields equal ``match``; events before it are
        skipped (they stay in ``events``). An event named in ``fail_on`` (by default the
        process's own ``fail_on``) fails the wait."""
        if fail_on is None:
            fail_on = self.fail_on
        for _ in range(MAX_WAIT_EVENTS):
            event = await self.next_event()
            if event.get("event") in fail_on:
                raise AssertionError(f"{self.name} reported {event}")
            if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                return event
        raise AssertionError(f"no {name} event from {self.name} in {MAX_WAIT_EVENTS} events")

    async def send_line(self, text: str) -> None:
        """``text`` and a newline to the child's stdin."""
        if self.process.stdin is None:
            raise AssertionError(f"{self.name} was started without a stdin pipe")
        await self.process.stdin.send_all(text.encode() + b"\n")


@asynccontextmanager
async def open_json_process(argv: Sequence[str], *, cwd: str | Path | None = None,
                            env: Mapping[str, str] | None = None, stdin: bool = True,
                            name: str | None = None, fail_on: Collection[str] = ()) -> AsyncIterator[JsonLinesProcess]:
    """Start ``argv`` with stdout piped (and stdin piped, or else from /dev/null; stderr is
    inherited so its messages reach the test log); on the way out kill it and reap it.
    ``name`` (default: the program's file name) labels failure messages; ``fail_on`` is the
    default of :meth:`JsonLinesProcess.wait_for`'s."""
    process = await trio.lowlevel.open_process(
        list(argv), cwd=None if cwd is None else str(cwd), env=None if env is None else dict(env),
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        yield JsonLinesProcess(process, name or Path(argv[0]).name, fail_on=fail_on)
    finally:
        process.kill()
        with trio.move_on_after(REAP_TIMEOUT) as scope:
            scope.shield = True  # reap even when the test is being cancelled
            await process.wait()


__all__ = ["JsonLinesProcess", "open_json_process"]
