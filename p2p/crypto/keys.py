"""secp256k1 node keys: generation, signing, recovery, ECDH, and key files.

coincurve (libsecp256k1) does the curve work; public keys travel as the 64-byte
``x || y`` form that discovery v4 and RLPx put on the wire.
"""

from __future__ import annotations

import os
import random
import secrets
from pathlib import Path

import coincurve
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib
from coincurve.context import GLOBAL_CONTEXT as _CONTEXT

from p2p.crypto.errors import BadSignature, InvalidKey, KeyFileError
from p2p.crypto.keccak import keccak256

# The curve order: a private key is an integer in [1, N - 1].
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SIGNATURE_SIZE = 65  # r(32) || s(32) || recovery id(1), as discv4 and RLPx carry it
KEY_FILE_MODE = 0o600  # a node key is a secret: readable by its owner only


class PublicKey:
    """A secp256k1 public key, compared and hashed by its 64-byte ``x || y`` form."""

    __slots__ = ("_raw", "_point")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 64:
            raise InvalidKey(f"public key must be 64 bytes (x || y), got {len(raw)}")
        try:
            self._point = coincurve.PublicKey(b"\x04" + raw)
        except ValueError as exc:
            raise InvalidKey("public key is not a point on secp256k1") from exc
        self._raw = bytes(raw)

    @classmethod
    def from_bytes(cls, data: bytes) -> "PublicKey":
        """Accept the 64-byte, the 65-byte (``04`` prefixed) or the 33-byte compressed form."""
        if len(data) == 64:
            return cls(data)
        if len(data) == 65 and data[0] != 0x04:
            # libsecp256k1 also parses the "hybrid" 0x06/0x07 form, which no devp2p peer sends
            raise InvalidKey(f"65-byte public key must start with 0x04, got {data[0]:#04x}")
        if len(data) in (33, 65):
            try:
                point = coincurve.PublicKey(data)
            except ValueError as exc:
                raise InvalidKey("public key is not a point on secp256k1") from exc
            return cls._from_point(point)
        raise InvalidKey(f"public key must be 33, 64 or 65 bytes, got {len(data)}")

    @classmethod
    def _from_point(cls, point: coincurve.PublicKey) -> "PublicKey":
        key = cls.__new__(cls)
        key._point = point
        key._raw = point.format(compressed=False)[1:]
        return key

    def to_bytes(self) -> bytes:
        return self._raw

    def to_compressed(self) -> bytes:
        return self._point.format(compressed=True)

    def keccak(self) -> bytes:
        """keccak256 of the 64-byte form: the node ID of the v4 identity scheme."""
        return keccak256(self._raw)

    def verify(self, signature64: bytes, msg_hash: bytes) -> bool:
        """Check a 64-byte ``r || s`` signature (as ENR carries) over a 32-byte hash."""
        if len(signature64) != 64 or len(msg_hash) != 32:
            return False
        # libsecp256k1 directly: coincurve's verify() takes DER only, and the compact -> DER ->
        # compact round trip costs about 15% of an ENR decode. High-s signatures are rejected.
        sig = _ffi.new("secp256k1_ecdsa_signature *")
        if not _lib.secp256k1_ecdsa_signature_parse_compact(_CONTEXT.ctx, sig, signature64):
            return False
        return bool(_lib.secp256k1_ecdsa_verify(_CONTEXT.ctx, sig, msg_hash, self._point.public_key))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"PublicKey({self._raw[:8].hex()}…)"


class PrivateKey:
    """A secp256k1 private key."""

    __slots__ = ("_secret", "_public")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise InvalidKey(f"private key must be 32 bytes, got {len(secret)}")
        if not 0 < int.from_bytes(secret, "big") < SECP256K1_N:
            raise InvalidKey("private key is out of the curve's range")
        self._secret = bytes(secret)
        # Only the ECDSA public key: coincurve.PrivateKey would also derive the x-only (Schnorr)
        # key, a second scalar multiplication that nothing here uses. RLPx makes two keys per
        # handshake side (its ephemeral key and ECIES's), so that was ~10 % of a handshake.
        self._public = PublicKey._from_point(coincurve.PublicKey.from_valid_secret(self._secret, _CONTEXT))

    @classmethod
    def generate(cls, rng: random.Random | None = None) -> "PrivateKey":
        """A new key; pass a seeded ``rng`` only in tests, for reproducible keys."""
        while True:
            secret = rng.randbytes(32) if rng is not None else secrets.token_bytes(32)
            if 0 < int.from_bytes(secret, "big") < SECP256K1_N:
                return cls(secret)

    @classmethod
    def from_hex(cls, text: str) -> "PrivateKey":
        text = text.strip()
        if text.startswith(("0x", "0X")):
            text = text[2:]
        try:
            raw = bytes.fromhex(text)
        except ValueError as exc:
            raise InvalidKey("private key is not hex") from exc
        return cls(raw)

    @property
    def secret(self) -> bytes:
        return self._secret

    @property
    def public_key(self) -> PublicKey:
        return self._public

    def to_hex(self) -> str:
        return self.secret.hex()

    def sign(self, msg_hash: bytes) -> bytes:
        """A 65-byte recoverable signature ``r || s || v`` (v in {0, 1}) over a 32-byte hash."""
        if len(msg_hash) != 32:
            raise ValueError("sign takes a 32-byte hash")
        sig = _ffi.new("secp256k1_ecdsa_recoverable_signature *")
        # Default nonce function (RFC 6979), as coincurve's sign_recoverable.
        if not _lib.secp256k1_ecdsa_sign_recoverable(_CONTEXT.ctx, sig, msg_hash, self._secret, _ffi.NULL, _ffi.NULL):
            raise ValueError("signing failed")  # only for an invalid key, which __init__ refuses
        out = _ffi.new("unsigned char[64]")
        recid = _ffi.new("int *")
        _lib.secp256k1_ecdsa_recoverable_signature_serialize_compact(_CONTEXT.ctx, out, recid, sig)
        return bytes(_ffi.buffer(out, 64)) + bytes((recid[0],))

    def sign_compact(self, msg_hash: bytes) -> bytes:
        """A 64-byte ``r || s`` signature (low s, RFC 6979), as ENR records carry."""
        return self.sign(msg_hash)[:64]

    def ecdh(self, public: PublicKey) -> bytes:
        """The x coordinate of ``secret * public``, as devp2p's ECIES and RLPx use it."""
        shared = public._point.multiply(self._secret)
        return shared.format(compressed=False)[1:33]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivateKey) and other.secret == self.secret

    def __hash__(self) -> int:
        return hash(self.secret)

    def __repr__(self) -> str:
        return f"PrivateKey(public={self._public!r})"


def recover(msg_hash: bytes, signature: bytes) -> PublicKey:
    """The public key that made a 65-byte recoverable signature over a 32-byte hash."""
    if len(signature) != SIGNATURE_SIZE:
        raise BadSignature(f"signature must be {SIGNATURE_SIZE} bytes, got {len(signature)}")
    if len(msg_hash) != 32:
        raise BadSignature("recovery takes a 32-byte hash")
    if signature[64] > 3:
        raise BadSignature(f"recovery id {signature[64]} out of range")
    try:
        point = coincurve.PublicKey.from_signature_and_message(signature, msg_hash, hasher=None)
    except (ValueError, TypeError) as exc:
        raise BadSignature("no public key recovers from this signature") from exc
    return PublicKey._from_point(point)


def load_node_key(path: str | os.PathLike[str]) -> PrivateKey:
    """Read a hex node key file (64 hex digits, surrounding white space allowed)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise KeyFileError(f"node key file {p} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"node key file {p} cannot be read: {exc}") from exc
    text = text.strip()
    if len(text) != 64:
        raise KeyFileError(f"node key file {p} must hold 64 hex digits, it holds {len(text)} characters")
    try:
        return PrivateKey.from_hex(text)
    except InvalidKey as exc:
        raise KeyFileError(f"node key file {p}: {exc}") from exc


def save_node_key(key: PrivateKey, path: str | os.PathLike[str]) -> None:
    """Write the key as hex to a new file created with mode 0600 (never world-readable)."""
    p = Path(path)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)
        os.write(fd, (key.to_hex() + "\n").encode("ascii"))
    finally:
        os.close(fd)
