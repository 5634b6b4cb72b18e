"""Discovery v4 wire format: the EIP-8 vectors, round trips, every rejection, Neighbors split."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.crypto import PrivateKey
from p2p.crypto.keccak import keccak256
from p2p.discover.errors import (
    BadFields,
    BadHash,
    BadPacketSignature,
    BadRLP,
    DecodeError,
    Expired,
    PacketTooLarge,
    PacketTooSmall,
    UnknownPacketType,
)
from p2p.discover.wire import (
    HEAD_SIZE,
    MAX_NEIGHBORS,
    MAX_PACKET_SIZE,
    ENRRequest,
    ENRResponse,
    Endpoint,
    FindNode,
    NeighborEntry,
    Neighbors,
    PacketType,
    Ping,
    Pong,
    decode_packet,
    decode_rlp_list,
    encode_neighbors,
    encode_packet,
    encode_rlp,
    seal,
)
from p2p.enode import ENR
from tests.conftest import load_vector

VECTORS = load_vector("discv4_packets.json")
SIGNER = bytes.fromhex(VECTORS["derived_by_extractor"]["signer_public_key"])
KEY = PrivateKey.from_hex(VECTORS["signing_private_key"])
NOW = 1_700_000_000.0
LATER = int(NOW) + 20


def _endpoint(d: dict[str, Any]) -> Endpoint:
    return Endpoint(ipaddress.ip_address(d["ip"]), d["udp_port"], d["tcp_port"])


@pytest.mark.parametrize("vec", VECTORS["packets"], ids=lambda v: v["name"])
def test_vector_decodes_hash_and_signer(vec: dict[str, Any]) -> None:
    data = bytes.fromhex(vec["packet"])
    dec = vec["decoded_by_extractor"]
    r = decode_packet(data)  # no clock: these packets expired in 2006
    assert r.hash == bytes.fromhex(dec["hash"]) == keccak256(data[32:])
    assert r.sender.to_bytes() == SIGNER
    assert r.type == dec["packet_type"]
    p = r.packet
    assert p.expiration == dec["expiration"]  # type: ignore[union-attr]
    if isinstance(p, Ping):
        assert p.version == dec["version"]
        assert p.from_endpoint == _endpoint(dec["from_endpoint"])
        assert p.to_endpoint == _endpoint(dec["to_endpoint"])
        # v4 ping: "01" at the EIP-868 place is seq 1; v555 ping: a list there is ignored
        assert p.enr_seq == (1 if dec["version"] == 4 else None)
    elif isinstance(p, Pong):
        assert p.to_endpoint == _endpoint(dec["to_endpoint"])
        assert p.ping_hash == bytes.fromhex(dec["ping_hash"])
        assert p.enr_seq is None  # a list at the seq place
    elif isinstance(p, FindNode):
        assert p.target == bytes.fromhex(dec["target"])
    else:
        assert isinstance(p, Neighbors)
        assert len(p.nodes) == 4
        assert p.nodes[0] == NeighborEntry(ipaddress.ip_address("99.33.22.55"), 4444, 4445, p.nodes[0].pubkey)
        assert [str(n.ip) for n in p.nodes] == ["99.33.22.55", "1.2.3.4", "2001:db8:3c4d:15::abcd:ef12",
                                                 "2001:db8:85a3:8d3:1319:8a2e:370:7348"]
        assert [n.udp_port for n in p.nodes] == [4444, 1, 3333, 999]


def test_vectors_are_expired_against_a_clock() -> None:
    for vec in VECTORS["packets"]:
        with pytest.raises(Expired):
            decode_packet(bytes.fromhex(vec["packet"]), now=NOW)


ENR_RECORD = ENR.build(KEY, 3, ip="127.0.0.1", udp=30303, tcp=30303)
PING = Ping(Endpoint(ipaddress.ip_address("127.0.0.1"), 30303, 30304), Endpoint(ipaddress.ip_address("::1"), 1, 0),
            LATER, 7)
ROUND_TRIP: list[Any] = [
    PING,
    Ping(Endpoint(ipaddress.ip_address("127.0.0.1"), 30303, 0), Endpoint(None, 1, 2), LATER, None),
    Pong(Endpoint(ipaddress.ip_address("127.0.0.2"), 65535, 0), bytes(range(32)), LATER, 0),
    Pong(Endpoint(ipaddress.ip_address("127.0.0.2"), 1, 1), b"\xff" * 32, LATER, None),
    FindNode(bytes(range(64)), LATER),
    Neighbors((NeighborEntry(ipaddress.ip_address("127.0.0.1"), 5, 6, bytes(64)),
               NeighborEntry(ipaddress.ip_address("fe80::1"), 70, 0, b"\x01" * 64)), LATER),
    Neighbors((), LATER),
    ENRRequest(LATER),
    ENRResponse(b"\x07" * 32, ENR_RECORD.to_rlp()),
]


@pytest.mark.parametrize("packet", ROUND_TRIP, ids=lambda p: type(p).__name__)
def test_round_trip(packet: object) -> None:
    key = PrivateKey.generate(random.Random(5))
    data, digest = encode_packet(key, packet)  # type: ignore[arg-type]
    r = decode_packet(data, now=NOW)
    assert r.packet == packet
    assert r.hash == digest == data[:32]
    assert r.sender == key.public_key
    if isinstance(packet, ENRResponse):
        assert ENR.from_rlp(r.packet.record) == ENR_RECORD  # type: ignore[union-attr]


def test_our_rlp_matches_pyrlp() -> None:
    items = [4, [b"\x7f\x00\x00\x01", 3000, 0], b"x" * 70, [[], [b""]], 2**64 - 1, 0, 127, 128]
    assert encode_rlp(items) == rlp.encode(items)
    assert decode_rlp_list(rlp.encode(items)) == rlp.decode(rlp.encode(items))


def _good_ping() -> bytes:
    return encode_packet(KEY, ROUND_TRIP[0])[0]


def _resealed(body: bytes, ptype: int = 1, key: PrivateKey = KEY) -> bytes:
    return seal(key, ptype, body)[0]


def test_reject_too_small() -> None:
    with pytest.raises(PacketTooSmall):
        decode_packet(_good_ping()[:HEAD_SIZE])
    with pytest.raises(PacketTooSmall):
        decode_packet(b"")


def test_reject_too_large() -> None:
    ping = _good_ping()
    with pytest.raises(PacketTooLarge):
        decode_packet(ping + b"\x00" * (MAX_PACKET_SIZE + 1 - len(ping)))
    # EIP-8 junk after the list is fine as long as the packet stays within 1280 bytes
    body = ping[HEAD_SIZE + 1:] + b"\x00" * (MAX_PACKET_SIZE - len(ping))
    assert decode_packet(_resealed(body), now=NOW).packet == ROUND_TRIP[0]


def test_reject_bad_hash() -> None:
    data = bytearray(_good_ping())
    data[-1] ^= 1
    with pytest.raises(BadHash):
        decode_packet(bytes(data))
    data = bytearray(_good_ping())
    data[0] ^= 1
    with pytest.raises(BadHash):
        decode_packet(bytes(data))


def test_reject_bad_signature() -> None:
    ping = _good_ping()
    signed = ping[HEAD_SIZE:]
    for sig in (b"\x00" * 65, b"\xff" * 64 + b"\x00", ping[32:96] + b"\x07"):
        rest = sig + signed
        with pytest.raises(BadPacketSignature):
            decode_packet(keccak256(rest) + rest)


def test_reject_wrong_signer_is_a_different_sender() -> None:
    # A valid signature over other content recovers some other key: not an error, a stranger.
    ping = _good_ping()
    other = encode_packet(KEY, ENRRequest(LATER))[0]
    rest = other[32:97] + ping[HEAD_SIZE:]
    r = decode_packet(keccak256(rest) + rest, now=NOW)
    assert r.sender != KEY.public_key


def test_reject_expired() -> None:
    ping = Ping(PING.from_endpoint, PING.to_endpoint, int(NOW) - 1, 1)
    with pytest.raises(Expired):
        decode_packet(encode_packet(KEY, ping)[0], now=NOW)
    for packet in (FindNode(bytes(64), int(NOW) - 1), ENRRequest(int(NOW) - 5), Neighbors((), 0)):
        with pytest.raises(Expired):
            decode_packet(encode_packet(KEY, packet)[0], now=NOW)


def test_expiration_is_signed_64_bit() -> None:
    # 2**64 - 1 as uint64 is -1 as int64: in the past, whatever the clock says.
    body = encode_rlp([4, [b"\x7f\x00\x00\x01", 1, 1], [b"\x7f\x00\x00\x01", 1, 1], 2**64 - 1])
    with pytest.raises(Expired):
        decode_packet(_resealed(body), now=NOW)
    assert decode_packet(_resealed(body)).packet.expiration == -1  # type: ignore[union-attr]
    body = encode_rlp([4, [b"\x7f\x00\x00\x01", 1, 1], [b"\x7f\x00\x00\x01", 1, 1], 2**63 - 1])
    assert decode_packet(_resealed(body), now=NOW).packet.expiration == 2**63 - 1  # type: ignore[union-attr]
    body = encode_rlp([4, [b"\x7f\x00\x00\x01", 1, 1], [b"\x7f\x00\x00\x01", 1, 1], 2**64])
    with pytest.raises(BadFields):
        decode_packet(_resealed(body), now=NOW)


def test_reject_unknown_type() -> None:
    body = _good_ping()[HEAD_SIZE + 1:]
    for ptype in (0, 7, 0xFF):
        with pytest.raises(UnknownPacketType):
            decode_packet(_resealed(body, ptype), now=NOW)


@pytest.mark.parametrize("body", [
    b"",  # no data at all
    b"\x04",  # not a list
    b"\xc5\x04",  # list longer than the packet
    b"\xf8\x03\x01\x02\x03",  # long form for a short list
    b"\xc2\x81\x05",  # non-canonical single byte
    b"\xc3\xb8\x01\x05",  # long string form for a short string
    b"\xc1",  # list header promising a missing byte
    b"\xe0" * 31 + b"\xc0",  # 31 nested lists whose lengths do not add up
], ids=lambda b: b.hex() or "empty")
def test_reject_bad_rlp(body: bytes) -> None:
    with pytest.raises(BadRLP):
        decode_packet(_resealed(body), now=NOW)


def test_reject_nesting_too_deep() -> None:
    nested: list[Any] = []
    for _ in range(20):
        nested = [nested]
    body = encode_rlp([4, [b"\x7f\x00\x00\x01", 1, 1], [b"\x7f\x00\x00\x01", 1, 1], LATER, 1, nested])
    with pytest.raises(BadRLP):
        decode_packet(_resealed(body), now=NOW)


LOOP = [b"\x7f\x00\x00\x01", 1, 1]


@pytest.mark.parametrize("ptype,items", [
    (1, [[4], LOOP, LOOP, LATER]),  # version is a list
    (1, [4, LOOP, LOOP]),  # missing expiration
    (1, [4, b"\x7f\x00\x00\x01", LOOP, LATER]),  # endpoint is not a list
    (1, [4, [b"\x7f\x00\x00\x01", 1], LOOP, LATER]),  # endpoint too short
    (1, [4, [b"\x7f\x00\x00\x01", 70000, 1], LOOP, LATER]),  # port above 65535
    (1, [4, LOOP, LOOP, [LATER]]),  # expiration is a list
    (2, [LOOP, b"\x01" * 31, LATER]),  # pong token of 31 bytes
    (2, [LOOP, [b"\x01" * 32], LATER]),  # pong token is a list
    (3, [b"\x01" * 63, LATER]),  # findnode target of 63 bytes
    (3, [b"\x01" * 64]),  # findnode without expiration
    (4, [b"nodes", LATER]),  # neighbors nodes not a list
    (4, [[[b"\x7f\x00\x00\x01", 1, 1]], LATER]),  # neighbor without key
    (4, [[[b"\x7f\x00\x00\x01", 1, 1, b"\x01" * 65]], LATER]),  # neighbor key of 65 bytes
    (4, [[b"flat"], LATER]),  # neighbor is not a list
    (5, []),  # enr request without expiration
    (6, [b"\x01" * 32]),  # enr response without record
    (6, [b"\x01" * 32, b"not a list"]),  # record is not a list
    (6, [b"\x01" * 31, []]),  # request hash of 31 bytes
])
def test_reject_wrong_types(ptype: int, items: list[Any]) -> None:
    with pytest.raises(BadFields):
        decode_packet(_resealed(encode_rlp(items), ptype), now=NOW)


def test_extra_elements_and_odd_seq_values_accepted() -> None:
    body = encode_rlp([4, LOOP, LOOP, LATER, [1, 2], b"extra", [b"more"]])
    p = decode_packet(_resealed(body), now=NOW).packet
    assert isinstance(p, Ping) and p.enr_seq is None
    body = encode_rlp([4, LOOP, LOOP, LATER, b"\x01" * 9])  # seq longer than 64 bits: ignored
    assert decode_packet(_resealed(body), now=NOW).packet.enr_seq is None  # type: ignore[union-attr]
    body = encode_rlp([99, [b"\x01\x02", 1, 1], LOOP, LATER, 5])  # odd IP length, unknown version
    p = decode_packet(_resealed(body), now=NOW).packet
    assert isinstance(p, Ping) and p.version == 99 and p.from_endpoint.ip is None and p.enr_seq == 5


def _entries(n: int, v6: bool) -> list[NeighborEntry]:
    rng = random.Random(n)
    ip = ipaddress.ip_address("2001:db8:85a3:8d3:1319:8a2e:370:7348" if v6 else "10.1.2.3")
    return [NeighborEntry(ip, 65535, 65535, rng.randbytes(64)) for _ in range(n)]


@pytest.mark.parametrize("n", [0, 1, 12, 13, 16, 40])
@pytest.mark.parametrize("v6", [False, True])
def test_neighbors_split_fits_1280(n: int, v6: bool) -> None:
    entries = _entries(n, v6)
    packets = encode_neighbors(KEY, entries, LATER)
    assert len(packets) == max(1, -(-n // MAX_NEIGHBORS))
    got: list[NeighborEntry] = []
    for data in packets:
        assert len(data) <= MAX_PACKET_SIZE
        r = decode_packet(data, now=NOW)
        assert isinstance(r.packet, Neighbors) and r.sender == KEY.public_key
        assert len(r.packet.nodes) <= MAX_NEIGHBORS
        got.extend(r.packet.nodes)
    assert got == entries


def test_encode_refuses_oversized_packet() -> None:
    with pytest.raises(ValueError):
        encode_packet(KEY, Neighbors(tuple(_entries(14, True)), LATER))


def test_packet_type_values() -> None:
    assert [t.value for t in PacketType] == [1, 2, 3, 4, 5, 6]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1400))
def test_random_bytes_only_raise_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_packet(data, now=NOW)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.integers(0, 255))
def test_random_bodies_with_valid_hash_only_raise_decode_errors(body: bytes, ptype: int) -> None:
    # Correct hash and signature over garbage: the RLP and field checks must hold.
    try:
        decode_packet(_resealed(body, ptype), now=NOW)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 200), st.integers(1, 300))
def test_truncations_of_valid_packets_are_rejected(cut: int, _: int) -> None:
    data = _good_ping()
    with pytest.raises(DecodeError):
        decode_packet(data[: max(0, len(data) - 1 - cut)], now=NOW)
