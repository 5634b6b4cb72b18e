"""The node database: nodes we have seen, and what we know about talking to them.

Semantics follow go-ethereum's discovery node database, stored with plyvel (LevelDB) on
disk, or with the same behaviour in memory when no path is given:

* every key of a node starts with ``n:<32-byte id>:v4``; the record itself lives at that
  exact key, per-endpoint fields at ``n:<id>:v4:<16-byte IP>:<field>`` (IPv4 in its
  IPv4-mapped form), so one prefix scan finds and deletes everything about a node;
* a ``version`` key guards the layout: a store of another version of ours is wiped, but a
  store that holds keys and no version key is another program's and is refused untouched
  (:class:`NodeDBForeign`);
* a store that LevelDB reports as corrupted is repaired, and if that fails it is moved
  aside and a new one created: the node always starts. A store whose ``CURRENT`` file is
  missing is repaired too (LevelDB would otherwise start a new, empty store over it);
* what is kept for nodes that are not protected (see :meth:`NodeDB.protect`: discovery
  protects table members, the server the peers it dialed) is bounded by a count, the least
  recently seen node going first; the IPs kept per node are bounded too (:class:`NodeDBLimits`);
* ``query_seeds`` finds random fresh nodes by seeking to random IDs;
* expiry drops nodes that have not answered a ping for a long time, only once the node has
  bonded with someone (:meth:`NodeDB.mark_bonded`), so that seeds survive an offline start.
  The store runs no task: whoever opened it runs the expiry (:mod:`p2p.enode.expiry`).
"""

from __future__ import annotations

import bisect
import ipaddress
import logging
import os
import random
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import plyvel
import rlp
import trio

from p2p.crypto import PublicKey
from p2p.crypto.errors import InvalidKey
from p2p.enode._rlp import encode_string, list_header
from p2p.enode.node import IPAddress, Node, NodeID

if TYPE_CHECKING:
    from p2p.enode.enr import ENR

logger = logging.getLogger(__name__)

DB_VERSION = 1  # layout of this module's keys and values; bump to wipe old stores on open
NODE_EXPIRATION = 24 * 3600.0  # no pong for this long and a node is dropped, as go-ethereum
CLEANUP_INTERVAL = 3600.0  # period of the expiry task, as go-ethereum
SEEK_ATTEMPTS_PER_SEED = 5  # query_seeds tries n * 5 random seeks, as go-ethereum
SEEK_WALK_LIMIT = 16  # records one seek may step over (stale, duplicate) before giving up
SEEK_STEP_LIMIT = 256  # keys (records and per-IP fields) one seek may read at most
SEEK_FIRST_BYTE_STEP = 16  # the seek's first ID byte creeps up by < 16, as go-ethereum: small stores get swept
# A table holds at most 16 x 256 = 4,096 nodes; twice that many unprotected nodes keep a full
# table's worth of seeds for a restart, at about 1 KiB each (record, per-IP fields, bookkeeping): 8 MiB.
MAX_UNPROTECTED_NODES = 8192
# Protected nodes are table members and dialed peers: a 256-bucket table (4,096) plus 1,024 peers;
# protection past that is refused, so that no caller's mistake unbinds the store.
MAX_PROTECTED_NODES = 16 * 256 + 1024
# A node moves between a few addresses (IPv4, IPv6, a new NAT mapping); more is one key
# sending from many addresses, each of which would add per-IP fields.
MAX_ENDPOINTS_PER_NODE = 4
LEVELDB_OPTIONS: dict[str, Any] = {
    "bloom_filter_bits": 10,  # most seq lookups on insert are for new nodes: answer them without a block read
    "max_open_files": 64,  # go-ethereum keeps its node database small in file handles too
}

VERSION_KEY = b"version"
NODE_PREFIX = b"n:"
DISCOVER_ROOT = b":v4"
LOCAL_SEQ_KEY = b"local:seq"
FIELD_PING = b"lastping"
FIELD_PONG = b"lastpong"
FIELD_FINDFAIL = b"findfail"
FIELD_SEQ = b"seq"
_ENDPOINT_FIELDS = (FIELD_PING, FIELD_PONG, FIELD_FINDFAIL)
ZERO_IP16 = bytes(16)  # the "no endpoint" IP under which a node's record seq is kept
_NODE_KEY_LEN = len(NODE_PREFIX) + 32 + len(DISCOVER_ROOT)
_ITEM_KEY_MIN_LEN = _NODE_KEY_LEN + 1 + 16 + 1  # n:<id>:v4:<ip16>: before the field name
_IP4_MAPPED = bytes(10) + b"\xff\xff"
_FLOAT = struct.Struct(">d")
_UINT = struct.Struct(">Q")


class NodeDBError(Exception):
    """Base of the node database's errors."""


class NodeDBClosed(NodeDBError):
    """The database was used after ``close()``."""


class NodeDBVersionMismatch(NodeDBError):
    """Opened for inspection, the store has another layout version (it is left untouched)."""

    def __init__(self, path: str, found: int | None) -> None:
        super().__init__(f"{path}: node database layout version {found}, this code reads {DB_VERSION}")
        self.path = path
        self.found = found


class NodeDBCorrupt(NodeDBError):
    """Opened for inspection, the store is damaged or not a node database (it is left untouched)."""


class NodeDBForeign(NodeDBError):
    """The path holds something that is not a node database (keys but no node database
    version key, or a file): another program's, refused untouched."""

    def __init__(self, path: str, why: str = "it holds data but no node database version key") -> None:
        super().__init__(f"{path}: not a node database ({why}); refusing to use or wipe it")
        self.path = path


# --- storage backends -------------------------------------------------------------------

class Cursor(Protocol):
    """The part of a plyvel iterator the database uses: seek, then step forward."""

    def seek(self, target: bytes) -> None: ...
    def __iter__(self) -> Iterator[tuple[bytes, bytes]]: ...
    def __next__(self) -> tuple[bytes, bytes]: ...
    def close(self) -> None: ...


class Batch(Protocol):
    """The part of a plyvel write batch the database uses; written when the ``with`` ends."""

    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def __enter__(self) -> "Batch": ...
    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> Any: ...


class Store(Protocol):
    """An ordered byte store: plyvel's ``DB`` or :class:`MemoryStore`."""

    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def write_batch(self) -> Batch: ...
    def iterator(self, *, prefix: bytes | None = None) -> Cursor: ...
    def close(self) -> None: ...


PENDING_SLACK = 64  # pending keys of a MemoryStore that may be dead before a compaction is worth its pass
# Distinct keys and records a SharedBytes keeps one copy of before it starts over: at ~100
# bytes of bookkeeping each, 2^20 of them are ~100 MB, far more than the ~4 keys per node of
# a 100,000-node network need, and a process whose nodes keep meeting new ones (churn) never
# holds more. Starting over only stops the sharing of what was stored before.
SHARED_BYTES_MAX = 1 << 20
# Values this long or longer are shared (node records, 70-300 bytes); shorter ones are times
# and counters, which differ from one database to the next.
SHARED_VALUE_MIN = 64


class SharedBytes:
    """One copy of each equal key or record among the in-memory node databases of one process.

    The nodes of a local testnet or a simulation all store the same few keys and records
    about the same nodes: each key names a remote node (and its IP), each record is that
    node's ENR. Shared, they cost each database a pointer instead of a copy, which at 10,000
    nodes in a process was about a third of the memory of a node's database. A lone node
    has nothing to share with and takes none.
    """

    def __init__(self, max_entries: int = SHARED_BYTES_MAX) -> None:
        self.max_entries = max_entries
        self._copies: dict[bytes, bytes] = {}
        self.restarts = 0  # times the table was full and started over

    def __len__(self) -> int:
        return len(self._copies)

    def __call__(self, value: bytes) -> bytes:
        """The one copy equal to ``value`` (``value`` itself when it is the first)."""
        copy = self._copies.get(value)
        if copy is None:
            if len(self._copies) >= self.max_entries:
                self._copies.clear()
                self.restarts += 1
            copy = self._copies[value] = value
        return copy


class MemoryStore:
    """An ordered in-memory store with the subset of plyvel's interface the database uses.

    A dict holds the data; a sorted key list serves seeks. New keys wait in a pending list
    and deleted keys stay in the sorted list (skipped) until the next seek needs order, so
    that bulk inserts and expiry sweeps do not pay a list insertion or removal each. The
    pending list is a plain list (8 bytes a key, where a set or dict cost ~60: thousands of
    in-memory databases live in one testnet process); a key deleted while pending stays in it
    until the next seek, or until the list outgrows twice the live keys and is compacted, so a
    stream of short-lived keys (nodes evicted between two seeks) holds memory in proportion to
    the live keys only.
    """

    def __init__(self, shared: SharedBytes | None = None) -> None:
        self.shared = shared  # keys and records shared with the other stores of the process
        self._data: dict[bytes, bytes] = {}
        # No set mirrors the sorted list: a bisection answers membership, and thousands of
        # in-memory databases in one testnet process would each pay ~30 bytes a key for it.
        self._sorted: list[bytes] = []
        self._pending: list[bytes] = []  # keys put since the last seek; may repeat or be deleted since
        self._stale = 0

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        shared = self.shared
        if shared is not None and len(value) >= SHARED_VALUE_MIN:
            value = shared(value)
        if key not in self._data:
            if shared is not None:
                key = shared(key)
            if self._in_sorted(key):
                self._stale -= 1
            else:
                self._pending.append(key)
        self._data[key] = value
        if len(self._pending) > 2 * len(self._data) + PENDING_SLACK:
            self._pending = self._live_pending()

    def delete(self, key: bytes) -> None:
        if self._data.pop(key, None) is not None and self._in_sorted(key):
            self._stale += 1

    def _live_pending(self) -> list[bytes]:
        """The pending keys still stored, each once, in order."""
        data = self._data
        return [k for k in dict.fromkeys(self._pending) if k in data]

    def write_batch(self) -> "MemoryBatch":
        return MemoryBatch(self)

    def iterator(self, *, prefix: bytes | None = None) -> "MemoryCursor":
        return MemoryCursor(self, prefix or b"")

    def close(self) -> None:
        self._data.clear()
        self._sorted.clear()
        self._pending.clear()

    def _keys(self) -> list[bytes]:
        """The sorted key list, with pending keys merged in (it may still hold deleted keys)."""
        if self._pending:
            fresh = [k for k in self._live_pending() if not self._in_sorted(k)]
            self._pending.clear()
            if len(fresh) > 64:
                self._sorted = sorted(self._data)
                self._stale = 0
            else:
                for key in fresh:
                    bisect.insort(self._sorted, key)
        if self._stale > 64 and self._stale > len(self._sorted) // 4:
            self._sorted = [k for k in self._sorted if k in self._data]
            self._stale = 0
        return self._sorted

    def _in_sorted(self, key: bytes) -> bool:
        i = bisect.bisect_left(self._sorted, key)
        return i < len(self._sorted) and self._sorted[i] == key


class MemoryBatch:
    """Buffered puts and deletes, applied in order when the ``with`` block ends without error."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._ops: list[tuple[bytes, bytes | None]] = []

    def put(self, key: bytes, value: bytes) -> None:
        self._ops.append((key, value))

    def delete(self, key: bytes) -> None:
        self._ops.append((key, None))

    def __enter__(self) -> "MemoryBatch":
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        if t is None:
            for key, value in self._ops:
                if value is None:
                    self._store.delete(key)
                else:
                    self._store.put(key, value)
        self._ops.clear()


class MemoryCursor:
    """A forward cursor that re-finds its place by key, so writes meanwhile never confuse it."""

    def __init__(self, store: MemoryStore, prefix: bytes) -> None:
        self._store = store
        self._prefix = prefix
        self._pos = prefix

    def seek(self, target: bytes) -> None:
        self._pos = max(target, self._prefix)

    def __iter__(self) -> "MemoryCursor":
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        keys = self._store._keys()
        data = self._store._data
        i = bisect.bisect_left(keys, self._pos)
        while i < len(keys):
            key = keys[i]
            if not key.startswith(self._prefix):
                break
            value = data.get(key)
            if value is not None:
                self._pos = key + b"\x00"  # the smallest key after this one
                return key, value
            i += 1
        raise StopIteration

    def close(self) -> None:
        pass


# --- encoding -----------------------------------------------------------------------------

def _node_key(node_id: bytes) -> bytes:
    return NODE_PREFIX + node_id + DISCOVER_ROOT


def _item_key(node_id: bytes, ip16: bytes, field: bytes) -> bytes:
    return NODE_PREFIX + node_id + DISCOVER_ROOT + b":" + ip16 + b":" + field


def _ip16(ip: IPAddress | str) -> bytes:
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    return _IP4_MAPPED + addr.packed if addr.version == 4 else addr.packed


def _ip_from16(ip16: bytes) -> IPAddress:
    if ip16[:12] == _IP4_MAPPED:
        return ipaddress.IPv4Address(ip16[12:])
    return ipaddress.IPv6Address(ip16)


def _rlp_uint(value: int) -> bytes:
    return encode_string(value.to_bytes((value.bit_length() + 7) // 8, "big"))


_PUBKEY_HEADER = b"\xb8\x40"  # RLP string of 64 bytes
_IP_HEADER = {4: b"\x84", 16: b"\x90"}
_port_rlp: dict[int, bytes] = {}  # ports repeat a lot (30303): encode each once


def _encode_port(port: int) -> bytes:
    enc = _port_rlp.get(port)
    if enc is None:
        enc = _port_rlp[port] = _rlp_uint(port)
    return enc


def encode_record(node: Node) -> bytes:
    """RLP of ``[pubkey64, ip, udp, tcp, enr-rlp or empty]``, the stored form of a node.

    Written out by hand for this fixed shape: bulk inserts spend most of their time here.
    """
    packed = node.ip.packed
    body = b"".join((
        _PUBKEY_HEADER, node.pubkey.to_bytes(),
        _IP_HEADER[len(packed)], packed,
        _encode_port(node.udp_port),
        _encode_port(node.tcp_port),
        encode_string(node.enr.to_rlp()) if node.enr is not None else b"\x80",
    ))
    n = len(body)
    if n < 256:  # always so without an ENR: 64-byte key, IP and ports are at least 56 bytes
        return b"\xf8" + bytes((n,)) + body  # inline: list_header costs a fifth more per record here
    return list_header(n) + body


@dataclass(frozen=True, slots=True)
class _Record:
    pubkey: bytes
    ip: IPAddress
    udp: int
    tcp: int
    enr: bytes


def _decode_record(blob: bytes) -> _Record:
    """The fields of a stored record, unchecked beyond their shapes (raises ValueError)."""
    try:
        items = rlp.decode(blob)
    except rlp.DecodingError as exc:
        raise ValueError(f"record is not RLP: {exc}") from exc
    if not isinstance(items, list) or len(items) != 5 or not all(isinstance(x, bytes) for x in items):
        raise ValueError("record is not a list of five strings")
    pubkey, ip, udp, tcp, enr = items
    if len(ip) not in (4, 16) or len(udp) > 2 or len(tcp) > 2:
        raise ValueError("record has a bad IP or port")
    return _Record(pubkey, ipaddress.ip_address(ip), int.from_bytes(udp, "big"), int.from_bytes(tcp, "big"), enr)


def _node_from_record(rec: _Record) -> Node:
    enr: ENR | None = None
    if rec.enr:
        from p2p.enode.enr import ENR

        # records were verified before they were stored: skip the signature check, which
        # would dominate query_seeds, but insist that the record is the node's own
        enr = ENR.from_rlp(rec.enr, verify=False)
        if enr.public_key.to_bytes() != rec.pubkey:
            raise ValueError("stored ENR is signed by another key than the node's")
    return Node(PublicKey(rec.pubkey), rec.ip, rec.udp, rec.tcp, enr)


def _get_float(store: Store, key: bytes) -> float:
    blob = store.get(key)
    return _FLOAT.unpack(blob)[0] if blob is not None and len(blob) == 8 else 0.0


def _get_uint(store: Store, key: bytes) -> int:
    blob = store.get(key)
    return _UINT.unpack(blob)[0] if blob is not None and len(blob) == 8 else 0


# --- opening on disk ---------------------------------------------------------------------

def _open_leveldb(path: str, create: bool) -> plyvel.DB:
    return plyvel.DB(path, create_if_missing=create, **LEVELDB_OPTIONS)


def _stored_version(db: plyvel.DB) -> int | None:
    blob = db.get(VERSION_KEY)
    if blob is None:
        return None
    return _UINT.unpack(blob)[0] if len(blob) == 8 else -1


def _all_keys_ours(db: plyvel.DB) -> bool:
    it = db.iterator(include_value=False)
    try:
        return all(key == LOCAL_SEQ_KEY or (key.startswith(NODE_PREFIX) and len(key) >= _NODE_KEY_LEN
                                            and key[_NODE_KEY_LEN - len(DISCOVER_ROOT):_NODE_KEY_LEN] == DISCOVER_ROOT)
                   for key in it)
    finally:
        it.close()


def _open_checked(path: str, *, repaired: bool = False) -> plyvel.DB:
    """Open (creating) and make sure the version key is ours; wipe a store of another of our
    layout versions, refuse (untouched) one that holds data without our version key.

    ``repaired``: we have just repaired this store, which may have cost the version key; if
    every key left has our layout, it is ours and keeps its data.
    """
    db = _open_leveldb(path, True)
    try:
        found = _stored_version(db)
        if found is None:
            if next(db.iterator(include_value=False), None) is not None:
                if not (repaired and _all_keys_ours(db)):
                    raise NodeDBForeign(path)
                logger.warning("node database %s lost its version key in the repair: restored", path)
            db.put(VERSION_KEY, _UINT.pack(DB_VERSION), sync=True)
            return db
        if found < 0:  # every layout of ours wrote an 8-byte version: this "version" is someone else's
            raise NodeDBForeign(path)
        if found != DB_VERSION:
            logger.warning("node database %s has layout version %s, want %s: wiping it", path, found, DB_VERSION)
            db.close()
            plyvel.destroy_db(path)
            db = _open_leveldb(path, True)
            db.put(VERSION_KEY, _UINT.pack(DB_VERSION), sync=True)
        return db
    except BaseException:
        db.close()
        raise


def _is_lock_error(exc: plyvel.Error) -> bool:
    return isinstance(exc, plyvel.IOError) and b"lock" in str(exc).encode().lower()


def _verify(db: plyvel.DB) -> None:
    """Read every block once, so that damage shows now and not in the middle of a lookup."""
    it = db.iterator(verify_checksums=True, fill_cache=False, include_value=False)
    try:
        for _ in it:
            pass
    finally:
        it.close()


def _open_verified(path: str, *, repaired: bool = False) -> plyvel.DB:
    db = _open_checked(path, repaired=repaired)
    try:
        _verify(db)
    except BaseException:
        db.close()
        raise
    return db


_LEVELDB_FILE_SUFFIXES = (".ldb", ".sst", ".log")


def _lost_current(path: str) -> bool:
    """A LevelDB directory whose CURRENT file is gone but whose data files are still there.

    LevelDB would open it as a new store (CURRENT is what it looks for) and then delete the
    table files it does not know as obsolete: every record lost, silently.
    """
    try:
        names = os.listdir(path)
    except OSError:  # no directory yet (a new store), or not a directory: LevelDB says which
        return False
    if "CURRENT" in names:
        return False
    return any(n.endswith(_LEVELDB_FILE_SUFFIXES) or n.startswith("MANIFEST-") for n in names)


def _open_persistent(path: str) -> plyvel.DB:
    """Open the store at ``path``; a damaged store is repaired, else moved aside and recreated."""
    if os.path.exists(path) and not os.path.isdir(path):  # LevelDB would call it damaged: it is not ours
        raise NodeDBForeign(path, "not a directory")
    if _lost_current(path):
        logger.warning("node database %s has no CURRENT file: repairing it from its table and log files", path)
        return _repair_or_move_aside(path)
    try:
        return _open_verified(path)
    except plyvel.Error as exc:
        if _is_lock_error(exc):
            raise NodeDBError(f"{path}: node database is in use by another process: {exc}") from exc
        logger.warning("node database %s is damaged (%s): repairing it", path, exc)
    return _repair_or_move_aside(path)


def _repair_or_move_aside(path: str) -> plyvel.DB:
    try:
        plyvel.repair_db(path)
        if _lost_current(path):  # opening now would start an empty store over the files
            raise plyvel.CorruptionError(b"repair wrote no CURRENT file")
        db = _open_verified(path, repaired=True)
        logger.warning("node database %s repaired", path)
        return db
    except plyvel.Error as exc:
        aside = f"{path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        logger.warning("node database %s could not be repaired (%s): moved aside to %s, starting a new one",
                       path, exc, aside)
    try:
        os.rename(path, aside)
    except OSError as exc:
        raise NodeDBError(f"{path}: damaged node database cannot be moved aside: {exc}") from exc
    return _open_checked(path)


def _open_for_inspection(path: str) -> plyvel.DB:
    if not os.path.isdir(path):
        raise NodeDBError(f"{path}: no node database here")
    try:
        db = _open_leveldb(path, False)
    except plyvel.CorruptionError as exc:
        raise NodeDBCorrupt(f"{path}: node database is corrupted: {exc}") from exc
    except plyvel.Error as exc:
        raise NodeDBError(f"{path}: cannot open node database: {exc}") from exc
    try:
        found = _stored_version(db)
    except plyvel.CorruptionError as exc:
        db.close()
        raise NodeDBCorrupt(f"{path}: node database is corrupted: {exc}") from exc
    if found != DB_VERSION:
        db.close()
        if found is None:
            raise NodeDBCorrupt(f"{path}: not a node database (no version key)")
        raise NodeDBVersionMismatch(path, found)
    return db


# --- the database --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """What the database keeps about one (node, IP) pair."""

    ip: IPAddress
    last_ping_received: float
    last_pong_received: float
    find_fails: int


@dataclass(frozen=True, slots=True)
class NodeDBLimits:
    """Bounds on what the database keeps; the defaults are the module's constants."""

    max_unprotected: int = MAX_UNPROTECTED_NODES  # nodes kept that no one protects; least recently seen out
    max_protected: int = MAX_PROTECTED_NODES  # nodes that can be protected at once; more are refused
    max_endpoints: int = MAX_ENDPOINTS_PER_NODE  # IPs with per-IP fields per node; least recently seen out

    def __post_init__(self) -> None:
        if self.max_unprotected < 0 or self.max_protected < 0 or self.max_endpoints < 1:
            raise ValueError(f"node database limits out of range: {self}")


class NodeDBStats:
    """What the bounds did, for metrics: nodes and endpoints evicted, protections refused."""

    __slots__ = ("evicted_nodes", "evicted_endpoints", "protect_refused")

    def __init__(self) -> None:
        self.evicted_nodes = 0
        self.evicted_endpoints = 0
        self.protect_refused = 0


class NodeDB:
    """Nodes and their per-endpoint bonding state; see the module docstring.

    Every write about a node makes it the most recently seen. Nodes that no one protects are
    kept up to ``limits.max_unprotected``; past that the least recently seen one is deleted
    with all its keys. The owner of a node's place protects it while that place lasts:
    discovery while the node is in its table, the server while a peer it dialed is
    connected (:meth:`protect` / :meth:`unprotect`, counted, so both can hold one node).
    Protection is not stored: after a restart the nodes seen last are the last to go.
    """

    def __init__(self, store: Store, *, path: str | None, clock: Callable[[], float], expiration: float,
                 cleanup_interval: float, rng: random.Random, limits: NodeDBLimits | None = None,
                 track: bool = True) -> None:
        self._store: Store = store
        self._shared = store.shared if isinstance(store, MemoryStore) else None
        self.path = path
        self.limits = limits if limits is not None else NodeDBLimits()
        self.stats = NodeDBStats()
        # node ID -> its IPs with per-IP fields (least recently seen first), in two maps:
        # unprotected nodes ordered least recently seen first, protected nodes unordered
        self._unprotected: OrderedDict[bytes, tuple[bytes, ...]] = OrderedDict()
        self._protected: dict[bytes, tuple[bytes, ...]] = {}
        self._holds: dict[bytes, int] = {}  # protected node ID -> protect() calls not yet undone
        self._warned_full = False
        self._track = track  # False when opened for inspection: nothing is written, nothing to bound
        self._clock = clock
        self.expiration = expiration
        self.cleanup_interval = cleanup_interval
        self._rng = rng
        self._self_id: bytes | None = None
        self._closed = False
        self._bonded = trio.Event()  # set by mark_bonded(): the expiry owner waits for it
        # Set by the one task that runs the expiry (p2p.enode.expiry), for as long as it runs.
        self.expiry_owner: object | None = None
        self.expirer_running = False  # the owner's periodic scan is under way (bonded)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, clock: Callable[[], float] = time.time,
             expiration: float = NODE_EXPIRATION, cleanup_interval: float = CLEANUP_INTERVAL,
             rng: random.Random | None = None, inspect: bool = False,
             limits: NodeDBLimits | None = None, shared: SharedBytes | None = None) -> "NodeDB":
        """Open the store at ``path`` (in memory when None).

        ``clock`` gives the times stored and compared; a store on disk outlives the
        process, so its clock must be wall-clock time. ``inspect=True`` opens without
        creating, wiping or repairing anything, raising :class:`NodeDBError` instead.
        A store that holds data but no version key raises :class:`NodeDBForeign` and is
        left as it was. ``limits`` bounds what is kept (:class:`NodeDBLimits`); a store on
        disk that holds more is trimmed on open, least recently seen nodes first. ``shared``
        lets the in-memory databases of one process share equal keys and records.
        """
        store: Store
        spath = os.fspath(path) if path is not None else None
        if spath is None:
            store = MemoryStore(shared)
            store.put(VERSION_KEY, _UINT.pack(DB_VERSION))
        elif inspect:
            store = _open_for_inspection(spath)
        else:
            try:
                store = _open_persistent(spath)
            except plyvel.Error as exc:
                raise NodeDBError(f"{spath}: cannot open node database: {exc}") from exc
        db = cls(store, path=spath, clock=clock, expiration=expiration, cleanup_interval=cleanup_interval,
                 rng=rng if rng is not None else random.SystemRandom(), limits=limits, track=not inspect)
        if spath is not None and not inspect:
            try:
                db._load_tracking()
            except plyvel.Error as exc:
                db.close()
                raise NodeDBError(f"{spath}: cannot read node database: {exc}") from exc
            except BaseException:
                db.close()
                raise
        return db

    # -- lifecycle

    def close(self) -> None:
        """Close the store (an expiry owner stops at its next cycle); closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._store.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "NodeDB":
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _live(self) -> Store:
        if self._closed:
            raise NodeDBClosed(f"node database {self.path or '(memory)'} is closed")
        return self._store

    # -- bounds: which nodes are kept

    def protect(self, node_id: bytes) -> bool:
        """Keep ``node_id`` however many other nodes come, until as many :meth:`unprotect` calls.

        False (and counted in ``stats.protect_refused``) when ``limits.max_protected`` nodes
        are protected already: then the caller must not call :meth:`unprotect` for this one.
        The node need not be stored yet. Expiry still drops a protected node that stopped
        answering pings.
        """
        if self._closed:
            return False
        held = self._holds.get(node_id)
        if held is not None:
            self._holds[node_id] = held + 1
            return True
        if len(self._holds) >= self.limits.max_protected:
            self.stats.protect_refused += 1
            return False
        self._holds[node_id] = 1
        endpoints = self._unprotected.pop(node_id, None)
        if endpoints is not None:
            self._protected[node_id] = endpoints
        return True

    def unprotect(self, node_id: bytes) -> None:
        """Undo one :meth:`protect`; the last one makes the node the most recently seen unprotected one."""
        held = self._holds.get(node_id)
        if held is None:
            return
        if held > 1:
            self._holds[node_id] = held - 1
            return
        del self._holds[node_id]
        endpoints = self._protected.pop(node_id, None)
        if endpoints is not None and not self._closed:
            self._unprotected[node_id] = endpoints  # it held its place until now: seen last
            self._evict_excess()

    def is_protected(self, node_id: bytes) -> bool:
        return node_id in self._holds

    @property
    def unprotected_count(self) -> int:
        """Stored nodes that no one protects (what ``limits.max_unprotected`` bounds)."""
        return len(self._unprotected)

    @property
    def protected_count(self) -> int:
        """Nodes protected now, stored or not."""
        return len(self._holds)

    def _seen(self, node_id: bytes, ip16: bytes | None) -> None:
        """Note a write about ``node_id`` (at ``ip16`` for a per-IP field) and apply the bounds."""
        if not self._track:
            return
        protected = node_id in self._holds
        nodes = self._protected if protected else self._unprotected
        endpoints = nodes.get(node_id)
        new = endpoints is None
        if endpoints is None:
            endpoints = ()
        elif not protected:
            self._unprotected.move_to_end(node_id)
        if ip16 is not None and ip16 != ZERO_IP16 and (not endpoints or endpoints[-1] != ip16):
            if ip16 in endpoints:
                endpoints = tuple(e for e in endpoints if e != ip16) + (ip16,)
            else:
                if self._shared is not None:
                    ip16 = self._shared(ip16)
                endpoints += (ip16,)
                if len(endpoints) > self.limits.max_endpoints:
                    self._delete_endpoint(node_id, endpoints[0])
                    endpoints = endpoints[1:]
                    self.stats.evicted_endpoints += 1
            nodes[node_id] = endpoints
        elif new:
            nodes[node_id] = endpoints
        if new and not protected:
            self._evict_excess()

    def _evict_excess(self) -> None:
        excess = len(self._unprotected) - self.limits.max_unprotected
        if excess <= 0:
            return
        if not self._warned_full:
            self._warned_full = True
            logger.warning("node database %s: more than %d unprotected nodes, dropping the least recently seen",
                           self.path or "(memory)", self.limits.max_unprotected)
        store = self._store
        with store.write_batch() as batch:
            for _ in range(excess):
                node_id, endpoints = self._unprotected.popitem(last=False)
                batch.delete(_node_key(node_id))
                batch.delete(_item_key(node_id, ZERO_IP16, FIELD_SEQ))
                for ip16 in endpoints:
                    for field in _ENDPOINT_FIELDS:
                        batch.delete(_item_key(node_id, ip16, field))
                self.stats.evicted_nodes += 1

    def _delete_endpoint(self, node_id: bytes, ip16: bytes) -> None:
        with self._store.write_batch() as batch:
            for field in _ENDPOINT_FIELDS:
                batch.delete(_item_key(node_id, ip16, field))

    def _forget_endpoint(self, node_id: bytes, ip16: bytes) -> None:
        """Its per-IP fields were deleted: stop counting that IP for the node."""
        nodes = self._protected if node_id in self._protected else self._unprotected
        endpoints = nodes.get(node_id)
        if endpoints is not None and ip16 in endpoints:
            nodes[node_id] = tuple(e for e in endpoints if e != ip16)

    def _load_tracking(self) -> None:
        """Learn which nodes a store on disk holds, ordered by when each was last heard from
        (its youngest ping or pong), and trim it to the limits."""
        last: dict[bytes, float] = {}
        ips: dict[bytes, dict[bytes, float]] = {}
        it = self._store.iterator(prefix=NODE_PREFIX)
        try:
            for key, value in it:
                if len(key) < _NODE_KEY_LEN or key[_NODE_KEY_LEN - len(DISCOVER_ROOT):_NODE_KEY_LEN] != DISCOVER_ROOT:
                    continue
                node_id = key[2:34]
                if node_id not in last:
                    last[node_id] = 0.0
                if len(key) <= _ITEM_KEY_MIN_LEN:
                    continue
                ip16 = key[_NODE_KEY_LEN + 1:_NODE_KEY_LEN + 17]
                if ip16 == ZERO_IP16:
                    continue
                t = _FLOAT.unpack(value)[0] if key[_ITEM_KEY_MIN_LEN:] in (FIELD_PING, FIELD_PONG) \
                    and len(value) == 8 else 0.0
                per_ip = ips.setdefault(node_id, {})
                per_ip[ip16] = max(per_ip.get(ip16, 0.0), t)
                last[node_id] = max(last[node_id], t)
        finally:
            it.close()
        for node_id in sorted(last, key=last.__getitem__):
            per_ip = ips.get(node_id, {})
            endpoints = tuple(sorted(per_ip, key=per_ip.__getitem__))
            for ip16 in endpoints[:-self.limits.max_endpoints]:
                self._delete_endpoint(node_id, ip16)
                self.stats.evicted_endpoints += 1
            self._unprotected[node_id] = endpoints[-self.limits.max_endpoints:]
        if len(self._unprotected) > self.limits.max_unprotected:
            logger.info("node database %s holds %d nodes, more than the %d kept: dropping the least recently seen",
                        self.path, len(self._unprotected), self.limits.max_unprotected)
            self._warned_full = True
        self._evict_excess()

    def set_self(self, node_id: bytes) -> None:
        """The local node's ID: never returned as a seed, never expired."""
        self._self_id = bytes(node_id)

    # -- node records

    def node(self, node_id: bytes) -> Node | None:
        blob = self._live().get(_node_key(node_id))
        if blob is None:
            return None
        return self._decode_node(node_id, blob)

    def _decode_node(self, node_id: bytes, blob: bytes) -> Node | None:
        try:
            node = _node_from_record(_decode_record(blob))
        except (ValueError, InvalidKey) as exc:  # ENRError and EnodeURLError are ValueErrors too
            logger.warning("node database: unreadable record of node %s skipped: %s", bytes(node_id).hex()[:16], exc)
            return None
        if node.id != node_id:
            logger.warning("node database: record under %s is of node %s, skipped",
                           bytes(node_id).hex()[:16], node.id.short())
            return None
        return node

    def node_seq(self, node_id: bytes) -> int:
        """The ENR sequence number of the stored record (0 when it has none)."""
        return _get_uint(self._live(), _item_key(node_id, ZERO_IP16, FIELD_SEQ))

    def update_node(self, node: Node) -> bool:
        """Store ``node``, unless the stored record has a newer ENR; True when stored."""
        store = self._live()
        seq = node.enr.seq if node.enr is not None else 0
        if seq < _get_uint(store, _item_key(node.id, ZERO_IP16, FIELD_SEQ)):
            return False
        with store.write_batch() as batch:
            batch.put(_node_key(node.id), encode_record(node))
            if seq:
                batch.put(_item_key(node.id, ZERO_IP16, FIELD_SEQ), _UINT.pack(seq))
        self._seen(node.id, None)
        return True

    def update_nodes(self, nodes: Iterable[Node]) -> int:
        """Store many nodes in one write batch, with :meth:`update_node`'s rule; the count stored."""
        store = self._live()
        seen: dict[bytes, int] = {}  # node ID -> seq stored by this batch
        stored = 0
        with store.write_batch() as batch:
            for node in nodes:
                node_id = node.id
                seq = node.enr.seq if node.enr is not None else 0
                seq_key = _item_key(node_id, ZERO_IP16, FIELD_SEQ)
                current = seen[node_id] if node_id in seen else _get_uint(store, seq_key)
                if seq < current:
                    continue
                batch.put(_node_key(node_id), encode_record(node))
                if seq:
                    batch.put(seq_key, _UINT.pack(seq))
                seen[node_id] = seq
                stored += 1
        for stored_id in seen:  # after the batch is written: an eviction never races its own batch
            self._seen(stored_id, None)
        return stored

    def delete_node(self, node_id: bytes) -> None:
        """Remove every key of the node: record, seq, and the fields of all its IPs."""
        store = self._live()
        it = store.iterator(prefix=_node_key(node_id))
        try:
            keys = [key for key, _ in it]
        finally:
            it.close()
        with store.write_batch() as batch:
            for key in keys:
                batch.delete(key)
        if self._unprotected.pop(node_id, None) is None:
            self._protected.pop(node_id, None)  # its protection itself stays with whoever holds it

    def iter_nodes(self) -> Iterator[Node]:
        """Every readable node record, in key order."""
        it = self._live().iterator(prefix=NODE_PREFIX)
        try:
            for key, value in it:
                if len(key) == _NODE_KEY_LEN and key.endswith(DISCOVER_ROOT):
                    node = self._decode_node(key[2:34], value)
                    if node is not None:
                        yield node
        finally:
            it.close()

    def endpoints(self, node_id: bytes) -> list[EndpointInfo]:
        """The per-IP fields kept for a node (for inspection)."""
        found: dict[bytes, dict[bytes, bytes]] = {}
        it = self._live().iterator(prefix=_node_key(node_id) + b":")
        try:
            for key, value in it:
                ip16, field = key[_NODE_KEY_LEN + 1:_NODE_KEY_LEN + 17], key[_NODE_KEY_LEN + 18:]
                if ip16 != ZERO_IP16:
                    found.setdefault(ip16, {})[field] = value
        finally:
            it.close()

        def num(fields: dict[bytes, bytes], name: bytes, fmt: struct.Struct) -> Any:
            blob = fields.get(name)
            return fmt.unpack(blob)[0] if blob is not None and len(blob) == 8 else 0

        return [EndpointInfo(_ip_from16(ip16), num(f, FIELD_PING, _FLOAT), num(f, FIELD_PONG, _FLOAT),
                             num(f, FIELD_FINDFAIL, _UINT)) for ip16, f in found.items()]

    # -- per (node, IP) fields

    def last_ping_received(self, node_id: bytes, ip: IPAddress | str) -> float:
        return _get_float(self._live(), _item_key(node_id, _ip16(ip), FIELD_PING))

    def update_last_ping_received(self, node_id: bytes, ip: IPAddress | str, t: float) -> None:
        self._put_field(node_id, _ip16(ip), FIELD_PING, _FLOAT.pack(t))

    def _put_field(self, node_id: bytes, ip16: bytes, field: bytes, value: bytes) -> None:
        self._live().put(_item_key(node_id, ip16, field), value)
        self._seen(node_id, ip16)

    def last_pong_received(self, node_id: bytes, ip: IPAddress | str) -> float:
        return _get_float(self._live(), _item_key(node_id, _ip16(ip), FIELD_PONG))

    def update_last_pong_received(self, node_id: bytes, ip: IPAddress | str, t: float) -> None:
        self._put_field(node_id, _ip16(ip), FIELD_PONG, _FLOAT.pack(t))

    def find_fails(self, node_id: bytes, ip: IPAddress | str) -> int:
        return _get_uint(self._live(), _item_key(node_id, _ip16(ip), FIELD_FINDFAIL))

    def update_find_fails(self, node_id: bytes, ip: IPAddress | str, n: int) -> None:
        self._put_field(node_id, _ip16(ip), FIELD_FINDFAIL, _UINT.pack(max(0, n)))

    # -- local record

    def local_seq(self) -> int:
        """The local ENR's last stored sequence number (0 when none was stored)."""
        return _get_uint(self._live(), LOCAL_SEQ_KEY)

    def store_local_seq(self, n: int) -> None:
        self._live().put(LOCAL_SEQ_KEY, _UINT.pack(n))

    # -- seeds

    def query_seeds(self, n: int, max_age: float) -> list[Node]:
        """Up to ``n`` random distinct nodes, not self, with a pong younger than ``max_age``.

        Each attempt seeks to a random ID and takes the next acceptable node, stepping over
        (and wrapping around the end) at most a few records that are stale, self or already
        taken: so in a store of one or two nodes every node is found, and the cost stays
        bounded by ``n * 5`` seeks however stale the store is.
        """
        store = self._live()
        if n <= 0:
            return []
        now = self._clock()
        taken: dict[bytes, Node] = {}
        # go-ethereum starts the creeping first byte at 0 on every call, which favours low IDs
        # when n is small against the store; a random start keeps the sweep without that bias
        first = self._rng.randrange(256)
        it = store.iterator(prefix=NODE_PREFIX)
        try:
            self._seek_seeds(it, store, n, max_age, now, first, taken)
        except plyvel.Error as exc:  # damage found at run time: what was found so far still serves
            logger.error("node database: seeds query failed: %s", exc)
        finally:
            it.close()
        return list(taken.values())

    def _seek_seeds(self, it: Cursor, store: Store, n: int, max_age: float, now: float, first: int,
                    taken: dict[bytes, Node]) -> None:
        rejected: set[bytes] = set()  # stale, self or unreadable: never worth a second look
        for _ in range(n * SEEK_ATTEMPTS_PER_SEED):
            if len(taken) >= n:
                break
            target = bytearray(self._rng.randbytes(32))
            first = (first + target[0] % SEEK_FIRST_BYTE_STEP) & 0xFF
            target[0] = first
            it.seek(_node_key(bytes(target)))
            wrapped = False
            walked = steps = 0
            while walked < SEEK_WALK_LIMIT and steps < SEEK_STEP_LIMIT:
                steps += 1
                try:
                    key, value = next(it)
                except StopIteration:
                    if wrapped:
                        break
                    wrapped = True
                    first = 0  # start the creeping first byte anew, as after an exhausted seek
                    it.seek(NODE_PREFIX)
                    continue
                if len(key) != _NODE_KEY_LEN or not key.endswith(DISCOVER_ROOT):
                    continue  # per-IP fields of the node just passed
                node_id = key[2:34]
                walked += 1
                if node_id in taken or node_id in rejected:
                    continue
                node = self._fresh_node(store, node_id, value, now, max_age)
                if node is None:
                    rejected.add(node_id)
                    continue
                taken[node_id] = node
                break
            if wrapped and walked == 0:
                break  # no node records at all

    def _fresh_node(self, store: Store, node_id: bytes, blob: bytes, now: float, max_age: float) -> Node | None:
        if node_id == self._self_id:
            return None
        try:
            rec = _decode_record(blob)
        except ValueError as exc:
            logger.warning("node database: unreadable record of node %s skipped: %s", node_id.hex()[:16], exc)
            return None
        pong = _get_float(store, _item_key(node_id, _ip16(rec.ip), FIELD_PONG))
        if now - pong > max_age:
            return None
        return self._decode_node(node_id, blob)

    # -- expiry

    def mark_bonded(self) -> None:
        """The node has bonded with someone: expiry may start (seeds of an offline start stay
        until then). Idempotent."""
        self._live()
        self._bonded.set()

    @property
    def bonded(self) -> bool:
        return self._bonded.is_set()

    async def wait_bonded(self) -> None:
        await self._bonded.wait()

    def expire_nodes(self) -> int:
        """Drop nodes with no pong for ``expiration`` seconds now; the count dropped."""
        return sum(1 for _ in self.expire_steps())

    def expire_steps(self) -> Iterator[bytes]:
        """Scan all nodes, deleting expired ones (and expired IPs of kept ones); yields each deleted ID.

        A node's youngest pong over all its IPs decides; one never answered counts as
        answered at time 0. The scan holds no state across yields but its cursor, which
        tolerates writes in between.
        """
        store = self._live()
        threshold = self._clock() - self.expiration
        it = store.iterator(prefix=NODE_PREFIX)
        current: bytes | None = None
        pongs: dict[bytes, float] = {}

        def settle(node_id: bytes) -> bool:
            if node_id == self._self_id:
                return False
            youngest = max(pongs.values(), default=0.0)
            if youngest < threshold:
                self.delete_node(node_id)
                return True
            for ip16, pong in pongs.items():
                if pong < threshold:
                    self._delete_prefix(store, _item_key(node_id, ip16, b""))
                    self._forget_endpoint(node_id, ip16)
            return False

        try:
            while True:
                if self._closed:
                    return
                try:
                    key, value = next(it)
                except StopIteration:
                    break
                node_id = key[2:34]
                if node_id != current:
                    if current is not None and settle(current):
                        yield current
                    current, pongs = node_id, {}
                if key.endswith(FIELD_PONG) and len(key) == _NODE_KEY_LEN + 18 + len(FIELD_PONG):
                    pongs[key[_NODE_KEY_LEN + 1:_NODE_KEY_LEN + 17]] = (
                        _FLOAT.unpack(value)[0] if len(value) == 8 else 0.0)
            if current is not None and not self._closed and settle(current):
                yield current
        finally:
            if not self._closed:
                it.close()

    @staticmethod
    def _delete_prefix(store: Store, prefix: bytes) -> None:
        it = store.iterator(prefix=prefix)
        try:
            keys = [key for key, _ in it]
        finally:
            it.close()
        for key in keys:
            store.delete(key)


__all__ = [
    "DB_VERSION",
    "MAX_ENDPOINTS_PER_NODE",
    "MAX_PROTECTED_NODES",
    "MAX_UNPROTECTED_NODES",
    "EndpointInfo",
    "MemoryStore",
    "NodeDB",
    "NodeDBClosed",
    "NodeDBCorrupt",
    "NodeDBError",
    "NodeDBForeign",
    "NodeDBLimits",
    "NodeDBStats",
    "NodeDBVersionMismatch",
    "SharedBytes",
    "encode_record",
]
