"""Where nodes come from: node iterators and their fair mix (go-ethereum's ``enode.Iterator``
and ``enode.FairMix``).

A node iterator is any async iterator of :class:`~p2p.enode.Node` with ``aclose()``: an async
generator such as ``Discovery.random_nodes()``, :class:`StaticNodes`, or a DNS tree iterator.
:class:`FairMix` reads many of them at once and yields their nodes in turn: each call to
``__anext__`` waits for the next source in round-robin order, but only for ``timeout`` seconds
(halved each time that source misses its turn, reset when it delivers); then it takes a node
from whichever source has one, so that a slow or stalled source never stalls the others.

    mix = FairMix()
    mix.add_source(disc.random_nodes(), name="discv4")
    mix.add_source(StaticNodes(nodes), name="static")
    async with trio.open_nursery() as nursery:
        await nursery.start(mix.run)
        async for node in mix: ...
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import trio

from p2p.enode.node import Node

log = logging.getLogger(__name__)

# go-ethereum's discmixTimeout: a normal source yields ~10 candidates per second, so a turn
# that takes longer goes to whichever source has a node ready.
MIX_TIMEOUT = 0.1
# Sources read at once by one mix: each holds a task and one node read ahead.
MAX_SOURCES = 64
# A source's aclose() gets this long; a source that hangs in it is abandoned, not waited for.
SOURCE_CLOSE_TIMEOUT = 5.0
# Between two passes of a cycling static list: its nodes are offered again only as often as
# the dialer would dial them again (dial.DIAL_HISTORY_EXPIRY).
STATIC_CYCLE_INTERVAL = 30.0


@runtime_checkable
class NodeIterator(Protocol):
    """What :class:`FairMix` and the server's dialer read nodes from."""

    def __aiter__(self) -> AsyncIterator[Node]: ...

    async def __anext__(self) -> Node: ...

    async def aclose(self) -> None: ...


class StaticNodes:
    """A fixed list of nodes: once through (go-ethereum's ``IterNodes``), or again and again
    every ``interval`` seconds with ``cycle`` (``CycleNodes``, paced so that it never spins)."""

    def __init__(self, nodes: Iterable[Node], *, cycle: bool = False,
                 interval: float = STATIC_CYCLE_INTERVAL) -> None:
        self._nodes = list(nodes)
        self._cycle = cycle
        self._interval = interval
        self._index = 0
        self._closed = False

    def __aiter__(self) -> StaticNodes:
        return self

    async def __anext__(self) -> Node:
        if self._closed or not self._nodes:
            raise StopAsyncIteration
        if self._index == len(self._nodes):
            if not self._cycle:
                self._closed = True
                raise StopAsyncIteration
            self._index = 0
            await trio.sleep(self._interval)
        else:
            await trio.lowlevel.checkpoint()
        if self._closed:
            raise StopAsyncIteration
        node = self._nodes[self._index]
        self._index += 1
        return node

    async def aclose(self) -> None:
        self._closed = True


def discovery_source(disc: object) -> NodeIterator:
    """The random walk the dialer has always used: ``disc.random_nodes()`` (table entries
    not offered lately, a random lookup when none is new)."""
    it = disc.random_nodes()  # type: ignore[attr-defined]
    assert isinstance(it, NodeIterator)
    return it


class TooManySources(Exception):
    """:meth:`FairMix.add_source` beyond ``max_sources``."""


@dataclass(eq=False, slots=True)
class _Source:
    it: NodeIterator
    name: str
    timeout: float
    item: Node | None = None
    taken: trio.Event = field(default_factory=trio.Event)
    ended: bool = False
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    delivered: int = 0
    timeouts: int = 0


@dataclass(frozen=True, slots=True)
class SourceStats:
    name: str
    delivered: int  # nodes this source handed out through the mix
    timeouts: int  # turns it missed (its node came too late, another source's was taken)


class FairMix:
    """Nodes from many :class:`NodeIterator` sources, fairly. The mix ends only when closed;
    a source that ends (or fails) leaves the mix. Sources may be added and removed at any
    time; those added before :meth:`run` starts are read once it does.

    One task iterates the mix at a time (the dialer). ``timeout`` below 0 makes the mix
    strictly fair: it always waits for the next source's node.
    """

    def __init__(self, timeout: float = MIX_TIMEOUT, *, max_sources: int = MAX_SOURCES) -> None:
        self.timeout = timeout
        self.max_sources = max_sources
        self.last_source = ""  # the source of the node returned last (go-ethereum's NodeSource)
        self._sources: list[_Source] = []
        self._last = -1
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self.fallbacks = 0  # nodes taken from any source because the fair one was late
        self.refused_sources = 0  # add_source calls refused at max_sources

    # -- sources -------------------------------------------------------------------------

    def add_source(self, it: NodeIterator, name: str = "") -> None:
        """Read ``it`` from now on (from when :meth:`run` starts, if it has not yet).
        Raises :class:`TooManySources` at ``max_sources``."""
        if self._closed:
            raise trio.ClosedResourceError("the mix is closed")
        if len(self._sources) >= self.max_sources:
            self.refused_sources += 1
            raise TooManySources(f"a mix reads at most {self.max_sources} sources")
        src = _Source(it, name, self.timeout)
        self._sources.append(src)
        if self._nursery is not None:
            self._nursery.start_soon(self._read, src)

    def remove_source(self, it: NodeIterator) -> bool:
        """Stop reading ``it`` and close it; False if it is not in the mix."""
        for src in self._sources:
            if src.it is it:
                self._drop(src)
                src.scope.cancel()
                return True
        return False

    @property
    def sources(self) -> list[SourceStats]:
        return [SourceStats(s.name, s.delivered, s.timeouts) for s in self._sources]

    def _drop(self, src: _Source) -> None:
        if src in self._sources:
            i = self._sources.index(src)
            del self._sources[i]
            if i <= self._last:
                self._last -= 1  # the next turn stays with the source after this one
        src.ended = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- running -------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[FairMix] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the sources until :meth:`aclose` (or cancellation); start with
        ``await nursery.start(mix.run)``."""
        if self._nursery is not None:
            raise RuntimeError("the mix is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for src in list(self._sources):
                    nursery.start_soon(self._read, src)
                task_status.started(self)
                if not self._closed:
                    await self._wait_closed()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self._close_now()

    async def _wait_closed(self) -> None:
        while not self._closed:
            await self._changed.wait()

    async def _read(self, src: _Source) -> None:
        """One source's task: read a node, hold it until the mix takes it, repeat."""
        try:
            with src.scope:
                while True:
                    try:
                        node = await src.it.__anext__()
                    except StopAsyncIteration:
                        break
                    except Exception as exc:  # a broken source leaves the mix; the others go on
                        log.warning("node source %s failed and leaves the mix: %r", src.name or "?", exc)
                        break
                    src.taken = trio.Event()
                    src.item = node
                    self._notify()
                    await src.taken.wait()
        finally:
            self._drop(src)
            with trio.CancelScope(shield=True), trio.move_on_after(SOURCE_CLOSE_TIMEOUT):
                try:
                    await src.it.aclose()
                except Exception as exc:  # closing is best effort: the source is gone anyway
                    log.debug("closing node source %s: %r", src.name or "?", exc)

    def _take(self, src: _Source) -> Node:
        node = src.item
        assert node is not None
        src.item = None
        src.delivered += 1
        src.taken.set()
        self.last_source = src.name
        return node

    def _pick(self) -> _Source | None:
        if not self._sources:
            return None
        self._last = (self._last + 1) % len(self._sources)
        return self._sources[self._last]

    def _ready(self) -> _Source | None:
        """A source holding a node, searched from the next turn on (so that the fallback is
        fair too)."""
        n = len(self._sources)
        for k in range(1, n + 1):
            src = self._sources[(self._last + k) % n]
            if src.item is not None:
                return src
        return None

    # -- the iterator --------------------------------------------------------------------

    def __aiter__(self) -> FairMix:
        return self

    async def __anext__(self) -> Node:
        for _ in range(self.max_sources + 1):  # each pass drops an ended source or returns
            if self._closed:
                raise StopAsyncIteration
            src = self._pick()
            if src is None:
                return await self._from_any()
            with trio.move_on_after(src.timeout if src.timeout >= 0 else math.inf):
                while src.item is None and not src.ended and not self._closed:
                    await self._changed.wait()
            if src.item is not None:
                src.timeout = self.timeout
                return self._take(src)
            if src.ended or self._closed:
                continue  # that source has ended: the turn goes to the next one
            # It missed its turn: wait less for it next time (a stuck source then costs little).
            src.timeout /= 2
            src.timeouts += 1
            self.fallbacks += 1
            return await self._from_any()
        return await self._from_any()

    async def _from_any(self) -> Node:
        while not self._closed:
            src = self._ready()
            if src is not None:
                return self._take(src)
            await self._changed.wait()
        raise StopAsyncIteration

    def _close_now(self) -> None:
        if not self._closed:
            self._closed = True
            for src in list(self._sources):
                src.scope.cancel()
            self._notify()

    async def aclose(self) -> None:
        """End the mix: every source is closed, and ``__anext__`` ends (now and later)."""
        running = self._nursery is not None
        self._close_now()
        if not running:  # no task reads them: close them here
            for src in list(self._sources):
                self._drop(src)
                with trio.CancelScope(shield=True), trio.move_on_after(SOURCE_CLOSE_TIMEOUT):
                    await src.it.aclose()
        await trio.lowlevel.checkpoint()


__all__ = [
    "FairMix",
    "MAX_SOURCES",
    "MIX_TIMEOUT",
    "NodeIterator",
    "SourceStats",
    "StaticNodes",
    "TooManySources",
    "discovery_source",
]
