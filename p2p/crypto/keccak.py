"""keccak256 (the pre-standard SHA-3 that Ethereum uses).

``safe-pysha3`` is preferred: for short inputs (RLPx frame MACs, discovery hashes) its
per-call overhead is about half of pycryptodome's. pycryptodome stays as the fallback.
"""

from __future__ import annotations

from typing import Protocol


class KeccakHash(Protocol):
    """A running keccak256 state. ``digest()`` does not end it: RLPx MACs keep updating."""

    def update(self, data: bytes, /) -> object: ...
    def digest(self) -> bytes: ...


try:
    import sha3 as _sha3  # safe-pysha3

    def new_keccak256(data: bytes = b"") -> KeccakHash:
        return _sha3.keccak_256(data)

    def keccak256(data: bytes) -> bytes:
        return _sha3.keccak_256(data).digest()

    BACKEND = "safe-pysha3"

except ImportError:  # pragma: no cover - exercised only where safe-pysha3 is missing
    from Crypto.Hash import keccak as _keccak

    def new_keccak256(data: bytes = b"") -> KeccakHash:
        return _keccak.new(digest_bits=256, data=data, update_after_digest=True)

    def keccak256(data: bytes) -> bytes:
        return _keccak.new(digest_bits=256, data=data).digest()

    BACKEND = "pycryptodome"

__all__ = ["keccak256", "new_keccak256", "KeccakHash", "BACKEND"]
