"""The discovery v5 engine: the wire codec (:mod:`p2p.discover.v5wire`) driven over a
datagram transport, with request/response matching, the Kademlia table and lookups.

One task reads the transport and handles each datagram inline (as the v4 service does; on a
shared socket that task is the v4 reader, see :meth:`V5Protocol.handle_datagram_nowait`):
requests are answered from that task with non-blocking sends (a full send buffer drops the
answer, counted), replies wake the task waiting for them, undecryptable packets get their
WHOAREYOU and WHOAREYOUs their handshake. Only TALKREQ handlers, which are
the application's code, run in background tasks, at most ``max_talk_tasks`` at once.

A request to a node with which we have no session goes out as a random packet; the node
answers WHOAREYOU, and our handshake packet carries the request itself, so the request is
"re-sent" by the handshake. While a handshake with a node is under way, further requests to it
wait for it (one handshake per node at a time, as go-ethereum): two concurrent handshakes
would overwrite each other's challenge on the remote side and both fail.

Everything a remote can make us spend is bounded (see the constants); every datagram we drop
is counted in :attr:`V5Protocol.stats` by reason. Reasons are prefixed ``v5_`` so that they can
be exported beside the v4 service's.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import random
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Union

import trio

from p2p.crypto import PrivateKey, PublicKey
from p2p.discover.errors import DiscoveryError, RequestTimeout
from p2p.discover.lookup import ALPHA, LOOKUP_RESULTS, Lookup, LookupResult, run_lookup
from p2p.discover.netutil import relay_allowed
from p2p.discover.reply import PendingFull, PendingReplies, Tally
from p2p.discover.table import V5, Table, TableConfig, no_exemption
from p2p.discover.transport import Address, DatagramTransport, receive_each
from p2p.discover.v5wire import (
    Codec,
    FindNode,
    HandshakeCompleted,
    Message,
    MessageReceived,
    Nodes,
    Ping,
    Pong,
    TalkReq,
    TalkResp,
    Undecryptable,
    V5DecodeError,
    WhoareyouReceived,
)
from p2p.discover.v5wire.codec import MAX_CHALLENGES, SESSION_CACHE_SIZE
from p2p.discover.v5wire.messages import MAX_DISTANCE, encode_message, nodes_message_size
from p2p.discover.v5wire.packet import MAX_PACKET_SIZE, MESSAGE_AUTHDATA_SIZE, STATIC_PACKET_SIZE
from p2p.enode import ENR, MAX_ENR_SIZE, ENRError, IPAddress, Node, NodeID, log_distance
from p2p.enode.identity import V4_IDENTITY, IdentityScheme

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT: Final = 1.0  # seconds for a whole request, handshake included (@chainsafe/discv5 waits 1 s)
REQUEST_ID_SIZE: Final = 8  # random request IDs of the largest size discv5 allows
MAX_PENDING: Final = 1024  # requests awaiting replies at once; more fail at once instead of piling up
FINDNODE_RESULT_LIMIT: Final = 16  # records per FINDNODE, sent or accepted (go-ethereum findnodeResultLimit)
MAX_NODES_RESPONSES: Final = 5  # NODES packets accepted per FINDNODE: 16 records of 300 bytes fit in 5
MAX_FINDNODE_DISTANCES: Final = 5  # distances answered per FINDNODE; lookups ask 3 (go-ethereum, @chainsafe)
LOOKUP_DISTANCES: Final = 3  # distances asked per lookup query (go-ethereum lookupRequestLimit)
PACKET_RATE: Final = 100.0  # datagrams per second handled per source IP: a lookup burst is ~10
PACKET_BURST: Final = 200.0  # ... with this many at once, for a peer that runs several lookups
RATE_LIMIT_IPS: Final = 4096  # source IPs whose budget is tracked; the least recent is forgotten
MAX_TALK_TASKS: Final = 64  # TALKREQ handlers running at once; past that requests are dropped
TALK_TIMEOUT: Final = 1.0  # seconds a TALKREQ handler may take: the requester stops waiting then
MAX_BACKGROUND: Final = 16  # record fetches (after a PONG with a newer seq) running at once
GCM_TAG_SIZE: Final = 16
# the largest message plaintext that fits a 1280-byte packet within a session
MAX_MESSAGE_SIZE: Final = MAX_PACKET_SIZE - STATIC_PACKET_SIZE - MESSAGE_AUTHDATA_SIZE - GCM_TAG_SIZE

# a request may ride in a handshake packet, whose authdata adds sizes, signature, ephemeral
# key and possibly our record to the message packet's
HANDSHAKE_EXTRA: Final = 2 + 64 + 33 + MAX_ENR_SIZE
MAX_REQUEST_SIZE: Final = MAX_MESSAGE_SIZE - HANDSHAKE_EXTRA

TalkHandler = Callable[[NodeID, Address, bytes], Awaitable[bytes]]
LocalRecord = Union[ENR, Callable[[], ENR]]
Contact = Callable[[Node, bool], None]  # (node that answered a request of ours, was it a PING)


@dataclass(frozen=True, slots=True)
class V5Config:
    request_timeout: float = REQUEST_TIMEOUT
    max_pending: int = MAX_PENDING
    findnode_result_limit: int = FINDNODE_RESULT_LIMIT
    max_nodes_responses: int = MAX_NODES_RESPONSES
    max_findnode_distances: int = MAX_FINDNODE_DISTANCES
    packet_rate: float = PACKET_RATE
    packet_burst: float = PACKET_BURST
    rate_limit_ips: int = RATE_LIMIT_IPS
    # sources whose packets are not rate limited (e.g. ``table.is_lan`` for a local testnet)
    rate_limit_exempt: Callable[[IPAddress], bool] = no_exemption
    max_talk_tasks: int = MAX_TALK_TASKS
    talk_timeout: float = TALK_TIMEOUT
    max_background: int = MAX_BACKGROUND
    session_cache_size: int = SESSION_CACHE_SIZE
    max_challenges: int = MAX_CHALLENGES
    alpha: int = ALPHA
    table: TableConfig = field(default_factory=TableConfig)
    rng: random.Random | None = None  # None: a SystemRandom
    clock: Callable[[], float] | None = None  # None: trio.current_time
    identity: IdentityScheme = V4_IDENTITY  # the simulator's null scheme, or the real one


@functools.lru_cache(maxsize=4096)
def _ip(host: str) -> IPAddress:
    return ipaddress.ip_address(host.split("%", 1)[0])


class V5Stats:
    """Counters for metrics, in the shape of the v4 service's ``DiscoveryStats``."""

    def __init__(self, table: Table, codec: Codec) -> None:
        self._table = table
        self._codec = codec
        self.packets_in: Counter[str] = Counter()
        self.packets_out: Counter[str] = Counter()
        self.bytes_in = 0
        self.bytes_out = 0
        self.drops: Counter[str] = Counter()
        self.timeouts: Counter[str] = Counter()  # requests without a (complete) reply, by request
        self.lookups = 0
        self.rate_limit_evicted = 0

    def snapshot(self) -> dict[str, Any]:
        codec = self._codec.stats
        return {"packets_in": dict(self.packets_in), "packets_out": dict(self.packets_out),
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "drops": dict(self.drops),
                "lookups": self.lookups, "timeouts": dict(self.timeouts), "table_size": len(self._table),
                "sessions_evicted": codec.sessions_evicted, "challenges_evicted": codec.challenges_evicted,
                "challenges_expired": codec.challenges_expired, "sent_nonces_evicted": codec.sent_nonces_evicted,
                "sent_nonces_expired": codec.sent_nonces_expired, "rate_limit_evicted": self.rate_limit_evicted}


class _RateLimiter:
    """A token bucket per source IP, for at most ``max_ips`` IPs (least recent forgotten)."""

    def __init__(self, rate: float, burst: float, max_ips: int, clock: Callable[[], float],
                 exempt: Callable[[IPAddress], bool], stats: V5Stats) -> None:
        self._rate, self._burst, self._max = rate, burst, max_ips
        self._clock = clock
        self._exempt = exempt
        self._stats = stats
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # ip -> (tokens, stamp)

    def allow(self, host: str) -> bool:
        now = self._clock()
        entry = self._buckets.pop(host, None)
        if entry is None:
            if self._exempt(_ip(host)):
                return True
            tokens = self._burst
        else:
            tokens = min(self._burst, entry[0] + (now - entry[1]) * self._rate)
        allowed = tokens >= 1.0
        self._buckets[host] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
            self._stats.rate_limit_evicted += 1
        return allowed


@dataclass(slots=True, eq=False)
class _Call:
    """A request of ours awaiting its reply (several NODES for a FINDNODE)."""

    node: Node
    addr: Address
    message: Message
    replies: list[Message] = field(default_factory=list)
    nodes_packets: int = 0
    done: bool = False


def lookup_distances(target: bytes, dest: bytes, n: int = LOOKUP_DISTANCES) -> tuple[int, ...]:
    """The distances to ask ``dest`` for when looking up ``target``: its distance to the
    target and the ones next to it (go-ethereum's ``lookupDistances``)."""
    td = log_distance(target, dest)
    dists = [td]
    i = 1
    while len(dists) < n and i <= MAX_DISTANCE:
        if td + i <= MAX_DISTANCE:
            dists.append(td + i)
        if td - i > 0 and len(dists) < n:
            dists.append(td - i)
        i += 1
    return tuple(dists)


def pack_nodes(req_id: bytes, records: Sequence[bytes], limit: int = MAX_MESSAGE_SIZE) -> list[Nodes]:
    """``records`` split into NODES messages whose plaintexts fit ``limit`` bytes; at least one
    (an empty one when there is nothing to send), each with ``total`` set."""
    batches: list[list[bytes]] = [[]]
    for raw in records:
        if batches[-1] and nodes_message_size(req_id, [*batches[-1], raw]) > limit:
            batches.append([])
        batches[-1].append(raw)
    return [Nodes(req_id, len(batches), tuple(b)) for b in batches]


_KINDS: Final[dict[type, str]] = {t: t.__name__.lower() for t in (Ping, Pong, FindNode, Nodes, TalkReq, TalkResp)}


def _kind(message: Message) -> str:
    return _KINDS[type(message)]


class V5Protocol:
    """A running discovery v5 node; made by :func:`open_v5`."""

    def __init__(self, transport: DatagramTransport, key: PrivateKey, local_record: LocalRecord, table: Table,
                 *, config: V5Config, nursery: trio.Nursery, bootnodes: Sequence[ENR],
                 on_table_change: Callable[[], None] | None, on_contact: Contact | None = None) -> None:
        self._transport = transport
        self._key = key
        self._record_fn: Callable[[], ENR] = local_record if callable(local_record) else (lambda: local_record)
        self.config = config
        self.local_id = NodeID.from_pubkey(key.public_key)
        if table.local_id != self.local_id:
            raise ValueError("the table belongs to another node ID")
        self.table = table
        self._clock = config.clock or trio.current_time
        self._rng = config.rng if config.rng is not None else random.SystemRandom()
        self._codec = Codec(key, self._record_fn(), rng=self._rng, clock=self._clock, identity=config.identity,
                            session_cache_size=config.session_cache_size, max_challenges=config.max_challenges)
        self.stats = V5Stats(table, self._codec)
        self._limiter = _RateLimiter(config.packet_rate, config.packet_burst, config.rate_limit_ips, self._clock,
                                     config.rate_limit_exempt, self.stats)
        self._nursery = nursery
        self._on_table_change = on_table_change
        self.bootnodes = tuple(bootnodes)
        self._on_contact = on_contact
        self._pending: PendingReplies[tuple[NodeID, bytes], Message] = PendingReplies(config.max_pending)
        self._handshakes: dict[tuple[NodeID, Address], trio.Event] = {}
        self._talk: dict[bytes, TalkHandler] = {}
        self._talk_tasks = 0
        self._background = 0
        self._fetching: set[NodeID] = set()

    # -- identity ------------------------------------------------------------------------

    @property
    def local_record(self) -> ENR:
        return self._record_fn()

    @property
    def local_address(self) -> Address:
        return self._transport.local_address

    def _current_record(self) -> ENR:
        record = self._record_fn()
        if record is not self._codec.local_record:
            self._codec.local_record = record
        return record

    def session_established(self, node_id: bytes, addr: Address) -> bool:
        return self._codec.session(node_id, addr) is not None

    # -- TALKREQ protocols ---------------------------------------------------------------

    def talk(self, protocol: str | bytes, handler: TalkHandler) -> None:
        """Answer TALKREQs for ``protocol`` with ``await handler(node_id, addr, request)``.
        A handler that raises or overruns ``talk_timeout`` sends no answer (counted)."""
        self._talk[protocol.encode() if isinstance(protocol, str) else protocol] = handler

    # -- sending -------------------------------------------------------------------------

    def _send_datagram(self, data: bytes, addr: Address, kind: str) -> None:
        # Never waits: replies go out from the receive path, which must not stall behind one
        # slow destination; a full send buffer drops the datagram as the kernel would.
        try:
            self._transport.send_nowait(data, addr)
        except BlockingIOError:
            self.stats.drops["v5_send_buffer_full"] += 1
            return
        except (OSError, trio.ClosedResourceError) as exc:
            self.stats.drops["v5_send_error"] += 1
            logger.debug("v5 send %s to %s failed: %s", kind, addr, exc)
            return
        self.stats.packets_out[kind] += 1
        self.stats.bytes_out += len(data)

    def _send(self, node_id: NodeID, addr: Address, message: Message) -> None:
        self._current_record()
        self._send_now(node_id, addr, message)

    def _send_now(self, node_id: NodeID, addr: Address, message: Message) -> None:
        """Send with the record that ``handle_datagram_nowait`` read for this datagram."""
        encoded = self._codec.encode(node_id, addr, message)
        self._send_datagram(encoded.data, addr, _KINDS[type(message)])

    # -- receiving -----------------------------------------------------------------------

    async def _receive_loop(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await receive_each(self._transport, self.handle_datagram_nowait, self._socket_error)

    def _socket_error(self, exc: OSError) -> None:
        self.stats.drops["v5_socket_error"] += 1
        logger.debug("v5 receive error: %s", exc)

    def _drop(self, reason: str, addr: Address, detail: object) -> None:
        self.stats.drops[reason] += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: v5 dropped from %s:%s (%s): %s", self.local_id.short(), addr[0], addr[1], reason, detail)

    async def handle_datagram(self, data: bytes, addr: Address) -> None:
        """Handle one datagram from ``addr`` (:meth:`handle_datagram_nowait`), then let other
        tasks run."""
        self.handle_datagram_nowait(data, addr)
        await trio.lowlevel.checkpoint()

    def handle_datagram_nowait(self, data: bytes, addr: Address) -> None:
        """Handle one datagram from ``addr`` without waiting: what the receive loop does with
        each, and the entry point for a shared socket's reader that hands v5 packets over
        inline. Replies are sent with ``send_nowait``; only TALKREQ handlers run as tasks."""
        self.stats.bytes_in += len(data)
        if not self._limiter.allow(addr[0]):
            self._drop("v5_rate_limited", addr, f"over {self.config.packet_rate}/s")
            return
        try:
            self._current_record()
            event = self._codec.decode(data, addr)
        except V5DecodeError as exc:
            self._drop(exc.reason, addr, exc)
            return
        if type(event) is MessageReceived:  # the common case first: a packet within a session
            self._on_message(event.node_id, addr, event.message)
        elif isinstance(event, Undecryptable):
            self.stats.packets_in["undecryptable"] += 1
            self._send_whoareyou(event)
        elif isinstance(event, WhoareyouReceived):
            self.stats.packets_in["whoareyou"] += 1
            self._answer_whoareyou(event)
        elif isinstance(event, HandshakeCompleted):
            self.stats.packets_in["handshake"] += 1
            self._on_handshake(event)
            self._on_message(event.node_id, addr, event.message)

    def _send_whoareyou(self, event: Undecryptable) -> None:
        known = self.table.get(event.node_id)
        record = known.enr if known is not None else None
        encoded = self._codec.encode_whoareyou(event.node_id, event.addr, event.nonce, record)
        self._send_datagram(encoded.data, event.addr, "whoareyou")

    def _remote_key(self, node_id: NodeID, addr: Address, message: Message) -> PublicKey | None:
        pending = self._pending.first((node_id, message.req_id))
        if pending is not None:
            return pending.node.pubkey
        known = self.table.get(node_id)
        if known is not None:
            return known.pubkey
        return None

    def _answer_whoareyou(self, event: WhoareyouReceived) -> None:
        key = self._remote_key(event.node_id, event.addr, event.message)
        if key is None:
            # a challenge to a response of ours whose requester we know no key of
            self._drop("v5_whoareyou_unknown_node", event.addr, event.node_id.short())
            return
        self._current_record()
        try:
            encoded = self._codec.encode_handshake(event.node_id, event.addr, event.message, event.challenge, key)
        except ValueError:
            # A response of ours (NODES packed to fill a session packet) challenged by its
            # requester has no room for the handshake's extra fields; the requester asks again.
            self._drop("v5_handshake_too_large", event.addr, _kind(event.message))
            return
        self._send_datagram(encoded.data, event.addr, "handshake")

    def _on_handshake(self, event: HandshakeCompleted) -> None:
        """A node that proved its key at ``addr`` enters the table if its record says it
        lives there (a record for another address could send our findnode answers astray)."""
        record = event.record
        if record.ip is None or str(record.ip) != event.addr[0] or record.udp != event.addr[1]:
            self.stats.drops["v5_handshake_record_address"] += 1
            return
        node = Node.from_enr(record)
        if self.table.add_seen(node, V5) or self.table.update_node(node):
            self._table_changed()

    def _on_message(self, node_id: NodeID, addr: Address, message: Message) -> None:
        self.stats.packets_in[_KINDS[type(message)]] += 1
        if isinstance(message, Ping):
            pong = Pong(message.req_id, self._codec.local_record.seq, _ip(addr[0]), addr[1])
            self._send_now(node_id, addr, pong)
        elif isinstance(message, FindNode):
            self._on_findnode(node_id, addr, message)
        elif isinstance(message, TalkReq):
            self._on_talkreq(node_id, addr, message)
        else:
            self._on_reply(node_id, addr, message)

    def _on_findnode(self, node_id: NodeID, addr: Address, req: FindNode) -> None:
        distances = tuple(dict.fromkeys(req.distances))
        if len(distances) > self.config.max_findnode_distances:
            self._drop("v5_findnode_too_many_distances", addr, f"{len(distances)} distances")
            return
        records = self._records_at(distances, _ip(addr[0]))
        for nodes in pack_nodes(req.req_id, records):
            self._send(node_id, addr, nodes)

    def _records_at(self, distances: Iterable[int], requester: IPAddress) -> list[bytes]:
        limit = self.config.findnode_result_limit
        out: list[bytes] = []
        for d in distances:
            if d == 0:
                out.append(self._current_record().to_rlp())
                continue
            for n in self.table.nodes():
                if n.enr is not None and log_distance(self.local_id, n.id) == d and relay_allowed(requester, n.ip) \
                        and V5 in self.table.protocols(n.id):
                    out.append(n.enr.to_rlp())
                    if len(out) >= limit:
                        return out
        return out[:limit]

    def _on_talkreq(self, node_id: NodeID, addr: Address, req: TalkReq) -> None:
        handler = self._talk.get(req.protocol)
        if handler is None:
            # discv5-wire.md: an unknown protocol gets an empty TALKRESP
            self.stats.drops["v5_talk_unknown_protocol"] += 1
            self._send(node_id, addr, TalkResp(req.req_id, b""))
            return
        if self._talk_tasks >= self.config.max_talk_tasks:
            self._drop("v5_talk_busy", addr, f"{self._talk_tasks} handlers running")
            return
        self._talk_tasks += 1
        self._nursery.start_soon(self._run_talk, handler, node_id, addr, req)

    async def _run_talk(self, handler: TalkHandler, node_id: NodeID, addr: Address, req: TalkReq) -> None:
        try:
            response: bytes | None = None
            with trio.move_on_after(self.config.talk_timeout):
                try:
                    response = await handler(node_id, addr, req.request)
                except Exception:
                    self.stats.drops["v5_talk_handler_error"] += 1
                    logger.exception("TALKREQ handler for %r failed", req.protocol)
                    return
            if response is None:
                self.stats.drops["v5_talk_timeout"] += 1
                return
            resp = TalkResp(req.req_id, bytes(response))
            if len(encode_message(resp)) > MAX_MESSAGE_SIZE:
                self.stats.drops["v5_talk_response_too_big"] += 1
                return
            self._send(node_id, addr, resp)
        finally:
            self._talk_tasks -= 1

    def _on_reply(self, node_id: NodeID, addr: Address, message: Message) -> None:
        key = (node_id, message.req_id)
        pending = self._pending.first(key)
        if pending is None:
            self._drop("v5_unsolicited_reply", addr, f"{_kind(message)} nobody asked for")
            return
        call: _Call = pending.info
        if call.addr != addr:
            self._drop("v5_reply_wrong_address", addr, f"asked {call.addr}")
            return
        want = {Ping: Pong, FindNode: Nodes, TalkReq: TalkResp}[type(call.message)]
        if not isinstance(message, want):
            self._drop("v5_reply_wrong_kind", addr, f"{_kind(message)} to a {_kind(call.message)}")
            return
        self._pending.deliver(key, message)

    def _match(self, call: _Call, message: Message) -> tuple[bool, bool]:
        """Collect a reply of the right kind from the right address (checked by ``_on_reply``);
        complete at the reply, or at the last NODES packet of the total announced."""
        call.replies.append(message)
        if isinstance(message, Nodes):
            call.nodes_packets += 1
            total = message.total
            if total > self.config.max_nodes_responses:
                self.stats.drops["v5_nodes_total_capped"] += 1
                total = self.config.max_nodes_responses
            if call.nodes_packets < total:
                return True, False
        call.done = True
        return True, True

    # -- requests ------------------------------------------------------------------------

    async def _request(self, node: Node, make: Callable[[bytes], Message], tally: Tally | None = None) -> _Call:
        """Send the request ``make(req_id)`` to ``node`` and wait for its reply (all NODES
        packets for a FINDNODE) or the request timeout, handshake included."""
        addr = node.udp_address
        peer = (node.id, addr)
        deadline = trio.current_time() + self.config.request_timeout
        with trio.move_on_at(deadline):
            while self._codec.session(node.id, addr) is None and peer in self._handshakes:
                await self._handshakes[peer].wait()
        if self._codec.session(node.id, addr) is None and peer in self._handshakes:
            self.stats.timeouts["handshake_wait"] += 1
            raise RequestTimeout(f"handshake with {node.id.short()} still under way")
        req_id = self._rng.randbytes(REQUEST_ID_SIZE)
        while (node.id, req_id) in self._pending:
            req_id = self._rng.randbytes(REQUEST_ID_SIZE)
        message = make(req_id)
        call = _Call(node, addr, message)
        opened: trio.Event | None = None
        if self._codec.session(node.id, addr) is None:
            opened = self._handshakes[peer] = trio.Event()
        try:
            try:
                await self._pending.request((node.id, req_id), node, lambda m: self._match(call, m),
                                            lambda: self._send(node.id, addr, message),
                                            max(0.0, deadline - trio.current_time()), tally, call)
            except PendingFull:
                self.stats.drops["v5_pending_full"] += 1
                raise
            if not call.done:
                self.stats.timeouts[_kind(message)] += 1
            else:
                if node.enr is not None:
                    # an answer proves it live; without a record it could not be passed on
                    self.table.add_verified(node, V5)
                    self._table_changed()
                if self._on_contact is not None:
                    self._on_contact(node, isinstance(message, Ping))
        finally:
            if opened is not None:
                opened.set()
                if self._handshakes.get(peer) is opened:
                    del self._handshakes[peer]
        return call

    async def ping(self, node: Node) -> Pong:
        """PING ``node``; its PONG says which address it saw us at."""
        call = await self._request(node, lambda rid: Ping(rid, self._current_record().seq))
        if not call.done:
            raise RequestTimeout(f"no PONG from {node.id.short()} at {node.ip}:{node.udp_port}")
        pong = call.replies[0]
        assert isinstance(pong, Pong)
        self._check_seq(node, pong.enr_seq)
        return pong

    async def talkreq(self, node: Node, protocol: str | bytes, request: bytes) -> bytes:
        """Ask ``node``'s ``protocol`` handler; an empty answer may mean it has none."""
        proto = protocol.encode() if isinstance(protocol, str) else protocol
        if len(encode_message(TalkReq(bytes(REQUEST_ID_SIZE), proto, request))) > MAX_REQUEST_SIZE:
            raise ValueError(f"a TALKREQ of {len(request)} bytes does not fit a handshake packet")
        call = await self._request(node, lambda rid: TalkReq(rid, proto, request))
        if not call.done:
            raise RequestTimeout(f"no TALKRESP from {node.id.short()}")
        resp = call.replies[0]
        assert isinstance(resp, TalkResp)
        return resp.response

    async def findnode_records(self, node: Node, distances: Sequence[int], *,
                               tally: Tally | None = None) -> list[ENR]:
        """The verified records ``node`` sends for ``distances``: each at one of them from
        ``node``, none over 300 bytes, at most ``findnode_result_limit``, no duplicates.
        Partial answers count (NODES packets that came before the timeout); raises
        :class:`RequestTimeout` when none came."""
        asked = tuple(distances)
        call = await self._request(node, lambda rid: FindNode(rid, asked), tally)
        if not call.replies:
            raise RequestTimeout(f"no NODES from {node.id.short()}")
        addr = call.addr
        wanted = set(asked)
        limit = self.config.findnode_result_limit
        records: dict[NodeID, ENR] = {}
        for reply in call.replies:
            assert isinstance(reply, Nodes)
            for raw in reply.records:
                if len(records) >= limit:
                    self._drop("v5_too_many_records", addr, f"over {limit}")
                    continue
                if len(raw) > MAX_ENR_SIZE:
                    self._drop("v5_record_too_big", addr, f"{len(raw)} bytes")
                    continue
                try:
                    record = self.config.identity.decode_record(raw)
                except ENRError as exc:
                    self._drop("v5_bad_record", addr, exc)
                    continue
                if log_distance(node.id, record.node_id) not in wanted:
                    self._drop("v5_record_wrong_distance", addr, f"{log_distance(node.id, record.node_id)}")
                    continue
                records[record.node_id] = record
        return list(records.values())

    async def findnode(self, node: Node, distances: Sequence[int], *, tally: Tally | None = None) -> list[Node]:
        """The nodes of :meth:`findnode_records` that have a usable UDP endpoint (an IP that
        ``node`` may tell us about: no loopback or LAN addresses from a public node)."""
        nodes = []
        for record in await self.findnode_records(node, distances, tally=tally):
            if record.node_id == self.local_id:
                continue
            if (record.ip is None and record.ip6 is None) or not (record.udp or record.udp6):
                self.stats.drops["v5_record_no_endpoint"] += 1
                continue
            n = Node.from_enr(record)
            if not relay_allowed(node.ip, n.ip):
                self.stats.drops["v5_record_unrelayable"] += 1
                continue
            nodes.append(n)
        return nodes

    async def request_enr(self, node: Node) -> ENR:
        """``node``'s current record (a FINDNODE at distance 0)."""
        for record in await self.findnode_records(node, (0,)):
            if record.node_id == node.id:
                return record
        raise DiscoveryError(f"{node.id.short()} sent no record of its own")

    def _check_seq(self, node: Node, seq: int) -> None:
        """Fetch the record of a table entry that advertises a newer one, in the background."""
        current = self.table.get(node.id)
        if current is None or current.enr is None or seq <= current.enr.seq or node.id in self._fetching:
            return
        if self._background >= self.config.max_background:
            self.stats.drops["v5_enr_fetch_skipped"] += 1
            return
        self._background += 1
        self._fetching.add(node.id)
        self._nursery.start_soon(self._fetch_record, current)

    async def _fetch_record(self, node: Node) -> None:
        try:
            record = await self.request_enr(node)
        except DiscoveryError as exc:
            logger.debug("v5 record fetch from %s failed: %s", node.id.short(), exc)
            return
        finally:
            self._background -= 1
            self._fetching.discard(node.id)
        if record.ip is not None and record.udp:
            if self.table.update_node(Node.from_enr(record)):
                self._table_changed()

    # -- table and lookups ---------------------------------------------------------------

    def _table_changed(self) -> None:
        if self._on_table_change is not None:
            self._on_table_change()
        else:
            self.table.pop_events()  # nobody subscribes to a table of our own

    def seed(self) -> None:
        """Put the bootnodes in the table (as heard of: they prove live when they answer)."""
        for record in self.bootnodes:
            if record.node_id != self.local_id and record.ip is not None and record.udp:
                self.table.add_seen(Node.from_enr(record), V5)
        self._table_changed()

    def _speaks_v5(self, node: Node) -> bool:
        # in a table shared with v4, a node that came to us through v4 alone may not speak v5
        return V5 in self.table.protocols(node.id)

    async def lookup(self, target: bytes | None = None) -> list[Node]:
        """The (up to) 16 nodes closest to ``target`` (a node ID; random when None) that an
        iterative lookup finds. See :meth:`lookup_detailed`."""
        return list((await self.lookup_detailed(target)).nodes)

    async def lookup_detailed(self, target: bytes | None = None) -> LookupResult:
        """Iterative lookup of ``target`` (a node ID; random when None), ``alpha`` FINDNODE
        queries at a time, each asking for the distances around the target. Nodes that answer
        are added to the table as live, the nodes they name as seen (with the table's IP limits)."""
        t0 = trio.current_time()
        tally = Tally()
        target_id = NodeID(target) if target is not None else NodeID(self._rng.randbytes(32))
        lk = Lookup(target_id, self.local_id, alpha=self.config.alpha, k=LOOKUP_RESULTS)
        lk.add_nodes(n for n in self.table.closest(target_id, LOOKUP_RESULTS) if self._speaks_v5(n))
        if lk.finished:
            self.seed()
            lk.add_nodes(n for n in self.table.closest(target_id, LOOKUP_RESULTS) if self._speaks_v5(n))

        async def query(node: Node) -> list[Node] | None:
            try:
                found = await self.findnode(node, lookup_distances(target_id, node.id), tally=tally)
            except DiscoveryError:
                return None
            self.table.add_verified(node, V5)
            for n in found:
                self.table.add_seen(n, V5)
            self._table_changed()
            return found

        await run_lookup(lk, query)
        self.stats.lookups += 1
        return LookupResult(target_id, tuple(lk.result()), lk.queries, lk.failures, lk.rounds,
                            tally.sent, tally.received, trio.current_time() - t0)


@asynccontextmanager
async def open_v5(
    transport: DatagramTransport,
    private_key: PrivateKey,
    local_record: LocalRecord,
    table: Table | None = None,
    *,
    bootnodes: Iterable[ENR] = (),
    config: V5Config | None = None,
    on_table_change: Callable[[], None] | None = None,
    on_contact: Contact | None = None,
    receive: bool = True,
) -> AsyncIterator[V5Protocol]:
    """Run a discovery v5 node on ``transport``.

    ``local_record`` is our record, or a callable giving the current one (it is re-read
    before each packet, so a re-signed record is used at once). ``table`` may be shared with
    another service; then pass its event flush as ``on_table_change`` (without one, table
    events are discarded). ``receive=False`` starts no receive loop: the owner of a shared
    socket then calls :meth:`V5Protocol.handle_datagram` itself. ``on_contact(node, pong)`` is
    told of every node that answered a request of ours (e.g. to store it in a node database).
    """
    cfg = config or V5Config()
    local_id = NodeID.from_pubkey(private_key.public_key)
    if table is None:
        table = Table(local_id, clock=cfg.clock or trio.current_time, rng=cfg.rng, config=cfg.table)
    async with trio.open_nursery() as nursery:
        v5 = V5Protocol(transport, private_key, local_record, table, config=cfg, nursery=nursery,
                        bootnodes=tuple(bootnodes), on_table_change=on_table_change, on_contact=on_contact)
        if receive:
            await nursery.start(v5._receive_loop)
        v5.seed()
        try:
            yield v5
        finally:
            nursery.cancel_scope.cancel()


__all__ = [
    "LOOKUP_DISTANCES",
    "MAX_FINDNODE_DISTANCES",
    "MAX_NODES_RESPONSES",
    "MAX_PENDING",
    "PACKET_BURST",
    "PACKET_RATE",
    "REQUEST_TIMEOUT",
    "TalkHandler",
    "V5Config",
    "V5Protocol",
    "V5Stats",
    "lookup_distances",
    "open_v5",
    "pack_nodes",
]
