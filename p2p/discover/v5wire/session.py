"""What the codec remembers between packets: session keys per (node ID, address), the
WHOAREYOU challenges it sent, and the nonces of the message packets it sent (a WHOAREYOU
names the packet it answers only by that nonce).

Every store is bounded in entries, and the two handshake stores also in age, because a
remote can make us fill them: one spoofed packet from a made-up node ID costs us a
challenge entry. Evictions and expiries are counted so the service can export them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from p2p.enode import ENR

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Session:
    """The keys of one established session and what we know of the remote."""

    write_key: bytes
    read_key: bytes
    record: ENR | None = None  # the remote's record, when the handshake gave or used one
    # nonce of the handshake packet that opened this session, on the side that received it:
    # a second packet with the same nonce is a replay
    handshake_nonce: bytes | None = None
    # the keys' AES-GCM contexts, made once per session: building one per packet cost as
    # much as the encryption of a PONG
    write_aead: AESGCM = field(init=False, repr=False, compare=False)
    read_aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "write_aead", AESGCM(self.write_key))
        object.__setattr__(self, "read_aead", AESGCM(self.read_key))


@dataclass(frozen=True, slots=True)
class Whoareyou:
    """A WHOAREYOU challenge, sent or received.

    ``challenge_data`` is ``masking-iv || static-header || authdata`` unmasked; both sides
    sign and salt the session keys with exactly these bytes.
    """

    nonce: bytes  # the nonce of the message packet this challenge answers
    id_nonce: bytes
    enr_seq: int
    challenge_data: bytes


class BoundedCache(Generic[K, V]):
    """A dict with at most ``max_items`` entries and, if ``ttl`` is set, entries that lapse
    ``ttl`` seconds after they were put.

    Without a TTL it is an LRU (a read refreshes the entry); with one, entries keep their
    insertion order so the oldest, first to lapse, are pruned from the front on each put.
    """

    __slots__ = ("_items", "_max", "_ttl", "_clock", "evicted", "expired")

    def __init__(self, max_items: int, *, ttl: float | None = None, clock: Callable[[], float]) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._max = max_items
        self._ttl = ttl
        self._clock = clock
        self.evicted = 0  # entries dropped to make room
        self.expired = 0  # entries dropped because they lapsed

    def __len__(self) -> int:
        return len(self._items)

    def _live(self, key: K, stamp: float, now: float) -> bool:
        if self._ttl is not None and now - stamp > self._ttl:
            del self._items[key]
            self.expired += 1
            return False
        return True

    def get(self, key: K) -> V | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        if self._ttl is None:
            self._items.move_to_end(key)
        elif not self._live(key, entry[0], self._clock()):
            return None
        return entry[1]

    def pop(self, key: K) -> V | None:
        entry = self._items.get(key)
        if entry is None or not self._live(key, entry[0], self._clock()):
            return None
        del self._items[key]
        return entry[1]

    def put(self, key: K, value: V) -> None:
        now = self._clock()
        if self._ttl is not None:
            while self._items:
                first, (stamp, _) = next(iter(self._items.items()))
                if not self._live(first, stamp, now):
                    continue
                break
        self._items.pop(key, None)
        self._items[key] = (now, value)
        while len(self._items) > self._max:
            self._items.popitem(last=False)
            self.evicted += 1


__all__ = ["BoundedCache", "Session", "Whoareyou"]
