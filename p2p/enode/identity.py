"""Identity schemes: how a node signs its packets and records, and how their signers are found.

The real scheme (:data:`V4_IDENTITY`, the default everywhere) is EIP-778's "v4": secp256k1
signatures, the sender's key recovered from each discovery v4 packet, every record verified.

The null scheme (:class:`NullIdentity`, :class:`NullKey`) exists for the simulator alone (as
go-ethereum's tests use ``enode.SignNull``): a v4 packet's signature field carries the sender's
64-byte public key and a recovery id no real signature has, and a record carries a fixed all-zero
signature, so that a simulated packet costs no curve arithmetic. It can be made and used only
while a simulation runs (:func:`simulation_scope`, entered by :mod:`p2p.sim` alone); anywhere
else it raises :class:`NullIdentityRefused`. A real node needs no check of its own: a null packet
fails its key recovery (recovery id out of range) and a null record fails verification, so both
are dropped and counted as bad input.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from p2p.crypto import BadSignature, PrivateKey, PublicKey, recover
from p2p.enode.enr import ENR, ENRError

NULL_RECOVERY_ID: Final = 0xFF  # a null packet signature's last byte; real ones are 0..3
NULL_RECORD_SIGNATURE: Final = bytes(64)  # r = s = 0 never verifies against any key
NULL_KEY_CACHE: Final = 1 << 18  # public keys parsed from null signatures kept; cleared when full (~256k nodes)

_IN_SIMULATION: contextvars.ContextVar[bool] = contextvars.ContextVar("p2p_in_simulation", default=False)


class NullIdentityRefused(RuntimeError):
    """The null identity scheme was made or used outside a running simulation."""


@contextmanager
def simulation_scope() -> Iterator[None]:
    """Mark the current context (and the trio tasks started from it) as a simulation, where
    the null scheme may be used. Entered only by the simulator (:mod:`p2p.sim`)."""
    token = _IN_SIMULATION.set(True)
    try:
        yield
    finally:
        _IN_SIMULATION.reset(token)


def in_simulation() -> bool:
    return _IN_SIMULATION.get()


def _require_simulation(what: str) -> None:
    if not _IN_SIMULATION.get():
        raise NullIdentityRefused(f"the null identity scheme ({what}) is refused outside a simulation")


class IdentityScheme:
    """The real scheme: secp256k1 recovery of v4 packet senders, verified records."""

    name = "v4"
    null = False

    def recover(self, digest: bytes, signature: bytes) -> PublicKey:
        """The key that signed a v4 packet; raises :class:`BadSignature`."""
        return recover(digest, signature)

    def decode_record(self, raw: bytes) -> ENR:
        """A record received from the network, verified; raises :class:`ENRError`."""
        return ENR.from_rlp(raw)

    def verify(self, public: PublicKey, signature: bytes, msg_hash: bytes) -> bool:
        """Whether a 64-byte ``r || s`` signature (a v5 ID signature) is ``public``'s."""
        return public.verify(signature, msg_hash)


V4_IDENTITY: Final = IdentityScheme()


class NullIdentity(IdentityScheme):
    """The simulation's scheme: no curve arithmetic, senders named in the packet (see the
    module docstring). Refused outside a simulation, when made and at each use."""

    name = "null"
    null = True

    def __init__(self) -> None:
        _require_simulation("NullIdentity")
        self._keys: dict[bytes, PublicKey] = {}

    def recover(self, digest: bytes, signature: bytes) -> PublicKey:
        _require_simulation("packet decoding")
        if len(signature) != 65 or signature[64] != NULL_RECOVERY_ID:
            raise BadSignature("not a null signature")
        raw = signature[:64]
        key = self._keys.get(raw)
        if key is None:
            if len(self._keys) >= NULL_KEY_CACHE:
                self._keys.clear()
            key = self._keys[raw] = PublicKey(raw)
        return key

    def decode_record(self, raw: bytes) -> ENR:
        _require_simulation("record decoding")
        record = ENR.from_rlp(raw, verify=False)
        if record.signature != NULL_RECORD_SIGNATURE:
            raise ENRError("not a null-signed record")
        return record

    def verify(self, public: PublicKey, signature: bytes, msg_hash: bytes) -> bool:
        _require_simulation("signature check")
        return signature == NULL_RECORD_SIGNATURE


class NullKey(PrivateKey):
    """A node key whose signatures are null ones (see the module docstring); ECDH stays real.
    Made only inside a simulation, and refuses to sign outside one."""

    __slots__ = ("_null_sig",)

    def __init__(self, secret: bytes) -> None:
        _require_simulation("NullKey")
        super().__init__(secret)
        self._null_sig = self.public_key.to_bytes() + bytes((NULL_RECOVERY_ID,))

    @classmethod
    def of(cls, key: PrivateKey) -> "NullKey":
        return cls(key.secret)

    def sign(self, msg_hash: bytes) -> bytes:
        _require_simulation("packet signing")
        return self._null_sig

    def sign_compact(self, msg_hash: bytes) -> bytes:
        _require_simulation("record signing")
        return NULL_RECORD_SIGNATURE


__all__ = [
    "IdentityScheme",
    "NULL_RECORD_SIGNATURE",
    "NULL_RECOVERY_ID",
    "NullIdentity",
    "NullIdentityRefused",
    "NullKey",
    "V4_IDENTITY",
    "in_simulation",
    "simulation_scope",
]
