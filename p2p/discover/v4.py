"""The discovery v4 protocol on a datagram transport: handlers, bonding, requests, ENR fetches.

Datagrams are read and answered inline by one task (no task per packet): Ping gets its Pong,
FindNode its Neighbors and ENRRequest its ENRResponse straight from the receive loop, and
replies to our own requests wake the task that waits for them (:mod:`p2p.discover.reply`).
Only work that must wait for the network (the ping back to an unbonded pinger, fetching a
newer ENR) runs in a background task, and at most ``max_background`` of those run at once:
past that the work is dropped and counted, never queued without bound.

Endpoint proof (discv4.md, go-ethereum): FindNode and ENRRequest are answered only for a
(node ID, IP) that answered our Ping within the bond expiration, so a spoofed source address
cannot make us send Neighbors to a victim. Before we query a node we make sure that it has
seen a Ping from us recently, pinging it and giving it time to ping us back if not.

Wall-clock time (``config.wall_clock``) stamps packets and bonds; trio's clock drives reply
deadlines and timers, so tests can run them on ``trio.testing.MockClock``. Datagrams that are
not v4 (too small, or a bad hash: every v5 packet is one of these) go to ``other``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import trio

from p2p.crypto import InvalidKey, PrivateKey, PublicKey
from p2p.crypto.keccak import keccak256
from p2p.discover.errors import BadHash, DecodeError, DiscoveryError, LookupTargetError, PacketTooSmall, RequestTimeout
from p2p.discover.lookup import LOOKUP_RESULTS, Lookup, LookupResult, run_lookup
from p2p.discover.netutil import relay_allowed
from p2p.discover.reply import Pending, PendingFull, PendingReplies, Settle, Tally, wait_reply
from p2p.discover.table import BUCKET_SIZE, V4, Table
from p2p.discover.transport import Address, DatagramTransport, receive_each
from p2p.discover.wire import (
    MAX_NEIGHBORS,
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

if TYPE_CHECKING:
    from p2p.discover.service import DiscoveryConfig

logger = logging.getLogger(__name__)

IP_CACHE_SIZE = 4096  # parsed source addresses kept; cleared when full
NEIGHBOR_CACHE_SIZE = 8192  # parsed Neighbors entries kept per process (~1 KiB each), least recent dropped
GRIND_PREFIX_BYTES = 2  # a stand-in lookup key shares 16 bits with the target ID: 65k hashes, ~60 ms
GRIND_CHUNK = 8192  # hashes between checkpoints while grinding, so other tasks keep running
GRIND_MAX_TRIES = 1 << 22  # about 60 times the expected work: a bound, not a limit hit in practice
# A first Neighbors packet shorter than MAX_NEIGHBORS is the whole answer unless it holds at most
# this many nodes: then it may be the tail of a 16-node answer (12 + 4) that overtook its first
# packet. UDP may reorder; so does a network whose delay varies per datagram.
REORDERED_TAIL_MAX = BUCKET_SIZE - MAX_NEIGHBORS
# Such a packet is taken as the whole answer after this long without its head. The two packets
# leave back to back, so reordering puts them microseconds apart on a path and up to the spread
# of its delay in a simulated network (90 ms for uniform 10-100 ms); go-ethereum waits out the
# whole reply timeout (500 ms) for every answer short of 16, which in a young network of small
# tables holds a lookup slot for each.
REORDER_GRACE = 0.1
REMEMBERED_CACHE = 4096  # IDs already written to the node database this session; cleared when full

OtherDatagram = Callable[[bytes, Address, IPAddress], None]  # what v4 cannot decode goes here


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


class _PingInFlight:
    """A Ping awaiting its Pong, which later callers for the same node share."""

    __slots__ = ("done", "pong", "timed_out")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.pong: Pong | None = None
        self.timed_out = False


class DiscoveryStats:
    """Counters for metrics: v4 packets in and out by type, drops by reason, lookups, table size."""

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
        self.pings_shared = 0  # pings not sent because one to the same node awaited its pong

    @property
    def table_size(self) -> int:
        return len(self._table)

    def snapshot(self) -> dict[str, Any]:
        return {"packets_in": dict(self.packets_in), "packets_out": dict(self.packets_out),
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "drops": dict(self.drops),
                "lookups": self.lookups, "timeouts": dict(self.timeouts), "table_size": self.table_size,
                "events_dropped": self.events_dropped, "pings_shared": self.pings_shared}


V4Key = tuple[bytes, IPAddress, int]  # (sender ID, sender IP, reply packet type)


class V4Protocol:
    """The v4 side of a discovery node; made and run by :func:`p2p.discover.open_discovery`."""

    def __init__(self, key: PrivateKey, transport: DatagramTransport, *, table: Table, nodedb: NodeDB,
                 config: DiscoveryConfig, stats: DiscoveryStats, rng: random.Random, nursery: trio.Nursery,
                 record: Callable[[], ENR], endpoint: Callable[[], Endpoint],
                 on_table_change: Callable[[], None], other: OtherDatagram | None = None) -> None:
        self._key = key
        self._recover = config.identity.recover
        self._transport = transport
        self.table = table
        self._db = nodedb
        self.config = config
        self.stats = stats
        self._rng = rng
        self._nursery = nursery
        self._record = record
        self._endpoint = endpoint
        self._on_table_change = on_table_change
        self.other = other
        self._wall = config.wall_clock
        self.local_id = table.local_id
        self._pending: PendingReplies[V4Key, Received] = PendingReplies(config.max_pending)
        self._ping_waiters: dict[tuple[bytes, IPAddress], list[trio.Event]] = {}
        # One Ping at a time per node and address; as many entries as Pings await Pongs, so
        # bounded by max_pending like them.
        self._pings_in_flight: dict[tuple[bytes, Address], _PingInFlight] = {}
        self.background = 0  # ping-backs and ENR fetches running now
        self._enr_fetching: set[bytes] = set()
        self._remembered: set[bytes] = set()
        self._ip_cache: dict[str, IPAddress] = {}
        self._expirer_started = False
        self.closed = False

    @property
    def pending(self) -> int:
        """Requests waiting for replies now (at most ``config.max_pending``)."""
        return len(self._pending)

    # -- sending -------------------------------------------------------------------------

    def _send(self, addr: Address, ptype: PacketType, datagram: bytes) -> None:
        try:
            self._transport.send_nowait(datagram, addr)
        except BlockingIOError:
            self.stats.drops["send_buffer_full"] += 1
            return
        except OSError as exc:
            self.stats.drops["send_error"] += 1
            logger.debug("send %s to %s failed: %s", ptype.name, addr, exc)
            return
        self.stats.packets_out[ptype.name.lower()] += 1
        self.stats.bytes_out += len(datagram)

    def _send_packet(self, addr: Address, ptype: PacketType, body: bytes) -> bytes:
        datagram, digest = seal(self._key, ptype, body)
        self._send(addr, ptype, datagram)
        return digest

    # -- receiving -----------------------------------------------------------------------

    async def receive_loop(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await receive_each(self._transport, self.handle_datagram, self._socket_error)

    def _socket_error(self, exc: OSError) -> None:
        self.stats.drops["socket_error"] += 1
        logger.debug("receive error: %s", exc)

    def _source_ip(self, host: str) -> IPAddress:
        ip = self._ip_cache.get(host)
        if ip is None:
            if len(self._ip_cache) >= IP_CACHE_SIZE:
                self._ip_cache.clear()
            ip = self._ip_cache[host] = ipaddress.ip_address(host.split("%", 1)[0])
        return ip

    def drop(self, reason: str, addr: Address, detail: object) -> None:
        self.stats.drops[reason] += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: dropped packet from %s:%s (%s): %s", self.local_id.short(), addr[0], addr[1],
                         reason, detail)

    def allowed(self, ip: IPAddress) -> bool:
        nets = self.config.netrestrict
        return nets is None or any(ip in net for net in nets)

    def handle_datagram(self, data: bytes, addr: Address) -> None:
        self.stats.bytes_in += len(data)
        try:
            r = decode_packet(data, now=self._wall(), recover=self._recover)
        except (PacketTooSmall, BadHash) as exc:
            if self.other is None:
                self.drop(exc.reason, addr, exc)
            else:
                self.other(data, addr, self._source_ip(addr[0]))
            return
        except DecodeError as exc:
            self.drop(exc.reason, addr, exc)
            return
        packet = r.packet
        node_id = NodeID.from_digest(keccak256(r.sender.to_bytes()))
        if node_id == self.local_id:
            self.drop("from_self", addr, "packet signed with our own key")
            return
        ip = self._source_ip(addr[0])
        if not self.allowed(ip):
            self.drop("netrestrict", addr, "source outside --netrestrict")
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

    def bonded(self, node_id: bytes, ip: IPAddress) -> bool:
        """Whether (``node_id``, ``ip``) answered our Ping within the bond expiration."""
        return self._wall() - self._db.last_pong_received(node_id, ip) < self.config.bond_expiration

    def _on_ping(self, r: Received, ping: Ping, node_id: NodeID, ip: IPAddress, addr: Address) -> None:
        tcp = ping.from_endpoint.tcp_port
        now = self._wall()
        pong = Pong(Endpoint(ip, addr[1], tcp), r.hash, expiration_at(now), self._record().seq)
        self._send_packet(addr, PacketType.PONG, encode_body(pong))
        entry = self.table.entry(node_id)
        if entry is not None and entry.node.ip == ip and entry.node.udp_port == addr[1] \
                and entry.node.tcp_port == tcp:
            node = entry.node  # the common case of a known peer: no new Node to build
        else:
            node = Node(r.sender, ip, addr[1], tcp, entry.node.enr if entry is not None else None)
        if now - self._db.last_pong_received(node_id, ip) < self.config.bond_expiration:
            self.table.add_verified(node, V4)
            self._on_table_change()
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
        self.table.add_verified(node, V4)
        self._on_table_change()

    def _on_find_node(self, req: FindNode, node_id: NodeID, ip: IPAddress, addr: Address) -> None:
        if not self.bonded(node_id, ip):
            self.drop("unknown_node", addr, "FindNode from a sender without a bond")
            return
        target = keccak256(req.target)
        # only nodes known through v4: in a table shared with v5, the others may not speak it
        entries = [
            NeighborEntry(n.ip, n.udp_port, n.tcp_port, n.pubkey.to_bytes())
            for n in self.table.closest(target, BUCKET_SIZE, prefer_live=True)
            if n.udp_port != 0 and relay_allowed(ip, n.ip) and V4 in self.table.protocols(n.id)
        ]
        for datagram in encode_neighbors(self._key, entries, expiration_at(self._wall())):
            self._send(addr, PacketType.NEIGHBORS, datagram)

    def _on_enr_request(self, r: Received, node_id: NodeID, ip: IPAddress, addr: Address) -> None:
        if not self.bonded(node_id, ip):
            self.drop("unknown_node", addr, "ENRRequest from a sender without a bond")
            return
        self._send_packet(addr, PacketType.ENR_RESPONSE, encode_body(ENRResponse(r.hash, self._record().to_rlp())))

    def _on_reply(self, r: Received, node_id: NodeID, ip: IPAddress, addr: Address) -> None:
        if not self._pending.deliver((node_id, ip, r.type), r):
            self.drop("unsolicited_reply", addr, f"{r.type.name} nobody asked for")
            return
        if isinstance(r.packet, Pong):
            self._db.update_last_pong_received(node_id, ip, self._wall())
            if not self._expirer_started:
                self._expirer_started = True
                self._db.mark_bonded()
            if r.packet.enr_seq is not None:
                self._check_seq(node_id, r.packet.enr_seq)

    # -- requests ------------------------------------------------------------------------

    async def _request(self, node: Node, reply: PacketType, datagram: bytes, ptype: PacketType,
                       match: Callable[[Received], tuple[bool, bool | Settle]],
                       tally: Tally | None) -> Pending[V4Key, Received]:
        """Send ``datagram`` and wait until ``match`` says the reply is complete, or the
        reply timeout passes (then ``done`` is False, ``result`` is the last partial reply)."""
        try:
            p = await self._pending.request((node.id, node.ip, reply), node, match,
                                            lambda: self._send(node.udp_address, ptype, datagram),
                                            self.config.reply_timeout, tally)
        except PendingFull:
            self.stats.drops["pending_full"] += 1
            raise
        if not p.done:
            self.stats.timeouts[reply.name.lower()] += 1
        return p

    async def ping(self, node: Node, *, tally: Tally | None = None) -> Pong:
        """Ping ``node`` and return its Pong (whose token matched); a bond with it follows.
        A caller that finds a Ping to the same node and address awaiting its Pong shares that
        Pong (or its timeout) instead of sending another: lookups, ping-backs and revalidation
        often want the same node at once, and a second Ping within the same second would even
        be the same datagram (deterministic signature), whose second Pong nobody awaits."""
        key = (node.id, node.udp_address)
        while (flight := self._pings_in_flight.get(key)) is not None:
            self.stats.pings_shared += 1
            await flight.done.wait()
            if flight.pong is not None:
                return flight.pong
            if flight.timed_out:
                raise RequestTimeout(f"no pong from {node.id.short()} at {node.ip}:{node.udp_port}")
            # Its caller was cancelled before an answer: that says nothing of the node, ask again.
        flight = self._pings_in_flight[key] = _PingInFlight()
        try:
            flight.pong = await self._ping(node, tally)
            return flight.pong
        except RequestTimeout:
            flight.timed_out = True
            raise
        finally:
            del self._pings_in_flight[key]
            flight.done.set()

    async def _ping(self, node: Node, tally: Tally | None) -> Pong:
        ep = self._endpoint()
        body = encode_body(Ping(ep, Endpoint(node.ip, node.udp_port, node.tcp_port),
                                expiration_at(self._wall()), self._record().seq))
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

    async def _ensure_bond(self, node: Node, tally: Tally | None = None, *, force: bool = False) -> bool:
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

    async def find_node(self, node: Node, target: bytes, *, tally: Tally | None = None) -> list[Node]:
        """Ask ``node`` for the nodes it knows closest to ``target`` (a 64-byte public key).
        Waits for 16 entries, a short last packet or the reply timeout; raises
        :class:`RequestTimeout` when no Neighbors packet came at all."""
        pinged = await self._ensure_bond(node, tally)
        nodes: list[Node] = []
        received = 0
        full_packets = 0
        last_seen = False

        def match(r: Received) -> tuple[bool, bool | Settle]:
            nonlocal received, full_packets, last_seen
            if not isinstance(r.packet, Neighbors):
                return False, False
            count = len(r.packet.nodes)
            received += count
            nodes.extend(self._neighbor_nodes(node.ip, r.packet.nodes))
            if count >= MAX_NEIGHBORS:
                full_packets += 1
            else:
                last_seen = True
            # Senders fill packets to MAX_NEIGHBORS before starting another, so a shorter packet
            # is the last one: no need to sit out the timeout. Unless it came first and could be
            # the tail of a full answer whose first packet the network delayed: ending then
            # would drop that packet's nodes as unsolicited.
            if received >= BUCKET_SIZE or (last_seen and full_packets > 0):
                return True, True
            if last_seen:
                may_be_tail = 0 < received <= REORDERED_TAIL_MAX
                return True, Settle(REORDER_GRACE) if may_be_tail else True
            return True, False

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
            if not self.allowed(e.ip):
                self.stats.drops["netrestrict"] += 1
                continue
            node = _entry_node(e)
            if node is None:
                self.stats.drops["bad_neighbor"] += 1
                continue
            nodes.append(node)  # ourselves included: the table and lookups skip it
        return nodes

    async def request_enr(self, node: Node, *, tally: Tally | None = None) -> ENR:
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
            enr = self.config.identity.decode_record(p.result.packet.record)
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
        if self.table.update_node(node.with_enr(enr)):
            current = self.table.get(node.id)
            if current is not None:
                self._db.update_node(current)

    async def revalidate(self, node: Node) -> None:
        """Ping a table entry for revalidation (raises :class:`RequestTimeout` if silent) and
        fetch its record when the Pong advertises a newer one than we hold."""
        pong = await self.ping(node)
        current = self.table.get(node.id)
        known = current.enr.seq if current is not None and current.enr is not None else 0
        if current is not None and pong.enr_seq is not None and pong.enr_seq > known \
                and node.id not in self._enr_fetching:
            self._enr_fetching.add(node.id)
            await self._fetch_enr(current)

    def _spawn(self, what: str, fn: Callable[..., Awaitable[None]], *args: Any) -> bool:
        if self.background >= self.config.max_background or self.closed:
            self.stats.drops[f"{what}_skipped"] += 1
            return False
        self.background += 1

        async def run() -> None:
            try:
                await fn(*args)
            finally:
                self.background -= 1

        self._nursery.start_soon(run)
        return True

    # -- lookups -------------------------------------------------------------------------

    def target_key(self, target: NodeID | PublicKey | Node | bytes | None) -> tuple[bytes, bytes | None]:
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

    async def stand_in_key(self, target_id: bytes) -> bytes:
        """64 bytes whose keccak256 shares its first 16 bits with ``target_id``: a FindNode
        target for a node ID whose key we do not know."""
        base = self._rng.randbytes(60)
        prefix = target_id[:GRIND_PREFIX_BYTES]
        for start in range(0, GRIND_MAX_TRIES, GRIND_CHUNK):
            for counter in range(start, start + GRIND_CHUNK):
                key = base + counter.to_bytes(4, "big")
                if keccak256(key)[:GRIND_PREFIX_BYTES] == prefix:
                    return key
            await trio.lowlevel.checkpoint()
        return base + b"\x00" * 4  # astronomically unlikely; a random target still makes progress

    async def lookup(self, target_id: bytes, wire_key: bytes, reseed: Callable[[], None]) -> LookupResult:
        """Iterative lookup of ``target_id``, FindNode carrying ``wire_key``; ``reseed`` fills
        an empty table first."""
        t0 = trio.current_time()
        tally = Tally()
        lk = Lookup(target_id, self.local_id, alpha=self.config.alpha, k=LOOKUP_RESULTS)
        # only nodes known through v4: a v5-only node would fail our FindNode and be dropped
        lk.add_nodes(n for n in self.table.closest(target_id, LOOKUP_RESULTS) if V4 in self.table.protocols(n.id))
        if lk.finished and not self.closed:
            reseed()
            lk.add_nodes(n for n in self.table.closest(target_id, LOOKUP_RESULTS)
                         if V4 in self.table.protocols(n.id))

        async def query(node: Node) -> list[Node] | None:
            found: list[Node] | None
            try:
                found = await self.find_node(node, wire_key, tally=tally)
            except RequestTimeout:
                found = None
            self._record_query(node, found)
            return found

        await run_lookup(lk, query)
        return LookupResult(target_id, tuple(lk.result()), lk.queries, lk.failures, lk.rounds,
                            tally.sent, tally.received, trio.current_time() - t0)

    def _record_query(self, node: Node, found: list[Node] | None) -> None:
        """Findnode bookkeeping as go-ethereum: consecutive failures (no nodes) counted in
        the node database, the node dropped at the limit; answers feed the table."""
        fails = self._db.find_fails(node.id, node.ip)
        if not found:
            fails += 1
            self._db.update_find_fails(node.id, node.ip, fails)
            if fails >= self.config.max_find_failures and self.table.remove_protocol(node.id, V4) is not None:
                logger.debug("%s: dropped %s after %d failed findnode requests", self.local_id.short(),
                             node.id.short(), fails)
        else:
            if fails:
                self._db.update_find_fails(node.id, node.ip, 0)
            # It answered: proof of liveness.
            self.table.add_verified(node, V4)
            for n in found:
                self.table.add_seen(n, V4)
        self._on_table_change()


__all__ = ["DiscoveryStats", "V4Protocol"]
