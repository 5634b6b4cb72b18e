"""Typed messages as plain data: their RLP layout, and every way a payload can fail to decode."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import FieldError, Hash32, MaxLen, Message, MessageDecodeError, NodeID, Size, Struct, UInt8, UInt64
from tests.typed.kv import Get, Put, Value


class Colour(enum.IntEnum):
    RED = 1
    BLUE = 2


@dataclass(frozen=True, slots=True)
class Fork(Struct):
    hash: Annotated[bytes, Size(4)]
    next: UInt64


@dataclass(frozen=True, slots=True)
class Hello(Message):
    code = 0
    version: UInt8
    head: Hash32
    fork: Fork
    sender: NodeID
    colour: Colour
    tags: Annotated[tuple[str, ...], MaxLen(2)]
    flag: bool = False

    def validate(self) -> None:
        if self.version == 0:
            raise FieldError("version", "must not be 0")


@dataclass(frozen=True, slots=True)
class Numbers(Message):
    code = 1
    single = True
    values: list[UInt8]


HELLO = Hello(3, b"\x11" * 32, Fork(b"abcd", 7), NodeID(b"\x22" * 32), Colour.BLUE, ("a", "é"), True)


def test_layout_is_the_rlp_list_of_fields_in_order() -> None:
    items = rlp.decode(HELLO.encode())
    assert items == [b"\x03", b"\x11" * 32, [b"abcd", b"\x07"], b"\x22" * 32, b"\x02", [b"a", "é".encode()], b"\x01"]
    assert Hello.decode(HELLO.encode()) == HELLO and isinstance(Hello.decode(HELLO.encode()).sender, NodeID)
    assert rlp.decode(Numbers([1, 2]).encode()) == [b"\x01", b"\x02"]  # single: the field is the message


def test_trailing_elements_are_ignored_and_missing_defaults_filled() -> None:
    items = rlp.decode(HELLO.encode())
    assert Hello.decode(rlp.encode(items + [b"future"])) == HELLO
    assert Hello.decode(rlp.encode(items[:-1])).flag is False


def _with(index: int, value: object) -> bytes:
    items = rlp.decode(HELLO.encode())
    items[index] = value
    return bytes(rlp.encode(items))


@pytest.mark.parametrize("payload, field, why", [
    (b"\xff\xff", "(payload)", "invalid RLP"),
    (rlp.encode(b"x"), "(message)", "expected a list"),
    (rlp.encode([b"\x03"]), "head", "missing"),
    (_with(0, b"\x01\x00"), "version", "longer than 1 bytes"),
    (_with(0, b""), "version", "must not be 0"),
    (_with(1, b"\x11" * 31), "head", "31 bytes, want 32"),
    (_with(2, [b"abcd", b"\x00\x07"]), "fork.next", "leading zero"),
    (_with(2, b"abcd"), "fork", "expected a list"),
    (_with(3, b"\x22" * 5), "sender", "32"),
    (_with(4, b"\x09"), "colour", "unknown Colour 9"),
    (_with(5, [b"a", b"b", b"c"]), "tags", "3 items, at most 2"),
    (_with(5, [b"a", b"\xff"]), "tags[1]", "UTF-8"),
    (_with(5, [b"a", [b"x"]]), "tags[1]", "got a list"),
    (_with(6, b"\x02"), "flag", "0 or 1"),
])
def test_decode_errors_name_the_message_and_the_field(payload: bytes, field: str, why: str) -> None:
    with pytest.raises(MessageDecodeError) as info:
        Hello.decode(payload)
    assert info.value.message == "Hello" and info.value.field == field, str(info.value)
    assert why in info.value.reason
    assert f"bad Hello: field {field}" in str(info.value)


def test_requests_and_responses_carry_the_id_first() -> None:
    payload = Get("k").encode_with_id(2**63)
    assert rlp.decode(payload) == [(2**63).to_bytes(8, "big"), [b"k", b""]]
    assert Get.decode_with_id(payload) == (2**63, Get("k"))
    assert Value.decode_with_id(Value(True, b"v").encode_with_id(5)) == (5, Value(True, b"v"))
    assert Get.response_type() is Value
    with pytest.raises(MessageDecodeError, match="request_id"):
        Get.decode_with_id(rlp.encode([b"\x00\x01", [b"k"]]))
    with pytest.raises(MessageDecodeError, match="request-id, body"):
        Get.decode_with_id(rlp.encode([b"\x01"]))


def test_values_that_do_not_fit_are_refused_when_encoding() -> None:
    with pytest.raises(ValueError):
        Hello(256, b"\x11" * 32, Fork(b"abcd", 0), NodeID(b"\x22" * 32), Colour.RED, ()).encode()
    with pytest.raises(ValueError):
        Put("k" * 33, b"").encode()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_gives_only_decode_errors(data: bytes) -> None:
    for decode in (Hello.decode, Put.decode, Numbers.decode, Get.decode_with_id, Value.decode_with_id):
        try:
            decode(data)  # type: ignore[operator]
        except MessageDecodeError:
            pass
