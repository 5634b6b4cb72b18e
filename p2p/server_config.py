"""``ServerConfig``: everything a :class:`~p2p.server.Server` can be told, field by field.

    config = ServerConfig(max_peers=25, bootnodes=[...], node_db_path="nodes.db")
    async with open_server(key, ("0.0.0.0", 30303), [chat.protocol], config) as server: ...

Each default is the safe choice for a node on the open internet, mostly go-ethereum's; the
comment on a field says what it bounds or decides and why its default is what it is. Use
``dataclasses.replace(config, field=value)`` for a variant.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from p2p import dial as _dial
from p2p.inbound import MAX_PENDING, MAX_PENDING_PER_IP
from p2p.limits import ProcessLimits
from p2p.peer import (
    HANDSHAKE_TIMEOUT,
    LINGER_TIME,
    PING_INTERVAL,
    READ_TIMEOUT,
    SEND_QUEUE_BYTES,
    UNHANDLED_BURST,
    UNHANDLED_RATE,
)
from p2p.rlpx.budget import FRAME_MEMORY_BUDGET
from p2p.rlpx.connection import AUTH_TIMEOUT

if TYPE_CHECKING:
    from p2p.discover import DiscoveryConfig
    from p2p.enode import Node
    from p2p.enode.iter import NodeIterator
    from p2p.enode.nodedb import NodeDBLimits

DEFAULT_MAX_PEERS = 50  # go-ethereum's default --maxpeers
CLIENT_ID = f"trio-devp2p/v0.1.0/python{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How a server behaves; every field has a safe default (see the module docstring)."""

    # -- whom to talk to --
    # Discovery's first contacts (``enode://`` URLs or Nodes). Empty by default: a node joins a
    # network only when told which one.
    bootnodes: Sequence[Node | str] = ()
    # Nodes kept connected, redialed with backoff when they drop; they pass the peer limits.
    # Empty by default: every peer is found by discovery unless the user asks.
    static_nodes: Sequence[Node | str] = ()
    # Nodes always let in, even when the server is full (and exempt from the per-address cap on
    # handshakes when given with their address). Empty by default: nobody gets a privilege.
    trusted_nodes: Sequence[Node | str] = ()

    # -- the peer set --
    # Peers at once, inbound and outbound; each costs memory, sockets and the protocols' work.
    # 50 as go-ethereum's --maxpeers.
    max_peers: int = DEFAULT_MAX_PEERS
    # One in ``dial_ratio`` peer slots is filled by our dials, the rest by inbound connections
    # (when discovery runs). 3 as go-ethereum: a node mostly serves, but never only.
    dial_ratio: int = _dial.DIAL_RATIO
    # Dials in flight at once; each holds a socket and a handshake's CPU. 16 as go-ethereum.
    max_active_dials: int = _dial.MAX_ACTIVE_DIALS
    # Keep peers that share no capability with us. False: such a peer only takes a slot, as
    # go-ethereum disconnects it (USELESS_PEER); tools that test the base protocol set it.
    allow_useless_peers: bool = False

    # -- inbound handshakes (what an unauthenticated remote can make us hold) --
    # Inbound handshakes in progress at once; past it accepting pauses. 50 as go-ethereum's
    # defaultMaxPendingPeers.
    max_pending: int = MAX_PENDING
    # Of those, from one IP address: one address cannot hold every slot (a connection flood).
    max_pending_per_ip: int = MAX_PENDING_PER_IP
    # Seconds an inbound connection has to send its RLPx auth before its slot can go to a
    # newcomer: an honest dialer sends it at once, a slowloris never does.
    auth_timeout: float = AUTH_TIMEOUT
    # One inbound attempt per IP in this many seconds (0 turns it off). 30 s as go-ethereum's
    # inboundThrottleTime: a redialing peer cannot spin our handshake CPU.
    inbound_throttle: float = _dial.INBOUND_THROTTLE
    # Throttle loopback addresses too. False as go-ethereum: local tools and tests connect
    # often from 127.0.0.1.
    throttle_loopback: bool = False
    # Only these networks (CIDR list, comma-separated text or None for all) are dialed,
    # accepted and talked to by discovery, as go-ethereum's --netrestrict. None: no restriction.
    netrestrict: Iterable[str] | str | None = None

    # -- memory a peer can make us spend --
    # Bytes of frames being read across all peers at once; a peer whose frame does not fit
    # waits for room. 64 MiB: a few maximal (16 MiB) messages at once, not one per peer.
    frame_memory_budget: int = FRAME_MEMORY_BUDGET
    # Messages to codes no handler takes, per peer, before it is disconnected: a burst and a
    # steady rate per second. The defaults allow a newer peer's extra messages, not a flood.
    unhandled_burst: int = UNHANDLED_BURST
    unhandled_rate: float = UNHANDLED_RATE
    # Bytes of messages our protocols have queued for one peer and its writer has not yet
    # written; senders wait past it. 512 KiB: many small messages per system call, while a
    # peer that stops reading holds back only its own senders.
    send_queue_bytes: int = SEND_QUEUE_BYTES

    # -- timing --
    # Seconds for a whole dial: TCP connect, RLPx and Hello. 15 as go-ethereum's defaultDialTimeout.
    dial_timeout: float = _dial.DIAL_TIMEOUT
    # Seconds for the RLPx and Hello exchanges each. 5 as go-ethereum's handshakeTimeout.
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    # Seconds between our pings to a peer. 15 as go-ethereum's pingInterval.
    ping_interval: float = PING_INTERVAL
    # Seconds of silence after which a peer is dropped: two missed pings (go-ethereum's 30).
    read_timeout: float = READ_TIMEOUT
    # Seconds we keep reading after sending Disconnect, so that the remote reads the reason
    # before the socket closes instead of a reset.
    disconnect_linger: float = LINGER_TIME
    # Seconds before a node we dialed may be dialed again; 30 matches the inbound throttle, so
    # two nodes never throttle each other's redials.
    dial_history_expiry: float = _dial.DIAL_HISTORY_EXPIRY
    # First and last delay (seconds) between redials of a static node that fails: quick to
    # come back, then once a minute for one that is gone.
    static_backoff: tuple[float, float] = (_dial.STATIC_BACKOFF_MIN, _dial.STATIC_BACKOFF_MAX)

    # -- discovery and the node database --
    # Run discovery (v4, UDP on the TCP port) and dial the nodes it finds. True: a node finds
    # its peers itself; False for static-only setups and tests (no UDP socket at all).
    discovery: bool = True
    # Discovery's own settings (timeouts, table, v5). None: DiscoveryConfig()'s defaults.
    discovery_config: DiscoveryConfig | None = None
    # Where the node database lives on disk (LevelDB). None: in memory, so a restart starts
    # from the bootnodes again, and our record's seq from 1.
    node_db_path: str | None = None
    # Bounds on what the node database keeps. None: the module's constants (NodeDBLimits()).
    node_db_limits: NodeDBLimits | None = None
    # Where dial candidates come from besides discovery (a DNS tree, a list), mixed fairly with
    # discovery's random walk. Empty: discovery alone, as a plain node.
    node_sources: Sequence[NodeIterator] = ()

    # -- what we say about ourselves --
    # The address in our record and enode URL: ``none`` (the listen address, or 127.0.0.1
    # when listening on all) or ``extip:IP`` behind a NAT. None: as ``none``.
    nat: str | None = None
    # The client name in our Hello; peers log it. This library's name and version.
    client_id: str = CLIENT_ID

    # -- operations and tests --
    # (host, port) to serve Prometheus metrics on (port 0 picks one). None: no metrics socket.
    metrics_addr: tuple[str, int] | None = None
    # The randomness for dial choices and backoff jitter. None: SystemRandom; tests pass a
    # seeded Random.
    rng: random.Random | None = None
    # Limiters shared by many nodes in one process (a local testnet): the dials in flight and
    # the discovery lookups across all of them, so each finishes within its deadlines. None:
    # a lone node, bounded by max_active_dials and discovery's own lookup limit.
    limits: ProcessLimits | None = None

    def __post_init__(self) -> None:
        if self.max_peers < 0:
            raise ValueError(f"max_peers must be >= 0, got {self.max_peers}")
        if self.max_pending < 1 or self.max_pending_per_ip < 1:
            raise ValueError("max_pending and max_pending_per_ip must be >= 1")
        for name in ("dial_timeout", "handshake_timeout", "read_timeout", "auth_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


__all__ = ["CLIENT_ID", "DEFAULT_MAX_PEERS", "ServerConfig"]
