"""Walking EIP-1459 trees without doing I/O: which TXT name to ask for next, and what an answer
means (after go-ethereum's ``clientTree`` and ``randomIterator``).

The caller asks :meth:`RandomWalk.next_query` for a :class:`Query` (or a :class:`Wait`), looks
the name up, and hands the TXT strings to :meth:`RandomWalk.receive` (or the error to
:meth:`RandomWalk.fail`). A root is verified against its tree's key, every entry against the
hash that named it; a bad entry, or a subtree past the bounds, drops only that subtree. The link
subtree of a tree is walked first; each linked tree is walked with its own key. A root is asked
for again after ``recheck_interval`` (or after repeated failures) and a changed root (higher
seq, other subtree hashes) restarts the walk of what changed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from p2p.dnsdisc.errors import DNSDiscError, NameNotFound, NoRoot, TreeLimitExceeded, WrongEntryType
from p2p.dnsdisc.records import BranchEntry, ENREntry, LinkEntry, RootEntry, find_entry, find_root
from p2p.enode.enr import ENR

MAX_TREE_ENTRIES: Final = 100_000  # hashes known in one walk of a subtree: 100x the largest public lists
MAX_TREE_DEPTH: Final = 8  # branch levels: 13**8 leaves, far past MAX_TREE_ENTRIES; deeper is a query sink
MAX_BRANCH_WIDTH: Final = 64  # hashes in one branch: go-ethereum writes 13; 64 still fits a 2 KB answer
MAX_TREES: Final = 16  # trees one walk follows through links (the start ones included)
RECHECK_INTERVAL: Final = 30 * 60.0  # go-ethereum: a root is asked for again every 30 minutes
ROOT_RECHECK_FAILS: Final = 5  # go-ethereum: this many failed entry queries in a row re-check the root
ROOT_BACKOFF: Final = ((20, 10.0), (5, 5.0))  # go-ethereum: (failures above, seconds to wait) for a root


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one walk; every one acts as a dropped subtree and a counted ``limit_*`` reason."""

    max_entries: int = MAX_TREE_ENTRIES
    max_depth: int = MAX_TREE_DEPTH
    max_width: int = MAX_BRANCH_WIDTH
    max_trees: int = MAX_TREES
    recheck_interval: float = RECHECK_INTERVAL


@dataclass(frozen=True, slots=True)
class Query:
    """Ask for the TXT records at ``name``: the root of ``tree`` when ``hash`` is None."""

    tree: str
    name: str
    hash: str | None
    depth: int = 0
    link: bool = False


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to ask before ``until`` (the clock of the caller)."""

    until: float


class _Subtree:
    """The walk of one subtree (ENRs or links): hashes still to ask for, with their depth."""

    __slots__ = ("root", "link", "missing", "seen", "leaves")

    def __init__(self, root: str, link: bool) -> None:
        self.root = root
        self.link = link
        self.missing: list[tuple[str, int]] = [(root, 0)]
        self.seen = 1
        self.leaves = 0

    @property
    def done(self) -> bool:
        return not self.missing


class TreeSync:
    """One tree: its verified root and the walks of its two subtrees."""

    def __init__(self, link: LinkEntry, limits: Limits = Limits()) -> None:
        self.link = link
        self.limits = limits
        self.root: RootEntry | None = None
        self.last_root_check = -math.inf
        self.leaf_fails = 0
        self.root_fails = 0
        self.enrs: _Subtree | None = None
        self.links: _Subtree | None = None
        self.cur_links: set[str] = set()  # links found by the current walk of the link subtree
        self.links_out: set[str] = set()  # links of the last whole walk of the link subtree

    @property
    def location(self) -> str:
        return self.link.location

    # -- scheduling -----------------------------------------------------------------------------

    def root_due(self, now: float) -> bool:
        return (self.root is None or self.leaf_fails > ROOT_RECHECK_FAILS
                or now >= self.last_root_check + self.limits.recheck_interval)

    def root_ready_at(self) -> float:
        """When the root may be asked for again: at once, unless it failed repeatedly."""
        for fails, delay in ROOT_BACKOFF:
            if self.root_fails > fails:
                return self.last_root_check + delay
        return -math.inf

    def can_sync(self, now: float) -> bool:
        if self.root_due(now):
            return now >= self.root_ready_at()
        assert self.links is not None and self.enrs is not None
        return not self.links.done or not self.enrs.done or self.enrs.leaves > 0

    def next_time(self) -> float:
        """When this tree can sync again, if it cannot now."""
        if self.root is None:
            return self.root_ready_at()
        return max(self.last_root_check + self.limits.recheck_interval, self.root_ready_at())

    def next_query(self, now: float, rng: random.Random) -> Query:
        """The next name to ask for: the root when due, then links in order, then a random ENR
        hash (the ENR walk starts over once every leaf was visited)."""
        if self.root_due(now):
            self.last_root_check = now
            return Query(self.location, self.link.domain, None)
        assert self.links is not None and self.enrs is not None
        if not self.links.done:
            return self._query(self.links, self.links.missing.pop(0))
        if self.enrs.done:
            self.enrs = _Subtree(self.enrs.root, link=False)
        missing = self.enrs.missing
        i = rng.randrange(len(missing))
        item = missing[i]
        missing[i] = missing[-1]
        missing.pop()
        return self._query(self.enrs, item)

    def next_full_query(self, now: float) -> Query | None:
        """For a one-pass sync of the whole tree: the root, then every entry once; None at the end."""
        if self.root is None:
            self.last_root_check = now
            return Query(self.location, self.link.domain, None)
        assert self.links is not None and self.enrs is not None
        for sub in (self.links, self.enrs):
            if not sub.done:
                return self._query(sub, sub.missing.pop())
        return None

    def _query(self, sub: _Subtree, item: tuple[str, int]) -> Query:
        hash_, depth = item
        return Query(self.location, f"{hash_}.{self.link.domain}", hash_, depth, sub.link)

    # -- answers --------------------------------------------------------------------------------

    def receive_root(self, txts: list[str]) -> RootEntry:
        """Take the TXT strings at the domain. A changed root restarts the walk of what changed;
        one with a lower seq than the current root is ignored (a stale cache or a rollback)."""
        try:
            root = find_root(txts, self.link)
            if root is None:
                raise NoRoot(self.link.domain, "no enrtree-root:v1 TXT record")
        except DNSDiscError:
            self.root_fails += 1
            raise
        self.root_fails = 0
        self.leaf_fails = 0
        if self.root is not None and root.seq < self.root.seq:
            return self.root
        self.root = root
        if self.links is None or self.links.root != root.lroot:
            self.links = _Subtree(root.lroot, link=True)
            self.cur_links = set()
        if self.enrs is None or self.enrs.root != root.eroot:
            self.enrs = _Subtree(root.eroot, link=False)
        return root

    def receive_entry(self, query: Query, txts: list[str]) -> ENR | LinkEntry | None:
        """Take the TXT strings at ``<hash>.<domain>``: an ENR or link leaf, or None for a
        branch (whose children are queued). A bad entry raises; its subtree is then dropped."""
        assert query.hash is not None
        try:
            entry = find_entry(txts, query.name, query.hash)
            if entry is None:
                raise NameNotFound(query.name, "no tree entry among the TXT records")
            result = self._take(query, entry)
        except DNSDiscError:
            self.leaf_fails += 1
            raise
        self.leaf_fails = 0
        return result

    def fail(self, query: Query) -> None:
        """The query got no answer (timeout, NXDOMAIN): the name's subtree is left for this walk."""
        if query.hash is None:
            self.root_fails += 1
        else:
            self.leaf_fails += 1

    def _take(self, query: Query, entry: BranchEntry | ENREntry | LinkEntry) -> ENR | LinkEntry | None:
        sub = self.links if query.link else self.enrs
        assert sub is not None
        if isinstance(entry, ENREntry):
            if query.link:
                raise WrongEntryType(query.name, "ENR entry in the link subtree")
            sub.leaves += 1
            return entry.enr
        if isinstance(entry, LinkEntry):
            if not query.link:
                raise WrongEntryType(query.name, "link entry in the ENR subtree")
            sub.leaves += 1
            self.cur_links.add(entry.location)
            return entry
        limits = self.limits
        if len(entry.children) > limits.max_width:
            raise TreeLimitExceeded("width", f"{query.name}: branch of {len(entry.children)} hashes, "
                                             f"more than {limits.max_width}")
        if entry.children and query.depth + 1 > limits.max_depth:
            raise TreeLimitExceeded("depth", f"{query.name}: tree deeper than {limits.max_depth} branches")
        if sub.seen + len(entry.children) > limits.max_entries:
            raise TreeLimitExceeded("entries", f"{query.name}: tree of more than {limits.max_entries} entries")
        sub.seen += len(entry.children)
        sub.missing.extend((child, query.depth + 1) for child in entry.children)
        return None


class RandomWalk:
    """Random walk over the trees at ``urls`` and every tree they link to (up to ``max_trees``):
    each step picks a tree at random that has something to ask (go-ethereum's ``RandomNodes``)."""

    def __init__(self, urls: list[LinkEntry], limits: Limits = Limits(), rng: random.Random | None = None) -> None:
        self.limits = limits
        self.rng = rng if rng is not None else random.SystemRandom()
        self.start = [u.location for u in urls]
        self.trees: dict[str, TreeSync] = {}
        for url in urls:
            if url.location not in self.trees:
                self.trees[url.location] = TreeSync(url, limits)

    def next_query(self, now: float) -> Query | Wait | None:
        """A query, a :class:`Wait` when no tree has anything to ask now, None when there is no tree."""
        if not self.trees:
            return None
        ready = [t for t in self.trees.values() if t.can_sync(now)]
        if not ready:
            return Wait(min(t.next_time() for t in self.trees.values()))
        return self.rng.choice(ready).next_query(now, self.rng)

    def receive(self, query: Query, txts: list[str]) -> ENR | None:
        """The answer to ``query``: an ENR when it was a node leaf. A link leaf adds its tree;
        past ``max_trees`` it raises :class:`TreeLimitExceeded` (the link is dropped)."""
        tree = self.trees.get(query.tree)
        if tree is None:  # dropped by a link change while the query was out
            return None
        if query.hash is None:
            tree.receive_root(txts)
            return None
        try:
            found = tree.receive_entry(query, txts)
        finally:
            if query.link and tree.links is not None and tree.links.done:
                tree.links_out = set(tree.cur_links)
                self._collect()
        if isinstance(found, LinkEntry):
            if found.location not in self.trees:
                if len(self.trees) >= self.limits.max_trees:
                    raise TreeLimitExceeded("links", f"{query.name}: link to {found.domain} not followed, "
                                                     f"{self.limits.max_trees} trees already")
                self.trees[found.location] = TreeSync(found, self.limits)
            return None
        return found

    def fail(self, query: Query) -> None:
        tree = self.trees.get(query.tree)
        if tree is not None:
            tree.fail(query)
            if query.link and tree.links is not None and tree.links.done:
                tree.links_out = set(tree.cur_links)
                self._collect()

    def _collect(self) -> None:
        """Drop the trees no start tree links to any more (after a link subtree changed)."""
        reachable: set[str] = set()
        stack = list(self.start)
        while stack:
            loc = stack.pop()
            if loc in reachable or loc not in self.trees:
                continue
            reachable.add(loc)
            tree = self.trees[loc]
            stack.extend(tree.links_out | tree.cur_links)  # a link walk in progress: old links still count
        for loc in list(self.trees):
            if loc not in reachable:
                del self.trees[loc]


__all__ = ["Limits", "MAX_BRANCH_WIDTH", "MAX_TREES", "MAX_TREE_DEPTH", "MAX_TREE_ENTRIES", "Query",
           "RECHECK_INTERVAL", "RandomWalk", "TreeSync", "Wait"]
