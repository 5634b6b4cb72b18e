"""The node: listens for RLPx on TCP, runs discovery on UDP (same port by default), dials static
and discovered nodes, keeps the peer set within its limits, and hands every peer to the
sub-protocols it shares with us.

    async with open_server(private_key=key, protocols=[chat]) as server:
        print(server.enode)
        async for event in server.events():
            ...

Leaving the ``async with`` sends Disconnect(CLIENT_QUITTING) to every peer, closes the sockets,
stops discovery and the node database, and leaves no task behind.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import trio

from p2p import dial as _dial
from p2p.crypto import PrivateKey
from p2p.disconnect import DisconnectReason
from p2p.enode import ENR, IPAddress, LocalNode, Node, NodeID, Signer
from p2p.enode.iter import FairMix
from p2p.hello import MAX_HELLO_SIZE, Hello, MatchedProtocol, PeerError, RemoteDisconnected, match_capabilities
from p2p.inbound import Pending, PendingHandshakes, Verdict
from p2p.limits import ProcessLimits
from p2p.metrics import ServerMetrics, serve_metrics
from p2p.peer import (
    Peer,
    Transport,
    close_transport,
    exchange_hello,
    make_hello,
)
from p2p.protocol import PeerInfo, Protocol, ProtocolConnection
from p2p.rlpx.budget import FrameBudget
from p2p.rlpx.connection import accept as rlpx_accept, connect as rlpx_connect
from p2p.rlpx.errors import AuthTimeout, HandshakeTimeout, MessageTooLarge, RLPxError
from p2p.rlpx.frame import encode_code
from p2p.server_config import CLIENT_ID, DEFAULT_MAX_PEERS, ServerConfig

if TYPE_CHECKING:
    from p2p.discover import Discovery, DiscoveryConfig
    from p2p.enode.nodedb import NodeDB

log = logging.getLogger(__name__)

# The remote's first frame is its Hello (or a Disconnect), never compressed: a header that
# announces more is refused before its body is read.
HELLO_FRAME_LIMIT = MAX_HELLO_SIZE + len(encode_code(0))
EVENT_BUFFER = 256  # events held per subscriber before newer ones are dropped for it
SHUTDOWN_GRACE = 3.0  # seconds for peers to say goodbye when the server stops
UDP_PORT_RETRIES = 8  # new random TCP ports tried when the matching UDP port is taken
# A dialer with no free slot waits for a dial to end or a peer to leave (both wake it); this is
# only a safety net. Polling every second instead cost 1,000 servers of a testnet 1,000
# timer expiries a second, for as long as they stayed at their peer target.
SLOT_RECHECK = 30.0


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerAdded:
    peer: PeerInfo


@dataclass(frozen=True, slots=True)
class PeerRemoved:
    peer: PeerInfo
    reason: DisconnectReason | int
    remote_requested: bool = False  # true when the remote sent the Disconnect


ServerEvent = PeerAdded | PeerRemoved


class EventSubscription:
    """One subscriber's bounded view of the server's events (an async iterator).

    A subscriber that does not keep up loses events (counted in :attr:`dropped`); the server
    never waits for it. The iteration ends when the server stops or :meth:`close` is called.
    """

    def __init__(self, server: "Server", size: int) -> None:
        self._server = server
        self._send, self._receive = trio.open_memory_channel[ServerEvent](size)
        self.dropped = 0

    def _deliver(self, event: ServerEvent) -> bool:
        try:
            self._send.send_nowait(event)
            return True
        except trio.WouldBlock:
            self.dropped += 1
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._server._subscriptions.discard(self)
            return True

    def close(self) -> None:
        self._server._subscriptions.discard(self)
        self._send.close()

    def __aiter__(self) -> "EventSubscription":
        return self

    async def __anext__(self) -> ServerEvent:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def receive(self) -> ServerEvent:
        """The next event; raises ``trio.EndOfChannel`` when the server has stopped."""
        return await self._receive.receive()

    def receive_nowait(self) -> ServerEvent:
        """An event already waiting, or ``trio.WouldBlock``."""
        return self._receive.receive_nowait()

    def __enter__(self) -> "EventSubscription":
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class DialError(Exception):
    """A dial that did not end with a peer; ``reason`` is the disconnect reason when there is one."""

    def __init__(self, message: str, outcome: str, reason: DisconnectReason | int | None = None,
                 remote_requested: bool = False) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.reason = reason
        self.remote_requested = remote_requested


def _outcome(exc: BaseException) -> str:
    """A short error class for metrics and logs."""
    if isinstance(exc, RemoteDisconnected):
        r = exc.reason
        return "remote_" + (r.name.lower() if isinstance(r, DisconnectReason) else str(r))
    if isinstance(exc, PeerError):
        r = exc.reason
        return r.name.lower() if isinstance(r, DisconnectReason) else str(r)
    if isinstance(exc, AuthTimeout):
        return "auth_timeout"
    if isinstance(exc, (HandshakeTimeout, trio.TooSlowError)):
        return "timeout"
    if isinstance(exc, RLPxError):
        return "handshake"
    return type(exc).__name__.lower()


def _describe(reason: DisconnectReason | int) -> str:
    return reason.describe() if isinstance(reason, DisconnectReason) else f"reason {reason}"


def parse_nat(nat: str | None) -> IPAddress | None:
    """``none`` (or None): no advertised address of our own; ``extip:IP``: advertise IP."""
    if nat is None or nat.lower() == "none":
        return None
    kind, _, value = nat.partition(":")
    if kind.lower() != "extip" or not value:
        raise ValueError(f"unsupported NAT setting {nat!r} (use none or extip:IP)")
    return ipaddress.ip_address(value)


def _to_nodes(items: Iterable[Node | str]) -> list[Node]:
    return [item if isinstance(item, Node) else Node.from_url(item) for item in items]


class Server:
    """A devp2p node. Use :func:`open_server` (or ``async with server.serving():``) to run it."""

    def __init__(
        self,
        private_key: PrivateKey | None = None,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        protocols: Sequence[Protocol] = (),
        config: ServerConfig | None = None,
    ) -> None:
        c = config if config is not None else ServerConfig()
        self.config = c
        # Kept for the RLPx handshakes (ECDH) only; our record is signed by the LocalNode, and
        # protocols that sign get ``signer``.
        self._key = private_key if private_key is not None else PrivateKey.generate()
        self.signer = Signer(self._key)
        self.public_key = self._key.public_key
        self.id = NodeID.from_pubkey(self.public_key)
        self.listen = listen
        self.protocols: tuple[Protocol, ...] = tuple(protocols)
        self.bootnodes = _to_nodes(c.bootnodes)
        self.max_peers = c.max_peers
        self.max_pending = c.max_pending
        self.auth_timeout = c.auth_timeout
        self.unhandled_burst = c.unhandled_burst
        self.unhandled_rate = c.unhandled_rate
        self.send_queue_bytes = c.send_queue_bytes
        self.dial_ratio = max(1, c.dial_ratio)
        self.discovery_enabled = c.discovery
        self.discovery_config = c.discovery_config
        self.node_db_path = c.node_db_path
        self.node_db_limits = c.node_db_limits  # None: the module's constants
        self._nodedb: NodeDB | None = None  # while discovery runs
        self._db_held: set[Peer] = set()  # dialed peers this server protects in the node database
        self.advertised_ip = parse_nat(c.nat)
        self.client_id = c.client_id
        self.allow_useless_peers = c.allow_useless_peers
        self.dial_timeout = c.dial_timeout
        self.handshake_timeout = c.handshake_timeout
        self.ping_interval = c.ping_interval
        self.read_timeout = c.read_timeout
        self.disconnect_linger = c.disconnect_linger
        self.metrics_addr = c.metrics_addr
        self.metrics = ServerMetrics()
        self.metrics.watch_protocols(self.protocols)
        self._rng = c.rng if c.rng is not None else random.SystemRandom()
        self.limits = c.limits if c.limits is not None else ProcessLimits()
        self.dial_limiter = self.limits.dials
        trusted = _to_nodes(c.trusted_nodes)
        self._trusted: set[NodeID] = {n.id for n in trusted}
        # A trusted node is known by its ID, which an inbound connection shows only after its
        # auth: its address is what exempts it from the per-address cap on handshakes.
        self._trusted_ips: set[IPAddress] = {n.ip for n in trusted}
        self._pending = PendingHandshakes(c.max_pending, c.max_pending_per_ip)
        self._pending_scopes: dict[Pending, trio.CancelScope] = {}
        self._pending_changed = trio.Event()
        self.frame_budget = FrameBudget(c.frame_memory_budget)
        self.metrics.watch_frame_budget(self.frame_budget)
        self._scheduler = _dial.DialScheduler(
            self.id, max_dial_peers=max(1, c.max_peers // self.dial_ratio), max_active=c.max_active_dials,
            history_expiry=c.dial_history_expiry, backoff_min=c.static_backoff[0], backoff_max=c.static_backoff[1],
            rng=self._rng)
        self._initial_static = _to_nodes(c.static_nodes)
        # Static nodes now failing to dial, with how: at most one entry per static node.
        self._static_failing: dict[NodeID, str] = {}
        self._limiter = _dial.InboundLimiter(c.inbound_throttle, c.throttle_loopback,
                                             _dial.parse_netrestrict(c.netrestrict))
        self._peers: dict[NodeID, Peer] = {}
        self._subscriptions: set[EventSubscription] = set()
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._dial_wakeup = trio.Event()
        self._slot_wakeup = trio.Event()
        self._peer_tasks = 0
        self._peer_tasks_done = trio.Event()
        self._tcp_port = 0
        self._local: LocalNode | None = None  # made when serving starts, on the node database if any
        self.discovery: Discovery | None = None
        self.metrics_port: int | None = None
        # Where dial candidates come from besides discovery (a DNS tree, a list): read with
        # discovery's random walk through one fair mix, made anew each time the server runs.
        self._node_sources = tuple(c.node_sources)
        self.node_mix: FairMix | None = None
        self.metrics.watch_node_mix(lambda: self.node_mix)

    # -- public --------------------------------------------------------------------------

    @property
    def local(self) -> LocalNode:
        """Our identity and signed record (set entries on it, e.g. a protocol's own)."""
        if self._local is None:
            raise RuntimeError("the server is not running")
        return self._local

    @property
    def local_node(self) -> Node:
        return self.local.node

    @property
    def enode(self) -> str:
        return self.local_node.to_url()

    @property
    def enr(self) -> ENR:
        return self.local.record

    @property
    def node_db(self) -> NodeDB | None:
        """The node database while discovery runs (None without discovery)."""
        return self._nodedb if self.discovery is not None else None

    @property
    def tcp_port(self) -> int:
        return self._tcp_port

    @property
    def running(self) -> bool:
        return self._nursery is not None and not self._closing

    def peers(self) -> list[PeerInfo]:
        return [p.info for p in self._peers.values()]

    def peer_count(self) -> int:
        return len(self._peers)

    def connection(self, node_id: NodeID | bytes, protocol: str) -> ProtocolConnection | None:
        """The ``protocol`` side of a connected peer, to send from outside handlers."""
        peer = self._peers.get(NodeID(bytes(node_id)))
        return peer.connection(protocol) if peer is not None else None

    def events(self, buffer: int = EVENT_BUFFER, *, replay: bool = False) -> EventSubscription:
        """Subscribe to PeerAdded / PeerRemoved. Each call is an independent, bounded channel.

        With ``replay``, the subscription first holds one PeerAdded per peer connected now, then
        the changes: a subscriber that comes after the server started (and its static peers
        connected) misses nothing and sees nothing twice. The buffer grows by the replayed
        peers, so that they never push out the first changes.
        """
        current = list(self._peers.values()) if replay else []
        sub = EventSubscription(self, buffer + len(current))
        if self._closing and self._nursery is None:
            sub.close()
            return sub
        # No checkpoint from the snapshot to the registration: no event falls between them.
        for peer in current:
            sub._deliver(PeerAdded(peer.info))
        self._subscriptions.add(sub)
        return sub

    def add_peer(self, node: Node | str) -> None:
        """Keep a connection to ``node`` (a static node: redialed with backoff when it drops)."""
        node = _to_nodes([node])[0]
        self._scheduler.add_static(node, trio.current_time() if self._nursery is not None else 0.0)
        self._wake_dialer()

    def remove_peer(self, node: Node | str | NodeID) -> None:
        """Forget a static node and disconnect it (REQUESTED) if connected."""
        node_id = node if isinstance(node, NodeID) else _to_nodes([node])[0].id
        self._scheduler.remove_static(node_id)
        self._static_failing.pop(node_id, None)
        peer = self._peers.get(node_id)
        if peer is not None:
            peer.disconnect(DisconnectReason.REQUESTED)

    def add_trusted_peer(self, node: Node | str | NodeID) -> None:
        """Trusted nodes may connect even when the server is full (and, when given with their
        address, from an address that holds its share of pending handshakes)."""
        if isinstance(node, NodeID):
            self._trusted.add(node)
            return
        resolved = _to_nodes([node])[0]
        self._trusted.add(resolved.id)
        self._trusted_ips.add(resolved.ip)

    def remove_trusted_peer(self, node: Node | str | NodeID) -> None:
        self._trusted.discard(node if isinstance(node, NodeID) else _to_nodes([node])[0].id)

    def disconnect(self, node_id: NodeID | bytes, reason: DisconnectReason | int = DisconnectReason.REQUESTED) -> bool:
        peer = self._peers.get(NodeID(bytes(node_id)))
        if peer is None:
            return False
        peer.disconnect(reason)
        return True

    async def connect(self, node: Node | str, *, static: bool = False) -> PeerInfo:
        """Dial ``node`` now and wait for the Hello exchange; raise :class:`DialError` if no peer
        results (the remote's Disconnect reason, e.g. too many peers, is in ``reason``). The
        peer then lives on in the server, as any other."""
        node = _to_nodes([node])[0]
        if self._nursery is None:
            raise RuntimeError("the server is not running")
        existing = self._peers.get(node.id)
        if existing is not None:
            return existing.info
        done = _DialResult()
        self._nursery.start_soon(self._dial_task, node, "manual", done)
        return await done.wait()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator["Server"]:
        """Run the server for the duration of the ``async with``."""
        if self._nursery is not None:
            raise RuntimeError("the server is already running")
        try:
            async with AsyncExitStack() as stack:
                listeners = await self._open_listeners(stack)
                nursery = await stack.enter_async_context(trio.open_nursery())
                self._nursery = nursery
                self._closing = False
                try:
                    now = trio.current_time()
                    for node in self._initial_static:
                        self._scheduler.add_static(node, now)
                    nursery.start_soon(self._accept_loop, listeners)
                    nursery.start_soon(self._dial_loop)
                    if self.discovery is not None or self._node_sources:
                        self.node_mix = await nursery.start(self._node_mix().run)
                        nursery.start_soon(self._discovered_dial_loop)
                    if self.metrics_addr is not None:
                        self.metrics_port = await nursery.start(
                            serve_metrics, self.metrics.render, self.metrics_addr[0], self.metrics_addr[1])
                    log.info("server listening: %s", self.enode)
                    yield self
                finally:
                    await self._shutdown(nursery)
        finally:
            self._nursery = None
            self._closing = True

    # -- start and stop ------------------------------------------------------------------

    async def _open_listeners(self, stack: AsyncExitStack) -> list[trio.SocketListener]:
        host, port = self.listen
        last_error: OSError | None = None
        for _attempt in range(UDP_PORT_RETRIES if port == 0 else 1):
            listeners = await trio.open_tcp_listeners(port, host=host)
            tcp_port = listeners[0].socket.getsockname()[1]
            if not self.discovery_enabled:
                self._tcp_port = tcp_port
                self._local = LocalNode(self._key)
                self._set_local(host, tcp_port)
                for listener in listeners:
                    stack.push_async_callback(listener.aclose)
                return list(listeners)
            try:
                await self._open_discovery(stack, host, tcp_port)
            except OSError as exc:  # the UDP port is taken: try another pair
                last_error = exc
                for listener in listeners:
                    await listener.aclose()
                continue
            self._tcp_port = tcp_port
            self._set_local(host, tcp_port)
            for listener in listeners:
                stack.push_async_callback(listener.aclose)
            return list(listeners)
        raise last_error or OSError("could not bind TCP and UDP on the same port")

    def _advertised(self, host: str) -> IPAddress:
        if self.advertised_ip is not None:
            return self.advertised_ip
        ip = ipaddress.ip_address(host) if host else ipaddress.ip_address("0.0.0.0")
        if ip.is_unspecified:
            return ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
        return ip

    def _set_local(self, host: str, tcp_port: int) -> None:
        """Our address and RLPx port on our record; its UDP port is discovery's to set."""
        local = self.local
        ip = self._advertised(host)
        local.set_ip(ip)
        if ip.version == 4:
            local.set_tcp(tcp_port)
        else:
            local.set_tcp6(tcp_port)

    def _discovery_settings(self) -> DiscoveryConfig | None:
        """The discovery config with what the server decides for it: the networks it keeps to
        (the dialer's and the listener's) and the process's shared lookup limiter."""
        from dataclasses import replace

        from p2p.discover import DiscoveryConfig

        config = self.discovery_config
        if self._limiter.netrestrict is not None:
            config = replace(config or DiscoveryConfig(), netrestrict=self._limiter.netrestrict)
        if self.limits.lookups is not None and (config is None or config.lookup_limiter is None):
            # discovery's share of the process's limits: its lookups wait on this one limiter
            config = replace(config or DiscoveryConfig(), lookup_limiter=self.limits.lookups)
        return config

    async def _open_discovery(self, stack: AsyncExitStack, host: str, port: int) -> Discovery:
        from p2p.discover import open_discovery  # imported here: a node without discovery never loads it
        from p2p.enode.expiry import expiring
        from p2p.enode.nodedb import NodeDB

        inner = AsyncExitStack()
        try:
            config = self._discovery_settings()
            db = inner.enter_context(NodeDB.open(self.node_db_path, limits=self.node_db_limits,
                                                 shared=config.nodedb_shared if config is not None else None))
            db.set_self(self.id)
            await inner.enter_async_context(expiring(db))  # we opened it: we run its expiry
            kwargs: dict[str, Any] = {"bootnodes": self.bootnodes, "nodedb": db, "tcp_port": port}
            if self.advertised_ip is not None:
                kwargs["advertised_ip"] = self.advertised_ip
            if config is not None:
                kwargs["config"] = config
            self._local = LocalNode(self._key, db)
            # Discovery signs with the LocalNode's record (it sets the UDP port and address on it);
            # the key is for its packet signatures and v5 key agreement.
            self.discovery = await inner.enter_async_context(
                open_discovery(self._key, (host, port), local=self._local, **kwargs))
        except BaseException:
            self.discovery = None
            await inner.aclose()
            raise
        stack.push_async_exit(inner)
        self._nodedb = db
        self.metrics.watch_discovery(self.discovery)
        if self.discovery.v5 is not None:
            self.metrics.watch_discovery_v5(self.discovery.v5)
        self.metrics.watch_nodedb(db)
        return self.discovery

    async def _shutdown(self, nursery: trio.Nursery) -> None:
        self._closing = True
        with trio.CancelScope(shield=True):
            for peer in list(self._peers.values()):
                peer.disconnect(DisconnectReason.CLIENT_QUITTING)
            with trio.move_on_after(SHUTDOWN_GRACE):
                while self._peer_tasks > 0:
                    await self._peer_tasks_done.wait()
                    self._peer_tasks_done = trio.Event()
        nursery.cancel_scope.cancel()
        for sub in list(self._subscriptions):
            sub.close()

    # -- events --------------------------------------------------------------------------

    def _emit(self, event: ServerEvent) -> None:
        for sub in list(self._subscriptions):
            if not sub._deliver(event):
                self.metrics.events_dropped.inc()

    def _wake_dialer(self) -> None:
        self._dial_wakeup.set()
        self._slot_wakeup.set()

    # -- inbound -------------------------------------------------------------------------

    async def _accept_loop(self, listeners: list[trio.SocketListener]) -> None:
        async with trio.open_nursery() as accepting:
            for listener in listeners:
                accepting.start_soon(self._accept_on, listener)

    async def _accept_on(self, listener: trio.SocketListener) -> None:
        assert self._nursery is not None
        while True:
            # With every slot held by a connection past its auth, accept nothing: the rest
            # waits in the kernel's backlog until a handshake ends.
            while not self._pending.has_room():
                await self._pending_changed.wait()
            try:
                stream = await listener.accept()
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                await trio.sleep(0.1)  # e.g. out of file descriptors: do not spin
                continue
            try:
                ip = ipaddress.ip_address(stream.socket.getpeername()[0])
                port = int(stream.socket.getpeername()[1])
            except OSError:
                await trio.aclose_forcefully(stream)
                continue
            entry = await self._admit(stream, ip)
            if entry is not None:
                self._nursery.start_soon(self._inbound_task, stream, (str(ip), port), entry)

    async def _admit(self, stream: trio.SocketStream, ip: IPAddress) -> Pending | None:
        """A pending-handshake slot for a connection just accepted from ``ip``, or None when it
        is refused (and closed)."""
        now = trio.current_time()
        evicted_before = self._limiter.evicted
        refused = self._limiter.check(ip, now)
        if self._limiter.evicted > evicted_before:
            self.metrics.limits.labels("throttle_table_full").inc(self._limiter.evicted - evicted_before)
        exempt = ip in self._trusted_ips
        while refused is None and not self._closing:
            admission = self._pending.admit(ip, exempt=exempt)
            if admission.verdict is Verdict.PER_IP:
                refused = "too many handshakes in progress from this IP"
                self.metrics.limits.labels("pending_per_ip").inc()
            elif admission.verdict is Verdict.FULL:
                # Another listener took the last slot meanwhile.
                await self._pending_changed.wait()
                continue
            else:
                if admission.victim is not None:
                    self._evict(admission.victim)
                return self._pending.add(ip, now, exempt=exempt)
        self.metrics.inbound.labels("throttled" if refused else "closing").inc()
        log.debug("inbound connection from %s refused: %s", ip, refused or "server stopping")
        await trio.aclose_forcefully(stream)
        return None

    def _evict(self, entry: Pending) -> None:
        """Give ``entry``'s slot to a newcomer: it has had its slot longest without sending auth."""
        self._pending.evict(entry)
        self.metrics.limits.labels("pending_evicted").inc()
        scope = self._pending_scopes.get(entry)
        if scope is not None:
            scope.cancel()
        log.debug("inbound handshake from %s evicted: no auth yet, and every slot is taken", entry.ip)

    def _pending_done(self, entry: Pending) -> None:
        self._pending_scopes.pop(entry, None)
        self._pending.finished(entry)
        # Wake whoever waits for a slot; later waiters wait for the next change.
        self._pending_changed.set()
        self._pending_changed = trio.Event()

    async def _inbound_task(self, stream: trio.SocketStream, remote: tuple[str, int], entry: Pending) -> None:
        conn: Transport | None = None
        peer: Peer | None = None
        with trio.CancelScope() as evictable:
            self._pending_scopes[entry] = evictable
            if entry.evicted:
                evictable.cancel()
            try:
                with trio.fail_after(self.dial_timeout):
                    conn = await rlpx_accept(stream, self._key, handshake_timeout=self.handshake_timeout,
                                             auth_timeout=self.auth_timeout, read_timeout=self.read_timeout + 5,
                                             first_frame_limit=HELLO_FRAME_LIMIT, budget=self.frame_budget)
                    self._pending.authenticated(entry)
                    handshake = await self._handshake(conn, remote, inbound=True, dialed=None)
                peer = await self._register(handshake)
            except (RLPxError, PeerError, trio.TooSlowError) as exc:
                self.metrics.inbound.labels(_outcome(exc)).inc()
                self._count_handshake_failure(exc)
                log.debug("inbound %s:%d failed: %s", remote[0], remote[1], exc)
                if conn is not None:
                    await close_transport(conn, None, linger=0)
                else:
                    await trio.aclose_forcefully(stream)
            except BaseException:
                if conn is not None:
                    await close_transport(conn, None, linger=0)
                else:
                    await trio.aclose_forcefully(stream)
                raise
            finally:
                self._pending_done(entry)
        if evictable.cancelled_caught:
            self.metrics.inbound.labels("evicted").inc()
        if peer is None:
            return
        self.metrics.inbound.labels("ok").inc()
        await self._run_peer(peer)

    # -- dialing -------------------------------------------------------------------------

    async def _dial_loop(self) -> None:
        assert self._nursery is not None
        while True:
            self._dial_wakeup = trio.Event()
            now = trio.current_time()
            for node in self._scheduler.due_static(now):
                self._scheduler.dial_started(node, now)  # before the task starts: not picked twice
                self._nursery.start_soon(self._dial_task, node, "static", None)
            wake_at = self._scheduler.next_static_time()
            with trio.move_on_at(wake_at if wake_at is not None else math.inf):
                await self._dial_wakeup.wait()

    def _node_mix(self) -> FairMix:
        mix = FairMix()
        if self.discovery is not None:
            mix.add_source(self.discovery.random_nodes(), "discv4")
        for i, source in enumerate(self._node_sources):
            mix.add_source(source, str(getattr(source, "name", "") or f"source{i}"))
        return mix

    async def _discovered_dial_loop(self) -> None:
        assert self._nursery is not None and self.node_mix is not None
        refused_in_a_row = 0
        async for node in self.node_mix:
            while self._scheduler.free_dyn_slots() <= 0 or self.peer_count() >= self.max_peers:
                self._slot_wakeup = trio.Event()
                with trio.move_on_after(SLOT_RECHECK):
                    await self._slot_wakeup.wait()
            now = trio.current_time()
            try:
                if not self._limiter.allowed_network(node.ip):
                    raise _dial.DialRefused("not in netrestrict")
                self._scheduler.check_dyn(node, now)
            except _dial.DialRefused as exc:
                log.debug("not dialing %s: %s", node.id.short(), exc)
                refused_in_a_row += 1
                # The iterator may keep offering the same few nodes: do not spin on them.
                await trio.sleep(1.0 if refused_in_a_row % 16 == 0 else 0)
                continue
            refused_in_a_row = 0
            self._scheduler.dial_started(node, now)
            self._nursery.start_soon(self._dial_task, node, "dyn", None)

    async def _dial_task(self, node: Node, kind: str, result: "_DialResult | None") -> None:
        if node.id not in self._scheduler.dialing:
            self._scheduler.dial_started(node, trio.current_time())
        ok = False
        conn: Transport | None = None
        try:
            try:
                if node.id == self.id:
                    raise PeerError("refusing to dial self", DisconnectReason.CONNECTED_TO_SELF)
                if not self._limiter.allowed_network(node.ip):
                    raise DialError("node is not in netrestrict", "netrestrict")
                async with self.dial_limiter if self.dial_limiter is not None else _NO_LIMIT:
                    if self.dial_limiter is not None and kind == "dyn" and result is None \
                            and self._scheduler.dialed_peers >= self._scheduler.max_dial_peers:
                        # Other dials filled our outbound share while this one queued for a
                        # slot: made now, it would only take an inbound slot of a node that
                        # still needs peers.
                        raise DialError("enough dialed peers by the time a dial slot was free", "not_needed")
                    # The deadline starts once a slot is ours: waiting for one is not the peer's fault.
                    with trio.fail_after(self.dial_timeout):
                        conn = await rlpx_connect(str(node.ip), node.tcp_port, self._key, node.pubkey,
                                                  handshake_timeout=self.handshake_timeout,
                                                  read_timeout=self.read_timeout + 5,
                                                  first_frame_limit=HELLO_FRAME_LIMIT, budget=self.frame_budget)
                        handshake = await self._handshake(conn, (str(node.ip), node.tcp_port), inbound=False,
                                                          dialed=node, static=(kind == "static"))
                    peer = await self._register(handshake)
                ok = True
            except (RLPxError, PeerError, trio.TooSlowError, DialError) as exc:
                outcome = exc.outcome if isinstance(exc, DialError) else _outcome(exc)
                self.metrics.dials.labels(outcome).inc()
                self._count_handshake_failure(exc)
                log.debug("dial %s (%s) failed: %s", node.id.short(), kind, exc)
                if kind == "static":
                    self._report_static_failure(node, outcome, exc)
                if conn is not None:
                    await close_transport(conn, None, linger=0)
                if result is not None:
                    if isinstance(exc, DialError):
                        result.fail(exc)
                    else:
                        reason = exc.reason if isinstance(exc, PeerError) else None
                        remote = exc.remote_requested if isinstance(exc, PeerError) else False
                        result.fail(DialError(f"dial {node.id.short()} failed: {exc}", outcome, reason, remote))
                return
            except BaseException:
                if conn is not None:
                    await close_transport(conn, None, linger=0)
                raise
            finally:
                self._scheduler.dial_finished(node, trio.current_time(), ok)
                self._wake_dialer()
            self.metrics.dials.labels("ok").inc()
            if kind == "static" and self._static_failing.pop(node.id, None) is not None:
                log.warning("static node %s@%s:%d connected", node.id.short(), node.ip, node.tcp_port)
            if result is not None:
                result.succeed(peer.info)
            await self._run_peer(peer)
        finally:
            if result is not None:
                result.fail(DialError("dial cancelled", "cancelled"))

    def _report_static_failure(self, node: Node, outcome: str, exc: BaseException) -> None:
        """A static node the user asked for and cannot have is worth a line at the default level,
        but only when its state changes: not at every retry of the backoff."""
        if node.id not in self._scheduler.static or self._static_failing.get(node.id) == outcome:
            return
        self._static_failing[node.id] = outcome
        log.warning("static node %s@%s:%d cannot be reached (%s); retrying", node.id.short(), node.ip,
                    node.tcp_port, exc)

    def _count_handshake_failure(self, exc: BaseException) -> None:
        if isinstance(exc, RLPxError) or isinstance(exc, trio.TooSlowError):
            self.metrics.handshake_failures.labels("rlpx", _outcome(exc)).inc()
        elif isinstance(exc, PeerError):
            self.metrics.handshake_failures.labels("hello", _outcome(exc)).inc()

    # -- the peer set --------------------------------------------------------------------

    def _refusal(self, node_id: NodeID, *, inbound: bool, dialed: Node | None, static: bool) -> DisconnectReason | None:
        """Why a connection to ``node_id`` cannot be a peer now, or None (also when it is to
        replace an existing connection to the same node)."""
        if node_id == self.id:
            return DisconnectReason.CONNECTED_TO_SELF
        if self._closing:
            return DisconnectReason.CLIENT_QUITTING
        if dialed is not None and node_id != dialed.id:
            return DisconnectReason.UNEXPECTED_IDENTITY
        existing = self._peers.get(node_id)
        if existing is not None:
            if existing.info.inbound == inbound:
                return DisconnectReason.ALREADY_CONNECTED
            # Both sides dialed each other: both keep the connection dialed by the lower node
            # ID, so they agree on which one survives.
            new_initiator = node_id if inbound else self.id
            old_initiator = self.id if inbound else node_id
            if new_initiator < old_initiator:
                return None
            return DisconnectReason.ALREADY_CONNECTED
        trusted = node_id in self._trusted
        if not trusted and not static:
            if len(self._peers) >= self.max_peers:
                return DisconnectReason.TOO_MANY_PEERS
            if inbound and self._inbound_count() >= self._max_inbound():
                return DisconnectReason.TOO_MANY_PEERS
        return None

    def _inbound_count(self) -> int:
        return sum(1 for p in self._peers.values() if p.info.inbound)

    def _max_inbound(self) -> int:
        # As go-ethereum, keep a share of the slots for our own dials when we dial at all.
        if self.discovery is None and not self._node_sources:
            return self.max_peers
        return max(0, self.max_peers - self.max_peers // self.dial_ratio)

    async def _handshake(self, conn: Transport, remote: tuple[str, int], *, inbound: bool, dialed: Node | None,
                         static: bool = False) -> "_Handshake":
        """Checks before Hello, the Hello exchange, capability matching. On refusal the
        transport is closed (with Disconnect) and PeerError raised."""
        node_id = NodeID.from_pubkey(conn.remote_pubkey)
        refusal = self._refusal(node_id, inbound=inbound, dialed=dialed, static=static)
        if refusal is not None:
            # Refused before Hello, as go-ethereum: the remote reads Disconnect instead of Hello.
            await close_transport(conn, refusal, linger=self.disconnect_linger)
            raise PeerError(f"refused {node_id.short()}: {_describe(refusal)}", refusal)
        local_hello = make_hello(self.public_key, self.protocols, client_id=self.client_id, listen_port=self._tcp_port)
        try:
            hello = await exchange_hello(conn, local_hello, timeout=self.handshake_timeout)
        except PeerError as exc:
            if isinstance(exc.__cause__, MessageTooLarge):
                self.metrics.limits.labels("hello_frame_size").inc()
            send = None if exc.remote_requested or exc.reason == DisconnectReason.TCP_ERROR else exc.reason
            await close_transport(conn, send, linger=self.disconnect_linger)
            raise
        matched: list[MatchedProtocol] = match_capabilities(self.protocols, hello.caps)
        if not matched and self.protocols and not self.allow_useless_peers:
            reason = DisconnectReason.USELESS_PEER
            await close_transport(conn, reason, linger=self.disconnect_linger)
            raise PeerError(f"{node_id.short()} shares no capability ({', '.join(map(str, hello.caps))})", reason)
        return _Handshake(conn, node_id, remote, inbound, dialed, static, hello, matched)

    async def _register(self, hs: "_Handshake") -> Peer:
        """Add the peer if the peer set still allows it (it may have changed during Hello)."""
        refusal = self._refusal(hs.node_id, inbound=hs.inbound, dialed=hs.dialed, static=hs.static)
        if refusal is not None:
            await close_transport(hs.conn, refusal, linger=self.disconnect_linger)
            raise PeerError(f"refused {hs.node_id.short()} after Hello: {_describe(refusal)}", refusal)
        hello, remote = hs.hello, hs.remote
        if hs.dialed is not None:
            enode = hs.dialed.to_url()
        else:
            port = hello.listen_port or remote[1]
            enode = Node(hs.conn.remote_pubkey, ipaddress.ip_address(remote[0]), port, port).to_url()
        info = PeerInfo(id=hs.node_id, client=hello.client_id, caps=hello.caps, remote=remote, inbound=hs.inbound,
                        since=time.time(), enode=enode)
        peer = Peer(hs.conn, info, hello, hs.matched, ping_interval=self.ping_interval,
                    read_timeout=self.read_timeout, linger=self.disconnect_linger, meter=self.metrics,
                    unhandled_burst=self.unhandled_burst, unhandled_rate=self.unhandled_rate,
                    send_queue_bytes=self.send_queue_bytes)
        old = self._peers.get(hs.node_id)
        if old is not None:
            old.disconnect(DisconnectReason.ALREADY_CONNECTED)
        self._peers[hs.node_id] = peer
        self._peer_tasks += 1
        self._scheduler.peer_added(hs.node_id, dialed=not hs.inbound and hs.node_id not in self._trusted,
                                   now=trio.current_time())
        self.metrics.peers.labels("inbound" if hs.inbound else "outbound").inc()
        if not hs.inbound and self._nodedb is not None and self._nodedb.protect(hs.node_id):
            self._db_held.add(peer)  # a node we dialed and spoke to keeps its place while connected
        log.info("peer added: %s %r %s %s:%d", hs.node_id.short(), info.client,
                 "inbound" if hs.inbound else "outbound", remote[0], remote[1])
        self._emit(PeerAdded(info))
        return peer

    async def _run_peer(self, peer: Peer) -> None:
        try:
            error = await peer.run()
        finally:
            info = peer.info
            error = peer.error or PeerError("stopped", DisconnectReason.CLIENT_QUITTING)
            if self._peers.get(info.id) is peer:
                del self._peers[info.id]
                self._scheduler.peer_removed(info.id, trio.current_time())
            self.metrics.peers.labels("inbound" if info.inbound else "outbound").dec()
            if peer in self._db_held and self._nodedb is not None:
                self._db_held.discard(peer)
                self._nodedb.unprotect(info.id)
            self.metrics.disconnects.labels(
                error.reason.name.lower() if isinstance(error.reason, DisconnectReason) else str(error.reason),
                "remote" if error.remote_requested else "local").inc()
            log.info("peer removed: %s (%s, %s): %s", info.id.short(), _describe(error.reason),
                     "by remote" if error.remote_requested else "by us", error)
            self._emit(PeerRemoved(info, error.reason, error.remote_requested))
            self._peer_tasks -= 1
            self._peer_tasks_done.set()
            self._wake_dialer()


class _NoLimit:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_LIMIT = _NoLimit()


@dataclass(slots=True)
class _Handshake:
    conn: Transport
    node_id: NodeID
    remote: tuple[str, int]
    inbound: bool
    dialed: Node | None
    static: bool
    hello: Hello
    matched: list[MatchedProtocol]


class _DialResult:
    def __init__(self) -> None:
        self._event = trio.Event()
        self._info: PeerInfo | None = None
        self._error: DialError | None = None

    def succeed(self, info: PeerInfo) -> None:
        if not self._event.is_set():
            self._info = info
            self._event.set()

    def fail(self, error: DialError) -> None:
        if not self._event.is_set():
            self._error = error
            self._event.set()

    async def wait(self) -> PeerInfo:
        await self._event.wait()
        if self._info is not None:
            return self._info
        assert self._error is not None
        raise self._error


@asynccontextmanager
async def open_server(
    private_key: PrivateKey | None = None,
    listen: tuple[str, int] = ("127.0.0.1", 0),
    protocols: Sequence[Protocol] = (),
    config: ServerConfig | None = None,
) -> AsyncIterator[Server]:
    """Run a :class:`Server` for the duration of the ``async with``. ``private_key`` None makes
    a new identity; ``config`` None is ``ServerConfig()``, the defaults."""
    server = Server(private_key, listen, protocols, config)
    async with server.serving():
        yield server


__all__ = [
    "CLIENT_ID",
    "DEFAULT_MAX_PEERS",
    "DialError",
    "EventSubscription",
    "PeerAdded",
    "PeerRemoved",
    "Server",
    "ServerConfig",
    "ServerEvent",
    "open_server",
    "parse_nat",
]
