"""The Kademlia node table, sans-IO: a data structure with an injected clock and rng.

Layout as go-ethereum's ``p2p/discover``: 17 buckets of 16 entries, each with a replacement
list of 10. Bucket ``i`` (i >= 1) holds nodes at log-distance ``240 + i`` from us; bucket 0
holds every node at distance 240 or closer, since with random IDs such nodes are rare.
Entries are ordered most recently proven live first; revalidation checks the last one.

The table decides nothing about the network: the service tells it what it saw
(:meth:`Table.add_seen`), what proved live (:meth:`Table.add_verified`,
:meth:`Table.revalidated`) and what failed (:meth:`Table.remove`), and collects the resulting
:class:`NodeAdded` / :class:`NodeRemoved` events from :meth:`Table.pop_events`.
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Union

from p2p.enode import IPAddress, Node, NodeID, log_distance

BUCKET_SIZE = 16  # Kademlia k, as go-ethereum
MAX_REPLACEMENTS = 10  # go-ethereum's per-bucket replacement list size
HASH_BITS = 256  # node IDs are keccak256 outputs
N_BUCKETS = HASH_BITS // 15  # go-ethereum keeps buckets for the upper 1/15 of distances: 17
BUCKET_MIN_DISTANCE = HASH_BITS - N_BUCKETS  # 239: distances up to 240 share bucket 0
BUCKET_IP_LIMIT = 2  # at most 2 nodes from one /24 per bucket (go-ethereum bucketIPLimit)
TABLE_IP_LIMIT = 10  # and 10 per /24 in the whole table (go-ethereum tableIPLimit)
SUBNET_BITS = 24  # the prefix that both limits count by, for IPv4 and IPv6 alike as go-ethereum

_LAN_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fe80::/10", "fc00::/7"))


@functools.lru_cache(maxsize=4096)
def is_lan(ip: IPAddress) -> bool:
    """Loopback and private/link-local addresses (go-ethereum's ``netutil.IsLAN``): exempt from
    the IP limits by default, since a local testnet puts every node on one address."""
    if ip.is_loopback:
        return True
    return any(ip.version == net.version and ip in net for net in _LAN_NETWORKS)


def no_exemption(ip: IPAddress) -> bool:
    """Apply the IP limits to every address, loopback included (for tests of the limits)."""
    return False


@dataclass(frozen=True, slots=True)
class TableConfig:
    bucket_size: int = BUCKET_SIZE
    max_replacements: int = MAX_REPLACEMENTS
    bucket_ip_limit: int = BUCKET_IP_LIMIT
    table_ip_limit: int = TABLE_IP_LIMIT
    subnet_bits: int = SUBNET_BITS
    ip_limit_exempt: Callable[[IPAddress], bool] = is_lan


V4 = "v4"
V5 = "v5"


@dataclass(frozen=True, slots=True)
class NodeAdded:
    node: Node
    via: str = V4  # the discovery protocol that found it: "v4" or "v5"


@dataclass(frozen=True, slots=True)
class NodeRemoved:
    node: Node
    via: str = V4  # the protocol that had found it


TableEvent = Union[NodeAdded, NodeRemoved]


_PROTOCOL_SETS: dict[frozenset[str], frozenset[str]] = {}  # one object per distinct set


def protocol_set(protocols: Iterable[str]) -> frozenset[str]:
    """The shared frozenset of ``protocols``: every entry of every table in the process points
    to one of a few such objects (a set of its own cost each entry ~200 bytes)."""
    key = frozenset(protocols)
    return _PROTOCOL_SETS.setdefault(key, key)


@dataclass(slots=True, eq=False)
class Entry:
    node: Node
    added_at: float
    live_checks: int = 0  # times it answered us; 0 = only heard of (go-ethereum's livenessChecks)
    via: str = V4  # the protocol it was found through
    # every protocol it was learned or verified through: revalidation pings it over these
    # (shared and immutable: replace it, through protocol_set, to change it)
    protocols: frozenset[str] = frozenset()
    key: int = field(init=False)  # the ID as an integer, for XOR sorting without conversions

    def __post_init__(self) -> None:
        self.key = int.from_bytes(self.node.id, "big")
        self.add_protocol(self.via)

    def add_protocol(self, via: str) -> None:
        if via not in self.protocols:
            self.protocols = protocol_set(self.protocols | {via})


class _SubnetCounter:
    """How many addresses of each subnet are held, with a limit per subnet."""

    __slots__ = ("limit", "bits", "exempt", "counts")

    def __init__(self, limit: int, bits: int, exempt: Callable[[IPAddress], bool]) -> None:
        self.limit = limit
        self.bits = bits
        self.exempt = exempt
        self.counts: dict[tuple[int, int], int] = {}

    def _key(self, ip: IPAddress) -> tuple[int, int] | None:
        if self.exempt(ip):
            return None
        width = 32 if ip.version == 4 else 128
        return ip.version, int(ip) >> (width - self.bits)

    def can_add(self, ip: IPAddress) -> bool:
        key = self._key(ip)
        return key is None or self.counts.get(key, 0) < self.limit

    def add(self, ip: IPAddress) -> None:
        key = self._key(ip)
        if key is not None:
            self.counts[key] = self.counts.get(key, 0) + 1

    def remove(self, ip: IPAddress) -> None:
        key = self._key(ip)
        if key is not None and key in self.counts:
            self.counts[key] -= 1
            if not self.counts[key]:
                del self.counts[key]


@dataclass(slots=True, eq=False)
class Bucket:
    index: int
    ips: _SubnetCounter
    entries: list[Entry] = field(default_factory=list)  # most recently proven live first
    replacements: list[Node] = field(default_factory=list)  # most recently seen first
    replacement_via: dict[bytes, str] = field(default_factory=dict)  # id -> protocol it was found through

    def find(self, node_id: bytes) -> int:
        for i, e in enumerate(self.entries):
            if e.node.id == node_id:
                return i
        return -1

    def find_replacement(self, node_id: bytes) -> int:
        for i, n in enumerate(self.replacements):
            if n.id == node_id:
                return i
        return -1


def bucket_index(local_id: bytes, node_id: bytes) -> int:
    d = log_distance(local_id, node_id)
    return 0 if d <= BUCKET_MIN_DISTANCE else d - BUCKET_MIN_DISTANCE - 1


class Table:
    """The k-buckets of one node. Not thread-safe; the owning trio task serializes access."""

    def __init__(self, local_id: NodeID, *, clock: Callable[[], float],
                 rng: random.Random | None = None, config: TableConfig | None = None) -> None:
        self.local_id = local_id
        self.config = config or TableConfig()
        self._clock = clock
        self._rng = rng or random.Random()
        self._local_int = int.from_bytes(local_id, "big")
        self.ips = _SubnetCounter(self.config.table_ip_limit, self.config.subnet_bits,
                                  self.config.ip_limit_exempt)
        self.buckets = [
            Bucket(i, _SubnetCounter(self.config.bucket_ip_limit, self.config.subnet_bits,
                                     self.config.ip_limit_exempt))
            for i in range(N_BUCKETS)
        ]
        self._by_id: dict[bytes, Entry] = {}
        self._events: list[TableEvent] = []

    # -- queries -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes())

    def nodes(self) -> list[Node]:
        return [e.node for b in self.buckets for e in b.entries]

    def members(self) -> list[tuple[Node, str]]:
        """Every entry with the protocol it was found through."""
        return [(e.node, e.via) for b in self.buckets for e in b.entries]

    def get(self, node_id: bytes) -> Node | None:
        entry = self._by_id.get(node_id)
        return entry.node if entry is not None else None

    def entry(self, node_id: bytes) -> Entry | None:
        return self._by_id.get(node_id)

    def bucket_of(self, node_id: bytes) -> Bucket:
        return self.buckets[bucket_index(self.local_id, node_id)]

    def closest(self, target: bytes, n: int = BUCKET_SIZE, *, prefer_live: bool = False) -> list[Node]:
        """The ``n`` entries closest to ``target`` (a node ID) by XOR distance. With
        ``prefer_live``, only nodes that answered us are returned when there are any, so
        that dead entries are not passed on (as go-ethereum answers FindNode)."""
        t = int.from_bytes(target, "big")
        entries = list(self._by_id.values())
        if prefer_live:
            live = [e for e in entries if e.live_checks > 0]
            if live:
                entries = live
        entries.sort(key=lambda e: e.key ^ t)
        return [e.node for e in entries[:n]]

    def random_nodes(self, n: int) -> list[Node]:
        nodes = self.nodes()
        self._rng.shuffle(nodes)
        return nodes[:n]

    # -- changes -------------------------------------------------------------------------

    def pop_events(self) -> list[TableEvent]:
        events, self._events = self._events, []
        return events

    def add_seen(self, node: Node, via: str = V4) -> bool:
        """A node heard of through protocol ``via`` (e.g. in a Neighbors reply) but not
        checked: it goes to the back of its bucket, or to the replacement list when the
        bucket is full. True if added."""
        if node.id == self.local_id:
            return False
        entry = self._by_id.get(node.id)
        if entry is not None:
            entry.add_protocol(via)
            return False
        b = self.bucket_of(node.id)
        if len(b.entries) >= self.config.bucket_size:
            self._add_replacement(b, node, via)
            return False
        return self._insert(b, node, front=False, live=False, via=via)

    def add_verified(self, node: Node, via: str = V4) -> bool:
        """A node that proved live over protocol ``via`` (answered our ping or findnode): it
        moves to the front of its bucket, with an updated endpoint when that passes the IP
        limits, or enters at the front, or becomes a replacement if the bucket is full. True
        if newly added."""
        if node.id == self.local_id:
            return False
        b = self.bucket_of(node.id)
        entry = self._by_id.get(node.id)
        if entry is not None:
            self._update_endpoint(b, entry, node)
            entry.live_checks += 1
            entry.add_protocol(via)
            b.entries.remove(entry)
            b.entries.insert(0, entry)
            return False
        if len(b.entries) >= self.config.bucket_size:
            self._add_replacement(b, node, via)
            return False
        return self._insert(b, node, front=True, live=True, via=via)

    def protocols(self, node_id: bytes) -> frozenset[str]:
        """The protocols an entry was learned or verified through (empty when absent)."""
        entry = self._by_id.get(node_id)
        return entry.protocols if entry is not None else frozenset()

    def update_node(self, node: Node) -> bool:
        """Replace the record (new ENR or endpoint) of an entry, keeping its place."""
        entry = self._by_id.get(node.id)
        if entry is None:
            return False
        return self._update_endpoint(self.bucket_of(node.id), entry, node)

    def remove(self, node_id: bytes) -> Node | None:
        """Drop an entry (e.g. too many failed findnode requests); a random replacement, if
        any, takes its place."""
        entry = self._by_id.get(node_id)
        if entry is None:
            return None
        b = self.bucket_of(node_id)
        self._delete(b, entry)
        self._promote_replacement(b)
        return entry.node

    def remove_protocol(self, node_id: bytes, via: str) -> Node | None:
        """Protocol ``via`` failed an entry (e.g. too many failed findnode requests over it):
        the entry stops being used over ``via``, and is dropped (as :meth:`remove`) only when
        it is known through no other protocol. The dropped node, if it was."""
        entry = self._by_id.get(node_id)
        if entry is None:
            return None
        rest = entry.protocols - {via}
        if rest:
            entry.protocols = protocol_set(rest)
            return None
        return self.remove(node_id)

    def node_to_revalidate(self) -> Node | None:
        """The least recently proven entry of a random non-empty bucket."""
        nonempty = [b for b in self.buckets if b.entries]
        if not nonempty:
            return None
        return self._rng.choice(nonempty).entries[-1].node

    def revalidated(self, node_id: bytes, alive: bool) -> None:
        """The outcome of a revalidation ping: a live node moves to the front, a dead one is
        replaced by a random replacement (or just dropped when there is none)."""
        entry = self._by_id.get(node_id)
        if entry is None:
            return
        b = self.bucket_of(node_id)
        if alive:
            entry.live_checks += 1
            b.entries.remove(entry)
            b.entries.insert(0, entry)
        else:
            self._delete(b, entry)
            self._promote_replacement(b)

    # -- internals -----------------------------------------------------------------------

    def _insert(self, b: Bucket, node: Node, *, front: bool, live: bool, via: str) -> bool:
        r = b.find_replacement(node.id)
        if r >= 0:
            old = b.replacements.pop(r)
            b.replacement_via.pop(old.id, None)
            self._release_ip(b, old.ip)
        if not self._take_ip(b, node.ip):
            return False
        entry = Entry(node, self._clock(), 1 if live else 0, via)
        if front:
            b.entries.insert(0, entry)
        else:
            b.entries.append(entry)
        self._by_id[node.id] = entry
        self._events.append(NodeAdded(node, via))
        return True

    def _delete(self, b: Bucket, entry: Entry) -> None:
        b.entries.remove(entry)
        del self._by_id[entry.node.id]
        self._release_ip(b, entry.node.ip)
        self._events.append(NodeRemoved(entry.node, entry.via))

    def _promote_replacement(self, b: Bucket) -> None:
        if not b.replacements or len(b.entries) >= self.config.bucket_size:
            return
        node = b.replacements.pop(self._rng.randrange(len(b.replacements)))
        via = b.replacement_via.pop(node.id, V4)
        # Its IP is already counted (replacements count towards the limits).
        entry = Entry(node, self._clock(), 0, via)
        b.entries.append(entry)
        self._by_id[node.id] = entry
        self._events.append(NodeAdded(node, via))

    def _add_replacement(self, b: Bucket, node: Node, via: str) -> None:
        r = b.find_replacement(node.id)
        if r >= 0:
            old = b.replacements.pop(r)
            b.replacement_via.pop(old.id, None)
            self._release_ip(b, old.ip)
        if not self._take_ip(b, node.ip):
            return
        b.replacements.insert(0, node)
        b.replacement_via[node.id] = via
        if len(b.replacements) > self.config.max_replacements:
            dropped = b.replacements.pop()
            b.replacement_via.pop(dropped.id, None)
            self._release_ip(b, dropped.ip)

    def _update_endpoint(self, b: Bucket, entry: Entry, node: Node) -> bool:
        old = entry.node
        if old.ip != node.ip:
            self._release_ip(b, old.ip)
            if not self._take_ip(b, node.ip):
                self._take_ip(b, old.ip)  # restore: the old address stays in use
                return False
        if old.enr is not None and (node.enr is None or node.enr.seq < old.enr.seq):
            node = node.with_enr(old.enr)  # never go back to an older record
        changed = (old.ip, old.udp_port, old.tcp_port, old.enr) != (node.ip, node.udp_port, node.tcp_port, node.enr)
        entry.node = node
        return changed

    def _take_ip(self, b: Bucket, ip: IPAddress) -> bool:
        if not self.ips.can_add(ip) or not b.ips.can_add(ip):
            return False
        self.ips.add(ip)
        b.ips.add(ip)
        return True

    def _release_ip(self, b: Bucket, ip: IPAddress) -> None:
        self.ips.remove(ip)
        b.ips.remove(ip)


__all__ = [
    "BUCKET_SIZE",
    "Bucket",
    "Entry",
    "MAX_REPLACEMENTS",
    "N_BUCKETS",
    "NodeAdded",
    "NodeRemoved",
    "Table",
    "TableConfig",
    "TableEvent",
    "V4",
    "V5",
    "bucket_index",
    "is_lan",
    "no_exemption",
]
