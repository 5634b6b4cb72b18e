"""The discovery v4 service: one UDP socket, the table, bonding, lookups, refresh, revalidation.

Datagrams are read and answered inline by one task (no task per packet): Ping gets its Pong,
FindNode its Neighbors and ENRRequest its ENRResponse straight from the receive loop, and
replies to our own requests wake the task that waits for them. Only work that must wait for
the network (the ping back to an unbonded pinger, fetching a newer ENR) runs in a background
task, and at most ``max_background`` of those run at once: past that the work is dropped and
counted, never queued without bound.

Endpoint proof (discv4.md, go-ethereum): FindNode and ENRRequest are answered only for a
(node ID, IP) that answered our Ping within the bond expiration, so a spoofed source address
cannot make us send Neighbors to a victim. Before we query a node we make sure that it has
seen a Ping from us recently, pinging it and giving it time to ping us back if not.

Wall-clock time (``config.wall_clock``) stamps packets and bonds; trio's clock drives reply
deadlines and timers, so tests can run them on ``trio.testing.MockClock``.

With ``DiscoveryConfig(v5=True)`` the discovery v5 engine (:mod:`p2p.discover.v5`) runs on
the same socket: the receive loop hands it every datagram that v4's decoder refuses as too
small or with a bad hash (every v5 packet is one of these), and it shares our table and record.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import random
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from p2p.crypto import InvalidKey, PrivateKey, PublicKey
from p2p.crypto.keccak import keccak256
from p2p.discover.errors import BadHash, DecodeError, DiscoveryError, LookupTargetError, PacketTooSmall, RequestTimeout
from p2p.discover.lookup import ALPHA, LOOKUP_RESULTS, Lookup, LookupResult
from p2p.discover.table import BUCKET_SIZE, NodeAdded, NodeRemoved, Table, TableConfig, TableEvent, is_lan
from p2p.discover.transport import INBOX_QUEUE, InboxTransport
from p2p.discover.wire import (
    MAX_NEIGHBORS,
    MAX_PACKET_SIZE,
    ENRRequest,
    ENRResponse,
    Endpoint,
    FindNode,
    NeighborEntry,
    Neighbors,
    PacketType,
    Ping,
    Pong,
    Received,
    decode_packet,
    encode_body,
    encode_neighbors,
    expiration_at,
    seal,
)
from p2p.enode import ENR, ENRError, IPAddress, Node, NodeID
from p2p.enode.nodedb import NodeDB

if TYPE_CHECKING:  # v5 imports this module (relay_allowed): the engine is loaded in open_discovery
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
# A table holding fewer than a bucket's worth of nodes (e.g. the first lookup went unanswered)
# refreshes again after 5 s, then 10, 20, ... up to 2 minutes, instead of waiting half an hour:
# go-ethereum gets the same effect by re-seeding and looking up when a lookup finds the table
# short. The cap keeps a node whose early lookups all met a busy network from backing off
# for half an hour; in a network of fewer than 16 nodes it costs one lookup every 2 minutes.
SMALL_TABLE_REFRESH = 5.0
SMALL_TABLE_REFRESH_MAX = 120.0
# Lookups running at once in one process (every node of one trio run shares the limit). A lone
# node never comes near it; in a one-process testnet, unbounded lookups would saturate the
# event loop until replies miss their 500 ms deadline and the retries make it worse.
LOOKUPS_PER_PROCESS = 16
# A refresh's random-target lookups are skipped while this many lookups already wait for a slot
# of the process limiter. They are maintenance that can wait for the next refresh; queued
# without bound, 1,000 nodes of one process started together left 3,000 of them in the queue
# (~100 s of a saturated loop at ~30 lookups a second), and every lookup asked for meanwhile
# waited behind them. A lone node never has more than a few lookups waiting.
REFRESH_LOOKUP_BACKLOG = 16
# A reply deadline that fires this much late says the event loop is busy (many nodes in one
# process, a burst of handshakes): the reply may be sitting in our socket, read on the next pass.
LAG_GRACE_MIN = 0.05
LAG_EXTENSIONS = 2  # at most this many extensions of one deadline, each by the lateness seen
MAX_PENDING = 1024  # replies awaited at once; more requests fail at once instead of piling up
MAX_BACKGROUND = 64  # ping-backs and ENR fetches running at once; past that they are dropped
SUBSCRIBER_QUEUE = 1024  # table events buffered per subscriber; a slow one loses events, counted
RECV_BUFFER = MAX_PACKET_SIZE + 1  # one byte more than allowed, so oversized datagrams are seen
RECV_BATCH = 64  # datagrams handled before the receive loop lets other tasks run
SOCKET_BUFFER = 1 << 20  # asked of the kernel so that bursts queue there, not in Python
RECENT_RANDOM_NODES = 1024  # random_nodes() remembers at most this many yielded nodes
REFRESH_WAIT = 1.0  # random_nodes() re-reads the table this often while a refresh runs
RECENT_RANDOM_WINDOW = 30.0  # ... and offers one again after this long (the dial history's 30 s)
RANDOM_NODES_MAX_BACKOFF = 30.0  # pause of random_nodes() when lookups find nothing new
IP_CACHE_SIZE = 4096  # parsed source addresses kept; cleared when full
NEIGHBOR_CACHE_SIZE = 8192  # parsed Neighbors entries kept per process (~1 KiB each), least recent dropped
GRIND_PREFIX_BYTES = 2  # a stand-in lookup key shares 16 bits with the target ID: 65k hashes, ~60 ms
GRIND_CHUNK = 8192  # hashes between checkpoints while grinding, so other tasks keep running
GRIND_MAX_TRIES = 1 << 22  # about 60 times the expected work: a bound, not a limit hit in practice
REMEMBERED_CACHE = 4096  # IDs already written to the node database this session; cleared when full

_SPECIAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "255.255.255.255/32", "2001:db8::/32", "ff00::/8",
    "224.0.0.0/4"))


@functools.lru_cache(maxsize=IP_CACHE_SIZE)
def _ip_class(ip: IPAddress) -> tuple[bool, bool, bool]:
    """(relayable at all, loopback, LAN) of an address; cached, since a Neighbors reply
    checks the same few addresses over and over."""
    relayable = not (ip.is_unspecified or ip.is_multicast
                     or any(ip.version == n.version and ip in n for n in _SPECIAL_NETWORKS))
    return relayable, ip.is_loopback, is_lan(ip)


@functools.lru_cache(maxsize=NEIGHBOR_CACHE_SIZE)
def _entry_node(e: NeighborEntry) -> Node | None:
    """The ``Node`` of a Neighbors entry, or None if its key is not a curve point. Cached by
    the whole entry (key and endpoint): the same entries come back in reply after reply (and
    to every pending request that checks a packet), and each parse is a point decompression
    and a keccak. Nodes are immutable, so sharing them is safe."""
    try:
        return Node(PublicKey(e.pubkey), e.ip, e.udp_port, e.tcp_port)  # type: ignore[arg-type]
    except InvalidKey:
        return None


def relay_allowed(sender: IPAddress, addr: IPAddress) -> bool:
    """Whether ``addr`` may be passed to (or accepted from) a node at ``sender``: no
    unspecified, documentation or multicast addresses; loopback only between loopback
    nodes and LAN only between LAN nodes (go-ethereum's ``netutil.CheckRelayIP``)."""
    relayable, loopback, lan = _ip_class(addr)
    if not relayable:
        return False
    if loopback or lan:
        _, s_loopback, s_lan = _ip_class(sender)
        if loopback and not s_loopback:
            return False
        if lan and not s_lan:
            return False
    return True


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
    lookup_limiter: trio.CapacityLimiter | None = None  # None: the one shared by the whole trio run
    # Only these networks are talked to (go-ethereum's --netrestrict): packets from elsewhere are
    # dropped, and neighbours elsewhere never enter the table. None: every network.
    netrestrict: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    # Also run discovery v5 on the same socket (go-ethereum's --discovery.v5), sharing the table.
    v5: bool = False
    v5_config: V5Config | None = None  # None: V5Config() with this config's rng
    v5_queue: int = INBOX_QUEUE  # v5 datagrams read but not yet handled; more are dropped (v5_inbox_full)


_SHARED_LOOKUP_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("discovery_lookups")


def shared_lookup_limiter() -> trio.CapacityLimiter:
    """The lookup limiter of the current trio run (made on first use)."""
    try:
        return _SHARED_LOOKUP_LIMITER.get()
    except LookupError:
        limiter = trio.CapacityLimiter(LOOKUPS_PER_PROCESS)
        _SHARED_LOOKUP_LIMITER.set(limiter)
        return limiter


async def wait_reply(event: trio.Event, timeout: float) -> bool:
    """Wait up to ``timeout`` for ``event``; True when it is set.

    When the deadline's wake-up comes late (the loop was busy running other tasks), the wait
    is extended by the lateness seen, up to ``LAG_EXTENSIONS`` times: a reply that reached our
    socket in time but was not read yet because of our own load is not the peer's fault. On an
    idle loop wake-ups are punctual and the deadline is exactly ``timeout``.
    """
    deadline = trio.current_time() + timeout
    for _ in range(LAG_EXTENSIONS + 1):
        with trio.move_on_at(deadline):
            await event.wait()
        if event.is_set():
            return True
        now = trio.current_time()
        late = now - deadline
        if late < LAG_GRACE_MIN:
            return False
        deadline = now + min(late, timeout * 4)
    return event.is_set()


class DiscoveryStats:
    """Counters for metrics: packets in and out by type, drops by reason, table size."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self.packets_in: Counter[str] = Counter()
        self.packets_out: Counter[str] = Counter()
        self.bytes_in = 0
        self.bytes_out = 0
        self.drops: Counter[str] = Counter()
        self.lookups = 0
        self.timeouts: Counter[str] = Counter()  # requests that got no (complete) reply, by reply type
        self.events_dropped = 0

    @property
    def table_size(self) -> int:
        return len(self._table)

    def snapshot(self) -> dict[str, Any]:
        return {"packets_in": dict(self.packets_in), "packets_out": dict(self.packets_out),
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "drops": dict(self.drops),
                "lookups": self.lookups, "timeouts": dict(self.timeouts), "table_size": self.table_size, "events_dropped": self.events_dropped}


class _Tally:
    """Packets of one lookup's own queries."""

    __slots__ = ("sent", "received")

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0


class _Pending:
    """A request waiting for its reply (or replies) from one (node ID, IP)."""

    __slots__ = ("key", "match", "done", "event", "result", "tally")

    def __init__(self, key: tuple[bytes, IPAddress, int], match: Callable[[Received], tuple[bool, bool]],
                 tally: _Tally | None) -> None:
        self.key = key
        self.match = match  # -> (matched, complete)
        self.done = False
        self.event = trio.Event()
        self.result: Received | None = None
        self.tally = tally


class Subscription:
    """Table events (:class:`NodeAdded` / :class:`NodeRemoved`) from the moment it is made,
    preceded by one NodeAdded per table member when made with ``replay``; iterate it with
    ``async for``. Ends when the service closes."""

    def __init__(self, disc: "Discovery", size: int, replay: bool = False) -> None:
        self._disc = disc
        # Changes the table made before now go to the older subscribers only: the snapshot
        # below already holds their outcome.
        disc._flush_events()
        members = disc.table.nodes() if replay else []
        # The table is bounded, so is the room the replay adds.
        self._send, self._recv = trio.open_memory_channel[TableEvent](size + len(members))
        for node in members:
            self._send.send_nowait(NodeAdded(node))
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
    """A running discovery v4 node; made by :func:`open_discovery`."""

    def __init__(self, key: PrivateKey, sock: socket.socket, *, nodedb: NodeDB, config: DiscoveryConfig,
                 bootnodes: Sequence[Node], tcp_port: int | None, advertised_ip: IPAddress | None,
                 nursery: trio.Nursery) -> None:
        self._key = key
        self._sock = sock
        self._db = nodedb
        self.config = config
        self._nursery = nursery
        self._wall = config.wall_clock
        self._rng = config.rng if config.rng is not None else random.SystemRandom()
        self.bootnodes = tuple(bootnodes)
        host, port = sock.getsockname()[:2]
        listen_ip = ipaddress.ip_address(host)
        self._ip: IPAddress = advertised_ip if advertised_ip is not None else listen_ip
        self._udp_port: int = port
        self._tcp_port = tcp_port or 0
        self.local_id = NodeID.from_pubkey(key.public_key)
        self.table = Table(self.local_id, clock=trio.current_time, rng=self._rng, config=config.table)
        self.stats = DiscoveryStats(self.table)
        self.last_lookup: LookupResult | None = None
        nodedb.set_self(self.local_id)
        seq = nodedb.local_seq() + 1
        self._enr = self._build_enr(seq)
        nodedb.store_local_seq(seq)
        self._pending: dict[tuple[bytes, IPAddress, int], list[_Pending]] = {}
        self._pending_count = 0
        self._ping_waiters: dict[tuple[bytes, IPAddress], list[trio.Event]] = {}
        self._background = 0
        self._enr_fetching: set[bytes] = set()
        self._remembered: set[bytes] = set()
        self._subscribers: set[trio.MemorySendChannel[TableEvent]] = set()
        self._ip_cache: dict[str, IPAddress] = {}
        self._expirer_started = False
        self._db_held: set[bytes] = set()  # table members this service protects in the node database
        self._refreshing: trio.Event | None = None
        # Set once the first refresh's self lookup is over (or when there is none): until then
        # the table holds only seeds, and a dialer fed from it would all dial the bootnodes.
        self._bootstrapped = trio.Event()
        self._closed = False
        self.v5: V5Protocol | None = None  # the v5 engine on our socket when config.v5; set by open_discovery
        self._v5_inbox: InboxTransport | None = None

    # -- identity ------------------------------------------------------------------------

    def _build_enr(self, seq: int) -> ENR:
        kwargs: dict[str, Any] = {}
        if not self._ip.is_unspecified:
            if self._ip.version == 4:
                kwargs.update(ip=self._ip, udp=self._udp_port, tcp=self._tcp_port or None)
            else:
                kwargs.update(ip6=self._ip, udp6=self._udp_port, tcp6=self._tcp_port or None)
        return ENR.build(self._key, seq, **kwargs)

    @property
    def enr(self) -> ENR:
        return self._enr

    @property
    def udp_port(self) -> int:
        return self._udp_port

    @property
    def local_node(self) -> Node:
        return Node(self._key.public_key, self._ip, self._udp_port, self._tcp_port, self._enr)

    @property
    def private_key(self) -> PrivateKey:
        return self._key

    def update_enr(self, **changes: Any) -> ENR:
        """Re-sign our record with ``changes`` (``ENR.updated`` keywords) and seq + 1. Peers
        learn the new seq from our next Ping or Pong and fetch the record."""
        self._enr = self._enr.updated(self._key, **changes)
        self._db.store_local_seq(self._enr.seq)
        return self._enr

    def _our_endpoint(self) -> Endpoint:
        return Endpoint(self._ip, self._udp_port, self._tcp_port)

    # -- sending -------------------------------------------------------------------------

    def _send(self, addr: tuple[str, int], ptype: PacketType, datagram: bytes) -> None:
        try:
            self._sock.sendto(datagram, addr)
        except BlockingIOError:
            self.stats.drops["send_buffer_full"] += 1
            return
        except OSError as exc:
            self.stats.drops["send_error"] += 1
            logger.debug("send %s to %s failed: %s", ptype.name, addr, exc)
            return
        self.stats.packets_out[ptype.name.lower()] += 1
        self.stats.bytes_out += len(datagram)

    def _send_packet(self, addr: tuple[str, int], ptype: PacketType, body: bytes) -> bytes:
        datagram, digest = seal(self._key, ptype, body)
        self._send(addr, ptype, datagram)
        return digest

    # -- receiving -----------------------------------------------------------------------

    async def _receive_loop(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = self._sock
        task_status.started()
        while True:
            await trio.lowlevel.wait_readable(sock)
            for _ in range(RECV_BATCH):
                try:
                    data, addr = sock.recvfrom(RECV_BUFFER)
                except BlockingIOError:
                    break
                except OSError as exc:  # e.g. an ICMP error reported on the socket
                    self.stats.drops["socket_error"] += 1
                    logger.debug("receive error: %s", exc)
                    continue
                self._handle_datagram(data, addr)

    def _source_ip(self, host: str) -> IPAddress:
        ip = self._ip_cache.get(host)
        if ip is None:
            if len(self._ip_cache) >= IP_CACHE_SIZE:
                self._ip_cache.clear()
            ip = self._ip_cache[host] = ipaddress.ip_address(host.split("%", 1)[0])
        return ip

    def _drop(self, reason: str, addr: tuple[str, int], detail: object) -> None:
        self.stats.drops[reason] += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: dropped packet from %s:%s (%s): %s", self.local_id.short(), addr[0], addr[1],
                         reason, detail)

    def _allowed(self, ip: IPAddress) -> bool:
        nets = self.config.netrestrict
        return nets is None or any(ip in net for net in nets)

    def _handle_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        self.stats.bytes_in += len(data)
        try:
            r = decode_packet(data, now=self._wall())
        except (PacketTooSmall, BadHash) as exc:
            # not v4 (every v5 packet is one of these): the v5 engine's, if it runs
            if self._v5_inbox is None:
                self._drop(exc.reason, addr, exc)
            elif not self._allowed(self._source_ip(addr[0])):
                self._drop("netrestrict", addr, "source outside --netrestrict")
            elif not self._v5_inbox.feed(data, addr):
                self._drop("v5_inbox_full", addr, "the v5 engine is behind")
            return
        except DecodeError as exc:
            self._drop(exc.reason, addr, exc)
            return
        packet = r.packet
        node_id = NodeID.from_digest(keccak256(r.sender.to_bytes()))
        if node_id == self.local_id:
            self._drop("from_self", addr, "packet signed with our own key")
            return
        ip = self._source_ip(addr[0])
        if not self._allowed(ip):
            self._drop("netrestrict", addr, "source outside --netrestrict")
            return
        self.stats.packets_in[r.type.name.lower()] += 1
        if isinstance(packet, Ping):
            self._on_ping(r, packet, node_id, ip, addr)
        elif isinstance(packet, FindNode):
            self._on_find_node(packet, node_id, ip, addr)
        elif isinstance(packet, ENRRequest):
            self._on_enr_request(r, node_id, ip, addr)
        else:  # Pong, Neighbors, ENRResponse: replies to something we asked
            self._on_reply(r, node_id, ip, addr)

    def _bonded(self, node_id: bytes, ip: IPAddress) -> bool:
        return self._wall() - self._db.last_pong_received(node_id, ip) < self.config.bond_expiration

    def _on_ping(self, r: Received, ping: Ping, node_id: NodeID, ip: IPAddress, addr: tuple[str, int]) -> None:
        tcp = ping.from_endpoint.tcp_port
        now = self._wall()
        pong = Pong(Endpoint(ip, addr[1], tcp), r.hash, expiration_at(now), self._enr.seq)
        self._send_packet(addr, PacketType.PONG, encode_body(pong))
        entry = self.table.entry(node_id)
        if entry is not None and entry.node.ip == ip and entry.node.udp_port == addr[1] \
                and entry.node.tcp_port == tcp:
            node = entry.node  # the common case of a known peer: no new Node to build
        else:
            node = Node(r.sender, ip, addr[1], tcp, entry.node.enr if entry is not None else None)
        if now - self._db.last_pong_received(node_id, ip) < self.config.bond_expiration:
            self.table.add_verified(node)
            self._flush_events()
        else:
            # Not bonded: ping back; the node enters the table once it answers.
            self._spawn("ping_back", self._ping_back, node)
        self._db.update_last_ping_received(node_id, ip, now)
        waiters = self._ping_waiters.pop((node_id, ip), None)
        if waiters:
            for ev in waiters:
                ev.set()
        if ping.enr_seq is not None:
            self._check_seq(node_id, ping.enr_seq)

    async def _ping_back(self, node: Node) -> None:
        try:
            await self.ping(node)
        except RequestTimeout:
            return
        self.table.add_verified(node)
        self._flush_events()

    def _on_find_node(self, req: FindNode, node_id: NodeID, ip: IPAddress, addr: tuple[str, int]) -> None:
        if not self._bonded(node_id, ip):
            self._drop("unknown_node", addr, "FindNode from a sender without a bond")
            return
        target = keccak256(req.target)
        entries = [
            NeighborEntry(n.ip, n.udp_port, n.tcp_port, n.pubkey.to_bytes())
            for n in self.table.closest(target, BUCKET_SIZE, prefer_live=True)
            if n.udp_port != 0 and relay_allowed(ip, n.ip)
        ]
        for datagram in encode_neighbors(self._key, entries, expiration_at(self._wall())):
            self._send(addr, PacketType.NEIGHBORS, datagram)

    def _on_enr_request(self, r: Received, node_id: NodeID, ip: IPAddress, addr: tuple[str, int]) -> None:
        if not self._bonded(node_id, ip):
            self._drop("unknown_node", addr, "ENRRequest from a sender without a bond")
            return
        self._send_packet(addr, PacketType.ENR_RESPONSE, encode_body(ENRResponse(r.hash, self._enr.to_rlp())))

    def _on_reply(self, r: Received, node_id: NodeID, ip: IPAddress, addr: tuple[str, int]) -> None:
        waiting = self._pending.get((node_id, ip, r.type))
        matched = False
        if waiting:
            for p in list(waiting):
                ok, complete = p.match(r)
                if not ok:
                    continue
                matched = True
                p.result = r
                if p.tally is not None:
                    p.tally.received += 1
                if complete:
                    p.done = True
                    p.event.set()
                    self._forget(p)
        if not matched:
            self._drop("unsolicited_reply", addr, f"{r.type.name} nobody asked for")
            return
        if isinstance(r.packet, Pong):
            self._db.update_last_pong_received(node_id, ip, self._wall())
            if not self._expirer_started:
                self._expirer_started = True
                self._db.ensure_expirer()
            if r.packet.enr_seq is not None:
                self._check_seq(node_id, r.packet.enr_seq)

    # -- requests ------------------------------------------------------------------------

    def _forget(self, p: _Pending) -> None:
        waiting = self._pending.get(p.key)
        if waiting is not None and p in waiting:
            waiting.remove(p)
            self._pending_count -= 1
            if not waiting:
                del self._pending[p.key]

    async def _request(self, node: Node, reply: PacketType, datagram: bytes, ptype: PacketType,
                       match: Callable[[Received], tuple[bool, bool]], tally: _Tally | None) -> _Pending:
        """Send ``datagram`` and wait until ``match`` says the reply is complete, or the
        reply timeout passes (then ``done`` is False, ``result`` is the last partial reply)."""
        if self._pending_count >= self.config.max_pending:
            self.stats.drops["pending_full"] += 1
            raise RequestTimeout(f"{self.config.max_pending} requests already waiting for replies")
        p = _Pending((node.id, node.ip, reply), match, tally)
        self._pending.setdefault(p.key, []).append(p)
        self._pending_count += 1
        try:
            self._send(node.udp_address, ptype, datagram)
            if tally is not None:
                tally.sent += 1
            await wait_reply(p.event, self.config.reply_timeout)
            if not p.done:
                self.stats.timeouts[reply.name.lower()] += 1
        finally:
            self._forget(p)
        return p

    async def ping(self, node: Node, *, tally: _Tally | None = None) -> Pong:
        """Ping ``node`` and return its Pong (whose token matched); a bond with it follows."""
        body = encode_body(Ping(self._our_endpoint(), Endpoint(node.ip, node.udp_port, node.tcp_port),
                                expiration_at(self._wall()), self._enr.seq))
        datagram, digest = seal(self._key, PacketType.PING, body)

        def match(r: Received) -> tuple[bool, bool]:
            ok = isinstance(r.packet, Pong) and r.packet.ping_hash == digest
            return ok, ok

        p = await self._request(node, PacketType.PONG, datagram, PacketType.PING, match, tally)
        if not p.done or p.result is None:
            raise RequestTimeout(f"no pong from {node.id.short()} at {node.ip}:{node.udp_port}")
        assert isinstance(p.result.packet, Pong)
        self._remember(node)
        return p.result.packet

    def _remember(self, node: Node) -> None:
        """Store a node that answered us, so that it seeds the table after a restart."""
        if node.id in self._remembered:
            return
        if len(self._remembered) >= REMEMBERED_CACHE:
            self._remembered.clear()
        self._remembered.add(node.id)
        current = self.table.get(node.id)
        self._db.update_node(current if current is not None and current.ip == node.ip else node)

    async def _ensure_bond(self, node: Node, tally: _Tally | None = None, *, force: bool = False) -> bool:
        """Make sure ``node`` has seen us ping recently, so that it answers our queries.
        True when it had to ping (or ``force`` made it)."""
        now = self._wall()
        if not force and now - self._db.last_ping_received(node.id, node.ip) <= self.config.bond_expiration \
                and self._db.find_fails(node.id, node.ip) <= self.config.max_find_failures:
            return False
        # Listen for its ping back before pinging, so that a fast answer is not missed.
        ev = trio.Event()
        self._ping_waiters.setdefault((node.id, node.ip), []).append(ev)
        try:
            await self.ping(node, tally=tally)
            if tally is not None:
                tally.sent += 1  # our pong to its ping back
                tally.received += 1
            if not await wait_reply(ev, self.config.reply_timeout):
                self.stats.timeouts["ping_back"] += 1
        finally:
            waiters = self._ping_waiters.get((node.id, node.ip))
            if waiters is not None and ev in waiters:
                waiters.remove(ev)
                if not waiters:
                    del self._ping_waiters[(node.id, node.ip)]
        return True

    async def find_node(self, node: Node, target: bytes, *, tally: _Tally | None = None) -> list[Node]:
        """Ask ``node`` for the nodes it knows closest to ``target`` (a 64-byte public key).
        Waits for 16 entries, a short last packet or the reply timeout; raises
        :class:`RequestTimeout` when no Neighbors packet came at all."""
        pinged = await self._ensure_bond(node, tally)
        nodes: list[Node] = []
        received = 0

        def match(r: Received) -> tuple[bool, bool]:
            nonlocal received
            if not isinstance(r.packet, Neighbors):
                return False, False
            received += len(r.packet.nodes)
            nodes.extend(self._neighbor_nodes(node.ip, r.packet.nodes))
            # Senders fill packets to MAX_NEIGHBORS before starting another, so a shorter
            # packet is the last one: no need to sit out the timeout.
            return True, received >= BUCKET_SIZE or len(r.packet.nodes) < MAX_NEIGHBORS

        for attempt in range(2):
            datagram, _ = seal(self._key, PacketType.FIND_NODE,
                               encode_body(FindNode(target, expiration_at(self._wall()))))
            p = await self._request(node, PacketType.NEIGHBORS, datagram, PacketType.FIND_NODE, match, tally)
            if p.result is not None:
                return nodes
            if pinged or attempt:
                break
            # Silence although it pinged us lately: it may have restarted and forgotten our
            # bond. Prove our endpoint again (this raises if it is gone) and ask once more.
            pinged = await self._ensure_bond(node, tally, force=True)
        raise RequestTimeout(f"no neighbors from {node.id.short()} at {node.ip}:{node.udp_port}")

    def _neighbor_nodes(self, sender: IPAddress, entries: Iterable[NeighborEntry]) -> list[Node]:
        nodes = []
        for e in entries:
            if e.ip is None or e.udp_port == 0 or not relay_allowed(sender, e.ip):
                self.stats.drops["bad_neighbor"] += 1
                continue
            if not self._allowed(e.ip):
                self.stats.drops["netrestrict"] += 1
                continue
            node = _entry_node(e)
            if node is None:
                self.stats.drops["bad_neighbor"] += 1
                continue
            nodes.append(node)  # ourselves included: the table and lookups skip it
        return nodes

    async def request_enr(self, node: Node, *, tally: _Tally | None = None) -> ENR:
        """Fetch ``node``'s current record; it must verify and belong to ``node``."""
        await self._ensure_bond(node, tally)
        datagram, digest = seal(self._key, PacketType.ENR_REQUEST,
                                encode_body(ENRRequest(expiration_at(self._wall()))))

        def match(r: Received) -> tuple[bool, bool]:
            ok = isinstance(r.packet, ENRResponse) and r.packet.request_hash == digest
            return ok, ok

        p = await self._request(node, PacketType.ENR_RESPONSE, datagram, PacketType.ENR_REQUEST, match, tally)
        if not p.done or p.result is None:
            raise RequestTimeout(f"no ENR response from {node.id.short()}")
        assert isinstance(p.result.packet, ENRResponse)
        try:
            enr = ENR.from_rlp(p.result.packet.record)
        except ENRError as exc:
            self.stats.drops["bad_enr"] += 1
            raise DiscoveryError(f"bad ENR from {node.id.short()}: {exc}") from exc
        if enr.node_id != node.id:
            self.stats.drops["bad_enr"] += 1
            raise DiscoveryError(f"ENR from {node.id.short()} is of another node {enr.node_id.short()}")
        return enr

    # -- ENR updates ---------------------------------------------------------------------

    def _check_seq(self, node_id: bytes, seq: int) -> None:
        entry = self.table.entry(node_id)
        if entry is None or node_id in self._enr_fetching:
            return
        known = entry.node.enr.seq if entry.node.enr is not None else None
        if known is not None and seq > known:
            self._enr_fetching.add(node_id)
            if not self._spawn("enr_fetch", self._fetch_enr, entry.node):
                self._enr_fetching.discard(node_id)

    async def _fetch_enr(self, node: Node) -> None:
        try:
            enr = await self.request_enr(node)
        except DiscoveryError as exc:
            logger.debug("ENR fetch from %s failed: %s", node.id.short(), exc)
            return
        finally:
            self._enr_fetching.discard(node.id)
        self._store_record(node.with_enr(enr))

    def _store_record(self, node: Node) -> None:
        if self.table.update_node(node):
            current = self.table.get(node.id)
            if current is not None:
                self._db.update_node(current)

    # -- background work, events ---------------------------------------------------------

    def _spawn(self, what: str, fn: Callable[..., Awaitable[None]], *args: Any) -> bool:
        if self._background >= self.config.max_background or self._closed:
            self.stats.drops[f"{what}_skipped"] += 1
            return False
        self._background += 1

        async def run() -> None:
            try:
                await fn(*args)
            finally:
                self._background -= 1

        self._nursery.start_soon(run)
        return True

    def _flush_events(self) -> None:
        events = self.table.pop_events()
        if not events:
            return
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

    # -- lookups -------------------------------------------------------------------------

    def _target_key(self, target: NodeID | PublicKey | Node | bytes | None) -> tuple[bytes, bytes | None]:
        """(target node ID, 64-byte key to put on the wire or None when unknown)."""
        if target is None:
            key = self._rng.randbytes(64)
            return keccak256(key), key
        if isinstance(target, Node):
            return target.id, target.pubkey.to_bytes()
        if isinstance(target, PublicKey):
            return keccak256(target.to_bytes()), target.to_bytes()
        if len(target) == 64:
            return keccak256(bytes(target)), bytes(target)
        if len(target) != 32:
            raise LookupTargetError(f"lookup target must be a node ID, a public key or a Node, not {len(target)} bytes")
        if target == self.local_id:
            return target, self._key.public_key.to_bytes()
        known = self.table.get(target) or self._db.node(target)
        return bytes(target), known.pubkey.to_bytes() if known is not None else None

    async def lookup(self, target: NodeID | PublicKey | Node | bytes | None = None) -> list[Node]:
        """The (up to) 16 nodes closest to ``target`` that an iterative lookup finds; a
        random target when None. See :meth:`lookup_detailed`."""
        return list((await self.lookup_detailed(target)).nodes)

    async def lookup_detailed(self, target: NodeID | PublicKey | Node | bytes | None = None) -> LookupResult:
        """Iterative lookup with ``alpha`` concurrent FindNode queries.

        discv4 queries by public key (the remote measures distance to its keccak256). For a
        bare node ID whose key is unknown (in neither the table nor the node database), the
        queries carry a stand-in: 64 bytes whose keccak256 shares its first 16 bits with the
        target, found by trying (about 65,000 hashes). Remote nodes then answer with the
        target's neighbourhood (in a network of fewer than ~65,000 x 16 nodes the target is
        among the 16 closest to the stand-in); results are still ranked by the real ID.
        """
        target_id, wire_key = self._target_key(target)
        if wire_key is None:
            wire_key = await self._stand_in_key(target_id)
        async with self._lookup_limiter():
            return await self._lookup(target_id, wire_key)

    def _lookup_limiter(self) -> trio.CapacityLimiter:
        return self.config.lookup_limiter or shared_lookup_limiter()

    async def _lookup(self, target_id: bytes, wire_key: bytes) -> LookupResult:
        t0 = trio.current_time()
        tally = _Tally()
        lk = Lookup(target_id, self.local_id, alpha=self.config.alpha, k=LOOKUP_RESULTS)
        lk.add_nodes(self.table.closest(target_id, LOOKUP_RESULTS))
        if lk.finished and not self._closed:
            # An empty table: seed it (bootnodes, node database) and try once more.
            self._seed()
            lk.add_nodes(self.table.closest(target_id, LOOKUP_RESULTS))
        send, recv = trio.open_memory_channel[tuple[Node, list[Node] | None]](self.config.alpha + 1)

        async def query(node: Node, key: bytes) -> None:
            found: list[Node] | None
            try:
                found = await self.find_node(node, key, tally=tally)
            except RequestTimeout:
                found = None
            self._record_query(node, found)
            await send.send((node, found))

        async with trio.open_nursery() as nursery:
            while True:
                for node in lk.next_queries():
                    nursery.start_soon(query, node, wire_key)
                if lk.finished:
                    break
                node, found = await recv.receive()
                if found is None:
                    lk.on_failure(node)
                else:
                    lk.on_reply(node, found)
        self.stats.lookups += 1
        result = LookupResult(target_id, tuple(lk.result()), lk.queries, lk.failures, lk.rounds,
                              tally.sent, tally.received, trio.current_time() - t0)
        self.last_lookup = result
        return result

    async def _stand_in_key(self, target_id: bytes) -> bytes:
        base = self._rng.randbytes(60)
        prefix = target_id[:GRIND_PREFIX_BYTES]
        for start in range(0, GRIND_MAX_TRIES, GRIND_CHUNK):
            for counter in range(start, start + GRIND_CHUNK):
                key = base + counter.to_bytes(4, "big")
                if keccak256(key)[:GRIND_PREFIX_BYTES] == prefix:
                    return key
            await trio.lowlevel.checkpoint()
        return base + b"\x00" * 4  # astronomically unlikely; a random target still makes progress

    def _record_query(self, node: Node, found: list[Node] | None) -> None:
        """Findnode bookkeeping as go-ethereum: consecutive failures (no nodes) counted in
        the node database, the node dropped at the limit; answers feed the table."""
        fails = self._db.find_fails(node.id, node.ip)
        if not found:
            fails += 1
            self._db.update_find_fails(node.id, node.ip, fails)
            if fails >= self.config.max_find_failures and self.table.remove(node.id) is not None:
                logger.debug("%s: dropped %s after %d failed findnode requests", self.local_id.short(),
                             node.id.short(), fails)
        else:
            if fails:
                self._db.update_find_fails(node.id, node.ip, 0)
            # It answered: proof of liveness.
            self.table.add_verified(node)
            for n in found:
                self.table.add_seen(n)
        self._flush_events()

    async def random_nodes(self) -> AsyncIterator[Node]:
        """Nodes for a dialer, endlessly: the table's entries not yielded lately (the table
        keeps growing from refreshes and revalidation), and a random lookup only when the
        table has nothing new, so that a dialer in a fresh network mostly reads the table
        instead of adding lookups of its own. A node is offered again once
        ``RECENT_RANDOM_WINDOW`` has passed (its dial may have failed only because it was
        busy then); when nothing is new the pause between lookups doubles up to 30 s.

        Nothing is offered before the first self lookup is over (go-ethereum's iterators
        wait for the table's first refresh too): the table holds only seeds until then."""
        await self._bootstrapped.wait()
        recent: OrderedDict[bytes, float] = OrderedDict()  # id -> when yielded, oldest first
        pause = self.config.reply_timeout
        while True:
            now = trio.current_time()
            while recent and (len(recent) > RECENT_RANDOM_NODES
                              or next(iter(recent.values())) <= now - RECENT_RANDOM_WINDOW):
                recent.popitem(last=False)
            fresh = [n for n in self.table.random_nodes(len(self.table)) if n.id not in recent]
            if not fresh and self._refreshing is not None:
                # A refresh is filling the table: look at the table again in a moment rather
                # than add a lookup of our own.
                with trio.move_on_after(REFRESH_WAIT):
                    await self._refreshing.wait()
                continue
            if not fresh:
                fresh = [n for n in await self.lookup() if n.id not in recent]
            if not fresh:
                await trio.sleep(pause)
                pause = min(pause * 2, RANDOM_NODES_MAX_BACKOFF)
                continue
            pause = self.config.reply_timeout
            for node in fresh:
                if node.id in recent:
                    continue
                recent[node.id] = trio.current_time()
                yield node

    # -- maintenance ---------------------------------------------------------------------

    def _seed(self) -> None:
        """Put the bootnodes and fresh nodes from the node database into the table."""
        seeds = list(self._db.query_seeds(self.config.seed_count, self.config.seed_max_age))
        for node in seeds + list(self.bootnodes):
            if node.id != self.local_id:
                self.table.add_seen(node)
        self._flush_events()

    async def refresh(self) -> None:
        """Seed the table, look ourselves up, then look up random targets (go-ethereum's
        doRefresh). Concurrent calls wait for the one running. A random lookup is skipped
        (counted in ``stats.drops``) while the process's lookup slots have a backlog: the
        self lookup always runs, since it is what fills a new table."""
        if self._refreshing is not None:
            await self._refreshing.wait()
            return
        self._refreshing = trio.Event()
        try:
            self._seed()
            try:
                await self.lookup_detailed(self.local_id)
            finally:
                self._bootstrapped.set()
            for _ in range(self.config.refresh_random_lookups):
                # Spread out: nodes started together would otherwise flood each other at once.
                await trio.sleep(self._rng.uniform(0, self.config.random_lookup_spread))
                if self._lookup_limiter().statistics().tasks_waiting >= REFRESH_LOOKUP_BACKLOG:
                    self.stats.drops["refresh_lookup_skipped"] += 1
                    continue
                await self.lookup_detailed(None)
        finally:
            self._refreshing.set()
            self._refreshing = None

    async def _refresh_loop(self) -> None:
        cfg = self.config
        if cfg.refresh_on_start:
            await self.refresh()
        backoff = cfg.small_table_refresh
        while True:
            if backoff is not None and len(self.table) < BUCKET_SIZE:
                wait = min(backoff, cfg.refresh_interval)
                backoff = min(backoff * 2, SMALL_TABLE_REFRESH_MAX, cfg.refresh_interval)
            else:
                wait = cfg.refresh_interval
                backoff = cfg.small_table_refresh
            # Jitter so that nodes started together do not refresh in lock step.
            await trio.sleep(wait * self._rng.uniform(0.9, 1.1))
            await self.refresh()

    async def _revalidate_loop(self) -> None:
        empty_since: float | None = None
        while True:
            await trio.sleep(self._rng.uniform(0, self.config.revalidate_interval))
            if len(self.table) == 0 and self.bootnodes:
                # Everyone we knew failed: start over from the seeds rather than wait for
                # the next refresh, at most once per reseed interval.
                now = trio.current_time()
                if empty_since is None:
                    empty_since = now
                elif now - empty_since >= self.config.reseed_interval:
                    empty_since = now
                    self._nursery.start_soon(self.refresh)
                continue
            empty_since = None
            await self.revalidate_once()

    async def revalidate_once(self) -> Node | None:
        """Ping the least recently checked node of a random bucket: an answer moves it to the
        front (and fetches its record if it advertises a newer one), silence replaces it."""
        node = self.table.node_to_revalidate()
        if node is None:
            return None
        try:
            pong = await self.ping(node)
        except RequestTimeout:
            self.table.revalidated(node.id, False)
            self._flush_events()
            return node
        self.table.revalidated(node.id, True)
        self._flush_events()
        current = self.table.get(node.id)
        known = current.enr.seq if current is not None and current.enr is not None else 0
        if current is not None and pong.enr_seq is not None and pong.enr_seq > known \
                and node.id not in self._enr_fetching:
            self._enr_fetching.add(node.id)
            await self._fetch_enr(current)
        return node

    def _close(self) -> None:
        self._closed = True
        for node_id in self._db_held:  # the database may outlive us (its owner's, or reopened)
            self._db.unprotect(node_id)
        self._db_held.clear()
        for ch in list(self._subscribers):
            ch.close()
        self._subscribers.clear()


def _make_socket(listen: tuple[str, int]) -> socket.socket:
    host, port = listen
    family = socket.AF_INET6 if ipaddress.ip_address(host.split("%", 1)[0]).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            except OSError:
                pass  # the kernel's cap applies; the default size still works
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _open_v5(stack: AsyncExitStack, disc: Discovery, cfg: DiscoveryConfig) -> V5Protocol:
    """The v5 engine on ``disc``'s socket: it reads what v4 hands over, sends through the same
    socket, shares the table (its changes reach our subscribers) and signs with our record."""
    from p2p.discover.v5 import V5Config, open_v5

    sock = disc._sock

    async def send(data: bytes, addr: tuple[str, int]) -> None:
        sock.sendto(data, addr)  # non-blocking: a full buffer raises, and the engine counts it

    host, port = sock.getsockname()[:2]
    inbox = disc._v5_inbox = InboxTransport((host, port), send, queue_size=cfg.v5_queue)
    return await stack.enter_async_context(open_v5(
        inbox, disc.private_key, lambda: disc.enr, disc.table,
        bootnodes=[n.enr for n in disc.bootnodes if n.enr is not None],
        config=cfg.v5_config or V5Config(rng=cfg.rng), on_table_change=disc._flush_events))


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
) -> AsyncIterator[Discovery]:
    """Run a discovery v4 node on a UDP socket bound to ``listen`` (port 0 picks one).

    ``nodedb=None`` keeps the node database in memory. ``tcp_port`` is the RLPx port put in
    our record and Ping ``from`` (0 when None: a discovery-only node). ``advertised_ip``
    replaces the listen address in our record and packets.
    """
    cfg = config or DiscoveryConfig()
    adv = ipaddress.ip_address(advertised_ip) if isinstance(advertised_ip, str) else advertised_ip
    async with AsyncExitStack() as stack:
        db = nodedb
        if db is None:
            db = stack.enter_context(NodeDB.open(None, clock=cfg.wall_clock))
        try:
            await stack.enter_async_context(db.serving())
        except RuntimeError:
            pass  # its owner already serves it (and runs the expirer)
        sock = _make_socket(listen)
        stack.callback(sock.close)
        stack.callback(trio.lowlevel.notify_closing, sock)
        nursery = await stack.enter_async_context(trio.open_nursery())
        disc = Discovery(private_key, sock, nodedb=db, config=cfg, bootnodes=tuple(bootnodes), tcp_port=tcp_port,
                         advertised_ip=adv, nursery=nursery)
        await nursery.start(disc._receive_loop)
        disc._seed()
        if not cfg.refresh_on_start:
            disc._bootstrapped.set()
        nursery.start_soon(disc._refresh_loop)
        if cfg.revalidate:
            nursery.start_soon(disc._revalidate_loop)
        if cfg.v5:
            disc.v5 = await _open_v5(stack, disc, cfg)
        logger.info("discovery listening on %s:%d as %s", *sock.getsockname()[:2], disc.local_id.short())
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
]
