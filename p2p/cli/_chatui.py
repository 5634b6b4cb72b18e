"""The terminal face of ``p2p chat``: a prompt with line editing and history (prompt_toolkit),
and incoming lines printed above it, so they never land in the middle of what is being typed.

prompt_toolkit runs on asyncio; the chat runs on trio. The prompt gets a thread of its own
with its own asyncio loop for the whole session: typed lines cross to trio through a bounded
channel (``trio.from_thread``), and lines to show cross the other way as coroutines run on that
loop (``run_in_terminal``: the prompt is erased, the line written, the prompt redrawn).
prompt_toolkit is imported only here, in the prompt thread, so only when a prompt is shown
(its import costs about 125 ms, paid while the node starts).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import trio

from p2p.cli._writer import fd_sink

log = logging.getLogger(__name__)

STOP_TIMEOUT = 2.0  # seconds the prompt thread gets at exit to hand the terminal back (cooked mode)
RESULT_POLL = 0.1  # seconds between checks that the prompt loop still runs, while a line is shown


class ChatPrompt:
    """``await prompt.run(send)`` reads lines from the terminal into ``send`` until the user
    leaves (``/quit``, Ctrl-D or Ctrl-C, each sent on as ``/quit``) or the task is cancelled.
    :meth:`print_above` is an output :data:`~p2p.cli._writer.Sink`: it blocks its caller (the
    output thread) while the terminal is slow, never the trio loop."""

    def __init__(self, message: Callable[[], str]) -> None:
        self._message = message
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: Any = None
        self._stopping = False
        self._finished = threading.Event()
        self._direct = fd_sink(1)

    async def run(self, send: trio.MemorySendChannel[str]) -> None:
        token = trio.lowlevel.current_trio_token()
        async with send:
            try:
                await trio.to_thread.run_sync(self._thread, send, token, abandon_on_cancel=True)
            finally:
                self._stop()
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._finished.wait, STOP_TIMEOUT, abandon_on_cancel=True)

    def print_above(self, text: str) -> None:
        loop = self._loop
        if loop is not None and not self._finished.is_set():
            try:
                future = asyncio.run_coroutine_threadsafe(self._show(text), loop)
            except RuntimeError:  # the loop closed meanwhile
                pass
            else:
                while True:
                    try:
                        future.result(RESULT_POLL)
                        return
                    except TimeoutError:
                        # A loop that ended before running it never will: write it ourselves.
                        if self._finished.is_set() and not future.done():
                            break
                    except asyncio.CancelledError:
                        break
                    except Exception:  # prompt_toolkit could not draw it: the line still goes out
                        log.debug("showing a line above the prompt failed", exc_info=True)
                        break
        self._direct(text)

    # --- in the prompt thread ---

    def _thread(self, send: trio.MemorySendChannel[str], token: trio.lowlevel.TrioToken) -> None:
        try:
            asyncio.run(self._session_loop(send, token))
        except asyncio.CancelledError:  # _stop: the chat ends for another reason
            pass
        finally:
            self._finished.set()

    async def _session_loop(self, send: trio.MemorySendChannel[str], token: trio.lowlevel.TrioToken) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import InMemoryHistory

        self._session = PromptSession(history=InMemoryHistory())
        with self._lock:
            if self._stopping:
                return
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
        while True:
            try:
                line = await self._session.prompt_async(self._message)
            except (EOFError, KeyboardInterrupt):  # Ctrl-D, Ctrl-C: leave, as /quit does
                line = "/quit"
            try:
                trio.from_thread.run(send.send, line, trio_token=token)
            except (trio.RunFinishedError, trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if line.strip() == "/quit":
                return

    async def _show(self, text: str) -> None:
        from prompt_toolkit.application import run_in_terminal

        output = self._session.app.output

        def write() -> None:
            output.write_raw(text)
            output.flush()

        if self._session.app.is_running:
            await run_in_terminal(write, in_executor=False)
        else:
            write()

    # --- from trio ---

    def _stop(self) -> None:
        with self._lock:
            self._stopping = True
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop is closed: the thread has ended
                pass


__all__ = ["ChatPrompt", "STOP_TIMEOUT"]
