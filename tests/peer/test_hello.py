"""Hello, Disconnect and capability matching: the sans-IO base protocol."""

from __future__ import annotations

import pytest
import rlp

from p2p.crypto import PrivateKey
from p2p.disconnect import DisconnectReason
from p2p.hello import (
    BASE_PROTOCOL_LENGTH,
    MAX_HELLO_SIZE,
    Hello,
    HelloError,
    decode_disconnect,
    decode_hello,
    encode_disconnect,
    local_capabilities,
    match_capabilities,
)
from p2p.protocol import Capability, Protocol
from tests.conftest import load_vector


def test_eip8_hello_vector_decodes_leniently() -> None:
    vector = load_vector("p2p_hello.json")
    hello = decode_hello(bytes.fromhex(vector["hello_rlp"]))
    expected = vector["decoded_by_extractor"]
    assert hello.version == 55 == expected["protocol_version"]
    assert hello.client_id == expected["client_id"]
    assert hello.caps == tuple(Capability(c["name"], c["version"]) for c in expected["capabilities"])
    assert hello.listen_port == expected["listen_port"]
    node_a = PrivateKey.from_hex(load_vector("rlpx_handshake.json")["initiator_static_private_key"])
    assert hello.node_id == node_a.public_key.to_bytes()
    assert hello.node_id.hex() == expected["node_id"]


def test_hello_round_trip(key: PrivateKey) -> None:
    hello = Hello(5, "trio-devp2p/0.1", (Capability("chat", 1), Capability("eth", 68)), 30303,
                  key.public_key.to_bytes())
    assert decode_hello(hello.encode()) == hello


def test_hello_over_2_kib_is_refused(key: PrivateKey) -> None:
    big = Hello(5, "x" * (MAX_HELLO_SIZE + 10), (), 1, key.public_key.to_bytes()).encode()
    with pytest.raises(HelloError) as info:
        decode_hello(big)
    assert info.value.reason == DisconnectReason.BREACH_OF_PROTOCOL


@pytest.mark.parametrize("size", [0, 32, 63, 65, 128])
def test_hello_id_must_be_64_bytes(size: int) -> None:
    payload = rlp.encode([5, b"c", [], 0, b"\x01" * size])
    with pytest.raises(HelloError) as info:
        decode_hello(payload)
    assert info.value.reason == DisconnectReason.INVALID_IDENTITY


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xff",
        rlp.encode(b"not a list"),
        rlp.encode([5, b"c", [], 0]),  # no node ID
        rlp.encode([[5], b"c", [], 0, b"\x01" * 64]),  # version is a list
        rlp.encode([5, b"c", b"caps", 0, b"\x01" * 64]),  # capabilities not a list
        rlp.encode([5, b"c", [[b"eth"]], 0, b"\x01" * 64]),  # capability without version
        rlp.encode([5, b"c", [[b"\xff\xfe", 1]], 0, b"\x01" * 64]),  # name not ASCII
        rlp.encode([5, b"c", [[b"eth", 1]] * 100, 0, b"\x01" * 64]),  # too many capabilities
    ],
)
def test_malformed_hello_is_breach_of_protocol(payload: bytes) -> None:
    with pytest.raises(HelloError) as info:
        decode_hello(payload)
    assert info.value.reason == DisconnectReason.BREACH_OF_PROTOCOL


@pytest.mark.parametrize("reason", list(DisconnectReason))
def test_every_disconnect_reason_round_trips_list_and_bare(reason: DisconnectReason) -> None:
    encoded = encode_disconnect(reason)
    # One-element list: 0xc1 then the reason as one byte (0x80, the empty string, for zero).
    assert encoded == bytes([0xC1, int(reason) or 0x80])
    assert decode_disconnect(encoded) is reason
    assert decode_disconnect(rlp.encode(int(reason))) is reason  # bare, non-list form
    if int(reason) > 0:
        assert decode_disconnect(bytes([int(reason)])) is reason  # a single byte is its own RLP


def test_disconnect_empty_and_odd_payloads() -> None:
    assert decode_disconnect(b"") is DisconnectReason.REQUESTED
    assert decode_disconnect(b"\xc0") is DisconnectReason.REQUESTED
    assert decode_disconnect(b"\x80") is DisconnectReason.REQUESTED
    assert decode_disconnect(b"\xff\xff\xff") is DisconnectReason.REQUESTED  # undecodable
    assert decode_disconnect(rlp.encode([0x63])) == 0x63  # unnamed reason kept as a number
    assert decode_disconnect(rlp.encode([4, b"extra"])) is DisconnectReason.TOO_MANY_PEERS


def test_capability_matching_highest_shared_version_and_offsets() -> None:
    eth66, eth67, eth68 = Protocol("eth", 66, 17), Protocol("eth", 67, 17), Protocol("eth", 68, 17)
    snap = Protocol("snap", 1, 8)
    chat = Protocol("chat", 1, 2)
    local = [snap, eth66, eth67, eth68, chat]
    remote = [Capability("eth", 66), Capability("eth", 67), Capability("snap", 1), Capability("les", 4),
              Capability("chat", 2)]
    matched = match_capabilities(local, remote)
    assert [(m.name, m.version, m.offset) for m in matched] == [
        ("eth", 67, BASE_PROTOCOL_LENGTH),
        ("snap", 1, BASE_PROTOCOL_LENGTH + 17),
    ]
    assert matched[0].protocol is eth67


def test_capability_offsets_sorted_by_name_with_lengths() -> None:
    protos = [Protocol("zz", 1, 3), Protocol("aa", 2, 5), Protocol("mm", 1, 1), Protocol("aa", 1, 9)]
    remote = [Capability("mm", 1), Capability("aa", 1), Capability("aa", 2), Capability("zz", 1)]
    matched = match_capabilities(protos, remote)
    assert [(m.name, m.version, m.offset) for m in matched] == [("aa", 2, 16), ("mm", 1, 21), ("zz", 1, 22)]


def test_no_shared_capability() -> None:
    assert match_capabilities([Protocol("eth", 68, 17)], [Capability("eth", 67)]) == []


def test_local_capabilities_sorted_unique() -> None:
    protos = [Protocol("eth", 68, 17), Protocol("chat", 1, 2), Protocol("eth", 67, 17), Protocol("chat", 1, 2)]
    assert local_capabilities(protos) == (Capability("chat", 1), Capability("eth", 67), Capability("eth", 68))
