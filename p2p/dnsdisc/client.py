"""The I/O shell of DNS discovery: TXT lookups through dnspython (on trio), a rate limit, a
timeout per query and a small answer cache around the sans-IO walk of :mod:`p2p.dnsdisc.sync`.

:func:`open_dns_iterator` gives an async iterator of :class:`p2p.enode.Node` for a dialer: it
walks the trees at random, forever (a tree walked to its end starts over, as go-ethereum's), one
rate-limited query per step, until ``aclose()`` or a cancel. :meth:`DNSClient.sync_tree` reads a
whole tree once (``p2p dns resolve``, the benchmark).
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Protocol

import trio

from p2p.dnsdisc.errors import DNSDiscError, DNSLookupError, NameNotFound, QueryTimeout, TreeLimitExceeded
from p2p.dnsdisc.records import LinkEntry, parse_url
from p2p.dnsdisc.sync import Limits, Query, RandomWalk, TreeSync, Wait
from p2p.enode.enr import ENR
from p2p.enode.node import Node

log = logging.getLogger(__name__)

QUERY_TIMEOUT: Final = 5.0  # go-ethereum's default: a resolver that has not answered by then will not
RATE_LIMIT: Final = 3.0  # queries per second, go-ethereum's default: public DNS is shared
RATE_BURST: Final = 10  # go-ethereum's burst: the first steps of a walk go at once
CACHE_LIMIT: Final = 1000  # answers kept, go-ethereum's default: entries never change under their hash
DNS_PORT: Final = 53


class Resolver(Protocol):
    """Looks up the TXT strings at a name (one string per record, its parts joined)."""

    async def lookup_txt(self, name: str) -> list[str]: ...


class DNSResolver:
    """TXT lookups sent to one DNS server (``server=(host, port)``; by default the first
    name server of /etc/resolv.conf), over UDP with TCP when an answer is truncated."""

    def __init__(self, server: tuple[str, int] | None = None) -> None:
        if server is None:
            import dns.resolver

            try:
                server = (str(dns.resolver.Resolver().nameservers[0]), DNS_PORT)
            except (IndexError, dns.resolver.NoResolverConfiguration):
                raise DNSLookupError("resolver", "no name server configured; give one (HOST:PORT)") from None
        self.server: tuple[str, int] = server

    async def lookup_txt(self, name: str) -> list[str]:
        import dns.asyncbackend
        import dns.asyncquery
        import dns.exception
        import dns.message
        import dns.rcode
        import dns.rdatatype

        query = dns.message.make_query(name, dns.rdatatype.TXT)
        host, port = self.server
        try:
            response, _ = await dns.asyncquery.udp_with_fallback(
                query, host, port=port, backend=dns.asyncbackend.get_backend("trio"))
        except dns.exception.Timeout:
            raise QueryTimeout(name, "no answer") from None
        except (OSError, dns.exception.DNSException) as exc:
            raise DNSLookupError(name, f"query to {host}:{port} failed: {exc}") from None
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            raise NameNotFound(name, "no such name (NXDOMAIN)")
        if rcode != dns.rcode.NOERROR:
            raise DNSLookupError(name, f"server answered {dns.rcode.to_text(rcode)}")
        txts = []
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                for rdata in rrset:
                    txts.append(b"".join(rdata.strings).decode("utf-8", "replace"))
        if not txts:
            raise NameNotFound(name, "no TXT record")
        return txts


@dataclass
class DNSDiscStats:
    """Plain counters, read by :meth:`p2p.metrics.ServerMetrics.watch_dnsdisc` at scrape time."""

    queries: int = 0
    cache_hits: int = 0
    rate_limited: int = 0
    nodes: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # lookups without an answer, by reason
    rejected: dict[str, int] = field(default_factory=dict)  # answers refused, by reason

    def count(self, table: dict[str, int], reason: str) -> None:
        table[reason] = table.get(reason, 0) + 1


class RateLimiter:
    """A token bucket: ``rate`` per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.last: float | None = None

    def delay(self) -> float:
        """Take a token; the seconds to wait before using it (0 when one was there)."""
        now = self.clock()
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass
class SyncResult:
    """What :meth:`DNSClient.sync_tree` found: the nodes, every tree walked, what was refused."""

    nodes: list[ENR]
    trees: list[str]
    seq: dict[str, int]
    errors: list[DNSDiscError]
    queries: int


class DNSClient:
    """Rate-limited, cached, timed TXT lookups for tree walks. ``rate_limit=None`` lifts the
    rate limit (a local server, a benchmark)."""

    def __init__(self, resolver: Resolver | None = None, *, server: tuple[str, int] | None = None,
                 timeout: float = QUERY_TIMEOUT, rate_limit: float | None = RATE_LIMIT, burst: int = RATE_BURST,
                 cache_limit: int = CACHE_LIMIT, limits: Limits = Limits(),
                 clock: Callable[[], float] = trio.current_time, rng: random.Random | None = None) -> None:
        self.resolver: Resolver = resolver if resolver is not None else DNSResolver(server)
        self.timeout = timeout
        self.limits = limits
        self.clock = clock
        self.rng = rng if rng is not None else random.SystemRandom()
        self.cache_limit = cache_limit
        self.stats = DNSDiscStats()
        self._cache: OrderedDict[str, list[str]] = OrderedDict()
        self._limiter = RateLimiter(rate_limit, burst, clock) if rate_limit is not None else None

    async def lookup(self, query: Query) -> list[str]:
        """The TXT strings at ``query.name``: entries from the cache (they never change under
        their hash), roots always asked for. The rate limit applies to both, as go-ethereum's,
        so that an iterator over a cached tree does not spin."""
        if self._limiter is not None:
            delay = self._limiter.delay()
            if delay > 0:
                self.stats.rate_limited += 1
                await trio.sleep(delay)
        key = query.name.lower()
        if query.hash is not None and key in self._cache:
            self._cache.move_to_end(key)
            self.stats.cache_hits += 1
            return self._cache[key]
        self.stats.queries += 1
        try:
            with trio.fail_after(self.timeout):
                txts = await self.resolver.lookup_txt(query.name)
        except trio.TooSlowError:
            raise QueryTimeout(query.name, f"no answer within {self.timeout:g} s") from None
        if query.hash is not None and self.cache_limit > 0:
            self._cache[key] = txts
            if len(self._cache) > self.cache_limit:
                self._cache.popitem(last=False)
        return txts

    def refused(self, query: Query, exc: DNSDiscError) -> None:
        """Count and log an answer or lookup that did not give an entry."""
        table = self.stats.failures if isinstance(exc, DNSLookupError) else self.stats.rejected
        self.stats.count(table, exc.reason)
        level = logging.INFO if query.hash is None else logging.DEBUG
        log.log(level, "DNS discovery: %s dropped: %s", "root" if query.hash is None else "subtree", exc)

    async def step(self, walk: RandomWalk, query: Query) -> ENR | None:
        """Ask ``query`` and hand the answer to ``walk``; a refused answer is counted, logged and
        returned as None (its subtree is dropped, the rest of the walk goes on)."""
        try:
            txts = await self.lookup(query)
        except DNSLookupError as exc:
            walk.fail(query)
            self.refused(query, exc)
            return None
        try:
            return walk.receive(query, txts)
        except DNSDiscError as exc:
            self.refused(query, exc)
            return None

    async def sync_tree(self, url: str, *, follow_links: bool = True) -> SyncResult:
        """Every node of the tree at ``url`` (and of the trees it links to, with their own keys,
        up to ``limits.max_trees``). The first tree's root must resolve and verify: its error
        is raised; any later error drops only that subtree and is listed in the result."""
        start = self.stats.queries
        pending = [parse_url(url)]
        seen = {pending[0].location}
        result = SyncResult([], [], {}, [], 0)
        while pending:
            tree = TreeSync(pending.pop(0), self.limits)
            result.trees.append(tree.location)
            while (query := tree.next_full_query(self.clock())) is not None:
                try:
                    txts = await self.lookup(query)
                    found = tree.receive_root(txts) if query.hash is None else tree.receive_entry(query, txts)
                except DNSDiscError as exc:
                    self.refused(query, exc)
                    if query.hash is None:
                        if len(result.trees) == 1:
                            raise
                        result.errors.append(exc)
                        break
                    result.errors.append(exc)
                    continue
                if isinstance(found, ENR):
                    result.nodes.append(found)
                elif isinstance(found, LinkEntry) and follow_links and found.location not in seen:
                    if len(seen) >= self.limits.max_trees:
                        limit = TreeLimitExceeded("links", f"link to {found.domain} not followed: "
                                                           f"{self.limits.max_trees} trees already")
                        self.refused(query, limit)
                        result.errors.append(limit)
                        continue
                    seen.add(found.location)
                    pending.append(found)
            if tree.root is not None:
                result.seq[tree.location] = tree.root.seq
        result.queries = self.stats.queries - start
        self.stats.nodes += len(result.nodes)
        return result

    def iterator(self, urls: Sequence[str], *, max_nodes: int | None = None) -> "DNSNodeIterator":
        return DNSNodeIterator(self, RandomWalk([parse_url(u) for u in urls], self.limits, self.rng),
                               max_nodes=max_nodes)


class DNSNodeIterator:
    """Nodes from a random walk over DNS trees: ``async for node in it`` until ``aclose()``, a
    cancel, ``max_nodes`` nodes, or no tree left. Records without an IP address are skipped (a
    dialer cannot use them). Between steps the walk waits for the rate limit, or for the next
    root check when every tree is walked out or failing."""

    def __init__(self, client: DNSClient, walk: RandomWalk, *, max_nodes: int | None = None) -> None:
        self.client = client
        self.walk = walk
        self.max_nodes = max_nodes
        self.yielded = 0
        self._closed = False
        self._scope: trio.CancelScope | None = None

    def __aiter__(self) -> "DNSNodeIterator":
        return self

    async def __anext__(self) -> Node:
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                while not self._closed and (self.max_nodes is None or self.yielded < self.max_nodes):
                    step = self.walk.next_query(self.client.clock())
                    if step is None:
                        break
                    if isinstance(step, Wait):
                        await trio.sleep_until(step.until)
                        continue
                    found = await self.client.step(self.walk, step)
                    if not isinstance(found, ENR):
                        continue
                    try:
                        node = Node.from_enr(found)
                    except ValueError:
                        self.client.stats.count(self.client.stats.rejected, "no_endpoint")
                        continue
                    self.yielded += 1
                    self.client.stats.nodes += 1
                    return node
            finally:
                self._scope = None
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop the walk: a pending ``__anext__`` (in another task) ends with StopAsyncIteration."""
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()

    async def __aenter__(self) -> "DNSNodeIterator":
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


def open_dns_iterator(urls: Sequence[str], *, server: tuple[str, int] | None = None,
                      resolver: Resolver | None = None, timeout: float = QUERY_TIMEOUT,
                      rate_limit: float | None = RATE_LIMIT, limits: Limits = Limits(),
                      max_nodes: int | None = None, client: DNSClient | None = None,
                      clock: Callable[[], float] = trio.current_time,
                      rng: random.Random | None = None) -> DNSNodeIterator:
    """An async iterator of :class:`~p2p.enode.Node` from the trees at ``urls`` (``enrtree://``),
    for a dialer. Bad URLs raise :class:`~p2p.dnsdisc.URLError` here; nothing is asked before
    the first ``__anext__``. Pass ``client`` to share one rate limit, cache and stats."""
    if client is None:
        client = DNSClient(resolver, server=server, timeout=timeout, rate_limit=rate_limit, limits=limits,
                           clock=clock, rng=rng)
    return client.iterator(urls, max_nodes=max_nodes)


__all__ = ["CACHE_LIMIT", "DNSClient", "DNSDiscStats", "DNSNodeIterator", "DNSResolver", "QUERY_TIMEOUT",
           "RATE_LIMIT", "RateLimiter", "Resolver", "SyncResult", "open_dns_iterator"]
