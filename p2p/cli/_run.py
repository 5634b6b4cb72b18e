"""How every long-running ``p2p`` command runs: its trio main with SIGINT and SIGTERM turned
into a polite stop, and its errors turned into one line on stderr and an exit status.

A signal cancels the part of the command that waits for work (:meth:`Stop.until_stopped`), so
that what follows still runs: the server's Disconnects, chat's leave, testnet's summary. A
second signal, or one that comes before the command got there, cancels the whole command.

Exit statuses: 0 done or stopped by a signal, 1 a runtime failure (a port in use, a database
held by another process), 2 a usage error (a value that cannot work).
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import trio

from p2p.cli._args import BadArgument, CommandFailed, stderr_line

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop:
    """Where a stop signal lands in a running command."""

    def __init__(self) -> None:
        self.requested = False
        self._scopes: list[trio.CancelScope] = []
        self._whole: trio.CancelScope | None = None

    @contextmanager
    def until_stopped(self) -> Iterator[None]:
        """The block a signal ends; the command goes on after it (and leaves politely)."""
        scope = trio.CancelScope()
        if self.requested:
            scope.cancel()
        self._scopes.append(scope)
        try:
            with scope:
                yield
        finally:
            self._scopes.remove(scope)

    def signal(self) -> None:
        if self.requested or not self._scopes:
            if self._whole is not None:
                self._whole.cancel()
        for scope in self._scopes:
            scope.cancel()
        self.requested = True


Main = Callable[[Stop], Awaitable[int | None]]


async def _supervised(main: Main, stop: Stop) -> int:
    status: list[int | None] = [None]
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            stop._whole = nursery.cancel_scope

            async def watch() -> None:
                async for _ in signals:
                    stop.signal()

            nursery.start_soon(watch)
            status[0] = await main(stop)
            nursery.cancel_scope.cancel()
    return int(status[0] or 0)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def describe_error(exc: BaseException) -> tuple[int, str] | None:
    """The exit status and message for an error that is the user's or the machine's, not a
    bug; None for anything else (it keeps its traceback)."""
    from p2p.dnsdisc import DNSDiscError, URLError
    from p2p.enode.nodedb import NodeDBError, NodeDBForeign

    if isinstance(exc, BadArgument):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, CommandFailed):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, NodeDBForeign):  # another program's database named by --nodedb
        return EXIT_USAGE, str(exc)
    if isinstance(exc, NodeDBError):
        return EXIT_FAILED, f"node database: {exc}"
    if isinstance(exc, URLError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, DNSDiscError):  # a tree that is missing, unsigned or unreachable
        return EXIT_FAILED, f"DNS discovery: {exc}"
    if isinstance(exc, OSError):
        if exc.errno == errno.EADDRINUSE:
            return EXIT_FAILED, f"cannot listen: address already in use ({exc.strerror})"
        where = f"{exc.filename}: " if exc.filename else ""
        return EXIT_FAILED, f"{where}{exc.strerror or exc}"
    return None


def report(command: str, exc: BaseException) -> int:
    """Print ``exc`` as one line for ``command``; re-raise it if it is a bug."""
    leaves = [leaf for leaf in _leaves(exc) if not isinstance(leaf, trio.Cancelled)]
    if leaves and all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        return EXIT_OK  # a SIGINT that reached Python before (or after) our handler: a stop
    described = [describe_error(leaf) for leaf in leaves]
    if not leaves or any(d is None for d in described):
        raise exc
    status, message = described[0]  # type: ignore[misc]
    stderr_line(f"p2p {command}: {message}")
    return status


def run_command(command: str, main: Main, *, clock: trio.abc.Clock | None = None) -> int:
    """Run ``main(stop)`` under trio until it returns or a signal stops it; its status (0 for
    None or a stop), or the status of its error printed as one line. ``clock`` replaces trio's
    (the simulator's virtual one)."""
    try:
        return trio.run(_supervised, main, Stop(), clock=clock)
    except BaseException as exc:  # noqa: BLE001  sorted out by report(): bugs are re-raised
        if isinstance(exc, SystemExit):
            raise
        return report(command, exc)


def check(command: str, fn: Callable[[], None]) -> int | None:
    """Run the argument checks ``fn``; None when they pass, else the printed error's status."""
    try:
        fn()
    except (BadArgument, CommandFailed) as exc:
        return report(command, exc)
    return None
