"""The local node's identity: the one owner of our private key and of our one signed record.

As go-ethereum's ``enode.LocalNode``: subsystems set the entries they know (the server its TCP
port, discovery its UDP port and the address peers see, a protocol its own entry such as
``eth``'s fork ID), and the record is signed again, with the sequence number raised once, only
when something changed and someone reads it. The sequence number is kept in the node database
when one is given, so that a restarted node never reuses one: peers that hold our record would
otherwise keep the old one.

    local = LocalNode(key, db)
    local.set_ip(ip); local.set_tcp(30303); local.set_udp(30303)
    local.set("eth", RawRLP(fork_id_rlp))
    local.record      # the ENR, signed with seq = stored seq + 1
    local.signer      # for a protocol that signs its own messages (chat): no key handed out

The key itself is never exposed: protocols get a :class:`Signer`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Protocol

from p2p.crypto import PrivateKey, PublicKey
from p2p.enode.enr import ENR, ENRError, KEY_ID, KEY_SECP256K1, MAX_SEQ, STANDARD_KEYS, _check_extra, _encode_address
from p2p.enode.node import IPAddress, Node, NodeID

log = logging.getLogger(__name__)

ChangeCallback = Callable[[], None]

_UNSPECIFIED_V4 = ipaddress.IPv4Address("0.0.0.0")  # a record with no address yet: a Node needs one


class SeqStore(Protocol):
    """Where the record's sequence number outlives the process (``NodeDB`` is one)."""

    def local_seq(self) -> int: ...
    def store_local_seq(self, n: int) -> None: ...


class _MemorySeq:
    def __init__(self) -> None:
        self._seq = 0

    def local_seq(self) -> int:
        return self._seq

    def store_local_seq(self, n: int) -> None:
        self._seq = n


class Signer:
    """Signs 32-byte digests with the node key, for a protocol whose messages carry their
    author's signature. It does not hand the key out (no ECDH, no secret), so a protocol holding
    one can speak as this node only through what it signs."""

    __slots__ = ("_key", "public_key", "node_id")

    def __init__(self, key: PrivateKey) -> None:
        self._key = key
        self.public_key: PublicKey = key.public_key
        self.node_id = NodeID.from_pubkey(key.public_key)

    def sign(self, digest: bytes) -> bytes:
        """A 65-byte recoverable signature ``r || s || v`` over a 32-byte digest."""
        return self._key.sign(digest)

    def sign_compact(self, digest: bytes) -> bytes:
        """A 64-byte ``r || s`` signature (no recovery id) over a 32-byte digest."""
        return self._key.sign_compact(digest)

    def __repr__(self) -> str:
        return f"Signer({self.node_id.short()})"


class LocalNode:
    """Our node record and the key that signs it; see the module docstring.

    ``db`` keeps the sequence number across restarts (in memory when None). The first record
    read is signed with the stored number + 1; after that each read that follows an actual
    change of the entries signs again with seq + 1, however many setters ran in between.
    """

    def __init__(self, key: PrivateKey, db: SeqStore | None = None) -> None:
        self._key = key
        self._signer = Signer(key)
        self._db: SeqStore = db if db is not None else _MemorySeq()
        # What the next record holds: address entries as typed values, the others as raw bytes.
        self._addresses: dict[str, IPAddress | int] = {}
        self._extra: dict[str, bytes] = {}
        self._record: ENR | None = None
        self._signed: tuple[dict[str, IPAddress | int], dict[str, bytes]] | None = None  # the record's entries
        self._dirty = True  # the entries may differ from the record's (set back on read when they do not)
        self._callbacks: list[ChangeCallback] = []

    # -- identity ------------------------------------------------------------------------

    @property
    def id(self) -> NodeID:
        return self._signer.node_id

    @property
    def public_key(self) -> PublicKey:
        return self._signer.public_key

    @property
    def signer(self) -> Signer:
        return self._signer

    # -- the record ----------------------------------------------------------------------

    @property
    def record(self) -> ENR:
        """Our signed record, signed again (seq + 1, stored) if the entries changed since."""
        if self._dirty:
            # Changed and changed back since the last read: the record still says it all.
            if self._record is None or self._signed != (self._addresses, self._extra):
                self._sign()
            self._dirty = False
        assert self._record is not None
        return self._record

    @property
    def seq(self) -> int:
        return self.record.seq

    @property
    def node(self) -> Node:
        """Our record as a :class:`Node` (for ``enode://`` URLs): IPv4 entries first, as
        :meth:`Node.from_enr`; 0.0.0.0 while no address is set."""
        record = self.record
        if record.ip is None and record.ip6 is None:
            return Node(record.public_key, _UNSPECIFIED_V4, record.udp or 0, record.tcp or 0, record)
        return Node.from_enr(record)

    def _sign(self) -> None:
        # The stored number may be ahead of ours when another writer shares the store.
        last = max(self._record.seq if self._record is not None else 0, self._db.local_seq())
        if last >= MAX_SEQ:
            raise ENRError("seq is at its maximum, the record cannot be signed again")
        self._record = self._build(last + 1)
        self._signed = (dict(self._addresses), dict(self._extra))
        self._db.store_local_seq(self._record.seq)
        log.debug("local record signed: %r", self._record)

    def _build(self, seq: int) -> ENR:
        return ENR.build(self._key, seq, extra=self._extra, **self._addresses)  # type: ignore[arg-type]

    # -- entries -------------------------------------------------------------------------

    def set_ip(self, ip: IPAddress | str | None, *, v6: bool | None = None) -> None:
        """Set ``ip`` (IPv4) or ``ip6`` (IPv6) by the address's version; None removes ``ip``
        (or ``ip6`` with ``v6=True``)."""
        if ip is None:
            self._put("ip6" if v6 else "ip", None)
            return
        addr = ipaddress.ip_address(ip)
        self._put("ip" if addr.version == 4 else "ip6", addr)

    def set_tcp(self, port: int | None) -> None:
        self._put("tcp", port)

    def set_udp(self, port: int | None) -> None:
        self._put("udp", port)

    def set_tcp6(self, port: int | None) -> None:
        self._put("tcp6", port)

    def set_udp6(self, port: int | None) -> None:
        self._put("udp6", port)

    def set(self, key: str, value: bytes) -> None:
        """Set a protocol's own entry (not a standard key): ``bytes`` is an RLP string,
        :class:`RawRLP` an RLP list written as given (``eth``'s fork ID)."""
        _check_extra({key: value})
        previous = self._extra.get(key)
        if previous == value and type(previous) is type(value):  # a string and a list of the same bytes differ
            return
        self._extra[key] = value
        self._changed(lambda: self._restore_extra(key, previous))

    def delete(self, key: str) -> None:
        """Remove an entry (address or a protocol's own); absent is fine. ``id`` and
        ``secp256k1`` belong to the identity scheme and stay."""
        if key in (KEY_ID, KEY_SECP256K1):
            raise ENRError(f"key {key!r} belongs to the identity scheme and cannot be removed")
        if key in STANDARD_KEYS:
            self._put(key, None)
        elif key in self._extra:
            del self._extra[key]
            self._changed(None)

    def get(self, key: str) -> bytes | None:
        """An entry's raw value in the current record (after any pending change)."""
        return self.record.get(key)

    def _put(self, key: str, value: IPAddress | int | None) -> None:
        if value is None:
            if key in self._addresses:
                del self._addresses[key]
                self._changed(None)
            return
        _encode_address(key, value)  # a bad port or address version fails here, not at the next read
        if self._addresses.get(key) == value:
            return
        previous = self._addresses.get(key)
        self._addresses[key] = value
        self._changed(lambda: self._restore_address(key, previous))

    def _restore_address(self, key: str, previous: IPAddress | int | None) -> None:
        if previous is None:
            del self._addresses[key]
        else:
            self._addresses[key] = previous

    def _restore_extra(self, key: str, previous: bytes | None) -> None:
        if previous is None:
            del self._extra[key]
        else:
            self._extra[key] = previous

    def _changed(self, undo: Callable[[], None] | None) -> None:
        if undo is not None:
            try:  # too big for a record: refused now, not at the next read of the record
                self._build(MAX_SEQ)
            except ENRError:
                undo()
                raise
        self._dirty = True
        for callback in list(self._callbacks):
            callback()

    # -- change notification -------------------------------------------------------------

    def on_change(self, callback: ChangeCallback) -> Callable[[], None]:
        """Call ``callback()`` after each actual change of an entry (not when a setter is given
        the value already set); returns the function that unsubscribes it. The callback reads
        :attr:`record` when it needs the new one (that read signs it)."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def __repr__(self) -> str:
        return f"LocalNode({self.id.short()}, seq={self._record.seq if self._record is not None else None})"


__all__ = ["ChangeCallback", "LocalNode", "SeqStore", "Signer"]
