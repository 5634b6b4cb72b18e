"""Typed messages (sans-IO): a protocol's messages as dataclasses whose fields give their RLP shape.

    @dataclass(frozen=True, slots=True)
    class Status(Message):
        code = 0
        version: UInt32
        head: Hash32
        name: Annotated[str, MaxLen(32)]

A message is an RLP list of its fields in declaration order. Field types: ``int`` (a canonical
unsigned integer; ``Annotated[int, UInt(bits)]`` or the ``UInt8`` .. ``UInt256`` aliases bound
it), ``bool``, ``bytes`` (``Size(n)`` / ``MaxLen(n)``), a ``bytes`` subclass built from its bytes
(e.g. ``NodeID``), ``str`` (UTF-8, ``MaxLen``), an ``IntEnum``, a nested :class:`Struct`,
``list[T]`` / ``tuple[T, ...]`` (``MaxLen`` bounds the items), ``Raw`` (any RLP item, kept as
is), and ``Annotated[T, Codec(encode, decode)]`` for anything else. Extra trailing elements are
ignored (a later version may add fields); missing ones take the field's default, if it has one.

Decoding checks everything and raises :class:`MessageDecodeError` naming the message and the
field, so that the layer above can disconnect the peer with a log line that says what was wrong.
The core never calls any of this: it is an optional layer for protocol authors.

Requests and responses (eth/66 style) are framed as ``[request_id, body]``, where ``body`` is the
message's own list; see :class:`Request` and :class:`Response`.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import rlp
from rlp.exceptions import DecodingError

MAX_REQUEST_ID_BYTES = 8  # request IDs are uint64, as eth/66's


class MessageDecodeError(ValueError):
    """A payload that is not the message it arrived as; ``field`` names where it went wrong."""

    def __init__(self, message: str, field: str, reason: str) -> None:
        super().__init__(f"bad {message}: field {field}: {reason}")
        self.message = message
        self.field = field
        self.reason = reason


class FieldError(ValueError):
    """Raised by a field's decoder, a ``validate()`` hook or ``__post_init__``: ``field`` was wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# -- field markers (metadata of ``Annotated``) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class UInt:
    bits: int = 256


@dataclass(frozen=True, slots=True)
class Size:
    """Exact length of a ``bytes`` field."""

    n: int


@dataclass(frozen=True, slots=True)
class MaxLen:
    """Longest ``bytes`` / ``str`` (in bytes) / list (in items) a field may be."""

    n: int


@dataclass(frozen=True, slots=True)
class Codec:
    """A field's own conversion: ``encode(value)`` gives an RLP item (bytes or nested lists),
    ``decode(item)`` gives the value or raises ``ValueError`` saying why."""

    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


UInt8 = Annotated[int, UInt(8)]
UInt16 = Annotated[int, UInt(16)]
UInt32 = Annotated[int, UInt(32)]
UInt64 = Annotated[int, UInt(64)]
UInt256 = Annotated[int, UInt(256)]
Hash32 = Annotated[bytes, Size(32)]
Raw = Annotated[Any, Codec(lambda item: item, lambda item: item)]  # any RLP item, unchecked


# -- conversions ---------------------------------------------------------------------------------

Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


class _Bad(Exception):
    """A field's item is wrong; ``path`` grows as the error leaves nested fields."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason


def _uint_codec(bits: int) -> tuple[Encoder, Decoder]:
    max_bytes = (bits + 7) // 8
    limit = 1 << bits

    def enc(value: int) -> bytes:
        if not 0 <= value < limit:
            raise ValueError(f"{value} is not a uint{bits}")
        return value.to_bytes((value.bit_length() + 7) // 8, "big")

    def dec(item: Any) -> int:
        if type(item) is not bytes:
            raise _Bad("", "expected an integer, got a list")
        if len(item) > max_bytes:
            raise _Bad("", f"integer longer than {max_bytes} bytes")
        if item[:1] == b"\x00":
            raise _Bad("", "integer with a leading zero byte")
        return int.from_bytes(item, "big")

    return enc, dec


def _bool_dec(item: Any) -> bool:
    if item == b"":
        return False
    if item == b"\x01":
        return True
    raise _Bad("", "expected 0 or 1")


def _bytes_codec(tp: type, size: int | None, max_len: int | None) -> tuple[Encoder, Decoder]:
    def dec(item: Any) -> Any:
        if type(item) is not bytes:
            raise _Bad("", "expected a byte string, got a list")
        if size is not None and len(item) != size:
            raise _Bad("", f"{len(item)} bytes, want {size}")
        if max_len is not None and len(item) > max_len:
            raise _Bad("", f"{len(item)} bytes, at most {max_len}")
        if tp is bytes:
            return item
        try:
            return tp(item)
        except ValueError as exc:
            raise _Bad("", str(exc)) from None

    return bytes, dec


def _str_codec(max_len: int | None) -> tuple[Encoder, Decoder]:
    def enc(value: str) -> bytes:
        data = value.encode()
        if max_len is not None and len(data) > max_len:
            raise ValueError(f"text longer than {max_len} bytes")
        return data

    def dec(item: Any) -> str:
        if type(item) is not bytes:
            raise _Bad("", "expected text, got a list")
        if max_len is not None and len(item) > max_len:
            raise _Bad("", f"text longer than {max_len} bytes")
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad("", "not valid UTF-8") from None

    return enc, dec


def _enum_codec(tp: type[enum.IntEnum]) -> tuple[Encoder, Decoder]:
    enc_int, dec_int = _uint_codec(64)

    def dec(item: Any) -> enum.IntEnum:
        value = dec_int(item)
        try:
            return tp(value)
        except ValueError:
            raise _Bad("", f"unknown {tp.__name__} {value}") from None

    return (lambda value: enc_int(int(value))), dec


def _list_codec(inner: tuple[Encoder, Decoder], as_tuple: bool, max_len: int | None) -> tuple[Encoder, Decoder]:
    enc_item, dec_item = inner

    def enc(value: Any) -> list[Any]:
        return [enc_item(v) for v in value]

    def dec(item: Any) -> Any:
        if type(item) is not list:
            raise _Bad("", "expected a list, got a byte string")
        if max_len is not None and len(item) > max_len:
            raise _Bad("", f"{len(item)} items, at most {max_len}")
        out = []
        for i, element in enumerate(item):
            try:
                out.append(dec_item(element))
            except _Bad as exc:
                raise _Bad(f"[{i}]{exc.path}", exc.reason) from None
        return tuple(out) if as_tuple else out

    return enc, dec


def _custom_codec(codec: Codec) -> tuple[Encoder, Decoder]:
    def dec(item: Any) -> Any:
        try:
            return codec.decode(item)
        except _Bad:
            raise
        except (ValueError, TypeError) as exc:
            raise _Bad("", str(exc) or type(exc).__name__) from None

    return codec.encode, dec


def _codec_for(tp: Any, owner: type) -> tuple[Encoder, Decoder]:
    markers: tuple[Any, ...] = ()
    if typing.get_origin(tp) is Annotated:
        tp, *extra = typing.get_args(tp)
        markers = tuple(extra)
    for marker in markers:
        if isinstance(marker, Codec):
            return _custom_codec(marker)
    size = next((m.n for m in markers if isinstance(m, Size)), None)
    max_len = next((m.n for m in markers if isinstance(m, MaxLen)), None)
    bits = next((m.bits for m in markers if isinstance(m, UInt)), 256)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise TypeError(f"{owner.__name__}: only tuple[T, ...] is supported, not {tp}")
        return _list_codec(_codec_for(args[0], owner), origin is tuple, max_len)
    if not isinstance(tp, type):
        raise TypeError(f"{owner.__name__}: no RLP shape for {tp!r}; use Annotated[..., Codec(...)]")
    if tp is bool:
        return (lambda value: b"\x01" if value else b""), _bool_dec
    if issubclass(tp, enum.IntEnum):
        return _enum_codec(tp)
    if tp is int:
        return _uint_codec(bits)
    if issubclass(tp, bytes):
        return _bytes_codec(tp, size, max_len)
    if tp is str:
        return _str_codec(max_len)
    if issubclass(tp, Struct):
        schema = _schema(tp)
        return schema.to_item, schema.from_item
    raise TypeError(f"{owner.__name__}: no RLP shape for {tp!r}; use Annotated[..., Codec(...)]")


# -- schemas -------------------------------------------------------------------------------------


class _Schema:
    """How one class goes to and from an RLP item (compiled once per class)."""

    __slots__ = ("cls", "name", "names", "encoders", "decoders", "required", "defaults", "single", "validate")

    def __init__(self, cls: type) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a dataclass (@dataclass(frozen=True, slots=True))")
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = [f for f in dataclasses.fields(cls) if f.init]
        self.cls = cls
        self.name = cls.__name__
        self.names = tuple(f.name for f in fields)
        codecs = [_codec_for(hints[f.name], cls) for f in fields]
        self.encoders = tuple(c[0] for c in codecs)
        self.decoders = tuple(c[1] for c in codecs)
        self.required = sum(1 for f in fields if f.default is dataclasses.MISSING
                            and f.default_factory is dataclasses.MISSING)
        self.defaults = tuple(f.default if f.default is not dataclasses.MISSING
                              else f.default_factory if f.default_factory is not dataclasses.MISSING else None
                              for f in fields)
        self.single = bool(getattr(cls, "single", False))
        if self.single and len(fields) != 1:
            raise TypeError(f"{cls.__name__}: single = True needs exactly one field")
        self.validate = getattr(cls, "validate", None)

    def to_item(self, value: Any) -> Any:
        if self.single:
            return self.encoders[0](getattr(value, self.names[0]))
        return [enc(getattr(value, name)) for enc, name in zip(self.encoders, self.names)]

    def from_item(self, item: Any) -> Any:
        if self.single:
            items = [item]
        elif type(item) is not list:
            raise _Bad("", "expected a list, got a byte string")
        else:
            items = item
        args = []
        for i, dec in enumerate(self.decoders):
            if i < len(items):
                try:
                    args.append(dec(items[i]))
                except _Bad as exc:
                    raise _Bad(f".{self.names[i]}{exc.path}", exc.reason) from None
            elif i < self.required:
                raise _Bad(f".{self.names[i]}", "missing")
            else:
                default = self.defaults[i]
                args.append(default() if callable(default) else default)
        try:
            value: Any = self.cls(*args)
            if self.validate is not None:
                value.validate()
        except FieldError as exc:
            raise _Bad(f".{exc.field}", exc.reason) from None
        except ValueError as exc:
            raise _Bad("", str(exc)) from None
        return value


_SCHEMAS: dict[type, _Schema] = {}


def _schema(cls: type) -> _Schema:
    schema = _SCHEMAS.get(cls)
    if schema is None:
        schema = _SCHEMAS[cls] = _Schema(cls)
    return schema


def _decode_rlp(name: str, payload: bytes, max_size: int | None) -> Any:
    if max_size is not None and len(payload) > max_size:
        raise MessageDecodeError(name, "(payload)", f"{len(payload)} bytes, at most {max_size}")
    try:
        return rlp.decode(payload, strict=True)
    except DecodingError as exc:
        raise MessageDecodeError(name, "(payload)", f"invalid RLP: {exc}") from None


def _raise(name: str, exc: _Bad) -> typing.NoReturn:
    raise MessageDecodeError(name, exc.path.lstrip(".") or "(message)", exc.reason) from None


S = TypeVar("S", bound="Struct")


class Struct:
    """A dataclass with an RLP shape: nested in messages, or the base of :class:`Message`.

    ``single = True`` makes the value its one field's item instead of a list of one item (e.g.
    eth's ``BlockHeaders``, which is the list of headers itself). A ``validate()`` method, when
    defined, runs after decoding only (not when the application builds a value)."""

    __slots__ = ()
    single: ClassVar[bool] = False
    max_size: ClassVar[int | None] = None  # payload bytes, checked before decoding

    def to_item(self) -> Any:
        return _schema(type(self)).to_item(self)

    @classmethod
    def from_item(cls: type[S], item: Any) -> S:
        try:
            value: S = _schema(cls).from_item(item)
        except _Bad as exc:
            _raise(cls.__name__, exc)
        return value

    def encode(self) -> bytes:
        return bytes(rlp.encode(_schema(type(self)).to_item(self)))

    @classmethod
    def decode(cls: type[S], payload: bytes) -> S:
        """The value ``payload`` holds; raises :class:`MessageDecodeError`."""
        item = _decode_rlp(cls.__name__, payload, cls.max_size)
        return cls.from_item(item)


class Message(Struct):
    """A message of a protocol: a :class:`Struct` with its relative message ``code``."""

    __slots__ = ()
    code: ClassVar[int]


class Response(Message):
    """The answer to a :class:`Request`, sent as ``[request_id, body]``."""

    __slots__ = ()

    def encode_with_id(self, request_id: int) -> bytes:
        return bytes(rlp.encode([_encode_id(request_id), _schema(type(self)).to_item(self)]))

    @classmethod
    def decode_with_id(cls: type[S], payload: bytes) -> tuple[int, S]:
        return _decode_framed(cls, payload)


R = TypeVar("R", bound=Response)


class Request(Message, Generic[R]):
    """A message that expects a response: ``class GetThings(Request[Things])``. Sent as
    ``[request_id, body]`` (eth/66); the layer picks the ID and matches the answer to it."""

    __slots__ = ()

    @classmethod
    def response_type(cls) -> type[Response]:
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is Request:
                (arg,) = typing.get_args(base)
                if isinstance(arg, typing.ForwardRef) or isinstance(arg, str):
                    module = sys.modules[cls.__module__]
                    name = arg if isinstance(arg, str) else arg.__forward_arg__
                    arg = vars(module)[name]
                if isinstance(arg, type) and issubclass(arg, Response):
                    return arg
        for klass in cls.__mro__[1:]:
            if klass is not Request and isinstance(klass, type) and issubclass(klass, Request):
                return klass.response_type()
        raise TypeError(f"{cls.__name__} must name its response: class {cls.__name__}(Request[TheResponse])")

    def encode_with_id(self, request_id: int) -> bytes:
        return bytes(rlp.encode([_encode_id(request_id), _schema(type(self)).to_item(self)]))

    @classmethod
    def decode_with_id(cls: type[S], payload: bytes) -> tuple[int, S]:
        return _decode_framed(cls, payload)


_encode_id, _decode_id = _uint_codec(8 * MAX_REQUEST_ID_BYTES)


def _decode_framed(cls: type[S], payload: bytes) -> tuple[int, S]:
    name = cls.__name__
    items = _decode_rlp(name, payload, cls.max_size)
    if type(items) is not list or len(items) < 2:
        raise MessageDecodeError(name, "(message)", "expected [request-id, body]")
    try:
        request_id = _decode_id(items[0])
    except _Bad as exc:
        raise MessageDecodeError(name, "request_id", exc.reason) from None
    return request_id, cls.from_item(items[1])


def framed(cls: type) -> bool:
    """True for messages sent as ``[request_id, body]``."""
    return issubclass(cls, (Request, Response))


__all__ = [
    "Codec",
    "FieldError",
    "Hash32",
    "MaxLen",
    "Message",
    "MessageDecodeError",
    "Raw",
    "Request",
    "Response",
    "Size",
    "Struct",
    "UInt",
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "UInt256",
]
