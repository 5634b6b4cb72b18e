"""The eth protocol on a node: the Status handshake and header exchange, served from a ``Chain``.

    eth = EthService(Chain.build(MAINNET_GENESIS, 100), MAINNET)
    async with open_server(key, protocols=[eth.protocol], config=ServerConfig(...)) as server:
        headers = await eth.get_block_headers(peer_id, origin=0, amount=10)

On connect both sides send Status at once; a peer whose Status does not arrive within
``STATUS_TIMEOUT`` is dropped with a timeout, and one on another network or genesis, or with
an incompatible fork ID, is dropped as a useless peer. Only after that are other messages
accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio

from p2p import (
    DisconnectReason,
    NodeID,
    PeerInfo,
    Protocol,
    ProtocolConnection,
    ProtocolError,
    RequestError,
    RequestLimits,
    Session,
)

from protocols.eth.chain import BlockHeader, Chain
from protocols.eth.forkid import ChainConfig, ForkIDMismatch, validate_fork_id
from protocols.eth.messages import ETH_LENGTH, ETH_VERSION, MAX_HEADERS_SERVE, BlockHeaders, EthCode, GetBlockHeaders, Status

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


class EthService:
    """eth/68 for a node that holds a chain of headers (no bodies, no state, no transactions)."""

    def __init__(self, chain: Chain, config: ChainConfig, *, emit: Emit | None = None,
                 status_timeout: float = STATUS_TIMEOUT) -> None:
        if chain.genesis.hash != config.genesis_hash:
            raise ValueError("the chain's genesis is not the configuration's genesis")
        self.chain = chain
        self.config = config
        self.status_timeout = status_timeout
        self._emit = emit
        self._ready: dict[NodeID, tuple[Session, Status]] = {}
        self._ready_changed = trio.Event()  # replaced each time a peer becomes ready
        self.protocol = Protocol("eth", ETH_VERSION, ETH_LENGTH, run=self._run,
                                 node_info=self.node_info,
                                 peer_info=lambda conn: _describe(self._state(conn).status),
                                 requests=RequestLimits(REQUEST_TIMEOUT, MAX_PENDING_PER_PEER))
        self.protocol.on(Status)(self._on_status)
        self.protocol.on(GetBlockHeaders)(self._on_get_block_headers)
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
        try:  # at most MAX_PENDING_PER_PEER in flight: more callers wait for a slot
            reply = await conn.request(GetBlockHeaders(origin, amount, skip, reverse), timeout=timeout)
        except RequestError as exc:
            raise EthRequestError(f"no BlockHeaders from {peer_id.short()}: {exc}") from None
        if len(reply.headers) > amount:
            await conn.disconnect(DisconnectReason.SUBPROTOCOL_ERROR)
            raise EthRequestError("peer sent more headers than asked for")
        return list(reply.headers)

    # --- the protocol ---

    def _state(self, conn: ProtocolConnection) -> _PeerState:
        state = conn.state.get("eth")
        if state is None:
            state = conn.state["eth"] = _PeerState()
        assert isinstance(state, _PeerState)
        return state

    async def _run(self, peer: PeerInfo, conn: Session) -> None:
        state = self._state(conn)
        await conn.send(self.local_status())
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

    async def _on_status(self, conn: Session, status: Status) -> None:
        state = self._state(conn)
        if state.status is not None:
            raise ProtocolError("second Status message")
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

    async def _on_get_block_headers(self, conn: Session, query: GetBlockHeaders) -> BlockHeaders:
        self._require_status(conn)
        # Like go-ethereum, a too-large request is answered in part rather than refused.
        amount = min(query.amount, MAX_HEADERS_SERVE)
        return BlockHeaders(tuple(self.chain.headers(query.origin, amount, query.skip, query.reverse)))


def _describe(status: Status | None) -> dict[str, object] | None:
    if status is None:
        return None
    return {"version": status.version, "network": status.network_id, "td": status.total_difficulty,
            "head": status.head_hash.hex(), "genesis": status.genesis_hash.hex(),
            "fork_id": str(status.fork_id)}


async def _ignore(conn: ProtocolConnection, payload: bytes) -> None:
    return None
