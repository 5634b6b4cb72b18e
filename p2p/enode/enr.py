"""Ethereum Node Records (EIP-778) with the "v4" identity scheme.

A record is ``rlp([signature, seq, k1, v1, k2, v2, ...])`` with keys sorted and unique; the
signature is a 64-byte ``r || s`` secp256k1 signature over ``keccak256(rlp([seq, k1, v1, ...]))``.

Discovery decodes many records, so decoding is a single pass over the bytes with a small RLP
reader of its own: the signed content is the record's own bytes after the signature (behind a
new list header), never a re-encoding, and list-valued entries (the ``eth`` fork ID of real
nodes) are kept as their raw RLP so that they re-encode byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal

from p2p.crypto import InvalidKey, PrivateKey, PublicKey
from p2p.crypto.keccak import keccak256
from p2p.enode._rlp import encode_string, list_header
from p2p.enode.node import NodeID

MAX_ENR_SIZE: Final = 300  # EIP-778: a record's RLP encoding is at most 300 bytes
TEXT_PREFIX: Final = "enr:"  # EIP-778 text form: "enr:" + unpadded base64url of the RLP
MAX_TEXT_SIZE: Final = len(TEXT_PREFIX) + (MAX_ENR_SIZE * 4 + 2) // 3  # base64 of 300 bytes
SIGNATURE_SIZE: Final = 64  # v4 scheme: r || s, no recovery id
COMPRESSED_KEY_SIZE: Final = 33  # v4 scheme: the "secp256k1" entry is a compressed point
MAX_SEQ: Final = 2**64 - 1  # seq is a 64-bit unsigned integer
ID_SCHEME_V4: Final = b"v4"

# The keys EIP-778 predefines, with the values build() and updated() encode from arguments.
KEY_ID: Final = "id"
KEY_SECP256K1: Final = "secp256k1"
ADDRESS_KEYS: Final = ("ip", "tcp", "udp", "ip6", "tcp6", "udp6")
STANDARD_KEYS: Final = frozenset((KEY_ID, KEY_SECP256K1, *ADDRESS_KEYS))
_PORT_KEYS: Final = frozenset(("tcp", "udp", "tcp6", "udp6"))

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")  # Go's RawURLEncoding alphabet: no '+', '/', '='


class ENRError(ValueError):
    """A record that cannot be built, encoded, decoded or verified; the message says why."""


class RawRLP(bytes):
    """An ENR value that is an RLP list, kept as its encoded bytes (e.g. the ``eth`` entry).

    Plain ``bytes`` values are RLP strings; wrapping the encoding of a list in ``RawRLP``
    tells the encoder to write it verbatim instead of as a string.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"RawRLP({bytes(self).hex()})"


class _Keep(enum.Enum):
    KEEP = enum.auto()


_KEEP: Final = _Keep.KEEP

# ---------------------------------------------------------------------------------------------
# RLP: just what records need (strings, opaque lists, canonical-form checks).


def _encode_value(value: bytes) -> bytes:
    return bytes(value) if isinstance(value, RawRLP) else encode_string(value)


def _item(data: bytes, pos: int, end: int) -> tuple[bool, int, int]:
    """The item at ``pos``: (is a list, payload start, payload end). Rejects non-canonical sizes."""
    if pos >= end:
        raise ENRError("bad RLP: record ends inside an item")
    b0 = data[pos]
    if b0 < 0x80:
        return False, pos, pos + 1
    if b0 < 0xB8:
        start, stop, is_list = pos + 1, pos + 1 + b0 - 0x80, False
        if stop == start + 1 and stop <= end and data[start] < 0x80:
            raise ENRError("bad RLP: single byte below 0x80 encoded as a string")
    elif b0 < 0xC0 or b0 >= 0xF8:
        is_list = b0 >= 0xF8
        size_len = b0 - (0xF7 if is_list else 0xB7)
        start = pos + 1 + size_len
        if start > end:
            raise ENRError("bad RLP: record ends inside a size field")
        if data[pos + 1] == 0:
            raise ENRError("bad RLP: size field with a leading zero")
        size = int.from_bytes(data[pos + 1 : start], "big")
        if size < 56:
            raise ENRError("bad RLP: long form used for a size under 56")
        stop = start + size
    else:
        start, stop, is_list = pos + 1, pos + 1 + b0 - 0xC0, True
    if stop > end:
        raise ENRError("bad RLP: item runs past the end of its list")
    return is_list, start, stop


def _check_raw_list(value: bytes) -> None:
    is_list, _, stop = _item(value, 0, len(value))
    if not is_list or stop != len(value):
        raise ENRError("a RawRLP value must be exactly one RLP list")


# ---------------------------------------------------------------------------------------------
# Values of the standard keys.


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _decode_uint(raw: bytes, what: str, limit: int) -> int:
    if raw[:1] == b"\x00":
        raise ENRError(f"non-canonical integer for {what}: leading zero byte")
    value = int.from_bytes(raw, "big")
    if value > limit:
        raise ENRError(f"{what} {value} is out of range 0-{limit}")
    return value


def _encode_port(key: str, port: int) -> bytes:
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ENRError(f"{key} port {port!r} is out of range 0-65535")
    return _int_bytes(port)


def _encode_ip(key: str, ip: object) -> bytes:
    try:
        addr = ipaddress.ip_address(ip)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ENRError(f"{key} value {ip!r} is not an IP address") from exc
    want = 4 if key == "ip" else 6
    if addr.version != want:
        raise ENRError(f"{key} must be an IPv{want} address, got {addr}")
    return addr.packed


def _encode_address(key: str, value: object) -> bytes:
    if key in _PORT_KEYS:
        return _encode_port(key, value)  # type: ignore[arg-type]
    return _encode_ip(key, value)


def _key_bytes(key: str) -> bytes:
    if not isinstance(key, str):
        raise ENRError(f"ENR key {key!r} is not a str")
    try:
        return key.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ENRError(f"ENR key {key!r} is not representable as bytes (latin-1)") from exc


def _check_extra(extra: Mapping[str, bytes]) -> None:
    for k, v in extra.items():
        _key_bytes(k)
        if k in STANDARD_KEYS:
            raise ENRError(f"key {k!r} is standard: pass it as an argument, not in extra")
        if not isinstance(v, bytes):
            raise ENRError(f"value of key {k!r} must be bytes, got {type(v).__name__}")
        if isinstance(v, RawRLP):
            _check_raw_list(v)


# ---------------------------------------------------------------------------------------------


class ENR:
    """A signed, verified node record ("v4" identity scheme). Immutable; equal by its bytes."""

    __slots__ = (
        "_rlp",
        "seq",
        "signature",
        "_pairs",
        "public_key",
        "node_id",
        "ip",
        "tcp",
        "udp",
        "ip6",
        "tcp6",
        "udp6",
    )

    _rlp: bytes
    seq: int
    signature: bytes
    _pairs: Mapping[str, bytes]
    public_key: PublicKey
    node_id: NodeID
    ip: ipaddress.IPv4Address | None
    tcp: int | None
    udp: int | None
    ip6: ipaddress.IPv6Address | None
    tcp6: int | None
    udp6: int | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("use ENR.build(), ENR.from_rlp() or ENR.from_text()")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ENR is immutable; use updated() to change {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("ENR is immutable")

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def _make(
        cls,
        rlp_bytes: bytes,
        seq: int,
        signature: bytes,
        pairs: dict[str, bytes],
        public_key: PublicKey,
    ) -> "ENR":
        """Fill a record from already checked parts and validate the standard address keys."""
        self = object.__new__(cls)
        put = object.__setattr__
        put(self, "_rlp", rlp_bytes)
        put(self, "seq", seq)
        put(self, "signature", signature)
        put(self, "_pairs", MappingProxyType(pairs))
        put(self, "public_key", public_key)
        put(self, "node_id", NodeID(public_key.keccak()))
        get = pairs.get
        raw = get("ip")
        if raw is not None and (len(raw) != 4 or isinstance(raw, RawRLP)):
            raise ENRError(f"bad ip length: {len(raw)} bytes, want 4")
        put(self, "ip", ipaddress.IPv4Address(raw) if raw is not None else None)
        raw = get("ip6")
        if raw is not None and (len(raw) != 16 or isinstance(raw, RawRLP)):
            raise ENRError(f"bad ip6 length: {len(raw)} bytes, want 16")
        put(self, "ip6", ipaddress.IPv6Address(raw) if raw is not None else None)
        for key in ("tcp", "udp", "tcp6", "udp6"):
            raw = get(key)
            if raw is None:
                put(self, key, None)
            elif isinstance(raw, RawRLP):
                raise ENRError(f"{key} is a list, want a port number")
            else:
                put(self, key, _decode_uint(raw, f"{key} port", 65535))
        return self

    @classmethod
    def _sign(cls, key: PrivateKey, seq: int, pairs: dict[str, bytes]) -> "ENR":
        if not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
            raise ENRError(f"seq {seq!r} is out of range 0-{MAX_SEQ}")
        pairs[KEY_ID] = ID_SCHEME_V4
        pairs[KEY_SECP256K1] = key.public_key.to_compressed()
        ordered = dict(sorted(pairs.items()))  # latin-1 str order is the keys' byte order
        body = bytearray(encode_string(_int_bytes(seq)))
        for k, v in ordered.items():
            body += encode_string(k.encode("latin-1"))
            body += _encode_value(v)
        content = list_header(len(body)) + body
        signature = key.sign_compact(keccak256(content))
        payload = encode_string(signature) + body
        record = list_header(len(payload)) + payload
        if len(record) > MAX_ENR_SIZE:
            raise ENRError(f"record too big: {len(record)} bytes, the limit is {MAX_ENR_SIZE}")
        return cls._make(bytes(record), seq, signature, ordered, key.public_key)

    @classmethod
    def build(
        cls,
        key: PrivateKey,
        seq: int = 1,
        *,
        ip: ipaddress.IPv4Address | str | None = None,
        tcp: int | None = None,
        udp: int | None = None,
        ip6: ipaddress.IPv6Address | str | None = None,
        tcp6: int | None = None,
        udp6: int | None = None,
        extra: Mapping[str, bytes] | None = None,
    ) -> "ENR":
        """A new record signed by ``key``; ``extra`` values are RLP strings, or ``RawRLP`` lists."""
        pairs: dict[str, bytes] = {}
        given = {"ip": ip, "tcp": tcp, "udp": udp, "ip6": ip6, "tcp6": tcp6, "udp6": udp6}
        for k, v in given.items():
            if v is not None:
                pairs[k] = _encode_address(k, v)
        if extra:
            _check_extra(extra)
            pairs.update(extra)
        return cls._sign(key, seq, pairs)

    def updated(
        self,
        key: PrivateKey,
        *,
        ip: ipaddress.IPv4Address | str | None | Literal[_Keep.KEEP] = _KEEP,
        tcp: int | None | Literal[_Keep.KEEP] = _KEEP,
        udp: int | None | Literal[_Keep.KEEP] = _KEEP,
        ip6: ipaddress.IPv6Address | str | None | Literal[_Keep.KEEP] = _KEEP,
        tcp6: int | None | Literal[_Keep.KEEP] = _KEEP,
        udp6: int | None | Literal[_Keep.KEEP] = _KEEP,
        extra: Mapping[str, bytes | None] | None = None,
    ) -> "ENR":
        """This record with some entries changed (``None`` removes one), seq + 1, re-signed."""
        if key.public_key != self.public_key:
            raise ENRError("updated() needs the record's own private key")
        if self.seq >= MAX_SEQ:
            raise ENRError("seq is at its maximum, the record cannot be updated")
        pairs = dict(self._pairs)
        given = {"ip": ip, "tcp": tcp, "udp": udp, "ip6": ip6, "tcp6": tcp6, "udp6": udp6}
        for k, v in given.items():
            if v is None:
                pairs.pop(k, None)
            elif v is not _KEEP:
                pairs[k] = _encode_address(k, v)
        if extra:
            _check_extra({name: raw for name, raw in extra.items() if raw is not None})
            for name, raw in extra.items():
                if raw is None:
                    if name in STANDARD_KEYS:
                        raise ENRError(f"key {name!r} is standard: pass it as an argument")
                    pairs.pop(name, None)
                else:
                    pairs[name] = raw
        return self._sign(key, self.seq + 1, pairs)

    # -- decoding -------------------------------------------------------------------------

    @classmethod
    def from_rlp(cls, data: bytes, *, verify: bool = True) -> "ENR":
        """Decode and (unless ``verify=False``, for records from a trusted store) verify."""
        end = len(data)
        if end > MAX_ENR_SIZE:
            raise ENRError(f"record too big: {end} bytes, the limit is {MAX_ENR_SIZE}")
        data = bytes(data)
        is_list, pos, stop = _item(data, 0, end)
        if not is_list:
            raise ENRError("bad RLP: a record is a list")
        if stop != end:
            raise ENRError(f"bad RLP: {end - stop} bytes after the record")
        if pos == end:
            raise ENRError("record is an empty list")
        is_list, start, pos = _item(data, pos, end)
        if is_list:
            raise ENRError("bad RLP: the signature is a list")
        signature = data[start:pos]
        if len(signature) != SIGNATURE_SIZE:
            raise ENRError(f"bad signature length: {len(signature)} bytes, want {SIGNATURE_SIZE}")
        content_start = pos
        if pos >= end:
            raise ENRError("missing key: record has no seq")
        is_list, start, pos = _item(data, pos, end)
        if is_list:
            raise ENRError("bad RLP: seq is a list")
        if pos - start > 8:
            raise ENRError("seq does not fit in 64 bits")
        seq = _decode_uint(data[start:pos], "seq", MAX_SEQ)
        pairs: dict[str, bytes] = {}
        prev = b""
        first = True
        while pos < end:
            is_list, start, pos = _item(data, pos, end)
            if is_list:
                raise ENRError("bad RLP: a key is a list")
            raw_key = data[start:pos]
            if not first and raw_key <= prev:
                if raw_key == prev:
                    raise ENRError(f"duplicate key {raw_key!r}")
                raise ENRError(f"unsorted keys: {raw_key!r} after {prev!r}")
            first = False
            prev = raw_key
            if pos >= end:
                raise ENRError(f"key {raw_key!r} has no value")
            value_start = pos
            is_list, start, pos = _item(data, pos, end)
            pairs[raw_key.decode("latin-1")] = (
                RawRLP(data[value_start:pos]) if is_list else data[start:pos]
            )

        scheme = pairs.get(KEY_ID)
        if scheme is None:
            raise ENRError("missing key: id (identity scheme)")
        if scheme != ID_SCHEME_V4:
            raise ENRError(f"unknown identity scheme {bytes(scheme)!r}")
        compressed = pairs.get(KEY_SECP256K1)
        if compressed is None:
            raise ENRError("missing key: secp256k1")
        if len(compressed) != COMPRESSED_KEY_SIZE or isinstance(compressed, RawRLP):
            raise ENRError(f"secp256k1 key must be {COMPRESSED_KEY_SIZE} bytes, got {len(compressed)}")
        try:
            public_key = PublicKey.from_bytes(compressed)
        except InvalidKey as exc:
            raise ENRError(f"secp256k1 key is not a valid point: {exc}") from exc
        if verify:
            content = list_header(end - content_start) + data[content_start:]
            if not public_key.verify(signature, keccak256(content)):
                raise ENRError("bad signature: it does not verify against the secp256k1 key")
        return cls._make(data, seq, signature, pairs, public_key)

    @classmethod
    def from_text(cls, text: str) -> "ENR":
        """Decode the ``enr:<base64url>`` text form."""
        if not text.startswith(TEXT_PREFIX):
            raise ENRError(f"text form must start with {TEXT_PREFIX!r}")
        if len(text) > MAX_TEXT_SIZE:
            raise ENRError(f"record too big: {len(text)} characters of text, more than {MAX_ENR_SIZE} bytes")
        body = text[len(TEXT_PREFIX) :]
        if not body.isascii() or not _BASE64URL.fullmatch(body) or len(body) % 4 == 1:
            raise ENRError("text form is not unpadded base64url")
        try:
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except binascii.Error as exc:
            raise ENRError(f"text form is not unpadded base64url: {exc}") from exc
        return cls.from_rlp(data)

    # -- encoding and access ----------------------------------------------------------------

    def to_rlp(self) -> bytes:
        return self._rlp

    def to_text(self) -> str:
        return TEXT_PREFIX + base64.urlsafe_b64encode(self._rlp).rstrip(b"=").decode("ascii")

    @property
    def pairs(self) -> Mapping[str, bytes]:
        """Every entry, raw values, in key order (read-only; list values are ``RawRLP``)."""
        return self._pairs

    def __getitem__(self, key: str) -> bytes:
        return self._pairs[key]

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        return self._pairs.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._pairs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ENR):
            return NotImplemented
        return self._rlp == other._rlp

    def __hash__(self) -> int:
        return hash(self._rlp)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ENR.from_rlp, (self._rlp,))

    def __repr__(self) -> str:
        fields = [f"seq={self.seq}", f"id={self.node_id.short()}"]
        for k in ADDRESS_KEYS:
            v = getattr(self, k)
            if v is not None:
                fields.append(f"{k}={v}")
        others = [k for k in self._pairs if k not in STANDARD_KEYS]
        if others:
            fields.append(f"extra={others}")
        return f"ENR({', '.join(fields)})"

    def __str__(self) -> str:
        return self.to_text()


__all__ = ["ENR", "ENRError", "MAX_ENR_SIZE", "RawRLP"]
