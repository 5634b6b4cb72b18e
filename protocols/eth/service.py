"""The eth protocol on a node: the Status handshake and header exchange, served from a ``Chain``.

    eth = EthService(Chain.build(MAINNET_GENESIS, 100), MAINNET)
    async with open_server(private_key=key, protocols=[eth.protocol], ...) as server:
        headers = await eth.get_block_headers(peer_id, origin=0, amount=10)

On connect both sides send Status at once; a peer whose Status does not arrive within
``STATUS_TIMEOUT`` is dropped with a timeout, and one on another network or genesis, or with
an incompatible fork ID, is dropped as a useless peer. Only after that are other messages
accepted.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import trio

from p2p import DisconnectReason, NodeID, PeerInfo, Protocol, ProtocolConnection, ProtocolError
from p2p.protocol import Handler

from protocols.eth.chain import BlockHeader, Chain
from protocols.eth.forkid import ChainConfig, ForkIDMismatch, validate_fork_id
from protocols.eth.messages import (
    ETH_LENGTH,
    ETH_VERSION,
    MAX_HEADERS_SERVE,
    BlockHeaders,
    EthCode,
    EthDecodeError,
    GetBlockHeaders,
    Status,
)

logger = logging.getLogger(__name__)

STATUS_TIMEOUT = 5.0  # seconds; @ethereumjs/devp2p and go-ethereum wait as long for Status
REQUEST_TIMEOUT = 10.0  # seconds a GetBlockHeaders may take before the caller gives up
MAX_PENDING_PER_PEER = 16  # requests in flight to one peer

Emit = Callable[..., None]


class EthRequestError(Exception):
    """A request that could not be answered: peer gone, not ready, or too slow."""


@dataclass(frozen=True, slots=True)
class EthPeer:
    info: PeerInfo
    status: Status


class _PeerState:
    def __init__(self) -> None:
        self.status: Status | None = None
        self.status_received = trio.Event()
        self.pending: dict[int, trio.MemorySendChannel[BlockHeaders]] = {}


class EthService:
    """eth/68 for a node that holds a chain of headers (no bodies, no state, no transactions)."""

    def __init__(self, chain: Chain, config: ChainConfig, *, emit: Emit | None = None,
                 status_timeout: float = STATUS_TIMEOUT, rng: random.Random | None = None) -> None:
        if chain.genesis.hash != config.genesis_hash:
            raise ValueError("the chain's genesis is not the configuration's genesis")
        self.chain = chain
        self.config = config
        self.status_timeout = status_timeout
        self._emit = emit
        self._rng = rng if rng is not None else random.SystemRandom()
        self._ready: dict[NodeID, tuple[ProtocolConnection, Status]] = {}
        self._ready_changed = trio.Event()  # replaced each time a peer becomes ready
        self.protocol = Protocol("eth", ETH_VERSION, ETH_LENGTH, run=self._run,
                                 node_info=self.node_info,
                                 peer_info=lambda conn: _describe(self._state(conn).status))
        handlers: dict[EthCode, Callable[[ProtocolConnection, bytes], None]] = {
            EthCode.STATUS: self._on_status,
        }
        for code, fn in handlers.items():
            self.protocol.handler(code)(self._sync_handler(fn))
        self.protocol.handler(EthCode.GET_BLOCK_HEADERS)(self._on_get_block_headers)
        self.protocol.handler(EthCode.BLOCK_HEADERS)(self._sync_handler(self._on_block_headers))
        # Announcements this node does not act on: taken and ignored, so that a peer that
        # gossips them (as every eth peer does) is not mistaken for one sending junk.
        for code in (EthCode.NEW_BLOCK_HASHES, EthCode.TRANSACTIONS, EthCode.NEW_BLOCK,
                     EthCode.NEW_POOLED_TRANSACTION_HASHES):
            self.protocol.handler(code)(_ignore)

    # --- what applications use ---

    def local_status(self) -> Status:
        head = self.chain.head
        return Status(ETH_VERSION, self.config.network_id, self.chain.total_difficulty, head.hash,
                      self.chain.genesis.hash, self.config.fork_id(head.number, head.timestamp))

    def node_info(self) -> dict[str, object]:
        status = self.local_status()
        return {"network": status.network_id, "genesis": status.genesis_hash.hex(),
                "head": status.head_hash.hex(), "number": self.chain.head.number,
                "fork_id": str(status.fork_id)}

    def peers(self) -> list[EthPeer]:
        """Peers that completed the Status handshake."""
        return [EthPeer(conn.peer, status) for conn, status in self._ready.values()]

    async def wait_ready(self, peer_id: NodeID) -> Status:
        """Wait until ``peer_id`` has completed the Status handshake (bound it with a deadline)."""
        while peer_id not in self._ready:
            await self._ready_changed.wait()
        return self._ready[peer_id][1]

    async def get_block_headers(self, peer_id: NodeID, origin: bytes | int, amount: int, skip: int = 0,
                                reverse: bool = False, *, timeout: float = REQUEST_TIMEOUT) -> list[BlockHeader]:
        ready = self._ready.get(peer_id)
        if ready is None:
            raise EthRequestError(f"peer {peer_id.short()} has not completed the eth handshake")
        conn = ready[0]
        if not 0 < amount <= MAX_HEADERS_SERVE:
            raise ValueError(f"amount must be 1-{MAX_HEADERS_SERVE}")
        state = self._state(conn)
        if len(state.pending) >= MAX_PENDING_PER_PEER:
            raise EthRequestError(f"{MAX_PENDING_PER_PEER} requests already pending to {peer_id.short()}")
        request_id = self._rng.getrandbits(63)
        send, receive = trio.open_memory_channel[BlockHeaders](1)
        state.pending[request_id] = send
        try:
            await conn.send(EthCode.GET_BLOCK_HEADERS,
                            GetBlockHeaders(request_id, origin, amount, skip, reverse).encode())
            with trio.move_on_after(timeout):
                reply = await receive.receive()
                if len(reply.headers) > amount:
                    await conn.disconnect(DisconnectReason.SUBPROTOCOL_ERROR)
                    raise EthRequestError("peer sent more headers than asked for")
                return list(reply.headers)
            raise EthRequestError(f"no BlockHeaders from {peer_id.short()} within {timeout} s")
        finally:
            state.pending.pop(request_id, None)

    # --- the protocol ---

    def _state(self, conn: ProtocolConnection) -> _PeerState:
        state = conn.state.get("eth")
        if state is None:
            state = conn.state["eth"] = _PeerState()
        assert isinstance(state, _PeerState)
        return state

    def _sync_handler(self, fn: Callable[[ProtocolConnection, bytes], None]) -> Handler:
        async def handle(conn: ProtocolConnection, payload: bytes) -> None:
            fn(conn, payload)
        return handle

    async def _run(self, peer: PeerInfo, conn: ProtocolConnection) -> None:
        state = self._state(conn)
        await conn.send(EthCode.STATUS, self.local_status().encode())
        with trio.move_on_after(self.status_timeout):
            await state.status_received.wait()
        if state.status is None:
            raise ProtocolError(f"no Status within {self.status_timeout} s", DisconnectReason.TIMEOUT)
        self._ready[peer.id] = (conn, state.status)
        self._ready_changed.set()
        self._ready_changed = trio.Event()
        if self._emit is not None:
            self._emit("eth_status", peer=peer.id.hex(), **(_describe(state.status) or {}))
        try:
            await trio.sleep_forever()
        finally:
            if self._ready.get(peer.id, (None,))[0] is conn:
                del self._ready[peer.id]

    def _on_status(self, conn: ProtocolConnection, payload: bytes) -> None:
        state = self._state(conn)
        if state.status is not None:
            raise ProtocolError("second Status message")
        try:
            status = Status.decode(payload)
        except EthDecodeError as exc:
            raise ProtocolError(str(exc)) from None
        self.check_status(status)
        state.status = status
        state.status_received.set()

    def check_status(self, status: Status) -> None:
        """Raise ``ProtocolError(USELESS_PEER)`` when a peer's Status is not our chain."""
        useless = DisconnectReason.USELESS_PEER
        if status.version != ETH_VERSION:
            raise ProtocolError(f"Status version {status.version}, want {ETH_VERSION}", useless)
        if status.network_id != self.config.network_id:
            raise ProtocolError(f"network ID {status.network_id}, want {self.config.network_id}", useless)
        if status.genesis_hash != self.chain.genesis.hash:
            raise ProtocolError(f"genesis {status.genesis_hash.hex()[:16]} is not ours", useless)
        head = self.chain.head
        try:
            validate_fork_id(self.config, head.number, head.timestamp, status.fork_id)
        except ForkIDMismatch as exc:
            raise ProtocolError(f"fork ID {status.fork_id}: {exc}", useless) from None

    def _require_status(self, conn: ProtocolConnection) -> _PeerState:
        state = self._state(conn)
        if state.status is None:
            raise ProtocolError("message before Status", DisconnectReason.BREACH_OF_PROTOCOL)
        return state

    async def _on_get_block_headers(self, conn: ProtocolConnection, payload: bytes) -> None:
        self._require_status(conn)
        try:
            query = GetBlockHeaders.decode(payload)
        except EthDecodeError as exc:
            raise ProtocolError(str(exc)) from None
        # Like go-ethereum, a too-large request is answered in part rather than refused.
        amount = min(query.amount, MAX_HEADERS_SERVE)
        headers = self.chain.headers(query.origin, amount, query.skip, query.reverse)
        await conn.send(EthCode.BLOCK_HEADERS, BlockHeaders(query.request_id, tuple(headers)).encode())

    def _on_block_headers(self, conn: ProtocolConnection, payload: bytes) -> None:
        state = self._require_status(conn)
        try:
            reply = BlockHeaders.decode(payload)
        except EthDecodeError as exc:
            raise ProtocolError(str(exc)) from None
        waiter = state.pending.pop(reply.request_id, None)
        if waiter is None:
            logger.debug("eth: unsolicited BlockHeaders %d from %s", reply.request_id, conn.peer.id.short())
            return
        try:
            waiter.send_nowait(reply)
        except (trio.WouldBlock, trio.BrokenResourceError):
            pass


def _describe(status: Status | None) -> dict[str, object] | None:
    if status is None:
        return None
    return {"version": status.version, "network": status.network_id, "td": status.total_difficulty,
            "head": status.head_hash.hex(), "genesis": status.genesis_hash.hex(),
            "fork_id": str(status.fork_id)}


async def _ignore(conn: ProtocolConnection, payload: bytes) -> None:
    return None
