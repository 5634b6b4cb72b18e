"""The discovery service: v4 and v5 on one datagram transport, sharing one table.

This module composes the parts: our identity and record, the transport (a UDP socket, or an
in-memory endpoint in tests), the protocol engines (:mod:`p2p.discover.v4`,
:mod:`p2p.discover.v5`), table maintenance (:mod:`p2p.discover.tablemaint`), lookups
(:mod:`p2p.discover.lookup`) and the table's events to subscribers.

``DiscoveryConfig(v4=True, v5=False)`` (the default) runs v4 alone. With ``v5=True`` the v5
engine runs beside it on the same transport: v4's receive loop hands it every datagram that
v4's decoder refuses as too small or with a bad hash (every v5 packet is one of these), and the
engine handles it there and then (no task switch per datagram; a bounded queue keeps the order
if anything waits). With ``v4=False, v5=True`` v5 runs alone and reads the transport itself.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import trio

from p2p.crypto import PrivateKey, PublicKey
from p2p.crypto.keccak import keccak256
from p2p.discover.errors import DiscoveryError, LookupTargetError
from p2p.discover.lookup import ALPHA, LookupResult, random_nodes, shared_lookup_limiter
from p2p.discover.netutil import relay_allowed
from p2p.discover.reply import wait_reply
from p2p.discover.table import V4, V5, NodeAdded, NodeRemoved, Table, TableConfig, TableEvent
from p2p.discover.tablemaint import LookupFn, Maintenance, PingFn
from p2p.discover.transport import (
    INBOX_QUEUE,
    Address,
    DatagramTransport,
    InboxTransport,
    UDPTransport,
    bind_udp,
    receive_each,
)
from p2p.discover.v4 import DiscoveryStats, V4Protocol
from p2p.discover.wire import Endpoint, Pong
from p2p.enode import ENR, IPAddress, LocalNode, Node, NodeID
from p2p.enode.expiry import expiring
from p2p.enode.identity import V4_IDENTITY, IdentityScheme, NullIdentityRefused
from p2p.enode.nodedb import NodeDB, SharedBytes

if TYPE_CHECKING:  # the v5 engine is loaded in open_discovery, only when it runs
    from p2p.discover.v5 import V5Config, V5Protocol

logger = logging.getLogger(__name__)

REPLY_TIMEOUT = 0.5  # go-ethereum's respTimeout
BOND_EXPIRATION = 24 * 3600.0  # a pong proves an endpoint for this long (go-ethereum bondExpiration)
MAX_FIND_FAILURES = 5  # consecutive empty findnode answers before a node leaves the table (go-ethereum)
REFRESH_INTERVAL = 30 * 60.0  # go-ethereum's refreshInterval
REVALIDATE_INTERVAL = 10.0  # mean pause between liveness checks is half of it (go-ethereum revalidateInterval)
SEED_COUNT = 30  # nodes taken from the node database when seeding (go-ethereum seedCount)
SEED_MAX_AGE = 5 * 24 * 3600.0  # only seeds with a pong this recent (go-ethereum seedMaxAge)
REFRESH_RANDOM_LOOKUPS = 3  # random-target lookups after the self lookup of a refresh (go-ethereum)
RANDOM_LOOKUP_SPREAD = 5.0  # random pause before each of them, so that nodes started together do not all query at once
RESEED_INTERVAL = 10.0  # an empty table goes back to the seeds after this long
SMALL_TABLE_REFRESH = 5.0  # first retry of a refresh that left the table short (see tablemaint)
MAX_PENDING = 1024  # replies awaited at once; more requests fail at once instead of piling up
MAX_BACKGROUND = 64  # ping-backs and ENR fetches running at once; past that they are dropped
SUBSCRIBER_QUEUE = 1024  # table events buffered per subscriber; a slow one loses events, counted
REMEMBERED_CACHE = 4096  # v5 contacts already written to the node database this session; cleared when full


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    reply_timeout: float = REPLY_TIMEOUT
    bond_expiration: float = BOND_EXPIRATION
    max_find_failures: int = MAX_FIND_FAILURES
    refresh_interval: float = REFRESH_INTERVAL
    revalidate_interval: float = REVALIDATE_INTERVAL
    refresh_random_lookups: int = REFRESH_RANDOM_LOOKUPS
    random_lookup_spread: float = RANDOM_LOOKUP_SPREAD
    reseed_interval: float = RESEED_INTERVAL
    small_table_refresh: float | None = SMALL_TABLE_REFRESH  # None: only the periodic refresh
    alpha: int = ALPHA
    seed_count: int = SEED_COUNT
    seed_max_age: float = SEED_MAX_AGE
    max_pending: int = MAX_PENDING
    max_background: int = MAX_BACKGROUND
    table: TableConfig = field(default_factory=TableConfig)
    wall_clock: Callable[[], float] = time.time
    rng: random.Random | None = None  # None: a SystemRandom
    refresh_on_start: bool = True
    revalidate: bool = True
    # None: the one shared by the whole trio run (``shared_lookup_limiter()``); a process that
    # budgets its resources passes its own, e.g. its process limits' lookup limiter
    lookup_limiter: trio.CapacityLimiter | None = None
    # Only these networks are talked to (go-ethereum's --netrestrict): packets from elsewhere are
    # dropped, and neighbours elsewhere never enter the table. None: every network.
    netrestrict: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    # Run discovery v4 (go-ethereum's --discovery.v4); off only with v5 on.
    v4: bool = True
    # Also run discovery v5 on the same socket (go-ethereum's --discovery.v5), sharing the table.
    v5: bool = False
    v5_config: V5Config | None = None  # None: V5Config() with this config's rng
    v5_queue: int = INBOX_QUEUE  # v5 datagrams read but not yet handled; more are dropped (v5_inbox_full)
    # How packet signers are found and records verified: the real secp256k1 scheme; the
    # simulator alone passes its null scheme (p2p.enode.identity), refused on a real socket.
    identity: IdentityScheme = V4_IDENTITY
    # The in-memory node databases of the nodes of one process (a testnet, a simulation)
    # share equal keys and records through this; None: each keeps its own copies.
    nodedb_shared: SharedBytes | None = None

    def __post_init__(self) -> None:
        if not (self.v4 or self.v5):
            raise ValueError("discovery needs v4, v5 or both")


class Subscription:
    """Table events (:class:`NodeAdded` / :class:`NodeRemoved`, each with the ``via``
    protocol that found the node) from the moment it is made, preceded by one NodeAdded per
    table member when made with ``replay``; iterate it with ``async for``. Ends when the
    service closes."""

    def __init__(self, disc: "Discovery", size: int, replay: bool = False) -> None:
        self._disc = disc
        # Changes the table made before now go to the older subscribers only: the snapshot
        # below already holds their outcome.
        disc._flush_events()
        members = disc.table.members() if replay else []
        # The table is bounded, so is the room the replay adds.
        self._send, self._recv = trio.open_memory_channel[TableEvent](size + len(members))
        for node, via in members:
            self._send.send_nowait(NodeAdded(node, via))
        if disc._closed:
            self._send.close()
        else:
            disc._subscribers.add(self._send)

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> TableEvent:
        try:
            return await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._disc._subscribers.discard(self._send)
        self._send.close()
        self._recv.close()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Discovery:
    """A running discovery node; made by :func:`open_discovery`."""

    def __init__(self, key: PrivateKey, transport: DatagramTransport, *, nodedb: NodeDB, config: DiscoveryConfig,
                 bootnodes: Sequence[Node], tcp_port: int | None, advertised_ip: IPAddress | None,
                 nursery: trio.Nursery, local: LocalNode | None = None) -> None:
        self._key = key
        self._transport = transport
        self._db = nodedb
        self.config = config
        self._nursery = nursery
        self._wall = config.wall_clock
        self._rng = config.rng if config.rng is not None else random.SystemRandom()
        self.bootnodes = tuple(bootnodes)
        host, port = transport.local_address
        listen_ip = ipaddress.ip_address(host.split("%", 1)[0])
        self._ip: IPAddress = advertised_ip if advertised_ip is not None else listen_ip
        self._udp_port: int = port
        self._tcp_port = tcp_port or 0
        self.local_id = NodeID.from_pubkey(key.public_key)
        self.table = Table(self.local_id, clock=trio.current_time, rng=self._rng, config=config.table)
        self.stats = DiscoveryStats(self.table)
        self.last_lookup: LookupResult | None = None
        nodedb.set_self(self.local_id)
        # Our record: the LocalNode's (its seq kept in the node database), with our endpoint set.
        self.local = local if local is not None else LocalNode(key, nodedb)
        self._set_endpoint()
        self._subscribers: set[trio.MemorySendChannel[TableEvent]] = set()
        self._db_held: set[bytes] = set()  # table members this service protects in the node database
        self._v5_remembered: set[bytes] = set()
        self._expirer_started = False
        self._closed = False
        self.v4: V4Protocol | None = None
        if config.v4:
            self.v4 = V4Protocol(key, transport, table=self.table, nodedb=nodedb, config=config, stats=self.stats,
                                 rng=self._rng, nursery=nursery, record=lambda: self.local.record,
                                 endpoint=self._our_endpoint, on_table_change=self._flush_events)
        self.v5: V5Protocol | None = None  # the v5 engine when config.v5; set by open_discovery
        self._v5_inbox: InboxTransport | None = None
        self.maintenance: Maintenance  # set by open_discovery once the engines run

    # -- identity ------------------------------------------------------------------------

    def _set_endpoint(self) -> None:
        """Put our UDP port (and the address peers should use, and the TCP port when we know
        it) in the record; an unspecified address is left out, as peers could not use it."""
        local = self.local
        if self._ip.is_unspecified:
            return
        local.set_ip(self._ip)
        if self._ip.version == 4:
            local.set_udp(self._udp_port)
            if self._tcp_port:
                local.set_tcp(self._tcp_port)
        else:
            local.set_udp6(self._udp_port)
            if self._tcp_port:
                local.set_tcp6(self._tcp_port)

    @property
    def enr(self) -> ENR:
        return self.local.record

    @property
    def udp_port(self) -> int:
        return self._udp_port

    @property
    def local_address(self) -> Address:
        """The transport's (host, port)."""
        return self._transport.local_address

    @property
    def local_node(self) -> Node:
        return Node(self._key.public_key, self._ip, self._udp_port, self._tcp_port, self.local.record)

    @property
    def private_key(self) -> PrivateKey:
        return self._key

    @property
    def nodedb(self) -> NodeDB:
        return self._db

    def update_enr(self, **changes: Any) -> ENR:
        """Change our record through the LocalNode: ``ip``/``ip6`` (an address), ``tcp``,
        ``udp``, ``tcp6``, ``udp6`` (a port, None removes it) and ``extra`` (a dict of a
        protocol's own entries); it is signed again with seq + 1. Peers learn the new seq from
        our next Ping or Pong and fetch the record."""
        local = self.local
        for key, value in changes.items():
            if key == "extra":
                for name, raw in value.items():
                    local.set(name, raw)
            elif key in ("ip", "ip6"):
                local.set_ip(value, v6=key == "ip6")
            elif key in ("tcp", "udp", "tcp6", "udp6"):
                getattr(local, f"set_{key}")(value)
            else:
                raise TypeError(f"update_enr() got an unexpected entry {key!r}")
        return local.record

    def _our_endpoint(self) -> Endpoint:
        return Endpoint(self._ip, self._udp_port, self._tcp_port)

    # -- requests ------------------------------------------------------------------------

    def _need_v4(self) -> V4Protocol:
        if self.v4 is None:
            raise DiscoveryError("discovery v4 is not running (DiscoveryConfig(v4=False))")
        return self.v4

    async def ping(self, node: Node) -> Pong:
        """Ping ``node`` over v4 and return its Pong; a bond with it follows."""
        return await self._need_v4().ping(node)

    async def find_node(self, node: Node, target: bytes) -> list[Node]:
        """Ask ``node`` over v4 for the nodes it knows closest to ``target`` (a 64-byte key)."""
        return await self._need_v4().find_node(node, target)

    async def request_enr(self, node: Node) -> ENR:
        """``node``'s current record, over v4 when it runs, else over v5."""
        if self.v4 is not None:
            return await self.v4.request_enr(node)
        assert self.v5 is not None
        return await self.v5.request_enr(node)

    # -- events --------------------------------------------------------------------------

    def _flush_events(self) -> None:
        events = self.table.pop_events()
        if not events:
            return
        maintenance = getattr(self, "maintenance", None)  # None while the engines start
        if maintenance is not None:
            maintenance.table_grew()
        for ev in events:
            self._hold_in_db(ev)
            for ch in list(self._subscribers):
                try:
                    ch.send_nowait(ev)
                except trio.WouldBlock:
                    self.stats.events_dropped += 1
                except trio.ClosedResourceError:
                    self._subscribers.discard(ch)

    def _hold_in_db(self, ev: TableEvent) -> None:
        """Table members keep their place in the node database: a flood of new nodes never
        evicts the nodes that seed the table after a restart."""
        node_id = ev.node.id
        if isinstance(ev, NodeAdded):
            if node_id not in self._db_held and self._db.protect(node_id):
                self._db_held.add(node_id)
        elif node_id in self._db_held:
            self._db_held.discard(node_id)
            self._db.unprotect(node_id)

    def subscribe(self, size: int = SUBSCRIBER_QUEUE, *, replay: bool = False) -> Subscription:
        """Table events from now on: ``async for ev in disc.subscribe(): ...``.

        With ``replay``, first one NodeAdded per node in the table now (the bootnodes and
        database seeds put there while :func:`open_discovery` started, for instance), then the
        changes, with none lost or repeated in between.
        """
        return Subscription(self, size, replay)

    def _v5_contact(self, node: Node, pong: bool) -> None:
        """A node answered us over v5: stored with its last contact, so that it seeds the
        table after a restart as v4 contacts do. A v5 answer from (ID, IP) proves the
        endpoint as a v4 Pong does, so it is recorded as one."""
        first = node.id not in self._v5_remembered
        if first:
            if len(self._v5_remembered) >= REMEMBERED_CACHE:
                self._v5_remembered.clear()
            self._v5_remembered.add(node.id)
            current = self.table.get(node.id)
            self._db.update_node(current if current is not None and current.ip == node.ip else node)
        if first or pong:
            self._db.update_last_pong_received(node.id, node.ip, self._wall())
            if not self._expirer_started:
                self._expirer_started = True
                self._db.mark_bonded()

    # -- lookups -------------------------------------------------------------------------

    def _lookup_limiter(self) -> trio.CapacityLimiter:
        return self.config.lookup_limiter or shared_lookup_limiter()

    async def lookup(self, target: NodeID | PublicKey | Node | bytes | None = None) -> list[Node]:
        """The (up to) 16 nodes closest to ``target`` that an iterative lookup finds; a
        random target when None. See :meth:`lookup_detailed`."""
        return list((await self.lookup_detailed(target)).nodes)

    async def lookup_detailed(self, target: NodeID | PublicKey | Node | bytes | None = None) -> LookupResult:
        """Iterative lookup with ``alpha`` concurrent queries: over v4 when it runs (FindNode
        by key), else over v5 (FINDNODE by distances).

        discv4 queries by public key (the remote measures distance to its keccak256). For a
        bare node ID whose key is unknown (in neither the table nor the node database), the
        queries carry a stand-in: 64 bytes whose keccak256 shares its first 16 bits with the
        target, found by trying (about 65,000 hashes). Remote nodes then answer with the
        target's neighbourhood (in a network of fewer than ~65,000 x 16 nodes the target is
        among the 16 closest to the stand-in); results are still ranked by the real ID.
        """
        if self.v4 is None:
            return await self._lookup_v5(None if target is None else _target_id(target))
        target_id, wire_key = self.v4.target_key(target)
        if wire_key is None:
            wire_key = await self.v4.stand_in_key(target_id)
        async with self._lookup_limiter():
            result = await self.v4.lookup(target_id, wire_key, self._seed)
        self.stats.lookups += 1
        self.last_lookup = result
        return result

    async def _lookup_v5(self, target: bytes | None) -> LookupResult:
        assert self.v5 is not None
        async with self._lookup_limiter():
            result = await self.v5.lookup_detailed(target)
        self.stats.lookups += 1
        self.last_lookup = result
        return result

    async def random_nodes(self) -> AsyncGenerator[Node, None]:
        """Nodes for a dialer, endlessly (see :func:`p2p.discover.lookup.random_nodes`):
        nothing before the first self lookup is over, then the table's entries not offered
        lately, with a random lookup only when the table has nothing new."""
        maint = self.maintenance
        async for node in random_nodes(self.table, self.lookup, ready=maint.bootstrapped,
                                       refreshing=lambda: maint.refreshing, min_pause=self.config.reply_timeout):
            yield node

    # -- maintenance ---------------------------------------------------------------------

    def _seed(self) -> None:
        """Put the bootnodes and fresh nodes from the node database into the table, as
        learned through the protocols that run (v5 only for those with a record when both run).
        A seed already in the table keeps the protocols it proved itself over: the node
        database does not say which protocol a node speaks, so a v5-only node seeded again
        as v4 would be asked v4 lookups it ignores, and dropped for its silence."""
        seeds = list(self._db.query_seeds(self.config.seed_count, self.config.seed_max_age))
        for node in seeds + list(self.bootnodes):
            if node.id == self.local_id or node.id in self.table:
                continue
            if self.v4 is not None:
                self.table.add_seen(node, V4)
            if self.v5 is not None and (self.v4 is None or node.enr is not None):
                self.table.add_seen(node, V5)
        self._flush_events()

    async def refresh(self) -> None:
        """Seed the table, look ourselves up, then look up random targets, over each protocol
        that runs (see :class:`p2p.discover.tablemaint.Maintenance`)."""
        await self.maintenance.refresh()

    async def revalidate_once(self) -> Node | None:
        """Ping the least recently checked node of a random bucket over the protocols it is
        known through: an answer moves it to the front, silence replaces it."""
        return await self.maintenance.revalidate_once()

    def _close(self) -> None:
        self._closed = True
        if self.v4 is not None:
            self.v4.closed = True
        for node_id in self._db_held:  # the database may outlive us (its owner's, or reopened)
            self._db.unprotect(node_id)
        self._db_held.clear()
        for ch in list(self._subscribers):
            ch.close()
        self._subscribers.clear()


def _target_id(target: NodeID | PublicKey | Node | bytes) -> bytes:
    if isinstance(target, Node):
        return target.id
    if isinstance(target, PublicKey):
        return keccak256(target.to_bytes())
    if len(target) == 64:
        return keccak256(bytes(target))
    if len(target) != 32:
        raise LookupTargetError(f"lookup target must be a node ID, a public key or a Node, not {len(target)} bytes")
    return bytes(target)


async def _open_v5(stack: AsyncExitStack, disc: Discovery, transport: DatagramTransport,
                   cfg: DiscoveryConfig) -> V5Protocol:
    """The v5 engine on ``disc``'s transport: beside v4 it handles what v4's reader hands over
    (see :func:`_inline_delivery`); alone it is fed by our own reader (which applies
    ``netrestrict``). It
    sends through the same transport, shares the table (its changes reach our subscribers)
    and signs with our record."""
    from p2p.discover.v5 import V5Config, open_v5

    async def send(data: bytes, addr: Address) -> None:
        transport.send_nowait(data, addr)  # never waits: a full buffer raises, and the engine counts it

    inbox = InboxTransport(transport.local_address, send, queue_size=cfg.v5_queue,
                           send_nowait=transport.send_nowait)
    # until the engine exists, what v4 hands over waits in the inbox
    deliver: Callable[[bytes, Address], bool] = inbox.feed
    if disc.v4 is not None:
        disc._v5_inbox = inbox
        v4 = disc.v4

        def hand_over(data: bytes, addr: Address, ip: IPAddress) -> None:
            if not v4.allowed(ip):
                v4.drop("netrestrict", addr, "source outside --netrestrict")
            elif not deliver(data, addr):
                v4.drop("v5_inbox_full", addr, "the v5 engine is behind")

        v4.other = hand_over
    v5 = await stack.enter_async_context(open_v5(
        inbox, disc.private_key, lambda: disc.enr, disc.table,
        bootnodes=[n.enr for n in disc.bootnodes if n.enr is not None],
        config=replace(cfg.v5_config or V5Config(rng=cfg.rng), identity=cfg.identity), on_table_change=disc._flush_events,
        on_contact=disc._v5_contact, receive=True))
    deliver = _inline_delivery(v5, inbox)
    if disc.v4 is None:
        disc._nursery.start_soon(_v5_reader, disc, transport, deliver)
    return v5


def _inline_delivery(v5: V5Protocol, inbox: InboxTransport) -> Callable[[bytes, Address], bool]:
    """Hand a datagram to the v5 engine from the socket's reader: handled at once when the
    engine's inbox is empty (no task switch per datagram), else queued behind what waits
    there so that order is kept. Each datagram is parsed once, by the engine. False when the
    inbox is full (the datagram is dropped)."""

    def deliver(data: bytes, addr: Address) -> bool:
        if inbox.queued == 0:
            v5.handle_datagram_nowait(data, addr)
            return True
        return inbox.feed(data, addr)

    return deliver


async def _v5_reader(disc: Discovery, transport: DatagramTransport,
                     deliver: Callable[[bytes, Address], bool]) -> None:
    """The transport's reader when v5 runs alone: ``netrestrict``, then the v5 engine. The
    transport yields to other tasks every ``RECV_BATCH`` datagrams of a busy socket."""
    nets = disc.config.netrestrict

    def handle(data: bytes, addr: Address) -> None:
        disc.stats.bytes_in += len(data)
        if nets is not None:
            ip = ipaddress.ip_address(addr[0].split("%", 1)[0])
            if not any(ip in net for net in nets):
                disc.stats.drops["netrestrict"] += 1
                return
        if not deliver(data, addr):
            disc.stats.drops["v5_inbox_full"] += 1

    def on_error(exc: OSError) -> None:
        disc.stats.drops["socket_error"] += 1
        logger.debug("receive error: %s", exc)

    await receive_each(transport, handle, on_error)


def _maintenance(disc: Discovery) -> Maintenance:
    lookups: dict[str, LookupFn] = {}
    pingers: dict[str, PingFn] = {}
    if disc.v4 is not None:
        lookups[V4] = disc.lookup_detailed
        pingers[V4] = disc.v4.revalidate
    if disc.v5 is not None:
        lookups[V5] = disc._lookup_v5
        pingers[V5] = disc.v5.ping
    return Maintenance(disc.table, config=disc.config, rng=disc._rng, seed=disc._seed, lookups=lookups,
                       pingers=pingers, limiter=disc._lookup_limiter, drops=disc.stats.drops,
                       on_table_change=disc._flush_events, has_bootnodes=bool(disc.bootnodes),
                       nursery=disc._nursery)


@asynccontextmanager
async def open_discovery(
    private_key: PrivateKey,
    listen: tuple[str, int] = ("127.0.0.1", 0),
    *,
    bootnodes: Iterable[Node] = (),
    nodedb: NodeDB | None = None,
    tcp_port: int | None = None,
    advertised_ip: IPAddress | str | None = None,
    config: DiscoveryConfig | None = None,
    transport: DatagramTransport | None = None,
    local: LocalNode | None = None,
) -> AsyncIterator[Discovery]:
    """Run a discovery node on a UDP socket bound to ``listen`` (port 0 picks one), or on
    ``transport`` when given (e.g. an in-memory endpoint; ``listen`` is then unused).

    ``local`` is the node's :class:`~p2p.enode.LocalNode` (the owner of our one record):
    discovery sets its UDP port and address on it and signs nothing of its own. Without one,
    discovery makes its own on ``nodedb``. ``private_key`` is still needed: it is the
    LocalNode's key, and discovery uses it for v4 packet signatures and v5 key agreement,
    which the LocalNode does not offer.

    ``nodedb=None`` keeps the node database in memory. ``tcp_port`` is the RLPx port put in
    our record and Ping ``from`` (0 when None: a discovery-only node). ``advertised_ip``
    replaces the listen address in our record and packets.
    """
    cfg = config or DiscoveryConfig()
    if cfg.identity.null and (transport is None or isinstance(transport, UDPTransport)):
        raise NullIdentityRefused("the null identity scheme is refused on a real socket")
    if local is not None and local.public_key != private_key.public_key:
        raise ValueError("the LocalNode belongs to another key")
    adv = ipaddress.ip_address(advertised_ip) if isinstance(advertised_ip, str) else advertised_ip
    async with AsyncExitStack() as stack:
        db = nodedb
        if db is None:
            db = stack.enter_context(NodeDB.open(None, clock=cfg.wall_clock, shared=cfg.nodedb_shared))
            # we opened it, so its expiry is ours; a database we are given is expired by
            # whoever opened it (the server, the bootnode command)
            await stack.enter_async_context(expiring(db))
        if transport is None:
            sock = bind_udp(*listen)
            stack.callback(sock.close)
            stack.callback(trio.lowlevel.notify_closing, sock)
            transport = UDPTransport(sock)
        nursery = await stack.enter_async_context(trio.open_nursery())
        disc = Discovery(private_key, transport, nodedb=db, config=cfg, bootnodes=tuple(bootnodes),
                         tcp_port=tcp_port, advertised_ip=adv, nursery=nursery, local=local)
        if disc.v4 is not None:
            await nursery.start(disc.v4.receive_loop)
        if cfg.v5:
            disc.v5 = await _open_v5(stack, disc, transport, cfg)
        disc.maintenance = maint = _maintenance(disc)
        disc._seed()
        if not cfg.refresh_on_start:
            maint.bootstrapped.set()
        nursery.start_soon(maint.refresh_loop)
        if cfg.revalidate:
            nursery.start_soon(maint.revalidate_loop)
        logger.info("discovery listening on %s:%d as %s", *transport.local_address, disc.local_id.short())
        try:
            yield disc
        finally:
            disc._close()
            nursery.cancel_scope.cancel()


__all__ = [
    "Discovery",
    "DiscoveryConfig",
    "DiscoveryStats",
    "NodeAdded",
    "NodeRemoved",
    "Subscription",
    "open_discovery",
    "relay_allowed",
    "wait_reply",
]
